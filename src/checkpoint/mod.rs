//! Container checkpoints with CRIU, driven by pvecri itself (no liblxc).
//!
//! - [`criu`]: finding the binary and whether `criu check` passes here;
//! - [`nsexec`]: the helper verb that enters a pod's namespaces and execs
//!   criu, so the daemon never forks and criu dumps no pod namespace;
//! - [`freeze`]: the container frozen while its state is copied;
//! - [`mounts`]: the container's mounts CRIU must treat as external;
//! - [`refuse`]: what cannot be checkpointed, and why;
//! - [`stdio`]: the keys of init's stdio that live outside the container;
//! - [`rootfs_diff`]: the writable layer as `rootfs-diff.tar` and
//!   `deleted.files`;
//! - [`dump`]: one checkpoint from start to end, under a deadline;
//! - [`archive`]: the metadata files and the archive, in the layout CRI-O
//!   writes, so that checkpoint tools read it;
//! - [`confinement`]: what a restore's request must ask for unchanged;
//! - [`unpack`]: an archive read back (untrusted) for a restore;
//! - [`pod_archive`]: a whole pod's archive (CheckpointPod, RestorePod);
//! - [`restore`]: the plan the monitor restores a container by, and its
//!   criu command line.
//!
//! `docs/checkpoint.md` says what is supported and what is refused.

pub(crate) mod archive;
pub(crate) mod confinement;
pub(crate) mod criu;
pub(crate) mod dump;
pub(crate) mod freeze;
pub(crate) mod mounts;
pub(crate) mod nsexec;
pub(crate) mod pod_archive;
pub(crate) mod refuse;
pub(crate) mod restore;
pub(crate) mod rootfs_diff;
pub(crate) mod stdio;
pub(crate) mod unpack;
