//! Reads a cgroup's CPU, memory and pids counters.
//!
//! cgroup v2 keeps every controller in one directory; cgroup v1 (and the
//! hybrid layout, whose containers use the v1 controllers) spreads them over
//! one hierarchy per controller. Both are read into the same [`CgroupStats`]
//! so the CRI layer never sees the difference. A file that is missing or
//! unreadable leaves its field `None`: a container that just exited, or a
//! controller the node does not enable, is not an error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::node::cgroups::CgroupLayout;

/// v1 reports "no limit" as a page-rounded i64::MAX; anything this large is
/// unlimited.
const V1_UNLIMITED: u64 = 1 << 62;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Cumulative CPU time of every task, in nanoseconds.
    pub cpu_usage_ns: Option<u64>,
    pub memory: Option<MemoryStats>,
    /// Tasks (threads) in the cgroup.
    pub pids: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Everything charged to the cgroup, page cache included.
    pub usage_bytes: u64,
    /// Usage minus inactive file pages: what the kubelet evicts on.
    pub working_set_bytes: u64,
    /// Anonymous memory (plus swap cache on v1).
    pub rss_bytes: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// Limit minus working set; `None` without a limit.
    pub available_bytes: Option<u64>,
    /// Swap in use; `None` where the node does not account swap.
    pub swap_usage_bytes: Option<u64>,
    /// Swap limit minus swap usage; `None` without a limit.
    pub swap_available_bytes: Option<u64>,
}

impl CgroupStats {
    /// Adds another cgroup's counters (a pod is the sum of its containers).
    pub fn add(&mut self, other: &CgroupStats) {
        fn sum(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            }
        }
        self.cpu_usage_ns = sum(self.cpu_usage_ns, other.cpu_usage_ns);
        self.pids = sum(self.pids, other.pids);
        self.memory = match (self.memory.take(), &other.memory) {
            (Some(mut m), Some(o)) => {
                m.usage_bytes += o.usage_bytes;
                m.working_set_bytes += o.working_set_bytes;
                m.rss_bytes += o.rss_bytes;
                m.page_faults += o.page_faults;
                m.major_page_faults += o.major_page_faults;
                m.available_bytes = sum(m.available_bytes, o.available_bytes);
                m.swap_usage_bytes = sum(m.swap_usage_bytes, o.swap_usage_bytes);
                m.swap_available_bytes = sum(m.swap_available_bytes, o.swap_available_bytes);
                Some(m)
            }
            (m, o) => m.or_else(|| o.clone()),
        };
    }
}

/// Reads cgroups of one hierarchy layout, under a root that tests point at
/// fixture trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupReader {
    /// cgroup v2: `<root>/<cgroup>/cpu.stat`, `memory.current`, ...
    V2 { root: PathBuf },
    /// cgroup v1: `<root>/<controller>/<cgroup>/...`.
    V1 { root: PathBuf },
}

impl CgroupReader {
    /// The reader for the hierarchy pvecri puts containers in on this
    /// layout (see `container::cgroup::file_dir`).
    pub fn for_layout(layout: &CgroupLayout) -> Self {
        let root = PathBuf::from("/sys/fs/cgroup");
        match layout {
            CgroupLayout::Unified => CgroupReader::V2 { root },
            _ => CgroupReader::V1 { root },
        }
    }

    /// The counters of `cgroup` (a path relative to the hierarchy root).
    pub fn read(&self, cgroup: &str) -> CgroupStats {
        let cgroup = cgroup.trim_matches('/');
        match self {
            CgroupReader::V2 { root } => read_v2(&root.join(cgroup)),
            CgroupReader::V1 { root } => read_v1(root, cgroup),
        }
    }
}

fn read_v2(dir: &Path) -> CgroupStats {
    let cpu_usage_ns = read_keyed(&dir.join("cpu.stat"))
        .and_then(|s| s.get("usage_usec").copied())
        .map(|us| us.saturating_mul(1000));
    let memory = read_u64(&dir.join("memory.current")).map(|usage| {
        let stat = read_keyed(&dir.join("memory.stat")).unwrap_or_default();
        let get = |k: &str| stat.get(k).copied().unwrap_or(0);
        let working_set = usage.saturating_sub(get("inactive_file"));
        let limit = read_limit_v2(&dir.join("memory.max"));
        let swap = read_u64(&dir.join("memory.swap.current"));
        let swap_limit = read_limit_v2(&dir.join("memory.swap.max"));
        MemoryStats {
            usage_bytes: usage,
            working_set_bytes: working_set,
            rss_bytes: get("anon"),
            page_faults: get("pgfault"),
            major_page_faults: get("pgmajfault"),
            available_bytes: limit.map(|l| l.saturating_sub(working_set)),
            swap_usage_bytes: swap,
            swap_available_bytes: swap_limit.zip(swap).map(|(l, s)| l.saturating_sub(s)),
        }
    });
    CgroupStats {
        cpu_usage_ns,
        memory,
        pids: read_u64(&dir.join("pids.current")),
    }
}

fn read_v1(root: &Path, cgroup: &str) -> CgroupStats {
    let controller = |name: &str| {
        let dir = root.join(name);
        let dir = if dir.exists() {
            dir
        } else {
            // Without the per-controller symlinks only the joined
            // mount point exists.
            root.join("cpu,cpuacct")
        };
        dir.join(cgroup)
    };
    let cpu_usage_ns = read_u64(&controller("cpuacct").join("cpuacct.usage"));
    let mem = root.join("memory").join(cgroup);
    let memory = read_u64(&mem.join("memory.usage_in_bytes")).map(|usage| {
        let stat = read_keyed(&mem.join("memory.stat")).unwrap_or_default();
        // The total_ keys include descendants, like v2's files do.
        let get = |k: &str| {
            stat.get(&format!("total_{k}"))
                .or_else(|| stat.get(k))
                .copied()
                .unwrap_or(0)
        };
        let working_set = usage.saturating_sub(get("inactive_file"));
        let limit = read_u64(&mem.join("memory.limit_in_bytes")).filter(|l| *l < V1_UNLIMITED);
        // memsw counts memory plus swap; it exists only with swap accounting.
        let memsw = read_u64(&mem.join("memory.memsw.usage_in_bytes"));
        let memsw_limit =
            read_u64(&mem.join("memory.memsw.limit_in_bytes")).filter(|l| *l < V1_UNLIMITED);
        let swap = memsw.map(|m| m.saturating_sub(usage));
        MemoryStats {
            usage_bytes: usage,
            working_set_bytes: working_set,
            rss_bytes: get("rss"),
            page_faults: get("pgfault"),
            major_page_faults: get("pgmajfault"),
            available_bytes: limit.map(|l| l.saturating_sub(working_set)),
            swap_usage_bytes: swap,
            swap_available_bytes: memsw_limit
                .zip(limit)
                .zip(swap)
                .map(|((ml, l), s)| ml.saturating_sub(l).saturating_sub(s)),
        }
    });
    CgroupStats {
        cpu_usage_ns,
        memory,
        pids: read_u64(&root.join("pids").join(cgroup).join("pids.current")),
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A v2 limit file: a number, or "max" for none.
fn read_limit_v2(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    match text.trim() {
        "max" => None,
        n => n.parse().ok(),
    }
}

/// A flat-keyed file (`key value` lines) such as `memory.stat`.
fn read_keyed(path: &Path) -> Option<HashMap<String, u64>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(parse_keyed(&text))
}

pub fn parse_keyed(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (k, v) = line.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }

    #[test]
    fn reads_a_v2_tree() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            &[
                ("pvecri/c1/cpu.stat", "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n"),
                ("pvecri/c1/memory.current", "10485760\n"),
                (
                    "pvecri/c1/memory.stat",
                    "anon 4194304\nfile 6291456\ninactive_file 2097152\npgfault 300\npgmajfault 7\n",
                ),
                ("pvecri/c1/memory.max", "67108864\n"),
                ("pvecri/c1/memory.swap.current", "4096\n"),
                ("pvecri/c1/memory.swap.max", "max\n"),
                ("pvecri/c1/pids.current", "3\n"),
            ],
        );
        let reader = CgroupReader::V2 {
            root: root.path().to_owned(),
        };
        let s = reader.read("/pvecri/c1");
        assert_eq!(s.cpu_usage_ns, Some(2_500_000));
        assert_eq!(s.pids, Some(3));
        let m = s.memory.unwrap();
        assert_eq!(m.usage_bytes, 10 << 20);
        assert_eq!(m.working_set_bytes, 8 << 20);
        assert_eq!(m.rss_bytes, 4 << 20);
        assert_eq!((m.page_faults, m.major_page_faults), (300, 7));
        assert_eq!(m.available_bytes, Some(56 << 20));
        assert_eq!(m.swap_usage_bytes, Some(4096));
        assert_eq!(m.swap_available_bytes, None);
    }

    #[test]
    fn reads_a_v1_tree() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            &[
                ("cpu,cpuacct/pvecri/c1/cpuacct.usage", "123456789\n"),
                ("memory/pvecri/c1/memory.usage_in_bytes", "8388608\n"),
                (
                    "memory/pvecri/c1/memory.stat",
                    "rss 1\ninactive_file 1\ntotal_rss 2097152\ntotal_inactive_file 1048576\ntotal_pgfault 50\ntotal_pgmajfault 2\n",
                ),
                ("memory/pvecri/c1/memory.limit_in_bytes", "9223372036854771712\n"),
                ("pids/pvecri/c1/pids.current", "1\n"),
            ],
        );
        let reader = CgroupReader::V1 {
            root: root.path().to_owned(),
        };
        let s = reader.read("pvecri/c1");
        assert_eq!(s.cpu_usage_ns, Some(123_456_789));
        assert_eq!(s.pids, Some(1));
        let m = s.memory.unwrap();
        assert_eq!(m.working_set_bytes, 7 << 20);
        assert_eq!(m.rss_bytes, 2 << 20);
        assert_eq!((m.page_faults, m.major_page_faults), (50, 2));
        assert_eq!(m.available_bytes, None, "no limit");
        assert_eq!(m.swap_usage_bytes, None, "no swap accounting");
    }

    #[test]
    fn a_missing_cgroup_reads_as_empty() {
        let root = tempfile::tempdir().unwrap();
        for reader in [
            CgroupReader::V1 {
                root: root.path().to_owned(),
            },
            CgroupReader::V2 {
                root: root.path().to_owned(),
            },
        ] {
            assert_eq!(reader.read("gone"), CgroupStats::default());
        }
    }

    #[test]
    fn pods_sum_their_containers() {
        let a = CgroupStats {
            cpu_usage_ns: Some(10),
            pids: Some(1),
            memory: Some(MemoryStats {
                usage_bytes: 100,
                working_set_bytes: 50,
                available_bytes: None,
                ..Default::default()
            }),
        };
        let mut total = CgroupStats::default();
        total.add(&a);
        total.add(&a);
        assert_eq!(total.cpu_usage_ns, Some(20));
        assert_eq!(total.pids, Some(2));
        assert_eq!(total.memory.as_ref().unwrap().working_set_bytes, 100);
    }

    #[test]
    fn reads_this_process_cgroup_on_this_node() {
        // The daemon's own cgroup exists on any layout; its CPU counter is
        // readable through the reader the daemon would pick.
        let layout = crate::node::cgroups::detect().unwrap();
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let reader = CgroupReader::for_layout(&layout);
        let path = match &reader {
            CgroupReader::V2 { .. } => text.lines().find_map(|l| l.strip_prefix("0::")),
            CgroupReader::V1 { .. } => text.lines().find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
                ctrls.split(',').any(|c| c == "cpuacct").then_some(path)
            }),
        };
        let Some(path) = path else {
            eprintln!("skipping reads_this_process_cgroup_on_this_node: no CPU accounting cgroup");
            return;
        };
        let s = reader.read(path);
        if s.cpu_usage_ns.is_none() {
            // Inside a cgroup namespace the path may not resolve.
            eprintln!("skipping: {path} not visible under /sys/fs/cgroup");
            return;
        }
        assert!(s.cpu_usage_ns.unwrap() > 0);
    }
}
