//! StopPodSandbox: stops every container and releases the network and the
//! namespaces; the record stays, marked not ready.

use std::path::PathBuf;

use tracing::{info, warn};

use crate::pod::{PodRecord, PodState};
use crate::runtime::error::RuntimeError;
use crate::runtime::Runtime;
use crate::sandbox::ns;

impl Runtime {
    /// Stops every container and releases the namespaces; keeps the record.
    /// A pod that does not exist is not an error (the kubelet retries).
    pub(crate) async fn stop_pod(&self, id: &str) -> Result<(), RuntimeError> {
        let mut pod = match self.pod(id) {
            Ok(p) => p,
            Err(RuntimeError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        for c in self.containers_of(&pod.id)? {
            self.stop_container(&c.id, 0).await?;
        }
        self.release_pod_resources(&pod).await;
        if pod.state != PodState::NotReady {
            pod.state = PodState::NotReady;
            self.store.put(&pod)?;
            info!(pod_id = %pod.id, "pod sandbox stopped");
            self.emit_pod_event(crate::events::EventKind::Stopped, &pod);
        }
        Ok(())
    }

    pub(super) async fn release_pod_resources(&self, pod: &PodRecord) {
        if pod.net_ns.is_some() {
            if let Err(e) = self.detach_network(&pod.id).await {
                warn!(pod_id = %pod.id, error = %crate::errors::chain(&e), "cannot release the pod network");
            }
        }
        let dir = PathBuf::from(&pod.ns_dir);
        let id = pod.id.clone();
        let (infra_pid, infra_start) = (pod.infra_pid, pod.infra_start_time);
        let _ = tokio::task::spawn_blocking(move || {
            // Ends the shared PID namespace and whatever is left in it.
            crate::sandbox::infra::kill(infra_pid, Some(infra_start));
            if let Err(e) = ns::unpin(&dir) {
                warn!(pod_id = %id, error = %crate::errors::chain(&e), "cannot release pod namespaces");
            }
        })
        .await;
    }
}
