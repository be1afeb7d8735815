//! Publishing lifecycle events, and the watcher that notices containers
//! exiting on their own.
//!
//! The daemon learns of an exit when its monitor ends (a pidfd per
//! monitor, `super::exit_watch`): the watcher then reads the exit record
//! (`Runtime::refresh`) and `CONTAINER_STOPPED_EVENT` goes out. Once a
//! second the same loop watches live containers that have no watch yet,
//! and every tenth it samples the CPU counters of running containers for
//! `usage_nano_cores`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::{now_ns, Runtime};
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

    /// One pass of the watcher: watches the monitors of live containers
    /// that have no watch yet (found at start-up, or a registration that
    /// failed) and, when `sample_cpu`, reads the CPU counters of running
    /// containers.
    fn watch_once(&self, sample_cpu: bool) {
        let live = match self.store.list_shared::<ContainerRecord>() {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %crate::errors::chain(&e), "cannot list containers for the exit watcher");
                return;
            }
        };
        let live: Vec<_> = live
            .into_iter()
            .filter(|c| matches!(c.state, ContainerState::Running | ContainerState::Created))
            .collect();
        for c in &live {
            if !self.exit_watch.is_watched(&c.id) {
                self.watch_exit(c);
            }
        }
        self.renew_layer_usage();
        if sample_cpu {
            let running = live.iter().filter(|c| c.state == ContainerState::Running);
            for c in running.clone() {
                if let Some(usage) = self.cgroup_reader.read(&c.cgroup).cpu_usage_ns {
                    self.cpu_sampler.observe(&c.id, now_ns(), usage);
                }
            }
            let pods = self.store.list::<PodRecord>().unwrap_or_default();
            let live: std::collections::HashSet<_> = running
                .map(|c| c.id.as_str())
                .chain(pods.iter().map(|p| p.id.as_str()))
                .collect();
            self.cpu_sampler.retain(|k| live.contains(k));
            crate::memory::trim();
        }
    }

    /// The monitor of container `id` ended: its record is brought up to
    /// date from the exit record (STOPPED goes out).
    fn monitor_ended(&self, id: &str) {
        self.exit_watch.forget(id);
        match self.store.get::<ContainerRecord>(id) {
            Ok(Some(c)) => {
                if let Err(e) = self.refresh(c) {
                    tracing::warn!(container_id = %id, error = %crate::errors::chain(&e), "cannot record the container's exit");
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(container_id = %id, error = %crate::errors::chain(&e), "cannot read the container's record")
            }
        }
    }
}

/// Runs the exit watcher and CPU sampler until the runtime is dropped.
pub(crate) fn spawn_watcher(runtime: &Arc<Runtime>) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(runtime);
    let ended = runtime.exit_watch.take_receiver();
    tokio::spawn(async move {
        let Some(mut ended) = ended else { return };
        let pass_running = Arc::new(AtomicBool::new(false));
        let mut tick = tokio::time::interval(EXIT_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n: u32 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let Some(rt) = weak.upgrade() else { return };
                    let sample = n.is_multiple_of(CPU_SAMPLE_EVERY);
                    n = n.wrapping_add(1);
                    // Not awaited: its disk usage walks must not hold up
                    // the exits that arrive meanwhile; one pass at a time.
                    if let Some(running) = crate::busy::Busy::try_start(&pass_running) {
                        tokio::task::spawn_blocking(move || {
                            let _running = running;
                            rt.watch_once(sample);
                        });
                    }
                }
                id = ended.recv() => {
                    let Some(id) = id else { return };
                    let Some(rt) = weak.upgrade() else { return };
                    let _ = tokio::task::spawn_blocking(move || rt.monitor_ended(&id)).await;
                }
            }
        }
    })
}
