//! ContainerStatus and ListContainers: records brought up to date from
//! the monitor's exit record.

use std::collections::BTreeMap;

use crate::container::{ContainerRecord, ContainerState};
use crate::monitor::exit::ExitRecord;
use crate::runtime::error::RuntimeError;
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
        let all = self.store.list::<ContainerRecord>()?;
        let c = find_by_id(all, id, |c| &c.id).ok_or_else(|| RuntimeError::NotFound {
            what: "container",
            id: id.to_owned(),
        })?;
        self.refresh(c)
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
            c.state = ContainerState::Exited;
            c.exit_code = exit.exit_code;
            // The CRI reason strings, as serialised into exit.json.
            c.reason = serde_json::to_value(exit.reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            c.message = exit.message.clone();
            c.finished_at_ns = exit.finished_at_ns.max(c.started_at_ns);
            if c.started_at_ns == 0 {
                // Died before StartContainer (or start raced the exit).
                c.started_at_ns = c.finished_at_ns;
            }
            self.store.put(&c)?;
            self.emit_container_event(crate::events::EventKind::Stopped, &c);
        }
        Ok(c)
    }

    pub(crate) fn list_containers(
        &self,
        filter: &ContainerFilter,
    ) -> Result<Vec<ContainerRecord>, RuntimeError> {
        let mut out = Vec::new();
        for c in self.store.list::<ContainerRecord>()? {
            if (!filter.id.is_empty() && !c.id.starts_with(&filter.id))
                || (!filter.pod_id.is_empty() && !c.pod_id.starts_with(&filter.pod_id))
                || !filter
                    .labels
                    .iter()
                    .all(|(k, v)| c.config.labels.get(k) == Some(v))
            {
                continue;
            }
            let c = self.refresh(c)?;
            if filter.state.is_none_or(|s| s == c.state) {
                out.push(c);
            }
        }
        Ok(out)
    }

    pub(crate) fn containers_of(&self, pod_id: &str) -> Result<Vec<ContainerRecord>, RuntimeError> {
        Ok(self
            .store
            .list::<ContainerRecord>()?
            .into_iter()
            .filter(|c| c.pod_id == pod_id)
            .collect())
    }
}
