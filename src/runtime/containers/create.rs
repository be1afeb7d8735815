//! CreateContainer: the root filesystem, the process spec and run dir,
//! the LXC config, then the monitor, which brings the container's init up
//! waiting for StartContainer.

use std::io::Write;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::monitor::StdinMode;
use super::mounts::{bind, devices, place};
use super::{non_empty, proc_start_time};
use crate::container::cgroup;
use crate::container::image_file::{self, ImageFileError};
use crate::container::lxc_config::{self, LxcPlan, SharedNamespaces};
use crate::container::process::{self, ProcessSpec};
use crate::container::{ContainerConfig, ContainerRecord, ContainerState};
use crate::pod::PodRecord;
use crate::runtime::error::RuntimeError;
use crate::runtime::names::new_id;
use crate::runtime::{now_ns, teardown, Runtime};

/// The SELinux label for `lxc.selinux.context`: only where SELinux is
/// enabled; elsewhere a requested label is ignored with a warning.
fn selinux_label(id: &str, label: &str) -> Option<String> {
    if label.is_empty() {
        return None;
    }
    if Path::new("/sys/fs/selinux/enforce").exists() {
        Some(label.to_owned())
    } else {
        warn!(
            container_id = id,
            label, "SELinux is not enabled on this node; ignoring the requested label"
        );
        None
    }
}

impl Runtime {
    pub async fn create_container(
        &self,
        pod_id: &str,
        config: ContainerConfig,
    ) -> Result<String, RuntimeError> {
        if config.name.is_empty() {
            return Err(RuntimeError::Invalid {
                field: "config.metadata.name",
                message: "a container name is required".into(),
            });
        }
        if config.image.is_empty() {
            return Err(RuntimeError::Invalid {
                field: "config.image.image",
                message: "an image is required".into(),
            });
        }
        let pod = self.ready_pod(pod_id, "containers can only be created in a ready pod")?;
        let id = new_id();
        let key = config.name_key(&pod.id);
        self.names
            .reserve(&key, &id)
            .map_err(|holder| RuntimeError::NameTaken {
                what: "container",
                key: key.clone(),
                holder,
            })?;
        // A log file this attempt creates goes with a failed attempt: the
        // kubelet counts restarts from the log files it finds.
        let log = (!config.log_path.is_empty() && !pod.config.log_directory.is_empty())
            .then(|| Path::new(&pod.config.log_directory).join(&config.log_path))
            .filter(|log| !log.exists());
        let result = self.create_reserved(&id, &pod, config).await;
        if let Err(err) = &result {
            warn!(container_id = %id, error = %crate::errors::chain(err), "create failed; cleaning up");
            self.names.release(&key, &id);
            // A monitor may already run, with init waiting for a start
            // that will never come: both go with their cgroups.
            let (container_cgroup, monitor_cgroup) =
                cgroup::container_paths(self.config.cgroup_driver, &pod.config.cgroup_parent, &id);
            if let Err(e) = teardown::remove_cgroups(&id, &container_cgroup, &monitor_cgroup).await
            {
                warn!(container_id = %id, error = %crate::errors::chain(&e), "cannot end what the failed create started");
            }
            self.cleanup_container_dirs(&id).await;
            if let Some(log) = log {
                let _ = std::fs::remove_file(log);
            }
        }
        result.map(|()| id)
    }

    async fn create_reserved(
        &self,
        id: &str,
        pod: &PodRecord,
        mut config: ContainerConfig,
    ) -> Result<(), RuntimeError> {
        let image =
            self.images
                .status(&config.image)?
                .ok_or_else(|| RuntimeError::ImageNotFound {
                    image: config.image.clone(),
                })?;
        let snapshots = self.images.snapshots().clone();
        let (id2, top) = (id.to_owned(), image.top_layer().map(str::to_owned));
        let idmap = pod_idmap(pod);
        let idmap2 = idmap.clone();
        let rootfs = tokio::task::spawn_blocking(move || {
            snapshots.prepare_rootfs(&id2, top.as_deref(), idmap2.as_ref())
        })
        .await
        .map_err(|e| RuntimeError::os("preparing the root filesystem", id, e))?
        .map_err(|e| {
            RuntimeError::os(
                "preparing the root filesystem",
                id,
                crate::errors::chain(&e),
            )
        })?;

        // Off the async threads: the image's files are untrusted.
        let root = rootfs.clone();
        let (passwd, group) = tokio::task::spawn_blocking(move || {
            Ok::<_, ImageFileError>((
                image_file::read(&root, "etc/passwd")?,
                image_file::read(&root, "etc/group")?,
            ))
        })
        .await
        .map_err(|e| RuntimeError::os("reading the image's users and groups", id, e))?
        .map_err(|source| RuntimeError::ImageFile {
            id: id.to_owned(),
            source,
        })?;
        let who =
            process::identity(&config, &image.run_config, &passwd, &group).map_err(|source| {
                RuntimeError::Process {
                    id: id.to_owned(),
                    source,
                }
            })?;
        let hostname = std::fs::read_to_string(Path::new(&pod.files_dir).join("hostname"))
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| pod.config.name.clone());
        let confinement = crate::runtime::security::confinement(&config)?;
        let spec = ProcessSpec {
            args: process::argv(&config, &image.run_config).map_err(|source| {
                RuntimeError::Process {
                    id: id.to_owned(),
                    source,
                }
            })?,
            env: process::env(&config, &image.run_config, &hostname, &who.home),
            cwd: non_empty(&config.working_dir)
                .or(image.run_config.working_dir.as_deref().and_then(non_empty))
                .unwrap_or("/")
                .to_owned(),
            uid: who.uid,
            gid: who.gid,
            additional_gids: who.groups.clone(),
            no_new_privs: confinement.no_new_privs,
            capabilities: confinement.capabilities,
            ambient_capabilities: confinement.ambient,
            masked_paths: confinement.masked_paths,
            readonly_paths: confinement.readonly_paths,
            // Image volumes too: their image must stay read-only whatever
            // is mounted beneath them.
            recursive_readonly: config
                .mounts
                .iter()
                .filter(|m| {
                    m.recursive_read_only
                        || (m.image.is_some() && self.supports_recursive_read_only())
                })
                .map(|m| m.container_path.clone())
                .collect(),
            readonly_rootfs: confinement.readonly_rootfs,
            seccomp: confinement.seccomp,
            apparmor_profile: confinement.apparmor,
        };

        let run_dir = self.container_run_dir(id)?;
        std::fs::create_dir_all(run_dir.path())
            .map_err(|e| RuntimeError::os("creating the run dir", id, e))?;
        nix::unistd::mkfifo(
            &run_dir.start_fifo(),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| RuntimeError::os("creating the start fifo", id, e))?;
        write_file(
            &run_dir.spec(),
            &serde_json::to_vec(&spec).expect("spec serialises"),
        )
        .map_err(|e| RuntimeError::os("writing spec.json", id, e))?;
        if let Some(map) = &idmap {
            // pvecri-init reads these as the pod's root, an unprivileged
            // host ID.
            for path in [
                run_dir.path().to_owned(),
                run_dir.start_fifo(),
                run_dir.spec(),
            ] {
                nix::unistd::chown(
                    &path,
                    Some(nix::unistd::Uid::from_raw(map.uid)),
                    Some(nix::unistd::Gid::from_raw(map.gid)),
                )
                .map_err(|e| RuntimeError::os("handing the run dir to the pod's root", id, e))?;
            }
        }

        let log_file = if config.log_path.is_empty() || pod.config.log_directory.is_empty() {
            String::new()
        } else {
            let path = Path::new(&pod.config.log_directory).join(&config.log_path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| RuntimeError::os("creating the log directory", id, e))?;
            }
            path.display().to_string()
        };

        let (cgroup_container, cgroup_monitor) =
            cgroup::container_paths(self.config.cgroup_driver, &pod.config.cgroup_parent, id);
        self.prepare_image_volumes(id, &mut config, idmap.as_ref())
            .await?;
        let mut tree = crate::container::mountpoints::MountTree::new(
            &rootfs,
            idmap.as_ref().map(|m| (m.uid, m.gid)),
            config.privileged,
        );
        let mut fixed = vec![
            bind(self.config.init_path.clone(), "/.pvecri-init", true, true),
            bind(
                run_dir.path().to_owned(),
                crate::container::run_dir::IN_CONTAINER,
                false,
                false,
            ),
        ];
        let mut volumes = self.volume_mounts(id, pod, &config)?;
        let (mut devices, device_rules) = devices(&config)?;
        for m in fixed
            .iter_mut()
            .chain(volumes.iter_mut())
            .chain(devices.iter_mut())
        {
            place(&mut tree, m)?;
        }
        if let Some(map) = &idmap {
            let userns = std::fs::File::open(&map.userns)
                .map_err(|e| RuntimeError::os("opening the pod's user namespace", id, e))?;
            crate::container::staging::stage(&self.staging_dir(id), &mut volumes, &userns)
                .map_err(|e| RuntimeError::os("staging volumes", id, crate::errors::chain(&e)))?;
        }
        let mut mounts = fixed;
        mounts.append(&mut volumes);
        mounts.append(&mut devices);
        let (host_pid, pid_ns) = self.pid_namespace(pod, &config)?;
        let plan = LxcPlan {
            hostname,
            rootfs: rootfs.clone(),
            namespaces: SharedNamespaces {
                net: pod.net_ns.as_ref().map(PathBuf::from),
                ipc: pod.ipc_ns.as_ref().map(PathBuf::from),
                uts: pod.uts_ns.as_ref().map(PathBuf::from),
                host_pid,
                pid: pid_ns,
                user: pod
                    .user_ns
                    .as_ref()
                    .zip(pod.config.userns)
                    .map(|(path, ids)| crate::container::lxc_config::UserNs {
                        path: PathBuf::from(path),
                        uids: ids.uids,
                        gids: ids.gids,
                    }),
            },
            mounts,
            cgroup_container: cgroup_container.clone(),
            cgroup_monitor,
            cgroup_settings: device_rules
                .map(|rules| {
                    crate::container::devices::cgroup_settings(&self.cgroup_layout, &rules)
                })
                .unwrap_or_default()
                .into_iter()
                .chain(cgroup::lxc_settings(&self.cgroup_layout, &config.resources))
                .collect(),
            oom_score_adj: self.clamp_oom_score_adj(config.resources.oom_score_adj),
            log_file: run_dir.lxc_log(),
            privileged: config.privileged,
            selinux_label: selinux_label(id, &config.security.selinux_label),
        };
        let lxc_dir = self.config.lxc_path().join(id);
        std::fs::create_dir_all(&lxc_dir)
            .map_err(|e| RuntimeError::os("creating the LXC dir", id, e))?;
        let text = lxc_config::render(&plan).map_err(|e| RuntimeError::Invalid {
            field: "config",
            message: e.to_string(),
        })?;
        write_file(&lxc_dir.join("config"), text.as_bytes())
            .map_err(|e| RuntimeError::os("writing the LXC config", id, e))?;

        let stdin = StdinMode {
            open: config.stdin,
            once: config.stdin_once,
            tty: config.tty,
        };
        if let Some(mount) = self.cpuset_v1() {
            let parent = cgroup_container
                .rsplit_once('/')
                .map(|(parent, _)| parent)
                .unwrap_or_default();
            crate::container::cpuset::prepare(mount, parent)
                .map_err(|e| RuntimeError::os("preparing the cpuset cgroups of the pod", id, e))?;
        }
        crate::failpoint::hit("create.after_rootfs")?;
        let init_pid = self.spawn_monitor(id, &run_dir, &log_file, stdin).await?;
        crate::failpoint::hit("create.after_monitor")?;
        if idmap.is_some() {
            // liblxc has bound the staged volumes: the copies can go.
            crate::container::staging::unstage(&self.staging_dir(id))
                .map_err(|e| RuntimeError::os("detaching staged volumes", id, e))?;
        }
        if let Err(e) = self.attach_shared_mounts(id, init_pid, &config).await {
            // The container's init still waits for StartContainer: killing
            // it ends the monitor too.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(init_pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            return Err(e);
        }
        let record = ContainerRecord {
            id: id.to_owned(),
            pod_id: pod.id.clone(),
            image_id: image.id.clone(),
            image_ref: image
                .repo_digests
                .first()
                .cloned()
                .unwrap_or_else(|| image.id.clone()),
            // Named by ID (as the kubelet does): the image's tag instead.
            image_name: match image.repo_tags.first() {
                Some(tag)
                    if image.id.trim_start_matches("sha256:")
                        == config.image.trim_start_matches("sha256:") =>
                {
                    tag.clone()
                }
                _ => config.image.clone(),
            },
            top_layer: image.top_layer().map(str::to_owned),
            state: ContainerState::Created,
            created_at_ns: now_ns(),
            started_at_ns: 0,
            finished_at_ns: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            log_file,
            cgroup: cgroup_container,
            init_pid,
            init_start_time: proc_start_time(init_pid).unwrap_or_default(),
            stop_signal: image.run_config.stop_signal.clone().unwrap_or_default(),
            user: Some(crate::container::record::ResolvedUser {
                uid: who.uid,
                gid: who.gid,
                groups: who.groups,
            }),
            config,
        };
        crate::failpoint::hit("create.before_record")?;
        self.store.put(&record)?;
        info!(container_id = id, pod_id = %pod.id, name = %record.config.name, init_pid, "container created");
        self.emit_container_event(crate::events::EventKind::Created, &record);
        Ok(())
    }

    /// Which PID namespace the container gets: the host's (hostPID), the
    /// pod's shared one, a running target container's, or its own.
    fn pid_namespace(
        &self,
        pod: &PodRecord,
        config: &ContainerConfig,
    ) -> Result<(bool, Option<PathBuf>), RuntimeError> {
        use crate::pod::NsMode;
        if pod.config.pid == NsMode::Node {
            return Ok((true, None));
        }
        match config.security.pid_mode {
            NsMode::Target => {
                let target = self.container(&config.security.target_id).map_err(|_| {
                    RuntimeError::Invalid {
                        field: "config.linux.security_context.namespace_options.target_id",
                        message: format!(
                            "container {:?} does not exist",
                            config.security.target_id
                        ),
                    }
                })?;
                if target.pod_id != pod.id || target.init_pid <= 0 {
                    return Err(RuntimeError::Invalid {
                        field: "config.linux.security_context.namespace_options.target_id",
                        message: format!(
                            "container {} is not a running container of pod {}",
                            target.id, pod.id
                        ),
                    });
                }
                Ok((
                    false,
                    Some(PathBuf::from(format!("/proc/{}/ns/pid", target.init_pid))),
                ))
            }
            NsMode::Node => Ok((true, None)),
            NsMode::Container => Ok((false, None)),
            NsMode::Pod => Ok((false, pod.pid_ns.as_ref().map(PathBuf::from))),
        }
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// How a container of `pod` maps its root filesystem: through the pod's
/// user namespace (`hostUsers: false`), or not at all.
fn pod_idmap(pod: &PodRecord) -> Option<crate::snapshot::Idmap> {
    let (userns, ids) = (pod.user_ns.as_ref()?, pod.config.userns.as_ref()?);
    let (uid, gid) = ids.root();
    Some(crate::snapshot::Idmap {
        userns: PathBuf::from(userns),
        uid,
        gid,
    })
}
