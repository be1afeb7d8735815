//! Finds a process's memory cgroup directory from `/proc/<pid>/cgroup` and
//! the node's cgroup mounts, on unified (v2), hybrid and legacy (v1) hosts,
//! for the monitor's OOM counting. Parsing is pure and tested on fixture
//! text; [`locate`] does the reading.

use std::path::PathBuf;

use super::CgroupMount;

/// Which hierarchy holds the memory controller for a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CgroupVersion {
    V1,
    V2,
}

/// A memory cgroup directory and the file holding its `oom_kill` counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemoryCgroup {
    pub version: CgroupVersion,
    pub dir: PathBuf,
}

impl MemoryCgroup {
    /// `memory.events` (v2) or `memory.oom_control` (v1).
    pub(crate) fn counter_file(&self) -> PathBuf {
        self.dir.join(match self.version {
            CgroupVersion::V2 => "memory.events",
            CgroupVersion::V1 => "memory.oom_control",
        })
    }
}

/// A process's cgroup paths from `/proc/<pid>/cgroup`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ProcCgroups {
    /// The path in the v1 hierarchy carrying the `memory` controller.
    pub v1_memory: Option<String>,
    /// The path in the unified hierarchy (`0::/path`).
    pub unified: Option<String>,
}

/// The mounts of the two hierarchies that can hold the memory controller.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct CgroupMounts {
    pub v1_memory: Option<CgroupMount>,
    pub unified: Option<CgroupMount>,
}

/// Parses `/proc/<pid>/cgroup` (`hierarchy-id:controllers:path` lines).
pub(crate) fn parse_proc_cgroup(text: &str) -> ProcCgroups {
    let mut out = ProcCgroups::default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            out.unified = Some(path.to_owned());
        } else if controllers.split(',').any(|c| c == "memory") {
            out.v1_memory = Some(path.to_owned());
        }
    }
    out
}

/// The v1 memory and the cgroup2 mounts among the cgroup mounts (the first
/// of each: later ones are usually bind mounts of the same).
pub(crate) fn memory_mounts(mounts: &[CgroupMount]) -> CgroupMounts {
    CgroupMounts {
        v1_memory: mounts
            .iter()
            .find(|m| m.has_v1_controller("memory"))
            .cloned(),
        unified: mounts.iter().find(|m| m.v2).cloned(),
    }
}

/// The candidate memory cgroup directories, unified first: on a hybrid host
/// the unified hierarchy exists without the memory controller, so the
/// caller keeps the first whose counter file exists.
pub(crate) fn candidates(procs: &ProcCgroups, mounts: &CgroupMounts) -> Vec<MemoryCgroup> {
    let mut out = Vec::new();
    if let (Some(path), Some(mount)) = (&procs.unified, &mounts.unified) {
        if let Some(dir) = mount.dir_of(path) {
            out.push(MemoryCgroup {
                version: CgroupVersion::V2,
                dir,
            });
        }
    }
    if let (Some(path), Some(mount)) = (&procs.v1_memory, &mounts.v1_memory) {
        if let Some(dir) = mount.dir_of(path) {
            out.push(MemoryCgroup {
                version: CgroupVersion::V1,
                dir,
            });
        }
    }
    out
}

/// The memory cgroup of `pid`, if it still exists.
pub(crate) fn locate(pid: i32) -> Option<MemoryCgroup> {
    let procs = parse_proc_cgroup(&std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?);
    let mounts = memory_mounts(&super::read_mounts().ok()?);
    candidates(&procs, &mounts)
        .into_iter()
        .find(|cg| cg.counter_file().exists())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::cgroup_mounts;
    use crate::node::mountinfo;

    fn parse_mountinfo(text: &str) -> CgroupMounts {
        memory_mounts(&cgroup_mounts(mountinfo::parse(text)))
    }

    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:15 - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_PROC: &str = "\
9:name=systemd:/
4:memory:/pvecri-test/c1
1:cpu:/
0::/pvecri-test/c1
";
    const UNIFIED_MOUNTINFO: &str = "\
25 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
33 25 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn parses_proc_cgroup_v1_and_v2_lines() {
        assert_eq!(
            parse_proc_cgroup(HYBRID_PROC),
            ProcCgroups {
                v1_memory: Some("/pvecri-test/c1".into()),
                unified: Some("/pvecri-test/c1".into()),
            }
        );
        let joined = parse_proc_cgroup("5:cpuacct,memory:/a/b\n0::/\n");
        assert_eq!(joined.v1_memory.as_deref(), Some("/a/b"));
        assert_eq!(
            parse_proc_cgroup("0::/kubepods/pod1/c2\n"),
            ProcCgroups {
                v1_memory: None,
                unified: Some("/kubepods/pod1/c2".into())
            }
        );
        assert_eq!(parse_proc_cgroup("garbage\n"), ProcCgroups::default());
    }

    #[test]
    fn parses_mountinfo_of_hybrid_and_unified_hosts() {
        let m = parse_mountinfo(HYBRID_MOUNTINFO);
        let v1 = m.v1_memory.unwrap();
        assert_eq!(
            (v1.root, v1.mount_point),
            ("/".into(), "/sys/fs/cgroup/memory".into())
        );
        assert_eq!(
            m.unified.unwrap().mount_point,
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        let u = parse_mountinfo(UNIFIED_MOUNTINFO);
        assert_eq!(u.v1_memory, None);
        assert_eq!(
            u.unified.unwrap().mount_point,
            PathBuf::from("/sys/fs/cgroup")
        );
    }

    #[test]
    fn candidates_put_unified_first() {
        let c = candidates(
            &parse_proc_cgroup(HYBRID_PROC),
            &parse_mountinfo(HYBRID_MOUNTINFO),
        );
        assert_eq!(
            c,
            vec![
                MemoryCgroup {
                    version: CgroupVersion::V2,
                    dir: "/sys/fs/cgroup/unified/pvecri-test/c1".into()
                },
                MemoryCgroup {
                    version: CgroupVersion::V1,
                    dir: "/sys/fs/cgroup/memory/pvecri-test/c1".into()
                },
            ]
        );
        assert_eq!(
            c[0].counter_file(),
            PathBuf::from("/sys/fs/cgroup/unified/pvecri-test/c1/memory.events")
        );
        assert_eq!(
            c[1].counter_file(),
            PathBuf::from("/sys/fs/cgroup/memory/pvecri-test/c1/memory.oom_control")
        );
    }

    #[test]
    fn mount_roots_below_the_hierarchy_root_are_stripped() {
        // Inside a cgroup namespace or a container: the mount shows /lxc/ct1.
        let mounts =
            parse_mountinfo("50 40 0:27 /lxc/ct1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        let procs = parse_proc_cgroup("0::/lxc/ct1/pvecri/c1\n");
        assert_eq!(
            candidates(&procs, &mounts)[0].dir,
            PathBuf::from("/sys/fs/cgroup/pvecri/c1")
        );
        // A path outside the mounted subtree (or a sibling with a shared
        // prefix) is not reachable.
        for outside in ["0::/other\n", "0::/lxc/ct10/x\n"] {
            assert!(
                candidates(&parse_proc_cgroup(outside), &mounts).is_empty(),
                "{outside}"
            );
        }
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        let m = parse_mountinfo("41 31 0:38 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\n");
        assert_eq!(
            m.unified.unwrap().mount_point,
            PathBuf::from("/mnt/my cgroups")
        );
    }

    #[test]
    fn locates_this_process_memory_cgroup() {
        let unified_memory = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .map(|c| c.split_whitespace().any(|c| c == "memory"))
            .unwrap_or(false);
        let expected = if unified_memory {
            CgroupVersion::V2
        } else if std::path::Path::new("/sys/fs/cgroup/memory/memory.oom_control").exists() {
            CgroupVersion::V1
        } else {
            eprintln!("skipping locates_this_process_memory_cgroup: no memory controller mounted");
            return;
        };
        let cg = locate(std::process::id() as i32).expect("own memory cgroup");
        assert_eq!(cg.version, expected, "{cg:?}");
        assert!(cg.counter_file().exists(), "{cg:?}");
    }
}
