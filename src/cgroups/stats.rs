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

use crate::cgroups::CgroupLayout;

/// v1 reports "no limit" as a page-rounded i64::MAX; anything this large is
/// unlimited.
const V1_UNLIMITED: u64 = 1 << 62;

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CgroupStats {
    /// Cumulative CPU time of every task, in nanoseconds.
    pub cpu_usage_ns: Option<u64>,
    pub memory: Option<MemoryStats>,
    /// Tasks (threads) in the cgroup.
    pub pids: Option<u64>,
    /// Pressure stall information (cgroup v2 files); not summed by [`add`]:
    /// stall averages of several cgroups do not add up.
    ///
    /// [`add`]: CgroupStats::add
    pub pressure: super::psi::Pressure,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MemoryStats {
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
    pub(crate) fn add(&mut self, other: &CgroupStats) {
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
pub(crate) enum CgroupReader {
    /// cgroup v2: `<root>/<cgroup>/cpu.stat`, `memory.current`, ...
    V2 { root: PathBuf },
    /// cgroup v1: `<root>/<controller>/<cgroup>/...`; pressure from the
    /// cgroup2 hierarchy at `unified` (hybrid hosts), if any.
    V1 {
        root: PathBuf,
        unified: Option<PathBuf>,
    },
}

impl CgroupReader {
    /// The reader for the hierarchy pvecri puts containers in on this
    /// layout (see [`super::limits::file_dir`]).
    pub(crate) fn for_layout(layout: &CgroupLayout) -> Self {
        let root = PathBuf::from(super::ROOT);
        match layout {
            CgroupLayout::Unified => CgroupReader::V2 { root },
            CgroupLayout::Hybrid { unified_at } => CgroupReader::V1 {
                root,
                unified: Some(PathBuf::from(unified_at)),
            },
            _ => CgroupReader::V1 {
                root,
                unified: None,
            },
        }
    }

    /// Only the pressure files of `cgroup` (a pod's cgroup, whose other
    /// counters pvecri sums from its containers).
    pub(crate) fn pressure(&self, cgroup: &str) -> super::psi::Pressure {
        let cgroup = cgroup.trim_matches('/');
        match self {
            CgroupReader::V2 { root } => super::psi::Pressure::read(&root.join(cgroup)),
            CgroupReader::V1 {
                unified: Some(unified),
                ..
            } => super::psi::Pressure::read(&unified.join(cgroup)),
            CgroupReader::V1 { unified: None, .. } => Default::default(),
        }
    }

    /// The counters of `cgroup` (a path relative to the hierarchy root).
    pub(crate) fn read(&self, cgroup: &str) -> CgroupStats {
        let cgroup = cgroup.trim_matches('/');
        match self {
            CgroupReader::V2 { root } => read_v2(&root.join(cgroup)),
            CgroupReader::V1 { root, unified } => {
                let mut stats = read_v1(root, cgroup);
                if let Some(unified) = unified {
                    stats.pressure = super::psi::Pressure::read(&unified.join(cgroup));
                }
                stats
            }
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
        pressure: super::psi::Pressure::read(dir),
    }
}

/// `cgroup`'s directory in the v1 hierarchy of the `cpu` or `cpuacct`
/// controller.
fn v1_cpu_dir(root: &Path, controller: &str, cgroup: &str) -> PathBuf {
    let dir = root.join(controller);
    let dir = if dir.exists() {
        dir
    } else {
        // Without the per-controller symlinks only the joined mount point
        // exists.
        root.join("cpu,cpuacct")
    };
    dir.join(cgroup)
}

/// A v1 `memory.stat` counter: the `total_` key, which includes
/// descendants like v2's files do, else the cgroup's own.
fn v1_memory_stat(stat: &HashMap<String, u64>, key: &str) -> u64 {
    stat.get(&format!("total_{key}"))
        .or_else(|| stat.get(key))
        .copied()
        .unwrap_or(0)
}

fn read_v1(root: &Path, cgroup: &str) -> CgroupStats {
    let cpu_usage_ns = read_u64(&v1_cpu_dir(root, "cpuacct", cgroup).join("cpuacct.usage"));
    let mem = root.join("memory").join(cgroup);
    let memory = read_u64(&mem.join("memory.usage_in_bytes")).map(|usage| {
        let stat = read_keyed(&mem.join("memory.stat")).unwrap_or_default();
        let get = |k: &str| v1_memory_stat(&stat, k);
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
        pressure: Default::default(),
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

pub(crate) fn parse_keyed(text: &str) -> HashMap<String, u64> {
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
        write(
            root.path(),
            &[(
                "unified/pvecri/c1/memory.pressure",
                "some avg10=1.50 avg60=0.00 avg300=0.00 total=77\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=5\n",
            )],
        );
        let reader = CgroupReader::V1 {
            root: root.path().to_owned(),
            unified: Some(root.path().join("unified")),
        };
        let s = reader.read("pvecri/c1");
        // Hybrid: pressure from the cgroup2 hierarchy.
        let memory_psi = s.pressure.memory.unwrap();
        assert_eq!((memory_psi.some.total_us, memory_psi.some.avg10), (77, 1.5));
        assert_eq!(s.pressure.cpu, None);
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
    fn pod_pressure_comes_from_the_cgroup2_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            &[(
                "unified/kubepods/pod1/cpu.pressure",
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=11\n",
            )],
        );
        let hybrid = CgroupReader::V1 {
            root: root.path().to_owned(),
            unified: Some(root.path().join("unified")),
        };
        assert_eq!(
            hybrid.pressure("/kubepods/pod1").cpu.unwrap().some.total_us,
            11
        );
        let v2 = CgroupReader::V2 {
            root: root.path().join("unified"),
        };
        assert_eq!(v2.pressure("kubepods/pod1").cpu.unwrap().some.total_us, 11);
        let legacy = CgroupReader::V1 {
            root: root.path().to_owned(),
            unified: None,
        };
        assert_eq!(legacy.pressure("kubepods/pod1"), Default::default());
    }

    #[test]
    fn a_missing_cgroup_reads_as_empty() {
        let root = tempfile::tempdir().unwrap();
        for reader in [
            CgroupReader::V1 {
                root: root.path().to_owned(),
                unified: None,
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
            pressure: Default::default(),
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
        let layout = crate::cgroups::detect().unwrap();
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

/// The further counters cAdvisor-style metrics need, beyond [`CgroupStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CgroupDetail {
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub cfs_periods: u64,
    pub cfs_throttled_periods: u64,
    pub cfs_throttled_ns: u64,
    pub memory_cache_bytes: u64,
    pub memory_mapped_file_bytes: u64,
    pub memory_kernel_bytes: u64,
    pub memory_max_usage_bytes: u64,
    pub memory_failcnt: u64,
    pub oom_kills: u64,
    /// `pids.max`; 0 when unlimited.
    pub pids_max: u64,
    /// Processes (thread group leaders) in the cgroup.
    pub procs: Vec<i32>,
    /// Block I/O per device.
    pub io: Vec<super::blkio::DeviceIo>,
}

/// USER_HZ, the unit of v1's `cpuacct.stat` (100 on every Linux ABI).
const USER_HZ_NS: u64 = 10_000_000;

impl CgroupReader {
    pub(crate) fn read_detail(&self, cgroup: &str) -> CgroupDetail {
        let cgroup = cgroup.trim_matches('/');
        match self {
            CgroupReader::V2 { root } => detail_v2(&root.join(cgroup)),
            CgroupReader::V1 { root, .. } => detail_v1(root, cgroup),
        }
    }
}

fn detail_v2(dir: &Path) -> CgroupDetail {
    let cpu = read_keyed(&dir.join("cpu.stat")).unwrap_or_default();
    let mem = read_keyed(&dir.join("memory.stat")).unwrap_or_default();
    let events = read_keyed(&dir.join("memory.events")).unwrap_or_default();
    let c = |k: &str| cpu.get(k).copied().unwrap_or(0);
    let m = |k: &str| mem.get(k).copied().unwrap_or(0);
    let kernel = match mem.get("kernel") {
        Some(k) => *k,
        None => m("kernel_stack") + m("slab") + m("sock"),
    };
    CgroupDetail {
        cpu_user_ns: c("user_usec") * 1000,
        cpu_system_ns: c("system_usec") * 1000,
        cfs_periods: c("nr_periods"),
        cfs_throttled_periods: c("nr_throttled"),
        cfs_throttled_ns: c("throttled_usec") * 1000,
        memory_cache_bytes: m("file"),
        memory_mapped_file_bytes: m("file_mapped"),
        memory_kernel_bytes: kernel,
        memory_max_usage_bytes: read_u64(&dir.join("memory.peak"))
            .or_else(|| read_u64(&dir.join("memory.current")))
            .unwrap_or(0),
        memory_failcnt: events.get("max").copied().unwrap_or(0),
        oom_kills: events.get("oom_kill").copied().unwrap_or(0),
        pids_max: read_limit_v2(&dir.join("pids.max")).unwrap_or(0),
        procs: super::procs(dir),
        io: super::blkio::read_v2(dir),
    }
}

fn detail_v1(root: &Path, cgroup: &str) -> CgroupDetail {
    let acct =
        read_keyed(&v1_cpu_dir(root, "cpuacct", cgroup).join("cpuacct.stat")).unwrap_or_default();
    let cpu = read_keyed(&v1_cpu_dir(root, "cpu", cgroup).join("cpu.stat")).unwrap_or_default();
    let mem_dir = root.join("memory").join(cgroup);
    let mem = read_keyed(&mem_dir.join("memory.stat")).unwrap_or_default();
    let oom = read_keyed(&mem_dir.join("memory.oom_control")).unwrap_or_default();
    let m = |k: &str| v1_memory_stat(&mem, k);
    let c = |k: &str| cpu.get(k).copied().unwrap_or(0);
    CgroupDetail {
        cpu_user_ns: acct.get("user").copied().unwrap_or(0) * USER_HZ_NS,
        cpu_system_ns: acct.get("system").copied().unwrap_or(0) * USER_HZ_NS,
        cfs_periods: c("nr_periods"),
        cfs_throttled_periods: c("nr_throttled"),
        cfs_throttled_ns: c("throttled_time"),
        memory_cache_bytes: m("cache"),
        memory_mapped_file_bytes: m("mapped_file"),
        memory_kernel_bytes: read_u64(&mem_dir.join("memory.kmem.usage_in_bytes")).unwrap_or(0),
        memory_max_usage_bytes: read_u64(&mem_dir.join("memory.max_usage_in_bytes")).unwrap_or(0),
        memory_failcnt: read_u64(&mem_dir.join("memory.failcnt")).unwrap_or(0),
        oom_kills: oom.get("oom_kill").copied().unwrap_or(0),
        pids_max: read_limit_v2(&root.join("pids").join(cgroup).join("pids.max")).unwrap_or(0),
        procs: super::procs(&mem_dir),
        io: super::blkio::read_v1(&root.join("blkio").join(cgroup)),
    }
}

#[cfg(test)]
mod detail_tests {
    use super::*;

    #[test]
    fn details_of_v2_and_v1_trees() {
        let root = tempfile::tempdir().unwrap();
        let files: &[(&str, &str)] = &[
            ("c/cpu.stat", "usage_usec 30\nuser_usec 20\nsystem_usec 10\nnr_periods 5\nnr_throttled 2\nthrottled_usec 7\n"),
            ("c/memory.stat", "file 100\nfile_mapped 40\nkernel 60\n"),
            ("c/memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
            ("c/memory.peak", "999\n"),
            ("c/pids.max", "max\n"),
            ("c/cgroup.procs", "10\n11\n"),
        ];
        for (name, text) in files {
            let p = root.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let d = CgroupReader::V2 {
            root: root.path().to_owned(),
        }
        .read_detail("c");
        assert_eq!((d.cpu_user_ns, d.cpu_system_ns), (20_000, 10_000));
        assert_eq!(
            (d.cfs_periods, d.cfs_throttled_periods, d.cfs_throttled_ns),
            (5, 2, 7000)
        );
        assert_eq!(
            (
                d.memory_cache_bytes,
                d.memory_mapped_file_bytes,
                d.memory_kernel_bytes
            ),
            (100, 40, 60)
        );
        assert_eq!(
            (d.memory_max_usage_bytes, d.memory_failcnt, d.oom_kills),
            (999, 3, 1)
        );
        assert_eq!((d.pids_max, d.procs.clone()), (0, vec![10, 11]));

        let v1 = tempfile::tempdir().unwrap();
        let files: &[(&str, &str)] = &[
            ("cpu,cpuacct/c/cpuacct.stat", "user 3\nsystem 1\n"),
            (
                "cpu,cpuacct/c/cpu.stat",
                "nr_periods 4\nnr_throttled 1\nthrottled_time 500\n",
            ),
            (
                "memory/c/memory.stat",
                "total_cache 10\ntotal_mapped_file 5\n",
            ),
            (
                "memory/c/memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
            ),
            ("memory/c/memory.failcnt", "4\n"),
            ("memory/c/cgroup.procs", "7\n"),
            ("pids/c/pids.max", "64\n"),
        ];
        for (name, text) in files {
            let p = v1.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let d = CgroupReader::V1 {
            root: v1.path().to_owned(),
            unified: None,
        }
        .read_detail("c");
        assert_eq!((d.cpu_user_ns, d.cpu_system_ns), (30_000_000, 10_000_000));
        assert_eq!(
            (d.cfs_periods, d.cfs_throttled_periods, d.cfs_throttled_ns),
            (4, 1, 500)
        );
        assert_eq!((d.memory_cache_bytes, d.memory_mapped_file_bytes), (10, 5));
        assert_eq!((d.memory_failcnt, d.oom_kills, d.pids_max), (4, 2, 64));
        assert_eq!(d.procs, vec![7]);
    }
}
