//! ContainerStatus and ListContainers: records brought up to date from
//! the monitor's exit record.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::container::{ContainerRecord, ContainerState};
use crate::monitor::exit::ExitRecord;
use crate::runtime::error::RuntimeError;
use crate::runtime::exit_watch::Watch;
use crate::runtime::pods::find_by_id;
use crate::runtime::{teardown, Runtime};

#[derive(Debug, Default)]
pub(crate) struct ContainerFilter {
    pub id: String,
    pub pod_id: String,
    pub state: Option<ContainerState>,
    pub labels: BTreeMap<String, String>,
}

impl Runtime {
    /// The container's record with its state brought up to date from the
    /// monitor's exit record.
    pub(crate) fn container(&self, id: &str) -> Result<ContainerRecord, RuntimeError> {
        let all = self.store.list_shared::<ContainerRecord>()?;
        let c = find_by_id(all, id, |c| &c.id).ok_or_else(|| RuntimeError::NotFound {
            what: "container",
            id: id.to_owned(),
        })?;
        self.refresh(Arc::unwrap_or_clone(c))
    }

    pub(crate) fn refresh(&self, mut c: ContainerRecord) -> Result<ContainerRecord, RuntimeError> {
        if c.state == ContainerState::Exited {
            return Ok(c);
        }
        let run_dir = self.container_run_dir(&c.id)?;
        // A restored container has no monitor until it is started (and
        // keeps its exit record once a start failed).
        if c.restored
            && c.state == ContainerState::Created
            && !run_dir.exit().exists()
            && !teardown::monitor_alive(&run_dir, &c.id)
        {
            return Ok(c);
        }
        if !run_dir.exit().exists() && !teardown::monitor_alive(&run_dir, &c.id) {
            teardown::settle_lost_monitor(&run_dir, &c.id, &c.cgroup);
        }
        if let Ok(Some(exit)) = ExitRecord::read(&run_dir) {
            // Applied to the stored copy: StartContainer may have written
            // since `c` was read (a short-lived workload ends at once).
            let mut ended = false;
            let stored = self.store.update::<ContainerRecord>(&c.id, |r| {
                if r.state == ContainerState::Exited {
                    return false;
                }
                r.state = ContainerState::Exited;
                r.exit_code = exit.exit_code;
                // The CRI reason strings, as serialised into exit.json.
                r.reason = serde_json::to_value(exit.reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                r.message = exit.message.clone();
                r.finished_at_ns = exit.finished_at_ns.max(r.started_at_ns);
                if r.started_at_ns == 0 {
                    // Died before StartContainer (or start raced the exit).
                    r.started_at_ns = r.finished_at_ns;
                }
                ended = true;
                true
            })?;
            if let Some(stored) = stored {
                c = stored;
            }
            if ended {
                self.emit_container_event(crate::events::EventKind::Stopped, &c);
            }
        }
        Ok(c)
    }

    /// The containers `filter` selects, from the records in memory: they
    /// are current because every exit is noticed as it happens
    /// (`super::super::exit_watch`), so a list reads no files.
    pub(crate) fn list_containers(
        &self,
        filter: &ContainerFilter,
    ) -> Result<Vec<ContainerRecord>, RuntimeError> {
        Ok(self
            .store
            .list_shared::<ContainerRecord>()?
            .into_iter()
            .filter(|c| filter.matches(c))
            .map(Arc::unwrap_or_clone)
            .collect())
    }

    pub(crate) fn containers_of(&self, pod_id: &str) -> Result<Vec<ContainerRecord>, RuntimeError> {
        Ok(self
            .store
            .list_shared::<ContainerRecord>()?
            .into_iter()
            .filter(|c| c.pod_id == pod_id)
            .map(Arc::unwrap_or_clone)
            .collect())
    }

    /// Watches the monitor of a container just made or started, so that
    /// its exit is noticed at once; one whose monitor is already gone, or
    /// that cannot be watched here (no pidfds), is brought up to date now
    /// (the watcher's once-a-second pass calls this again until it is
    /// watched or exited).
    pub(crate) fn watch_exit(&self, c: &ContainerRecord) {
        let Ok(run_dir) = self.container_run_dir(&c.id) else {
            return;
        };
        if self.exit_watch.watch(&c.id, &run_dir) != Watch::Watching {
            let _ = self.refresh(c.clone());
        }
    }
}

impl ContainerFilter {
    /// Whether `c` passes every filter that is set: an ID prefix, a pod ID
    /// prefix, a state, labels (all of them, with equal values).
    fn matches(&self, c: &ContainerRecord) -> bool {
        (self.id.is_empty() || c.id.starts_with(&self.id))
            && (self.pod_id.is_empty() || c.pod_id.starts_with(&self.pod_id))
            && self.state.is_none_or(|s| s == c.state)
            && self
                .labels
                .iter()
                .all(|(k, v)| c.config.labels.get(k) == Some(v))
    }
}
