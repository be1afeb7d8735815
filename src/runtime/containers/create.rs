//! CreateContainer, as a sequence of steps: the CDI devices' edits, the
//! image and root filesystem, image volumes, the user and the process
//! spec, the run dir, the log file, the mounts, the LXC config, then the
//! monitor, which brings the container's init up waiting for
//! StartContainer, and last the record.
//!
//! A failed create is undone by a [`Rollback`] armed once the name is
//! reserved. Its undo actions are the idempotent sweeps RemoveContainer
//! uses too (cgroups, then directories and snapshots), so they remove
//! whatever the failed step had got to, wherever it stopped.

use std::io::Write;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::monitor::StdinMode;
use super::{non_empty, proc_start_time};
use crate::cgroups::{limits, paths};
use crate::container::image_file::{self, ImageFileError};
use crate::container::lxc_config::{self, LxcPlan, SharedNamespaces};
use crate::container::process::{self, Identity, ProcessSpec};
use crate::container::run_dir::RunDir;
use crate::container::{ContainerConfig, ContainerRecord, ContainerState};
use crate::image::record::ImageRecord;
use crate::pod::PodRecord;
use crate::runtime::error::RuntimeError;
use crate::runtime::names::new_id;
use crate::runtime::rollback::Rollback;
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
    pub(crate) async fn create_container(
        &self,
        pod_id: &str,
        config: ContainerConfig,
    ) -> Result<String, RuntimeError> {
        self.warm_migrations();
        require_name_and_image(&config)?;
        let pod = self.ready_pod(pod_id, "containers can only be created in a ready pod")?;
        let id = new_id();
        let key = config.name_key(&pod.id);
        self.names
            .reserve(&key, &id)
            .map_err(
                |crate::runtime::names::Taken { holder }| RuntimeError::NameTaken {
                    what: "container",
                    key: key.clone(),
                    holder,
                },
            )?;
        let rollback = self.create_rollback(&id, &key, &pod, new_log_file(&pod, &config));
        match self.create_reserved(&id, &pod, config).await {
            Ok(()) => {
                rollback.disarm();
                Ok(id)
            }
            Err(err) => {
                warn!(container_id = %id, error = %crate::errors::chain(&err), "create failed; cleaning up");
                rollback.run().await;
                Err(err)
            }
        }
    }

    /// What a failed create undoes. Registered up front, and in reverse of
    /// the order they run (newest first): the name is freed, then the
    /// monitor and its cgroups go, then the directories and snapshots, then
    /// a log file this attempt made.
    fn create_rollback<'a>(
        &'a self,
        id: &'a str,
        key: &'a str,
        pod: &'a PodRecord,
        new_log: Option<PathBuf>,
    ) -> Rollback<'a> {
        let mut rollback = Rollback::new();
        if let Some(log) = new_log {
            rollback.push(async move {
                let _ = std::fs::remove_file(log);
            });
        }
        rollback.push(self.cleanup_container_dirs(id));
        rollback.push(async move {
            // A monitor may already run, with init waiting for a start
            // that will never come: both go with their cgroups.
            let (container_cgroup, monitor_cgroup) =
                paths::container_paths(self.config.cgroup_driver, &pod.config.cgroup_parent, id);
            if let Err(e) = teardown::remove_cgroups(id, &container_cgroup, &monitor_cgroup).await
            {
                warn!(container_id = %id, error = %crate::errors::chain(&e), "cannot end what the failed create started");
            }
        });
        rollback.push(async move { self.names.release(key, id) });
        rollback
    }

    /// The steps of a create, once its name is reserved. Each failure point
    /// (`crate::failpoint`) sits between the same two steps as ever.
    async fn create_reserved(
        &self,
        id: &str,
        pod: &PodRecord,
        mut config: ContainerConfig,
    ) -> Result<(), RuntimeError> {
        // A path as the image is a checkpoint archive to restore: the
        // container is made from the checkpoint's base image.
        let restore = if config.image.starts_with('/') {
            let archive = PathBuf::from(&config.image);
            let (unpacked, criu) = self.unpack_checkpoint(id, pod, &config, &archive).await?;
            config.image = self.checkpoint_image(&unpacked)?;
            Some((unpacked, criu))
        } else {
            None
        };
        let cdi = self.cdi_edits(id, &config).await?;
        let image = self.image_of(&config)?;
        let idmap = pod_idmap(pod);
        let rootfs = self.prepare_rootfs(id, &image, idmap.as_ref()).await?;
        self.prepare_image_volumes(id, &mut config, idmap.as_ref())
            .await?;
        // The container is made with its CDI devices' edits; the record
        // keeps the request as the kubelet sent it.
        let made = cdi.applied_to(&config);
        let who = identity(id, &rootfs, &made, &image).await?;
        let hostname = pod_hostname(pod);
        let spec = self.process_spec(id, &made, &image, &who, &hostname)?;
        let run_dir = self.write_run_dir(id, &spec, idmap.as_ref())?;
        let log_file = prepare_log_file(id, pod, &config)?;
        let (cgroup_container, cgroup_monitor) =
            paths::container_paths(self.config.cgroup_driver, &pod.config.cgroup_parent, id);
        let (mounts, device_rules) =
            self.container_mounts(id, pod, &made, &rootfs, &run_dir, idmap.as_ref())?;
        let (host_pid, pid_ns) = self.pid_namespace(pod, &config)?;
        let plan = LxcPlan {
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
                .chain(limits::lxc_settings(&self.cgroup_layout, &config.resources))
                .collect(),
            oom_score_adj: self.clamp_oom_score_adj(config.resources.oom_score_adj),
            log_file: run_dir.lxc_log(),
            privileged: config.privileged,
            selinux_label: selinux_label(id, &config.security.selinux_label),
        };
        self.write_lxc_config(id, &plan)?;
        self.prepare_cpuset(id, &cgroup_container)?;
        crate::failpoint::hit("create.after_rootfs")?;
        if let Some((unpacked, criu)) = restore {
            self.prepare_restore(id, pod, unpacked, criu, &plan).await?;
            let mut record = container_record(
                id,
                pod,
                &image,
                config,
                CreatedAs {
                    log_file,
                    cgroup: cgroup_container,
                    init_pid: 0,
                    who,
                },
            );
            record.restored = true;
            self.store.put(&record)?;
            info!(container_id = id, pod_id = %pod.id, name = %record.config.name, "container created from a checkpoint");
            self.emit_container_event(crate::events::EventKind::Created, &record);
            return Ok(());
        }
        let stdin = StdinMode {
            open: config.stdin,
            once: config.stdin_once,
            tty: config.tty,
        };
        let init_pid = self
            .spawn_monitor(id, &run_dir, &cgroup_container, &log_file, stdin, None)
            .await?;
        crate::failpoint::hit("create.after_monitor")?;
        if idmap.is_some() {
            // liblxc has bound the staged volumes: the copies can go.
            crate::container::staging::unstage(&self.staging_dir(id))
                .map_err(|e| RuntimeError::os("detaching staged volumes", id, e))?;
        }
        self.attach_shared_mounts(id, init_pid, &made)
            .await
            // The container's init still waits for StartContainer: killing
            // it ends the monitor too.
            .inspect_err(|_| kill_init(init_pid))?;
        let record = container_record(
            id,
            pod,
            &image,
            config,
            CreatedAs {
                log_file,
                cgroup: cgroup_container,
                init_pid,
                who,
            },
        );
        crate::failpoint::hit("create.before_record")?;
        // Synced off the request path (StartContainer's commit is synced):
        // a crash before that loses the container, and the restart removes
        // it, as for a crash just before.
        self.store.put_soon(&record)?;
        info!(container_id = id, pod_id = %pod.id, name = %record.config.name, init_pid, "container created");
        self.emit_container_event(crate::events::EventKind::Created, &record);
        self.watch_exit(&record);
        Ok(())
    }

    /// The edits of the container's CDI devices, from the spec files as
    /// they are now (read off the async threads).
    async fn cdi_edits(
        &self,
        id: &str,
        config: &ContainerConfig,
    ) -> Result<crate::cdi::Edits, RuntimeError> {
        if config.cdi_devices.is_empty() {
            return Ok(crate::cdi::Edits::default());
        }
        let dirs = self.config.cdi_spec_dirs.clone();
        let (names, privileged) = (config.cdi_devices.clone(), config.privileged);
        tokio::task::spawn_blocking(move || crate::cdi::resolve(&dirs, &names, privileged))
            .await
            .map_err(|e| RuntimeError::os("reading the CDI specs", id, e))?
            .map_err(|source| RuntimeError::Cdi {
                id: id.to_owned(),
                source,
            })
    }

    /// The container's image, which must have been pulled.
    fn image_of(&self, config: &ContainerConfig) -> Result<ImageRecord, RuntimeError> {
        self.images
            .status(&config.image)?
            .ok_or_else(|| RuntimeError::ImageNotFound {
                image: config.image.clone(),
            })
    }

    /// The container's root filesystem: a snapshot over the image's top
    /// layer, mapped into the pod's user namespace if it has one.
    async fn prepare_rootfs(
        &self,
        id: &str,
        image: &ImageRecord,
        idmap: Option<&crate::snapshot::Idmap>,
    ) -> Result<PathBuf, RuntimeError> {
        let snapshots = self.images.snapshots().clone();
        let (id2, top) = (id.to_owned(), image.top_layer().map(str::to_owned));
        let idmap = idmap.cloned();
        tokio::task::spawn_blocking(move || {
            snapshots.prepare_rootfs(&id2, top.as_deref(), idmap.as_ref())
        })
        .await
        .map_err(|e| RuntimeError::os("preparing the root filesystem", id, e))?
        .map_err(|e| {
            RuntimeError::os(
                "preparing the root filesystem",
                id,
                crate::errors::chain(&e),
            )
        })
    }

    /// The spec `pvecri-init` runs the workload by: command, environment,
    /// user, and the confinement the security context asks for.
    fn process_spec(
        &self,
        id: &str,
        config: &ContainerConfig,
        image: &ImageRecord,
        who: &Identity,
        hostname: &str,
    ) -> Result<ProcessSpec, RuntimeError> {
        let confinement = crate::runtime::security::confinement(config)?;
        Ok(ProcessSpec {
            args: process::argv(config, &image.run_config).map_err(|source| {
                RuntimeError::Process {
                    id: id.to_owned(),
                    source,
                }
            })?,
            env: process::env(config, &image.run_config, hostname, &who.home),
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
        })
    }

    /// The run dir: init's start FIFO and the process spec, owned by the
    /// pod's root when the pod has its own user namespace.
    fn write_run_dir(
        &self,
        id: &str,
        spec: &ProcessSpec,
        idmap: Option<&crate::snapshot::Idmap>,
    ) -> Result<RunDir, RuntimeError> {
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
            &serde_json::to_vec(spec).expect("spec serialises"),
        )
        .map_err(|e| RuntimeError::os("writing spec.json", id, e))?;
        if let Some(map) = idmap {
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
        Ok(run_dir)
    }

    /// Renders the LXC config into the container's LXC dir.
    fn write_lxc_config(&self, id: &str, plan: &LxcPlan) -> Result<(), RuntimeError> {
        let lxc_dir = self.config.lxc_path().join(id);
        std::fs::create_dir_all(&lxc_dir)
            .map_err(|e| RuntimeError::os("creating the LXC dir", id, e))?;
        let text = lxc_config::render(plan).map_err(|e| RuntimeError::Invalid {
            field: "config",
            message: e.to_string(),
        })?;
        write_file(&lxc_dir.join("config"), text.as_bytes())
            .map_err(|e| RuntimeError::os("writing the LXC config", id, e))
    }

    /// On a v1 cpuset hierarchy, the pod's cpuset cgroups get their CPUs
    /// and memory nodes before a container can join them.
    fn prepare_cpuset(&self, id: &str, cgroup_container: &str) -> Result<(), RuntimeError> {
        if let Some(mount) = self.cpuset_v1() {
            let parent = cgroup_container
                .rsplit_once('/')
                .map(|(parent, _)| parent)
                .unwrap_or_default();
            crate::cgroups::cpuset::prepare(mount, parent)
                .map_err(|e| RuntimeError::os("preparing the cpuset cgroups of the pod", id, e))?;
        }
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

/// Writes a file of the container's start (spec.json, the LXC config).
/// Not fsynced: only processes of this boot read them (the starter, the
/// monitor, pvecri-init, an exec's attach), all through the page cache; a
/// power loss ends the container too, and its dirs are then removed whole,
/// never read. A sync cost about 0.5 ms each on this VM's disk.
fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::File::create(path)?.write_all(bytes)
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

/// CreateContainer needs a name and an image.
fn require_name_and_image(config: &ContainerConfig) -> Result<(), RuntimeError> {
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
    Ok(())
}

/// The container's log file if this attempt will be the one to create it:
/// such a file goes with a failed attempt, as the kubelet counts restarts
/// from the log files it finds.
fn new_log_file(pod: &PodRecord, config: &ContainerConfig) -> Option<PathBuf> {
    (!config.log_path.is_empty() && !pod.config.log_directory.is_empty())
        .then(|| Path::new(&pod.config.log_directory).join(&config.log_path))
        .filter(|log| !log.exists())
}

/// The user the workload runs as, resolved against the image's
/// /etc/passwd and /etc/group, which are read off the async threads: the
/// image's files are untrusted.
async fn identity(
    id: &str,
    rootfs: &Path,
    config: &ContainerConfig,
    image: &ImageRecord,
) -> Result<Identity, RuntimeError> {
    let root = rootfs.to_owned();
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
    process::identity(config, &image.run_config, &passwd, &group).map_err(|source| {
        RuntimeError::Process {
            id: id.to_owned(),
            source,
        }
    })
}

/// The pod's hostname as written into its files, else the pod's name.
fn pod_hostname(pod: &PodRecord) -> String {
    std::fs::read_to_string(Path::new(&pod.files_dir).join("hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| pod.config.name.clone())
}

/// The log file the monitor writes (empty: none), its directory made.
fn prepare_log_file(
    id: &str,
    pod: &PodRecord,
    config: &ContainerConfig,
) -> Result<String, RuntimeError> {
    if config.log_path.is_empty() || pod.config.log_directory.is_empty() {
        return Ok(String::new());
    }
    let path = Path::new(&pod.config.log_directory).join(&config.log_path);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| RuntimeError::os("creating the log directory", id, e))?;
    }
    Ok(path.display().to_string())
}

/// Ends a created container's init (and with it the monitor).
fn kill_init(init_pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init_pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// What the create steps made that the record keeps.
struct CreatedAs {
    log_file: String,
    cgroup: String,
    init_pid: i32,
    who: Identity,
}

/// The record of a container just created, its init waiting.
fn container_record(
    id: &str,
    pod: &PodRecord,
    image: &ImageRecord,
    config: ContainerConfig,
    made: CreatedAs,
) -> ContainerRecord {
    ContainerRecord {
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
        log_file: made.log_file,
        cgroup: made.cgroup,
        init_pid: made.init_pid,
        init_start_time: proc_start_time(made.init_pid).unwrap_or_default(),
        stop_signal: image.run_config.stop_signal.clone().unwrap_or_default(),
        user: Some(crate::container::record::ResolvedUser {
            uid: made.who.uid,
            gid: made.who.gid,
            groups: made.who.groups,
        }),
        restored: false,
        config,
    }
}
