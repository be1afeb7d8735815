//! Facts about the node pvecri runs on, read from /proc and /sys: the cgroup
//! layout, kernel features and security modules. Parsing is separate from
//! reading so the logic is tested against fixture text.

pub mod census;
pub mod cgroups;
pub mod kernel;
