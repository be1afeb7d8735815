//! The cAdvisor-style metrics of `ListMetricDescriptors` and
//! `ListPodSandboxMetrics`, which the kubelet serves on `/metrics/cadvisor`
//! when it takes stats from the runtime.
//!
//! Every metric carries the container labels (`container`, `id`, `image`,
//! `name`, `namespace`, `pod`), some one more dimension. The CRI value is an
//! unsigned integer, so `_seconds` metrics are whole seconds. Block I/O
//! comes from the cgroup's `io.stat` (v2) or `blkio.throttle.*` (v1), per
//! device.

use std::path::Path;

/// Counter or gauge, as CRI's `MetricType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Descriptor {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// Labels beyond [`BASE_LABELS`].
    pub extra_labels: &'static [&'static str],
}

pub(crate) const BASE_LABELS: &[&str] = &["container", "id", "image", "name", "namespace", "pod"];

macro_rules! d {
    ($name:literal, $kind:ident, $help:literal) => {
        d!($name, $kind, $help, [])
    };
    ($name:literal, $kind:ident, $help:literal, [$($l:literal),*]) => {
        Descriptor { name: $name, help: $help, kind: Kind::$kind, extra_labels: &[$($l),*] }
    };
}

pub(crate) const DESCRIPTORS: &[Descriptor] = &[
    d!(
        "container_blkio_device_usage_total",
        Counter,
        "Blkio device bytes usage",
        ["device", "major", "minor", "operation"]
    ),
    d!(
        "container_cpu_cfs_periods_total",
        Counter,
        "Number of elapsed enforcement period intervals"
    ),
    d!(
        "container_cpu_cfs_throttled_periods_total",
        Counter,
        "Number of throttled period intervals"
    ),
    d!(
        "container_cpu_cfs_throttled_seconds_total",
        Counter,
        "Total time duration the container has been throttled, in whole seconds"
    ),
    d!(
        "container_cpu_system_seconds_total",
        Counter,
        "Cumulative system CPU time consumed, in whole seconds"
    ),
    d!(
        "container_cpu_usage_seconds_total",
        Counter,
        "Cumulative CPU time consumed, in whole seconds",
        ["cpu"]
    ),
    d!(
        "container_cpu_user_seconds_total",
        Counter,
        "Cumulative user CPU time consumed, in whole seconds"
    ),
    d!(
        "container_file_descriptors",
        Gauge,
        "Number of open file descriptors for the container"
    ),
    d!(
        "container_fs_inodes_free",
        Gauge,
        "Number of available inodes",
        ["device"]
    ),
    d!(
        "container_fs_inodes_total",
        Gauge,
        "Number of inodes",
        ["device"]
    ),
    d!(
        "container_fs_limit_bytes",
        Gauge,
        "Number of bytes that can be consumed by the container on this filesystem",
        ["device"]
    ),
    d!(
        "container_fs_reads_bytes_total",
        Counter,
        "Cumulative count of bytes read",
        ["device"]
    ),
    d!(
        "container_fs_reads_total",
        Counter,
        "Cumulative count of reads completed",
        ["device"]
    ),
    d!(
        "container_fs_usage_bytes",
        Gauge,
        "Number of bytes consumed by the container's writable layer",
        ["device"]
    ),
    d!(
        "container_fs_writes_bytes_total",
        Counter,
        "Cumulative count of bytes written",
        ["device"]
    ),
    d!(
        "container_fs_writes_total",
        Counter,
        "Cumulative count of writes completed",
        ["device"]
    ),
    d!(
        "container_last_seen",
        Gauge,
        "Last time the container was seen by the runtime, in seconds since the epoch"
    ),
    d!(
        "container_memory_cache",
        Gauge,
        "Number of bytes of page cache memory"
    ),
    d!(
        "container_memory_failcnt",
        Counter,
        "Number of memory usage hits limits"
    ),
    d!(
        "container_memory_failures_total",
        Counter,
        "Cumulative count of memory allocation failures",
        ["failure_type", "scope"]
    ),
    d!(
        "container_memory_kernel_usage",
        Gauge,
        "Size of kernel memory allocated in bytes"
    ),
    d!(
        "container_memory_mapped_file",
        Gauge,
        "Size of memory mapped files in bytes"
    ),
    d!(
        "container_memory_max_usage_bytes",
        Gauge,
        "Maximum memory usage recorded in bytes"
    ),
    d!("container_memory_rss", Gauge, "Size of RSS in bytes"),
    d!(
        "container_memory_swap",
        Gauge,
        "Container swap usage in bytes"
    ),
    d!(
        "container_memory_usage_bytes",
        Gauge,
        "Current memory usage in bytes, including all memory regardless of when it was accessed"
    ),
    d!(
        "container_memory_working_set_bytes",
        Gauge,
        "Current working set in bytes"
    ),
    d!(
        "container_network_receive_bytes_total",
        Counter,
        "Cumulative count of bytes received",
        ["interface"]
    ),
    d!(
        "container_network_receive_errors_total",
        Counter,
        "Cumulative count of errors encountered while receiving",
        ["interface"]
    ),
    d!(
        "container_network_receive_packets_dropped_total",
        Counter,
        "Cumulative count of packets dropped while receiving",
        ["interface"]
    ),
    d!(
        "container_network_receive_packets_total",
        Counter,
        "Cumulative count of packets received",
        ["interface"]
    ),
    d!(
        "container_network_transmit_bytes_total",
        Counter,
        "Cumulative count of bytes transmitted",
        ["interface"]
    ),
    d!(
        "container_network_transmit_errors_total",
        Counter,
        "Cumulative count of errors encountered while transmitting",
        ["interface"]
    ),
    d!(
        "container_network_transmit_packets_dropped_total",
        Counter,
        "Cumulative count of packets dropped while transmitting",
        ["interface"]
    ),
    d!(
        "container_network_transmit_packets_total",
        Counter,
        "Cumulative count of packets transmitted",
        ["interface"]
    ),
    d!(
        "container_oom_events_total",
        Counter,
        "Count of out of memory events observed for the container"
    ),
    d!(
        "container_processes",
        Gauge,
        "Number of processes running inside the container"
    ),
    d!(
        "container_sockets",
        Gauge,
        "Number of open sockets for the container"
    ),
    d!(
        "container_spec_cpu_period",
        Gauge,
        "CPU period of the container"
    ),
    d!(
        "container_spec_cpu_shares",
        Gauge,
        "CPU share of the container"
    ),
    d!(
        "container_spec_memory_limit_bytes",
        Gauge,
        "Memory limit for the container"
    ),
    d!(
        "container_spec_memory_swap_limit_bytes",
        Gauge,
        "Memory swap limit for the container"
    ),
    d!(
        "container_start_time_seconds",
        Gauge,
        "Start time of the container since unix epoch in seconds"
    ),
    d!(
        "container_threads",
        Gauge,
        "Number of threads running inside the container"
    ),
    d!(
        "container_threads_max",
        Gauge,
        "Maximum number of threads allowed inside the container, 0 for unlimited"
    ),
];

/// One value: a descriptor's name, its extra label values, the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sample {
    pub name: &'static str,
    pub kind: Kind,
    pub extra_label_values: Vec<String>,
    pub value: u64,
}

fn kind_of(name: &str) -> Kind {
    DESCRIPTORS
        .iter()
        .find(|d| d.name == name)
        .map(|d| d.kind)
        .unwrap_or(Kind::Gauge)
}

fn sample(name: &'static str, extra: &[&str], value: u64) -> Sample {
    Sample {
        name,
        kind: kind_of(name),
        extra_label_values: extra.iter().map(|s| s.to_string()).collect(),
        value,
    }
}

/// What one container's samples are computed from.
pub(crate) struct ContainerInputs<'a> {
    pub stats: &'a crate::cgroups::stats::CgroupStats,
    pub detail: &'a crate::cgroups::stats::CgroupDetail,
    pub resources: &'a crate::cgroups::limits::Resources,
    pub started_at_ns: i64,
    pub now_ns: i64,
    /// Writable layer bytes, and the filesystem holding it.
    pub layer_bytes: u64,
    pub fs: Option<FsInfo>,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FsInfo {
    pub inodes_free: u64,
    pub inodes_total: u64,
    pub bytes_total: u64,
}

impl FsInfo {
    pub(crate) fn of(path: &Path) -> Option<Self> {
        let st = nix::sys::statvfs::statvfs(path).ok()?;
        Some(Self {
            inodes_free: st.files_available() as u64,
            inodes_total: st.files() as u64,
            bytes_total: st.blocks() as u64 * st.fragment_size() as u64,
        })
    }
}

const S: u64 = 1_000_000_000;

pub(crate) fn container_samples(i: &ContainerInputs<'_>, fs_device: &str) -> Vec<Sample> {
    let m = i.stats.memory.clone().unwrap_or_default();
    let d = i.detail;
    let (fds, sockets, threads) = count_fds_and_threads(&d.procs);
    let fs = i.fs.unwrap_or_default();
    let r = i.resources;
    vec![
        sample("container_cpu_cfs_periods_total", &[], d.cfs_periods),
        sample(
            "container_cpu_cfs_throttled_periods_total",
            &[],
            d.cfs_throttled_periods,
        ),
        sample(
            "container_cpu_cfs_throttled_seconds_total",
            &[],
            d.cfs_throttled_ns / S,
        ),
        sample(
            "container_cpu_system_seconds_total",
            &[],
            d.cpu_system_ns / S,
        ),
        sample(
            "container_cpu_usage_seconds_total",
            &["total"],
            i.stats.cpu_usage_ns.unwrap_or(0) / S,
        ),
        sample("container_cpu_user_seconds_total", &[], d.cpu_user_ns / S),
        sample("container_file_descriptors", &[], fds),
        sample("container_fs_inodes_free", &[fs_device], fs.inodes_free),
        sample("container_fs_inodes_total", &[fs_device], fs.inodes_total),
        sample("container_fs_limit_bytes", &[fs_device], fs.bytes_total),
        sample("container_fs_usage_bytes", &[fs_device], i.layer_bytes),
        sample("container_last_seen", &[], (i.now_ns.max(0) as u64) / S),
        sample("container_memory_cache", &[], d.memory_cache_bytes),
        sample("container_memory_failcnt", &[], d.memory_failcnt),
        sample(
            "container_memory_failures_total",
            &["pgfault", "container"],
            m.page_faults,
        ),
        sample(
            "container_memory_failures_total",
            &["pgmajfault", "container"],
            m.major_page_faults,
        ),
        sample("container_memory_kernel_usage", &[], d.memory_kernel_bytes),
        sample(
            "container_memory_mapped_file",
            &[],
            d.memory_mapped_file_bytes,
        ),
        sample(
            "container_memory_max_usage_bytes",
            &[],
            d.memory_max_usage_bytes.max(m.usage_bytes),
        ),
        sample("container_memory_rss", &[], m.rss_bytes),
        sample(
            "container_memory_swap",
            &[],
            m.swap_usage_bytes.unwrap_or(0),
        ),
        sample("container_memory_usage_bytes", &[], m.usage_bytes),
        sample(
            "container_memory_working_set_bytes",
            &[],
            m.working_set_bytes,
        ),
        sample("container_oom_events_total", &[], d.oom_kills),
        sample("container_processes", &[], d.procs.len() as u64),
        sample("container_sockets", &[], sockets),
        sample(
            "container_spec_cpu_period",
            &[],
            if r.cpu_period > 0 {
                r.cpu_period as u64
            } else {
                100_000
            },
        ),
        sample(
            "container_spec_cpu_shares",
            &[],
            if r.cpu_shares > 0 {
                r.cpu_shares as u64
            } else {
                1024
            },
        ),
        sample(
            "container_spec_memory_limit_bytes",
            &[],
            r.memory_limit_in_bytes.max(0) as u64,
        ),
        sample(
            "container_spec_memory_swap_limit_bytes",
            &[],
            r.memory_swap_limit_in_bytes.max(0) as u64,
        ),
        sample(
            "container_start_time_seconds",
            &[],
            (i.started_at_ns.max(0) as u64) / S,
        ),
        sample(
            "container_threads",
            &[],
            threads.max(i.stats.pids.unwrap_or(0)),
        ),
        sample("container_threads_max", &[], d.pids_max),
    ]
    .into_iter()
    .chain(io_samples(&d.io))
    .collect()
}

/// Block I/O samples, per device (`major`/`minor` as cAdvisor numbers them).
fn io_samples(io: &[crate::cgroups::blkio::DeviceIo]) -> Vec<Sample> {
    let mut out = Vec::new();
    for dev in io {
        let name = dev.device_name();
        let (major, minor) = (dev.major.to_string(), dev.minor.to_string());
        for (op, bytes) in [("Read", dev.read_bytes), ("Write", dev.write_bytes)] {
            out.push(sample(
                "container_blkio_device_usage_total",
                &[&name, &major, &minor, op],
                bytes,
            ));
        }
        out.extend([
            sample("container_fs_reads_bytes_total", &[&name], dev.read_bytes),
            sample("container_fs_reads_total", &[&name], dev.reads),
            sample("container_fs_writes_bytes_total", &[&name], dev.write_bytes),
            sample("container_fs_writes_total", &[&name], dev.writes),
        ]);
    }
    out
}

/// Network samples of every interface of a pod's namespace. Loopback is
/// included (cAdvisor leaves it out): traffic between a pod's containers is
/// real traffic, and a pod without networking has nothing else.
pub(crate) fn network_samples(interfaces: &[super::InterfaceStats]) -> Vec<Sample> {
    let mut out = Vec::new();
    for i in interfaces {
        let n = i.name.as_str();
        out.extend([
            sample("container_network_receive_bytes_total", &[n], i.rx_bytes),
            sample("container_network_receive_errors_total", &[n], i.rx_errors),
            sample(
                "container_network_receive_packets_dropped_total",
                &[n],
                i.rx_dropped,
            ),
            sample(
                "container_network_receive_packets_total",
                &[n],
                i.rx_packets,
            ),
            sample("container_network_transmit_bytes_total", &[n], i.tx_bytes),
            sample("container_network_transmit_errors_total", &[n], i.tx_errors),
            sample(
                "container_network_transmit_packets_dropped_total",
                &[n],
                i.tx_dropped,
            ),
            sample(
                "container_network_transmit_packets_total",
                &[n],
                i.tx_packets,
            ),
        ]);
    }
    out
}

/// Open descriptors, sockets among them, and threads of `procs`.
fn count_fds_and_threads(procs: &[i32]) -> (u64, u64, u64) {
    let (mut fds, mut sockets, mut threads) = (0, 0, 0);
    for pid in procs {
        if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            for e in entries.flatten() {
                fds += 1;
                if std::fs::read_link(e.path())
                    .map(|t| t.to_string_lossy().starts_with("socket:"))
                    .unwrap_or(false)
                {
                    sockets += 1;
                }
            }
        }
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            threads += tasks.count() as u64;
        }
    }
    (fds, sockets, threads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_has_a_descriptor_with_matching_labels() {
        let stats = crate::cgroups::stats::CgroupStats::default();
        let detail = crate::cgroups::stats::CgroupDetail {
            io: vec![crate::cgroups::blkio::DeviceIo {
                major: 254,
                minor: 0,
                read_bytes: 4096,
                write_bytes: 512,
                reads: 2,
                writes: 1,
            }],
            ..Default::default()
        };
        let resources = Default::default();
        let inputs = ContainerInputs {
            stats: &stats,
            detail: &detail,
            resources: &resources,
            started_at_ns: 0,
            now_ns: 0,
            layer_bytes: 0,
            fs: None,
        };
        let iface = super::super::InterfaceStats {
            name: "eth0".into(),
            ..Default::default()
        };
        let all: Vec<Sample> = container_samples(&inputs, "/")
            .into_iter()
            .chain(network_samples(&[iface]))
            .collect();
        for s in &all {
            let d = DESCRIPTORS.iter().find(|d| d.name == s.name).unwrap();
            assert_eq!(
                d.extra_labels.len(),
                s.extra_label_values.len(),
                "{}",
                s.name
            );
        }
        let written: Vec<(&[String], u64)> = all
            .iter()
            .filter(|s| s.name == "container_blkio_device_usage_total")
            .map(|s| (s.extra_label_values.as_slice(), s.value))
            .collect();
        assert_eq!(written.len(), 2);
        assert_eq!(written[1].0[1..], ["254", "0", "Write"]);
        assert_eq!(written[1].1, 512);
        assert!(all
            .iter()
            .any(|s| s.name == "container_fs_reads_total" && s.value == 2));
        let mut names: Vec<_> = DESCRIPTORS.iter().map(|d| d.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DESCRIPTORS.len(), "duplicate descriptor");
    }
}
