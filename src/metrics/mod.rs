//! Prometheus metrics: one registry for the process, the gRPC layer that
//! counts CRI calls, and the `/metrics` HTTP endpoint.
//!
//! Names follow Prometheus conventions: `pvecri_` prefix, units in the name
//! (`_seconds`, `_bytes`), `_total` on counters. Gauges of the runtime's
//! state (containers and sandboxes by state, monitors) are read from the
//! store when scraped, so they cannot drift from it.

mod grpc;
mod http;

pub(crate) use grpc::{code_name, MetricsLayer};
pub(crate) use http::serve;

use std::sync::OnceLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// Latency buckets for CRI calls and pulls: 1 ms to about 2 min.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

pub(crate) struct Metrics {
    registry: Registry,
    pub cri_requests: IntCounterVec,
    pub cri_errors: IntCounterVec,
    pub cri_duration: HistogramVec,
    pub image_pulls: IntCounterVec,
    pub image_pull_duration: Histogram,
    pub image_pulls_in_flight: IntGauge,
    pub image_pull_bytes: IntCounter,
    pub containers: IntGaugeVec,
    pub sandboxes: IntGaugeVec,
    pub monitors: IntGauge,
    pub event_subscribers: IntGauge,
    pub conditions: IntGaugeVec,
    pub cni_operations: IntCounterVec,
}

/// The process's metrics.
pub(crate) fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics::new().expect("metric definitions are valid"))
}

impl Metrics {
    fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let cri_requests = IntCounterVec::new(
            Opts::new(
                "pvecri_cri_requests_total",
                "CRI calls received, by method.",
            ),
            &["method"],
        )?;
        let cri_errors = IntCounterVec::new(
            Opts::new(
                "pvecri_cri_request_errors_total",
                "CRI calls answered with an error, by method and gRPC code.",
            ),
            &["method", "code"],
        )?;
        let cri_duration = HistogramVec::new(
            HistogramOpts::new(
                "pvecri_cri_request_duration_seconds",
                "Time to answer a CRI call (to the first response for streams), by method.",
            )
            .buckets(BUCKETS.to_vec()),
            &["method"],
        )?;
        let image_pulls = IntCounterVec::new(
            Opts::new(
                "pvecri_image_pulls_total",
                "Image pulls finished, by result.",
            ),
            &["result"],
        )?;
        // Both series exist from the start, so rate() and alerts see zero
        // rather than nothing.
        for result in ["success", "failure"] {
            image_pulls.with_label_values(&[result]);
        }
        let image_pull_duration = Histogram::with_opts(
            HistogramOpts::new(
                "pvecri_image_pull_duration_seconds",
                "Time a PullImage call took.",
            )
            .buckets(BUCKETS.to_vec()),
        )?;
        let image_pulls_in_flight =
            IntGauge::new("pvecri_image_pulls_in_flight", "PullImage calls under way.")?;
        let image_pull_bytes = IntCounter::new(
            "pvecri_image_pull_bytes_total",
            "Bytes of image blobs downloaded from registries and verified (blobs already present are not counted).",
        )?;
        let containers = IntGaugeVec::new(
            Opts::new("pvecri_containers", "Containers, by state."),
            &["state"],
        )?;
        let sandboxes = IntGaugeVec::new(
            Opts::new("pvecri_pod_sandboxes", "Pod sandboxes, by state."),
            &["state"],
        )?;
        let monitors = IntGauge::new(
            "pvecri_monitor_processes",
            "Live pvecri monitor processes (one per created or running container).",
        )?;
        let event_subscribers = IntGauge::new(
            "pvecri_event_subscribers",
            "Clients subscribed to GetContainerEvents.",
        )?;
        registry.register(Box::new(cri_requests.clone()))?;
        registry.register(Box::new(cri_errors.clone()))?;
        registry.register(Box::new(cri_duration.clone()))?;
        registry.register(Box::new(image_pulls.clone()))?;
        registry.register(Box::new(image_pull_duration.clone()))?;
        registry.register(Box::new(image_pulls_in_flight.clone()))?;
        registry.register(Box::new(image_pull_bytes.clone()))?;
        let conditions = IntGaugeVec::new(
            Opts::new(
                "pvecri_runtime_condition",
                "1 when the CRI runtime condition (RuntimeReady, NetworkReady) holds, else 0.",
            ),
            &["condition"],
        )?;
        registry.register(Box::new(conditions.clone()))?;
        let cni_operations = IntCounterVec::new(
            Opts::new(
                "pvecri_cni_operations_total",
                "CNI network list operations (ADD, DEL, CHECK, GC, STATUS) run in CNI mode, by command and result.",
            ),
            &["command", "result"],
        )?;
        for command in ["ADD", "DEL", "CHECK", "GC", "STATUS"] {
            for result in ["success", "failure"] {
                cni_operations.with_label_values(&[command, result]);
            }
        }
        registry.register(Box::new(cni_operations.clone()))?;
        registry.register(Box::new(containers.clone()))?;
        registry.register(Box::new(sandboxes.clone()))?;
        registry.register(Box::new(monitors.clone()))?;
        registry.register(Box::new(event_subscribers.clone()))?;
        // process_cpu_seconds_total, process_resident_memory_bytes,
        // process_open_fds, ... of the daemon.
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            registry,
            cri_requests,
            cri_errors,
            cri_duration,
            image_pulls,
            image_pull_duration,
            image_pulls_in_flight,
            image_pull_bytes,
            containers,
            sandboxes,
            monitors,
            event_subscribers,
            conditions,
            cni_operations,
        })
    }

    /// The text exposition format of every metric.
    pub(crate) fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail on I/O; a bad family would be a
        // definition bug, logged rather than failing the scrape.
        if let Err(e) = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// Refreshes the state gauges from the runtime before a scrape.
pub(crate) fn update_state_gauges(runtime: &crate::runtime::Runtime) {
    use crate::container::{ContainerRecord, ContainerState};
    use crate::pod::{PodRecord, PodState};
    let m = global();
    let store = runtime.store();
    let containers = store.list::<ContainerRecord>().unwrap_or_default();
    for (state, label) in [
        (ContainerState::Created, "created"),
        (ContainerState::Running, "running"),
        (ContainerState::Exited, "exited"),
        (ContainerState::Unknown, "unknown"),
    ] {
        let n = containers.iter().filter(|c| c.state == state).count();
        m.containers.with_label_values(&[label]).set(n as i64);
    }
    let pods = store.list::<PodRecord>().unwrap_or_default();
    for (state, label) in [(PodState::Ready, "ready"), (PodState::NotReady, "notready")] {
        let n = pods.iter().filter(|p| p.state == state).count();
        m.sandboxes.with_label_values(&[label]).set(n as i64);
    }
    let monitors = containers
        .iter()
        .filter(|c| monitor_alive(&runtime.config().runtime_dir, &c.id))
        .count();
    m.monitors.set(monitors as i64);
    m.event_subscribers
        .set(runtime.events().subscribers() as i64);
    for c in runtime.conditions() {
        m.conditions
            .with_label_values(&[c.kind.as_str()])
            .set(i64::from(c.ready));
    }
}

/// Whether the container's monitor (its pid file names it) still runs.
fn monitor_alive(runtime_dir: &std::path::Path, id: &str) -> bool {
    crate::container::run_dir::RunDir::new(runtime_dir, id)
        .ok()
        .and_then(|d| d.read_monitor_pid())
        .is_some_and(|pid| pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists())
}
