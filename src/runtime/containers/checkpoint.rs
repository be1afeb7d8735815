//! CheckpointContainer: a CRIU archive of a running container, which keeps
//! running (`crate::checkpoint`, docs/checkpoint.md).
//!
//! Checks come cheapest first and all before anything is frozen: the
//! container's state and settings, the location, then CRIU itself (whose
//! probe runs `criu check` once per daemon).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::info;

use crate::checkpoint::archive::{ArchiveError, Destination};
use crate::checkpoint::dump::{self, DumpError, DumpJob, DumpReport};
use crate::checkpoint::freeze::Freezer;
use crate::checkpoint::{criu, refuse};
use crate::container::ContainerState;
use crate::runtime::error::RuntimeError;
use crate::runtime::Runtime;

/// The default when the request gives no timeout; the kubelet always
/// sends one (at least its runtime request timeout, 2 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// A validated CheckpointContainer request (`crate::cri::convert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckpointRequest {
    /// Absolute and normalised.
    pub location: PathBuf,
    /// Zero: [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// Keep the container running after the dump (CRI's CheckpointContainer
    /// always does); false: its processes are killed once the archive is
    /// complete (frozen until then), as a migration needs.
    pub leave_running: bool,
    /// Pre-dumps before the final dump (`crate::checkpoint::dump`).
    pub pre_copy: u32,
}

const OP: &str = "checkpoint";

impl Runtime {
    pub(crate) async fn checkpoint_container(
        &self,
        id: &str,
        req: CheckpointRequest,
    ) -> Result<(), RuntimeError> {
        self.checkpoint_container_report(id, req).await.map(|_| ())
    }

    /// CheckpointContainer, answering what the dump took.
    pub(crate) async fn checkpoint_container_report(
        &self,
        id: &str,
        req: CheckpointRequest,
    ) -> Result<DumpReport, RuntimeError> {
        let timeout = if req.timeout.is_zero() {
            DEFAULT_TIMEOUT
        } else {
            req.timeout
        };
        let deadline = Instant::now() + timeout;
        let c = self.container(id)?;
        if c.state != ContainerState::Running {
            return Err(RuntimeError::container_state(
                &c,
                "only a running container can be checkpointed",
            ));
        }
        let pod = self.pod(&c.pod_id)?;
        let unsupported = |message: String| RuntimeError::Unsupported {
            op: OP,
            id: c.id.clone(),
            message,
        };
        let snapshots = self.images.snapshots().clone();
        if let Some(reason) = refuse::refusal(&c, &pod, snapshots.kind()) {
            return Err(unsupported(reason));
        }
        let busy = Busy::claim(&self.checkpointing, &c.id)
            .ok_or_else(|| unsupported("another checkpoint of this container is running".into()))?;
        let location = req.location.clone();
        let destination = tokio::task::spawn_blocking(move || Destination::open(&location))
            .await
            .map_err(|e| RuntimeError::os("checking the checkpoint location", id, e))?
            .map_err(|e| RuntimeError::Invalid {
                field: "location",
                message: crate::errors::chain(&e),
            })?;
        let configured = self.config.criu_path.clone();
        let criu = tokio::task::spawn_blocking(move || criu::probe(configured.as_deref()))
            .await
            .map_err(|e| RuntimeError::os("probing criu", id, e))?
            .map_err(|e| unsupported(format!("checkpointing is unavailable on this node: {e}")))?;

        let hierarchies = crate::cgroups::tree::hierarchies()
            .map_err(|e| RuntimeError::os("reading the cgroup hierarchies", &c.id, e))?;
        let freezer =
            Freezer::find(&hierarchies, &c.cgroup).map_err(|e| unsupported(e.to_string()))?;
        let cgroup_version = if hierarchies.iter().all(|h| h.v2) {
            "v2"
        } else {
            "v1"
        };
        let dir_name = crate::snapshot::container_dir_name(&c.id)
            .map_err(|e| RuntimeError::os("naming the container's layer", &c.id, e))?;
        let upper = snapshots.rootfs_root().join(dir_name).join("upper");
        let work = self.config.state_dir.join("checkpoints").join(format!(
            "{}.{}",
            c.id,
            crate::runtime::now_ns()
        ));
        let job = DumpJob {
            container: c.clone(),
            pod,
            criu,
            self_exe: self.self_exe.clone(),
            work,
            destination,
            freezer,
            upper,
            cgroup_version,
            leave_running: req.leave_running,
            pre_copy: req.pre_copy,
        };
        let started = Instant::now();
        // The claim goes with the dump: a caller that gives up (its future
        // dropped) does not free the container for a second dump while
        // this one still runs.
        let report = tokio::task::spawn_blocking(move || {
            let _busy = busy;
            dump::run(job, deadline)
        })
        .await
        .map_err(|e| RuntimeError::os("checkpointing", id, e))?
        .map_err(|e| match e {
            DumpError::Deadline(_) => RuntimeError::Timeout {
                op: "checkpointing the container",
                id: c.id.clone(),
                seconds: timeout.as_secs(),
            },
            DumpError::Archive(ArchiveError::Location { path, message }) => RuntimeError::Invalid {
                field: "location",
                message: format!("{}: {message}", path.display()),
            },
            other => RuntimeError::os("checkpointing", &c.id, other),
        })?;
        info!(
            container_id = %c.id,
            location = %req.location.display(),
            bytes = report.archive_bytes,
            frozen_ms = report.frozen.as_millis() as u64,
            external_mounts = report.external_mounts,
            deleted_files = report.deleted_files,
            pre_copies = report.pre_copies,
            took_ms = started.elapsed().as_millis() as u64,
            "container checkpointed"
        );
        Ok(report)
    }
}

/// A container's entry in the set of running checkpoints, removed on drop.
struct Busy {
    set: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl Busy {
    fn claim(set: &Arc<Mutex<HashSet<String>>>, id: &str) -> Option<Self> {
        let mut held = set.lock().unwrap_or_else(PoisonError::into_inner);
        held.insert(id.to_owned()).then(|| Busy {
            set: set.clone(),
            id: id.to_owned(),
        })
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_checkpoint_per_container_at_a_time() {
        let set = Arc::new(Mutex::new(HashSet::new()));
        let first = Busy::claim(&set, "c1").unwrap();
        assert!(Busy::claim(&set, "c1").is_none());
        assert!(Busy::claim(&set, "c2").is_some());
        drop(first);
        assert!(Busy::claim(&set, "c1").is_some());
    }
}
