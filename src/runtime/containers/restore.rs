//! Restoring a container from a checkpoint archive (docs/checkpoint.md).
//!
//! CreateContainer with a path as the image (CRI-O's convention) unpacks
//! the archive into the container's restore dir, makes the container from
//! the checkpoint's base image as any other (the request's mounts,
//! limits and confinement), applies the writable layer and writes the
//! [`RestorePlan`] — but starts no monitor: there is no init waiting.
//! StartContainer makes the cgroup as liblxc would (limits and device
//! policy) and starts the monitor in restore mode, which has CRIU
//! recreate the process tree in the pod.

use std::path::{Path, PathBuf};

use tracing::info;

use crate::checkpoint::restore::{self, RestorePlan};
use crate::checkpoint::unpack::{self, UnpackError, Unpacked};
use crate::container::lxc_config::LxcPlan;
use crate::container::{ContainerConfig, ContainerRecord};
use crate::pod::PodRecord;
use crate::runtime::error::RuntimeError;
use crate::runtime::Runtime;

const OP: &str = "restore";

fn unsupported(id: &str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Unsupported {
        op: OP,
        id: id.to_owned(),
        message: message.into(),
    }
}

/// Why a container cannot be restored into `pod` with `config`, checked
/// before anything is unpacked. The dump refused the same settings; the
/// request for the new container must not bring them back either.
fn refusal(pod: &PodRecord, config: &ContainerConfig) -> Option<&'static str> {
    use crate::pod::NsMode;
    if pod.net_ns.is_none() {
        return Some("a pod on the host's network cannot hold a restored container");
    }
    if pod.ipc_ns.is_none() || pod.uts_ns.is_none() {
        return Some(
            "a pod sharing the host's IPC or UTS namespace cannot hold a restored container",
        );
    }
    let shared_pid = match config.security.pid_mode {
        NsMode::Node | NsMode::Target => true,
        NsMode::Pod => pod.pid_ns.is_some(),
        NsMode::Container => false,
    };
    if pod.config.pid == NsMode::Node || shared_pid {
        return Some("a restored container needs a PID namespace of its own");
    }
    if pod.user_ns.is_some() {
        return Some("restoring into a pod with a user namespace is not supported yet");
    }
    if config.tty {
        return Some("restoring a container with a terminal is not supported yet");
    }
    if config.privileged || !config.devices.is_empty() || !config.cdi_devices.is_empty() {
        return Some("privileged containers and host devices cannot be restored");
    }
    if config
        .mounts
        .iter()
        .any(|m| m.propagation != crate::container::lxc_config::Propagation::Private)
    {
        return Some("mounts that propagate to or from the host cannot be restored");
    }
    None
}

impl Runtime {
    /// Where a restored container's archive is unpacked (on disk: it
    /// holds the workload's memory).
    pub(super) fn restore_dir(&self, id: &str) -> PathBuf {
        self.config.state_dir.join("restore").join(id)
    }

    /// Checks the pod and the request, unpacks the archive, then checks
    /// CRIU (a bad archive is the caller's error on any node).
    pub(super) async fn unpack_checkpoint(
        &self,
        id: &str,
        pod: &PodRecord,
        config: &ContainerConfig,
        archive: &Path,
    ) -> Result<(Unpacked, crate::checkpoint::criu::Criu), RuntimeError> {
        if let Some(reason) = refusal(pod, config) {
            return Err(unsupported(id, reason));
        }
        let dir = self.restore_dir(id);
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| RuntimeError::os("creating the restore dir", id, e))?;
        }
        let archive = archive.to_owned();
        let unpacked = tokio::task::spawn_blocking(move || unpack::unpack(&archive, &dir))
            .await
            .map_err(|e| RuntimeError::os("unpacking the checkpoint", id, e))?
            .map_err(|e| match e {
                UnpackError::Source { .. } | UnpackError::Layout { .. } => RuntimeError::Invalid {
                    field: "config.image.image",
                    message: e.to_string(),
                },
                UnpackError::Io { .. } => {
                    RuntimeError::os("unpacking the checkpoint", id, crate::errors::chain(&e))
                }
            })?;
        // CRIU brings back the processes' own credentials, capabilities,
        // seccomp filters and labels: the request must ask for exactly
        // those, or it would not get what it asked for.
        match &unpacked.confinement {
            None => return Err(unsupported(
                id,
                "the archive does not record the container's confinement (made by an older pvecri)",
            )),
            Some(dumped) => {
                let differences =
                    dumped.differences(&crate::checkpoint::confinement::Confinement::of(config));
                if !differences.is_empty() {
                    return Err(unsupported(
                        id,
                        format!(
                            "the request differs from the checkpointed container in {} (a restore keeps the checkpoint's confinement)",
                            differences.join(", ")
                        ),
                    ));
                }
            }
        }
        if unpacked
            .descriptors
            .iter()
            .any(|k| k.starts_with("socket:"))
        {
            return Err(unsupported(
                id,
                "the checkpointed init had a socket on its stdio",
            ));
        }
        let configured = self.config.criu_path.clone();
        let criu = tokio::task::spawn_blocking(move || {
            crate::checkpoint::criu::probe(configured.as_deref())
        })
        .await
        .map_err(|e| RuntimeError::os("probing criu", id, e))?
        .map_err(|e| unsupported(id, format!("restoring is unavailable on this node: {e}")))?;
        Ok((unpacked, criu))
    }

    /// The checkpoint's base image: by ID, else by name; it must be
    /// present (a restore does not pull).
    pub(super) fn checkpoint_image(&self, unpacked: &Unpacked) -> Result<String, RuntimeError> {
        let c = &unpacked.config;
        for candidate in [&c.rootfs_image_ref, &c.rootfs_image_name, &c.rootfs_image] {
            if candidate.is_empty() {
                continue;
            }
            if self.images.status(candidate)?.is_some() {
                return Ok(candidate.clone());
            }
        }
        Err(RuntimeError::ImageNotFound {
            image: format!(
                "{} (the checkpoint's base image, {})",
                c.rootfs_image_name, c.rootfs_image_ref
            ),
        })
    }

    /// Applies the checkpoint's writable layer to the new container's
    /// root filesystem and writes the plan StartContainer restores by.
    pub(super) async fn prepare_restore(
        &self,
        id: &str,
        pod: &PodRecord,
        unpacked: Unpacked,
        criu: crate::checkpoint::criu::Criu,
        plan: &LxcPlan,
    ) -> Result<(), RuntimeError> {
        let hierarchies = crate::cgroups::tree::hierarchies()
            .map_err(|e| RuntimeError::os("reading the cgroup hierarchies", id, e))?;
        let rel = plan.cgroup_container.trim_matches('/');
        // The container's view of its cgroups (LXC binds its own cgroup
        // of each hierarchy) is external too: the new container's cgroup
        // of the same hierarchy, which StartContainer creates.
        let cgroup_views = hierarchies.iter().filter_map(|h| {
            let under = h.mount_point.strip_prefix(crate::cgroups::ROOT).ok()?;
            let target = Path::new("sys/fs/cgroup").join(under);
            Some((target.display().to_string(), h.mount_point.join(rel)))
        });
        let sources: Vec<(String, PathBuf)> = plan
            .mounts
            .iter()
            .map(|m| (m.target.clone(), m.source.clone()))
            .chain(cgroup_views)
            .collect();
        let mounts = restore::map_mounts(&unpacked.external_mounts, &sources)
            .map_err(|message| unsupported(id, message))?;
        let restore_plan = RestorePlan {
            criu: criu.path,
            images_dir: unpacked.images_dir(),
            work_dir: unpacked.dir.clone(),
            root: plan.rootfs.clone(),
            net: pod.net_ns.as_ref().map(PathBuf::from),
            ipc: pod.ipc_ns.as_ref().map(PathBuf::from),
            uts: pod.uts_ns.as_ref().map(PathBuf::from),
            descriptors: unpacked.descriptors.clone(),
            mounts,
            cgroups: hierarchies
                .iter()
                .map(|h| h.mount_point.join(rel))
                .collect(),
            cgroup: rel.to_owned(),
            cgroup_settings: plan.cgroup_settings.clone(),
        };
        let rootfs = plan.rootfs.clone();
        let id2 = id.to_owned();
        tokio::task::spawn_blocking(move || apply_layer(&id2, &unpacked, &rootfs))
            .await
            .map_err(|e| RuntimeError::os("applying the checkpoint's files", id, e))??;
        std::fs::write(
            restore_plan.work_dir.join(restore::PLAN),
            serde_json::to_vec_pretty(&restore_plan).expect("plan serialises"),
        )
        .map_err(|e| RuntimeError::os("writing the restore plan", id, e))
    }

    /// StartContainer of a restored container: its cgroup, then the
    /// monitor in restore mode; returns the restored init's pid.
    pub(super) async fn start_restored(&self, c: &ContainerRecord) -> Result<i32, RuntimeError> {
        let plan_path = self.restore_dir(&c.id).join(restore::PLAN);
        let plan = RestorePlan::read(&plan_path)
            .map_err(|e| RuntimeError::os("reading the restore plan", &c.id, format!("{e:#}")))?;
        let layout = self.cgroup_layout.clone();
        let id = c.id.clone();
        tokio::task::spawn_blocking(move || -> Result<(), crate::cgroups::create::CreateError> {
            let hierarchies = crate::cgroups::tree::hierarchies().map_err(|e| {
                crate::cgroups::create::CreateError::Mkdir {
                    dir: PathBuf::from(crate::cgroups::ROOT),
                    source: std::io::Error::other(e.to_string()),
                }
            })?;
            crate::cgroups::create::make(&hierarchies, &plan.cgroup)?;
            crate::cgroups::create::apply(&hierarchies, &plan.cgroup, &plan.cgroup_settings, |f| {
                crate::cgroups::limits::file_dir(&layout, &plan.cgroup, f)
            })
        })
        .await
        .map_err(|e| RuntimeError::os("making the container's cgroup", &id, e))?
        .map_err(|e| {
            RuntimeError::os(
                "making the container's cgroup",
                &id,
                crate::errors::chain(&e),
            )
        })?;
        let run_dir = self.container_run_dir(&c.id)?;
        let stdin = super::monitor::StdinMode {
            open: c.config.stdin,
            once: c.config.stdin_once,
            tty: c.config.tty,
        };
        let pid = self
            .spawn_monitor(
                &c.id,
                &run_dir,
                &c.cgroup,
                &c.log_file,
                stdin,
                Some(plan_path),
            )
            .await?;
        info!(container_id = %c.id, init_pid = pid, "container restored");
        // CRIU's images (the pre-dumps' too) and the writable layer's copy
        // are done with; they hold the workload's memory and files.
        let dir = self.restore_dir(&c.id);
        let _ = tokio::task::spawn_blocking(move || {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name == crate::checkpoint::archive::CHECKPOINT_DIR || name.starts_with("pre-") {
                    let _ = std::fs::remove_dir_all(entry.path());
                } else if name == crate::checkpoint::archive::ROOTFS_DIFF {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        })
        .await;
        Ok(pid)
    }
}

/// `rootfs-diff.tar` over the new root filesystem (through the overlay
/// mount, so it lands in the upper dir), then `deleted.files` removed;
/// both resolved inside the root, never through a symlink.
fn apply_layer(id: &str, unpacked: &Unpacked, rootfs: &Path) -> Result<(), RuntimeError> {
    use crate::snapshot::unpack::UnpackError as E;
    use crate::snapshot::unpack::{remove_in_root, unpack_layer, WhiteoutMode};
    // What the layer holds is the caller's error; the node failing to
    // write it (no space, I/O) is not.
    let invalid = |e: E| match e {
        E::Escape { .. } | E::Invalid { .. } | E::Corrupt { .. } => RuntimeError::Invalid {
            field: "config.image.image",
            message: format!(
                "the checkpoint's writable layer: {}",
                crate::errors::chain(&e)
            ),
        },
        other => RuntimeError::os(
            "applying the checkpoint's writable layer",
            id,
            crate::errors::chain(&other),
        ),
    };
    if unpacked.has_rootfs_diff {
        unpack_layer(&unpacked.rootfs_diff(), rootfs, WhiteoutMode::Apply).map_err(invalid)?;
    }
    let source = unpacked.dir.join(crate::checkpoint::archive::DELETED_FILES);
    for path in &unpacked.deleted {
        remove_in_root(rootfs, path, &source).map_err(invalid)?;
    }
    info!(
        container_id = id,
        deleted = unpacked.deleted.len(),
        "checkpoint's writable layer applied"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodRecord {
        serde_json::from_value(serde_json::json!({
            "id": "p1",
            "config": serde_json::to_value(crate::pod::PodConfig::default()).unwrap(),
            "state": "Ready", "created_at_ns": 0, "ns_dir": "/run/pvecri/ns/p1",
            "net_ns": "/run/pvecri/ns/p1/net", "ipc_ns": "/run/pvecri/ns/p1/ipc",
            "uts_ns": "/run/pvecri/ns/p1/uts",
            "files_dir": "/run/pvecri/pods/p1", "ips": [],
        }))
        .unwrap()
    }

    #[test]
    fn host_namespaces_terminals_and_devices_are_refused() {
        let ok = ContainerConfig {
            security: crate::container::SecurityConfig {
                pid_mode: crate::pod::NsMode::Container,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(refusal(&pod(), &ok), None);
        let mut host_net = pod();
        host_net.net_ns = None;
        assert!(refusal(&host_net, &ok).unwrap().contains("network"));
        let tty = ContainerConfig {
            tty: true,
            ..ok.clone()
        };
        assert!(refusal(&pod(), &tty).unwrap().contains("terminal"));
        let privileged = ContainerConfig {
            privileged: true,
            ..ok.clone()
        };
        assert!(refusal(&pod(), &privileged).unwrap().contains("privileged"));
        let target = ContainerConfig {
            security: crate::container::SecurityConfig {
                pid_mode: crate::pod::NsMode::Target,
                ..Default::default()
            },
            ..ok
        };
        assert!(refusal(&pod(), &target).unwrap().contains("PID"));
    }
}
