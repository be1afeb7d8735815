//! Everything pvecri does with cgroups, for cgroup v1 (legacy and hybrid)
//! and v2 alike: which layout the node uses (here), a container's cgroup
//! paths and limits ([`limits`]), the v1 cpuset fix-up ([`cpuset`]),
//! killing and removing a cgroup on every hierarchy ([`tree`]), finding a
//! process's memory cgroup for OOM counting ([`memory`]), and reading
//! usage counters ([`stats`], [`psi`], [`blkio`]).
//!
//! Proxmox VE 7+ runs the unified (v2) hierarchy; older hosts and the CI VMs
//! run v1 controllers with a cgroup2 mount beside them (hybrid).
//!
//! This is a low-level module: it reads /proc and cgroupfs and knows
//! nothing of containers, pods or the runtime that uses it.

pub mod blkio;
pub mod cpuset;
pub mod limits;
pub mod memory;
pub mod psi;
pub mod stats;
pub mod tree;

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup2 mounted at /sys/fs/cgroup.
    Unified,
    /// v1 controllers, with cgroup2 mounted elsewhere (usually .../unified).
    Hybrid { unified_at: String },
    /// v1 controllers only.
    Legacy,
    /// No cgroup filesystem found.
    None,
}

impl fmt::Display for CgroupLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CgroupLayout::Unified => write!(f, "unified (cgroup v2)"),
            CgroupLayout::Hybrid { unified_at } => {
                write!(f, "hybrid (cgroup v1 controllers, cgroup2 at {unified_at})")
            }
            CgroupLayout::Legacy => write!(f, "legacy (cgroup v1 only)"),
            CgroupLayout::None => write!(f, "none"),
        }
    }
}

/// Reads the layout of this process's mount namespace.
pub fn detect() -> std::io::Result<CgroupLayout> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(layout_from_mountinfo(&text))
}

/// Classifies a `/proc/self/mountinfo` text.
pub fn layout_from_mountinfo(mountinfo: &str) -> CgroupLayout {
    let mut v2_at: Option<String> = None;
    let mut has_v1 = false;
    for line in mountinfo.lines() {
        // Fields: id parent major:minor root mountpoint opts [optional...] - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mountpoint) = left.split_whitespace().nth(4) else {
            continue;
        };
        match right.split_whitespace().next() {
            Some("cgroup2") if v2_at.is_none() || mountpoint == "/sys/fs/cgroup" => {
                v2_at = Some(mountpoint.to_owned());
            }
            Some("cgroup") => has_v1 = true,
            _ => {}
        }
    }
    match (v2_at, has_v1) {
        (Some(at), false) if at == "/sys/fs/cgroup" => CgroupLayout::Unified,
        (Some(at), true) => CgroupLayout::Hybrid { unified_at: at },
        (Some(_), false) => CgroupLayout::Unified,
        (None, true) => CgroupLayout::Legacy,
        (None, false) => CgroupLayout::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
33 25 0:27 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
34 33 0:28 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
35 33 0:29 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
38 33 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
";
    const UNIFIED: &str = "\
25 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
33 25 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
    const LEGACY: &str = "\
38 33 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
";

    #[test]
    fn classifies_layouts() {
        assert_eq!(
            layout_from_mountinfo(HYBRID),
            CgroupLayout::Hybrid {
                unified_at: "/sys/fs/cgroup/unified".into()
            }
        );
        assert_eq!(layout_from_mountinfo(UNIFIED), CgroupLayout::Unified);
        assert_eq!(layout_from_mountinfo(LEGACY), CgroupLayout::Legacy);
        assert_eq!(layout_from_mountinfo(""), CgroupLayout::None);
    }

    #[test]
    fn this_node_has_cgroups() {
        assert_ne!(detect().unwrap(), CgroupLayout::None);
    }
}
