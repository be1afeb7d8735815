//! RemovePodSandbox: removes the containers, then the namespaces, the
//! pod's files and last the record.

use std::path::PathBuf;

use tracing::{info, warn};

use crate::pod::PodRecord;
use crate::runtime::error::RuntimeError;
use crate::runtime::Runtime;

impl Runtime {
    /// Removes containers, namespaces, files and the record; idempotent.
    pub(crate) async fn remove_pod(&self, id: &str) -> Result<(), RuntimeError> {
        let pod = match self.pod(id) {
            Ok(p) => p,
            Err(RuntimeError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        for c in self.containers_of(&pod.id)? {
            self.remove_container(&c.id).await?;
        }
        crate::failpoint::hit("remove_pod.after_containers")?;
        self.release_pod_resources(&pod).await;
        crate::failpoint::hit("remove_pod.before_record")?;
        let files = PathBuf::from(&pod.files_dir);
        if let Err(e) = std::fs::remove_dir_all(&files) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(pod_id = %pod.id, error = %crate::errors::chain(&e), "cannot remove pod files");
            }
        }
        self.store.delete::<PodRecord>(&pod.id)?;
        self.names.release(&pod.config.name_key(), &pod.id);
        info!(pod_id = %pod.id, "pod sandbox removed");
        self.emit_pod_event(crate::events::EventKind::Deleted, &pod);
        Ok(())
    }
}
