//! Everything pvecri does with cgroups, for cgroup v1 (legacy and hybrid)
//! and v2 alike: which layout the node uses and where its hierarchies are
//! mounted (here, from the one mountinfo parser `crate::node::mountinfo`),
//! where a container's cgroup lives ([`paths`]), the limits written into
//! it ([`limits`]), the v1 cpuset fix-up ([`cpuset`]), killing and
//! removing a cgroup on every hierarchy ([`tree`]), a container's cgroup
//! made without liblxc ([`create`]) with its cgroup2 device policy
//! program ([`device_bpf`]),
//! finding a process's memory cgroup for OOM counting ([`memory`]),
//! reading usage counters ([`stats`], [`psi`], [`blkio`]), and getting the
//! kernel's migration lock ready ahead of a start ([`warm`]).
//!
//! Proxmox VE 7+ runs the unified (v2) hierarchy; older hosts and the CI VMs
//! run v1 controllers with a cgroup2 mount beside them (hybrid).
//!
//! A low-level module: it reads /proc and cgroupfs, and imports nothing
//! from the runtime, container, sandbox or monitor code that uses it,
//! except the device rule type ([`crate::container::devices::Rule`]) that
//! [`create`] reads and [`device_bpf`] compiles.

pub(crate) mod blkio;
pub(crate) mod cpuset;
pub(crate) mod create;
pub(crate) mod device_bpf;
pub(crate) mod enter;
pub(crate) mod limits;
pub(crate) mod memory;
pub(crate) mod paths;
pub(crate) mod psi;
pub(crate) mod stats;
pub mod tree;
pub(crate) mod warm;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::node::mountinfo::{self, Mount};

/// Where the node mounts its cgroup filesystems: the cgroup2 mount on a
/// unified host, the tmpfs holding one directory per v1 hierarchy
/// otherwise. pvecri writes limits and reads counters there, as liblxc
/// and the kubelet do.
pub(crate) const ROOT: &str = "/sys/fs/cgroup";

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

/// One mount of a cgroup filesystem, v1 or v2. Every lookup of a hierarchy
/// (the layout, the hierarchies a cgroup is removed from, the memory and
/// cpuset controllers) starts from these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub mount_point: PathBuf,
    /// The cgroup shown at the mount point: `/`, unless a cgroup namespace
    /// or a bind mount narrows the view.
    pub root: PathBuf,
    /// cgroup2 rather than a v1 hierarchy.
    pub v2: bool,
    /// The superblock options; for v1, the hierarchy's controllers
    /// (`cpu`, `memory`, ...) and its `name=` if it is a named one.
    pub options: Vec<String>,
    /// The superblock (major, minor): bind mounts of one hierarchy share it.
    pub dev: (u32, u32),
}

impl CgroupMount {
    /// The cgroup mount behind a mountinfo line, if it is one.
    pub fn from_mount(m: Mount) -> Option<CgroupMount> {
        let v2 = match m.fs_type.as_str() {
            "cgroup2" => true,
            "cgroup" => false,
            _ => return None,
        };
        Some(CgroupMount {
            mount_point: m.mount_point,
            root: m.root,
            v2,
            options: m.super_options,
            dev: (m.major, m.minor),
        })
    }

    /// Whether this is a v1 hierarchy carrying `controller`.
    pub fn has_v1_controller(&self, controller: &str) -> bool {
        !self.v2 && self.options.iter().any(|o| o == controller)
    }

    /// The directory of cgroup `path` (as `/proc/<pid>/cgroup` shows it,
    /// from the hierarchy's root) relative to this mount's point: empty
    /// for the mount's own root; `None` when the mount does not show it
    /// (it shows another part of the hierarchy) or it steps up with `..`.
    pub(crate) fn relative(&self, path: &str) -> Option<PathBuf> {
        let root = self.root.to_string_lossy();
        let root = root.trim_end_matches('/');
        let rest = path.strip_prefix(root)?;
        if !rest.is_empty() && !rest.starts_with('/') {
            return None;
        }
        let rest = rest.trim_start_matches('/');
        if rest.split('/').any(|c| c == "..") {
            return None;
        }
        Some(PathBuf::from(rest))
    }

    /// The absolute directory of cgroup `path` under this mount (see
    /// [`CgroupMount::relative`]).
    pub(crate) fn dir_of(&self, path: &str) -> Option<PathBuf> {
        let rel = self.relative(path)?;
        Some(if rel.as_os_str().is_empty() {
            self.mount_point.clone()
        } else {
            self.mount_point.join(rel)
        })
    }
}

/// The cgroup mounts among `mounts`, in mountinfo order (so a hierarchy's
/// first mount comes before its later bind mounts).
pub(crate) fn cgroup_mounts(mounts: impl IntoIterator<Item = Mount>) -> Vec<CgroupMount> {
    mounts
        .into_iter()
        .filter_map(CgroupMount::from_mount)
        .collect()
}

/// The cgroup mounts of this process's mount namespace.
pub fn read_mounts() -> io::Result<Vec<CgroupMount>> {
    Ok(cgroup_mounts(mountinfo::read_self()?))
}

/// The processes (thread group leaders) in the cgroup at `dir`, not below
/// it; none when it cannot be read (the cgroup is gone).
pub(crate) fn procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Reads the layout of this process's mount namespace.
pub fn detect() -> io::Result<CgroupLayout> {
    Ok(layout(&read_mounts()?))
}

/// Classifies the node by its cgroup mounts.
pub(crate) fn layout(mounts: &[CgroupMount]) -> CgroupLayout {
    let mut v2_at: Option<&Path> = None;
    let mut has_v1 = false;
    for m in mounts {
        if !m.v2 {
            has_v1 = true;
        } else if v2_at.is_none() || m.mount_point == Path::new(ROOT) {
            v2_at = Some(&m.mount_point);
        }
    }
    match (v2_at, has_v1) {
        (Some(at), true) => CgroupLayout::Hybrid {
            unified_at: at.to_string_lossy().into_owned(),
        },
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

    fn layout_of(text: &str) -> CgroupLayout {
        layout(&cgroup_mounts(mountinfo::parse(text)))
    }

    #[test]
    fn classifies_layouts() {
        assert_eq!(
            layout_of(HYBRID),
            CgroupLayout::Hybrid {
                unified_at: "/sys/fs/cgroup/unified".into()
            }
        );
        assert_eq!(layout_of(UNIFIED), CgroupLayout::Unified);
        assert_eq!(layout_of(LEGACY), CgroupLayout::Legacy);
        assert_eq!(layout_of(""), CgroupLayout::None);
    }

    #[test]
    fn only_cgroup_filesystems_are_cgroup_mounts() {
        let m = cgroup_mounts(mountinfo::parse(HYBRID));
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(
            m[0],
            CgroupMount {
                mount_point: "/sys/fs/cgroup/unified".into(),
                root: "/".into(),
                v2: true,
                options: vec!["rw".into(), "nsdelegate".into()],
                dev: (0, 28),
            }
        );
        assert!(m[1].has_v1_controller("name=systemd"));
        assert!(m[2].has_v1_controller("memory") && !m[2].has_v1_controller("cpu"));
        // cgroup2 has no v1 controllers, whatever its options say.
        assert!(!m[0].has_v1_controller("nsdelegate"));
    }

    #[test]
    fn the_cgroup2_mount_at_the_root_wins_and_paths_are_decoded() {
        let text = "\
40 33 0:40 / /mnt/cg\\0402 rw - cgroup2 cgroup2 rw
41 33 0:41 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
";
        assert_eq!(layout_of(text), CgroupLayout::Unified);
        let hybrid = "\
40 33 0:40 / /mnt/cg\\0402 rw - cgroup2 cgroup2 rw
42 33 0:42 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";
        assert_eq!(
            layout_of(hybrid),
            CgroupLayout::Hybrid {
                unified_at: "/mnt/cg 2".into()
            }
        );
    }

    #[test]
    fn this_node_has_cgroups() {
        assert_ne!(detect().unwrap(), CgroupLayout::None);
    }
}
