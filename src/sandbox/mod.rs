//! The OS side of a pod sandbox: pinned namespaces and the pod's files.
//!
//! A sandbox has no pause process. Its net, ipc and uts namespaces are
//! created on a short-lived thread and kept alive by bind-mounting their
//! nsfs files under `R/ns/<sandbox-id>/` ([`ns`]); every container of the
//! pod joins them through `lxc.namespace.share.*`. The pod's `hostname`,
//! `hosts` and `resolv.conf` live in `S/sandboxes/<sandbox-id>/` ([`files`])
//! and are bind-mounted into each container. The sandbox records and the
//! CRI glue live elsewhere; this module only touches the kernel and files.

pub(crate) mod files;
pub(crate) mod hostname;
pub(crate) mod idmap;
pub(crate) mod infra;
mod loopback;
pub(crate) mod ns;
pub(crate) mod sysctl;
pub(crate) mod userns;
