//! RemoveContainer: stops what still runs, then removes the cgroups, the
//! directories and snapshots, and last the record.

use tracing::{info, warn};

use super::mounts::image_volume_ids;
use crate::cgroups::paths;
use crate::container::{ContainerRecord, ContainerState};
use crate::runtime::error::RuntimeError;
use crate::runtime::{teardown, Runtime};

impl Runtime {
    /// Removes the container and everything it left on disk. Idempotent.
    pub(crate) async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let c = match self.container(id) {
            Ok(c) => c,
            Err(RuntimeError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if c.state == ContainerState::Running || c.state == ContainerState::Created {
            self.stop_container(&c.id, 0).await?;
        }
        // Only once nothing of it runs: the record stays (and the kubelet
        // retries) while a process survives.
        teardown::remove_cgroups(&c.id, &c.cgroup, &paths::monitor_path(&c.id)).await?;
        crate::failpoint::hit("remove_container.after_cgroups")?;
        self.cleanup_container_dirs(&c.id).await;
        crate::failpoint::hit("remove_container.before_record")?;
        self.store.delete::<ContainerRecord>(&c.id)?;
        self.names.release(&c.config.name_key(&c.pod_id), &c.id);
        info!(container_id = %c.id, "container removed");
        self.emit_container_event(crate::events::EventKind::Deleted, &c);
        // Layers of an image removed while this container used them go now,
        // off the request path.
        if self.images.has_deferred() {
            let images = self.images.clone();
            let in_use = self.layers_in_use();
            tokio::spawn(async move {
                if let Err(e) = images.collect_deferred(&in_use).await {
                    tracing::warn!(error = %crate::errors::chain(&e), "collecting unused image layers failed");
                }
            });
        }
        Ok(())
    }

    pub(super) async fn cleanup_container_dirs(&self, id: &str) {
        let snapshots = self.images.snapshots().clone();
        let lxc_dir = self.config.lxc_path().join(id);
        // IDs here are the store's (or a fresh one), so always valid.
        let run_dir = self.container_run_dir(id).ok();
        let staging = self.staging_dir(id);
        let restore = self.restore_dir(id);
        let id2 = id.to_owned();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = snapshots.remove_rootfs(&id2) {
                warn!(container_id = %id2, error = %crate::errors::chain(&e), "cannot remove root filesystem");
            }
            for name in image_volume_ids(&snapshots, &id2) {
                if let Err(e) = snapshots.remove_rootfs(&name) {
                    warn!(container_id = %id2, error = %crate::errors::chain(&e), "cannot remove an image volume");
                }
            }
            if let Err(e) = crate::container::staging::unstage(&staging) {
                warn!(container_id = %id2, dir = %staging.display(), error = %crate::errors::chain(&e), "cannot detach staged volumes");
            }
            let run_dir = run_dir.map(|d| d.path().to_owned());
            for dir in [lxc_dir, restore].into_iter().chain(run_dir) {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        warn!(container_id = %id2, dir = %dir.display(), error = %crate::errors::chain(&e), "cannot remove");
                    }
                }
            }
        })
        .await;
    }
}
