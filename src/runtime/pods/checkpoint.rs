//! CheckpointPod and RestorePod: a pod's containers checkpointed one by
//! one into one archive ([`crate::checkpoint::pod_archive`]), and a new
//! pod made from it with every container restored and started.
//!
//! The containers are checkpointed in turn, each frozen only for its own
//! dump, and keep running; a pod whose containers talk to each other
//! through files or shared memory gets a checkpoint of each at a slightly
//! different moment (docs/checkpoint.md).

use std::path::PathBuf;

use tracing::{info, warn};

use crate::checkpoint::archive::Destination;
use crate::checkpoint::pod_archive::{self, PodDump, PodDumpContainer, PodUnpacked};
use crate::checkpoint::unpack::UnpackError;
use crate::container::{ContainerConfig, ContainerState};
use crate::pod::PodConfig;
use crate::runtime::error::RuntimeError;
use crate::runtime::{CheckpointRequest, Runtime};

/// A validated CheckpointPod request.
#[derive(Debug, Clone)]
pub(crate) struct PodCheckpointRequest {
    /// Absolute and normalised (`crate::cri::convert`).
    pub output: PathBuf,
    /// The containers to checkpoint; empty: every running one.
    pub containers: Vec<String>,
    /// The containers go on after the dump (the default); false: each
    /// ends once its archive is complete (option `leave-running=false`,
    /// a migration).
    pub leave_running: bool,
    /// Memory pre-dumps per container before its final dump (option
    /// `pre-copy=N`), where the kernel tracks dirty pages.
    pub pre_copy: u32,
}

fn invalid_archive(e: UnpackError) -> RuntimeError {
    match e {
        UnpackError::Source { .. } | UnpackError::Layout { .. } => RuntimeError::Invalid {
            field: "checkpoint_path",
            message: e.to_string(),
        },
        UnpackError::Io { .. } => {
            RuntimeError::os("unpacking the pod checkpoint", "", crate::errors::chain(&e))
        }
    }
}

impl Runtime {
    pub(crate) async fn checkpoint_pod(
        &self,
        pod_id: &str,
        req: PodCheckpointRequest,
    ) -> Result<(), RuntimeError> {
        let pod = self.pod(pod_id)?;
        let all = self.list_containers(&Default::default())?;
        let chosen: Vec<_> = if req.containers.is_empty() {
            all.into_iter()
                .filter(|c| c.pod_id == pod.id && c.state == ContainerState::Running)
                .collect()
        } else {
            let mut out = Vec::new();
            for id in &req.containers {
                let c = self.container(id)?;
                if c.pod_id != pod.id {
                    return Err(RuntimeError::Invalid {
                        field: "container_ids",
                        message: format!("container {} is not in pod {}", c.id, pod.id),
                    });
                }
                out.push(c);
            }
            out
        };
        // A pod that is to end must be restorable from the archive alone.
        if !req.leave_running
            && (pod.config.request.is_empty() || chosen.iter().any(|c| c.config.request.is_empty()))
        {
            return Err(RuntimeError::Unsupported {
                op: "checkpoint",
                id: pod.id.clone(),
                message: "the pod or a container was created by an older pvecri and has no stored request: it cannot end with its checkpoint (leave-running=false)".into(),
            });
        }
        if chosen.is_empty() {
            return Err(RuntimeError::Unsupported {
                op: "checkpoint",
                id: pod.id.clone(),
                message: "the pod has no running container".into(),
            });
        }
        let output = req.output.clone();
        let destination = tokio::task::spawn_blocking(move || Destination::open(&output))
            .await
            .map_err(|e| RuntimeError::os("checking the checkpoint location", pod_id, e))?
            .map_err(|e| RuntimeError::Invalid {
                field: "output_path",
                message: crate::errors::chain(&e),
            })?;
        let work = self.config.state_dir.join("checkpoints").join(format!(
            "pod-{}.{}",
            pod.id,
            crate::runtime::now_ns()
        ));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(work.join(pod_archive::CONTAINERS_DIR))
                .map_err(|e| {
                    RuntimeError::os("creating the pod checkpoint's work dir", pod_id, e)
                })?;
        }
        let result = self
            .checkpoint_pod_into(&pod, &chosen, &work, &destination, &req)
            .await;
        if let Err(e) = std::fs::remove_dir_all(&work) {
            warn!(pod_id, dir = %work.display(), error = %e, "cannot remove a checkpoint work dir");
        }
        result
    }

    async fn checkpoint_pod_into(
        &self,
        pod: &crate::pod::PodRecord,
        chosen: &[crate::container::ContainerRecord],
        work: &std::path::Path,
        destination: &Destination,
        req: &PodCheckpointRequest,
    ) -> Result<(), RuntimeError> {
        let mut containers = Vec::new();
        // Containers that are to end stay frozen until the whole archive
        // is in place; any failure before drops these guards, and every
        // one of them runs on.
        let mut held = Vec::new();
        for c in chosen {
            let entry = pod_archive::container_entry(&c.config.name);
            let report = self
                .checkpoint_container_report(
                    &c.id,
                    CheckpointRequest {
                        location: work.join(&entry),
                        timeout: std::time::Duration::ZERO,
                        leave_running: req.leave_running,
                        pre_copy: req.pre_copy,
                    },
                )
                .await?;
            held.extend(report.held);
            containers.push(PodDumpContainer {
                name: c.config.name.clone(),
                id: c.id.clone(),
                archive: entry,
                request: c.config.request.clone(),
                frozen_ms: report.frozen.as_millis() as u64,
                pre_copies: report.pre_copies,
                frozen_at_ns: report.frozen_at_ns,
            });
        }
        let dump = PodDump {
            id: pod.id.clone(),
            name: pod.config.name.clone(),
            namespace: pod.config.namespace.clone(),
            uid: pod.config.uid.clone(),
            pod_request: pod.config.request.clone(),
            runtime: crate::version::RUNTIME_NAME.to_owned(),
            checkpointed_time: crate::monitor::timestamp::rfc3339_nano(std::time::SystemTime::now()),
            containers,
        };
        std::fs::write(
            work.join(pod_archive::POD_JSON),
            serde_json::to_vec_pretty(&dump).expect("pod dump serialises"),
        )
        .map_err(|e| RuntimeError::os("writing pod.json", &pod.id, e))?;
        let work2 = work.to_owned();
        let size = destination
            .write_tree(
                &work2,
                &[pod_archive::CONTAINERS_DIR],
                &[pod_archive::POD_JSON],
            )
            .map_err(|e| {
                RuntimeError::os(
                    "writing the pod checkpoint",
                    &pod.id,
                    crate::errors::chain(&e),
                )
            })?;
        for h in held {
            h.end().map_err(|e| {
                RuntimeError::os("ending the checkpointed pod's containers", &pod.id, e)
            })?;
        }
        info!(pod_id = %pod.id, containers = chosen.len(), bytes = size, "pod checkpointed");
        Ok(())
    }

    /// Unpacks a pod archive (untrusted) for a restore; the directory
    /// goes when the result is dropped.
    pub(crate) async fn open_pod_archive(
        &self,
        archive: &std::path::Path,
    ) -> Result<PodUnpacked, RuntimeError> {
        let root = self.config.state_dir.join("restore");
        std::fs::create_dir_all(&root)
            .map_err(|e| RuntimeError::os("creating the restore dir", "", e))?;
        // Canonical: the container archives in it are opened by path
        // with no symlink on the way.
        let root = std::fs::canonicalize(&root)
            .map_err(|e| RuntimeError::os("resolving the restore dir", "", e))?;
        let dir = root.join(format!("pod-{}", crate::runtime::now_ns()));
        let archive = archive.to_owned();
        let dir2 = dir.clone();
        let unpacked = tokio::task::spawn_blocking(move || pod_archive::unpack(&archive, &dir2))
            .await
            .map_err(|e| RuntimeError::os("unpacking the pod checkpoint", "", e))?;
        unpacked.map_err(|e| {
            let _ = std::fs::remove_dir_all(&dir);
            invalid_archive(e)
        })
    }

    /// Makes the pod and restores its containers (`containers`: name and
    /// validated config, the image naming the container's archive);
    /// returns the pod's ID and (name, container ID) of each. A failure
    /// removes what was made.
    pub(crate) async fn restore_pod(
        &self,
        config: PodConfig,
        containers: Vec<(String, ContainerConfig)>,
    ) -> Result<(String, Vec<(String, String)>), RuntimeError> {
        let pod_id = self.run_pod(config).await?;
        let mut restored = Vec::new();
        for (name, config) in containers {
            let made = match self.create_container(&pod_id, config).await {
                Ok(id) => {
                    restored.push((name.clone(), id.clone()));
                    self.start_container(&id).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = made {
                warn!(pod_id, container = %name, error = %crate::errors::chain(&e), "restore failed; removing the pod");
                for (_, id) in &restored {
                    let _ = self.remove_container(id).await;
                }
                let _ = self.stop_pod(&pod_id).await;
                let _ = self.remove_pod(&pod_id).await;
                return Err(e);
            }
        }
        info!(pod_id, containers = restored.len(), "pod restored");
        Ok((pod_id, restored))
    }
}
