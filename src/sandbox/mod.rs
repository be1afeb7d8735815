//! The OS side of a pod sandbox: pinned namespaces and the pod's files.
//!
//! A sandbox has no pause process. Its net, ipc and uts namespaces are
//! created on a short-lived thread and kept alive by bind-mounting their
//! nsfs files under `R/ns/<sandbox-id>/` ([`ns`]); every container of the
//! pod joins them through `lxc.namespace.share.*`. The pod's `hostname`,
//! `hosts` and `resolv.conf` live in `S/sandboxes/<sandbox-id>/` ([`files`])
//! and are bind-mounted into each container. The sandbox records and the
//! CRI glue live elsewhere; this module only touches the kernel and files.

pub mod files;
pub mod hostname;
pub mod idmap;
pub mod infra;
mod loopback;
pub mod ns;
pub mod sysctl;
pub mod userns;

pub use files::{hosts_text, write_hosts, write_pod_files, DnsConfig, FilesError, PodFiles};
pub use hostname::{validate_hostname, InvalidHostname};
pub use ns::{is_pinned, pin, prepare_ns_root, unpin, NsError, NsKind, PinRequest};
pub use sysctl::{Sysctl, SysctlError};
