//! Publishing lifecycle events, and the watcher that notices containers
//! exiting on their own.
//!
//! The daemon learns of an exit when it reads the monitor's exit record
//! (`Runtime::refresh`), which otherwise happens only when a client asks
//! about the container. The watcher reads them once a second, so
//! `CONTAINER_STOPPED_EVENT` follows an exit by at most that long; the same
//! loop samples the CPU counters of running containers for
//! `usage_nano_cores`.

use std::sync::Arc;
use std::time::Duration;

use super::{now_ns, ContainerFilter, Runtime};
use crate::container::{ContainerRecord, ContainerState};
use crate::events::{ContainerEvent, EventKind};
use crate::pod::PodRecord;

/// How often exits are looked for.
const EXIT_POLL: Duration = Duration::from_secs(1);
/// How often running containers' CPU counters are sampled.
const CPU_SAMPLE_EVERY: u32 = 10;

impl Runtime {
    pub(crate) fn events(&self) -> &crate::events::EventHub {
        &self.events
    }

    /// Publishes a container's lifecycle change with its pod's state.
    pub(crate) fn emit_container_event(&self, kind: EventKind, c: &ContainerRecord) {
        // Two threads may both notice one exit; only the first reports it.
        let first = {
            let mut stopped = self
                .stopped_reported
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match kind {
                EventKind::Stopped => stopped.insert(c.id.clone()),
                EventKind::Deleted => {
                    stopped.remove(&c.id);
                    true
                }
                _ => true,
            }
        };
        if !first {
            return;
        }
        let pod = self.pod(&c.pod_id).ok();
        self.publish_event(kind, &c.id, &c.pod_id, pod);
    }

    /// A new pod sandbox: CREATED then STARTED, as for a container.
    pub(crate) fn emit_pod_ready(&self, pod: &PodRecord) {
        self.emit_pod_event(EventKind::Created, pod);
        self.emit_pod_event(EventKind::Started, pod);
    }

    /// Publishes a pod sandbox's own lifecycle change (its ID as the
    /// container ID, as the kubelet's evented PLEG expects).
    pub(crate) fn emit_pod_event(&self, kind: EventKind, pod: &PodRecord) {
        // After removal the store has no record: the caller's last copy.
        let current = self.pod(&pod.id).unwrap_or_else(|_| pod.clone());
        self.publish_event(kind, &pod.id, &pod.id, Some(current));
    }

    fn publish_event(&self, kind: EventKind, id: &str, pod_id: &str, pod: Option<PodRecord>) {
        let containers = self.containers_of(pod_id).unwrap_or_default();
        self.events.publish(ContainerEvent {
            kind,
            container_id: id.to_owned(),
            at_ns: now_ns(),
            pod,
            containers,
        });
    }

    /// One pass of the watcher: reads exit records (publishing STOPPED for
    /// new exits) and, when `sample_cpu`, the CPU counters of running
    /// containers.
    fn watch_once(&self, sample_cpu: bool) {
        let running = match self.list_containers(&ContainerFilter {
            state: Some(ContainerState::Running),
            ..Default::default()
        }) {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %crate::errors::chain(&e), "cannot list containers for the exit watcher");
                return;
            }
        };
        if sample_cpu {
            for c in &running {
                if let Some(usage) = self.cgroup_reader.read(&c.cgroup).cpu_usage_ns {
                    self.cpu_sampler.observe(&c.id, now_ns(), usage);
                }
            }
            let pods = self.store.list::<PodRecord>().unwrap_or_default();
            let live: std::collections::HashSet<_> = running
                .iter()
                .map(|c| c.id.as_str())
                .chain(pods.iter().map(|p| p.id.as_str()))
                .collect();
            self.cpu_sampler.retain(|k| live.contains(k));
        }
    }
}

/// Runs the exit watcher and CPU sampler until the runtime is dropped.
pub(crate) fn spawn_watcher(runtime: &Arc<Runtime>) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(runtime);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EXIT_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n: u32 = 0;
        loop {
            tick.tick().await;
            let Some(rt) = weak.upgrade() else { return };
            let sample = n.is_multiple_of(CPU_SAMPLE_EVERY);
            n = n.wrapping_add(1);
            let _ = tokio::task::spawn_blocking(move || rt.watch_once(sample)).await;
        }
    })
}
