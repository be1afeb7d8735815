//! Facts about the node pvecri runs on, read from /proc and /sys: kernel
//! features and security modules, the mount table, and the census of what pvecri left on
//! it. (The cgroup layout is `crate::cgroups`.) Parsing is separate from
//! reading so the logic is tested against fixture text.

pub(crate) mod census;
pub(crate) mod clone3;
pub(crate) mod kernel;
pub(crate) mod mountinfo;
pub(crate) mod pidfd;
