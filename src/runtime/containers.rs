//! Containers: create (rootfs, LXC config, monitor with init waiting),
//! start (release init), stop (signal, then SIGKILL), remove, status.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tracing::{info, warn};

use super::error::RuntimeError;
use super::names::new_id;
use super::pods::find_by_id;
use super::teardown;
use super::{now_ns, Runtime};
use crate::cgroups::{limits, paths};
use crate::container::image_file::{self, ImageFileError};
use crate::container::lxc_config::{self, BindMount, LxcPlan, Propagation, SharedNamespaces};
use crate::container::process::{self, ProcessSpec};
use crate::container::run_dir::RunDir;
use crate::container::{ContainerConfig, ContainerRecord, ContainerState};
use crate::monitor::exit::ExitRecord;
use crate::monitor::MonitorArgs;
use crate::pod::PodRecord;

/// The fd number the monitor reports readiness on.
const READY_FD: i32 = 3;

/// How long CreateContainer waits for the container's init to come up.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A bind mount of `source` at `target` before it is placed.
fn bind(source: PathBuf, target: &str, file: bool, readonly: bool) -> BindMount {
    BindMount {
        source,
        target: target.to_owned(),
        readonly,
        propagation: Propagation::Private,
        file,
        create: false,
        optional: false,
    }
}

/// Path depth, for mounting parents before children.
fn depth(path: &str) -> usize {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .count()
}

/// Resolves `m`'s target inside the container (`container::mountpoints`)
/// and points the mount at the result.
fn place(
    tree: &mut crate::container::mountpoints::MountTree,
    m: &mut BindMount,
) -> Result<(), RuntimeError> {
    let placed = tree
        .place(&m.target, &m.source, m.file)
        .map_err(|e| RuntimeError::Invalid {
            field: "config.mounts.container_path",
            message: e.to_string(),
        })?;
    m.target = placed.target;
    m.create = placed.create;
    Ok(())
}

/// The device nodes bound into the container's /dev and its device policy.
/// A non-privileged container gets the default allow-list plus its CRI
/// devices; a privileged one every device node of the host and no policy
/// (`None`: the node's).
fn devices(
    config: &ContainerConfig,
) -> Result<(Vec<BindMount>, Option<Vec<crate::container::devices::Rule>>), RuntimeError> {
    use crate::container::devices;
    let mut nodes = Vec::new();
    for d in &config.devices {
        nodes.extend(devices::lookup(d).map_err(|e| RuntimeError::Invalid {
            field: "config.devices.host_path",
            message: e.to_string(),
        })?);
    }
    let rules = (!config.privileged).then(|| {
        let mut rules = devices::default_rules();
        rules.extend(nodes.iter().map(|n| n.rule.clone()));
        rules
    });
    let mut mounts: Vec<BindMount> = nodes
        .into_iter()
        .map(|n| bind(n.host_path, &n.container_path, true, false))
        .collect();
    if config.privileged {
        let asked: std::collections::BTreeSet<String> =
            mounts.iter().map(|m| m.target.clone()).collect();
        mounts.extend(
            devices::host_nodes(Path::new("/dev"))
                .into_iter()
                .filter(|n| !asked.contains(&n.container_path))
                .map(|n| {
                    // A device unplugged before the start is skipped.
                    let mut m = bind(n.host_path, &n.container_path, true, false);
                    m.optional = true;
                    m
                }),
        );
    }
    Ok((mounts, rules))
}

/// The snapshot name of a container's `n`th mount as an image volume.
fn image_volume_id(id: &str, n: usize) -> String {
    format!("{id}-iv{n}")
}

/// The mounted root of a prepared image volume.
fn image_volume_root(
    images: &crate::image::ImageManager,
    id: &str,
    n: usize,
) -> Result<PathBuf, RuntimeError> {
    Ok(images
        .snapshots()
        .rootfs_root()
        .join(image_volume_id(id, n))
        .join("rootfs"))
}

/// The image-volume snapshots that exist for container `id`.
pub(crate) fn image_volume_ids(snapshots: &crate::snapshot::Snapshots, id: &str) -> Vec<String> {
    let prefix = format!("{id}-iv");
    std::fs::read_dir(snapshots.rootfs_root())
        .map(|r| {
            r.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| {
                    n.strip_prefix(&prefix)
                        .is_some_and(|k| k.parse::<usize>().is_ok())
                })
                .collect()
        })
        .unwrap_or_default()
}

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

#[derive(Debug, Default)]
pub struct ContainerFilter {
    pub id: String,
    pub pod_id: String,
    pub state: Option<ContainerState>,
    pub labels: BTreeMap<String, String>,
}

impl Runtime {
    /// Where a user-namespace container's volumes are staged
    /// (`crate::container::staging`).
    pub(crate) fn staging_dir(&self, id: &str) -> PathBuf {
        self.config.runtime_dir.join("staging").join(id)
    }

    fn container_run_dir(&self, id: &str) -> Result<RunDir, RuntimeError> {
        Ok(RunDir::new(&self.config.runtime_dir, id)?)
    }

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
                paths::container_paths(self.config.cgroup_driver, &pod.config.cgroup_parent, &id);
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
        let confinement = super::security::confinement(&config)?;
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
            paths::container_paths(self.config.cgroup_driver, &pod.config.cgroup_parent, id);
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
                .chain(limits::lxc_settings(&self.cgroup_layout, &config.resources))
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
            crate::cgroups::cpuset::prepare(mount, parent)
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

    /// The pod's hostname, hosts and resolv.conf files (unless a volume
    /// replaces one) and the requested volumes, parents before children
    /// (as containerd orders them), with image volumes' sub-paths resolved
    /// inside their image.
    fn volume_mounts(
        &self,
        id: &str,
        pod: &PodRecord,
        config: &ContainerConfig,
    ) -> Result<Vec<BindMount>, RuntimeError> {
        let mut mounts = vec![];
        let files = Path::new(&pod.files_dir);
        let wants = |target: &str| !config.mounts.iter().any(|m| m.container_path == target);
        for (name, target) in [
            ("hostname", "/etc/hostname"),
            ("resolv.conf", "/etc/resolv.conf"),
            ("hosts", "/etc/hosts"),
        ] {
            if wants(target) {
                let mut m = bind(files.join(name), target, true, false);
                m.readonly = false;
                mounts.push(m);
            }
        }
        let mut requested: Vec<(usize, &crate::container::MountSpec)> =
            config.mounts.iter().enumerate().collect();
        requested.sort_by_key(|(_, m)| depth(&m.container_path));
        for (i, m) in requested {
            let source = match &m.image {
                Some(iv) => {
                    let root = image_volume_root(&self.images, id, i)?;
                    crate::container::mountpoints::resolve_in_root(&root, &iv.sub_path).map_err(
                        |e| RuntimeError::Invalid {
                            field: "config.mounts.image_sub_path",
                            message: format!("image {}: {e}", iv.image),
                        },
                    )?
                }
                None => PathBuf::from(&m.host_path),
            };
            mounts.push(BindMount {
                file: source.is_file(),
                source,
                target: m.container_path.clone(),
                readonly: m.readonly,
                propagation: m.propagation,
                create: false,
                optional: false,
            });
        }
        Ok(mounts)
    }

    /// Image volumes: each image's filesystem as a snapshot of its own
    /// (`<id>-iv<n>`, removed with the container), bound read-only. The
    /// mount records the image ID and top layer (kept from garbage
    /// collection while the container exists).
    async fn prepare_image_volumes(
        &self,
        id: &str,
        config: &mut ContainerConfig,
        idmap: Option<&crate::snapshot::Idmap>,
    ) -> Result<(), RuntimeError> {
        for (i, m) in config.mounts.iter_mut().enumerate() {
            let Some(iv) = m.image.as_mut() else { continue };
            let image =
                self.images
                    .status(&iv.image)?
                    .ok_or_else(|| RuntimeError::ImageNotFound {
                        image: iv.image.clone(),
                    })?;
            iv.image_ref = image.id.clone();
            iv.top_layer = image.top_layer().map(str::to_owned);
            let snapshots = self.images.snapshots().clone();
            let (name, top) = (image_volume_id(id, i), iv.top_layer.clone());
            let idmap = idmap.cloned();
            tokio::task::spawn_blocking(move || {
                snapshots.prepare_rootfs(&name, top.as_deref(), idmap.as_ref())
            })
            .await
            .map_err(|e| RuntimeError::os("preparing an image volume", id, e))?
            .map_err(|e| {
                RuntimeError::os("preparing an image volume", id, crate::errors::chain(&e))
            })?;
        }
        Ok(())
    }

    /// Bidirectional (rshared) volumes: liblxc's binds are slaves of the
    /// host's mounts, so `pvecri-init mount-shared` puts clones that are
    /// real peers over them (docs/security.md).
    async fn attach_shared_mounts(
        &self,
        id: &str,
        init_pid: i32,
        config: &ContainerConfig,
    ) -> Result<(), RuntimeError> {
        let shared: Vec<_> = config
            .mounts
            .iter()
            .filter(|m| m.propagation == Propagation::Shared)
            .collect();
        if shared.is_empty() {
            return Ok(());
        }
        let mut cmd = tokio::process::Command::new(&self.config.init_path);
        cmd.arg("mount-shared").arg(init_pid.to_string());
        for m in shared {
            cmd.arg(&m.host_path).arg(&m.container_path);
        }
        let out = cmd
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| RuntimeError::os("running pvecri-init mount-shared", id, e))?;
        if !out.status.success() {
            return Err(RuntimeError::os(
                "attaching bidirectional volumes",
                id,
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
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

    /// Starts `pvecri monitor` (which detaches) and waits for it to report
    /// the container's init running.
    async fn spawn_monitor(
        &self,
        id: &str,
        run_dir: &RunDir,
        log_file: &str,
        stdin: StdinMode,
    ) -> Result<i32, RuntimeError> {
        let exe = self.self_exe.clone();
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| RuntimeError::os("pipe", id, e))?;
        let args = MonitorArgs {
            id: id.to_owned(),
            lxcpath: self.config.lxc_path(),
            run_dir: run_dir.path().to_owned(),
            log: non_empty(log_file).map(PathBuf::from),
            ready_fd: Some(READY_FD),
            max_log_line: crate::monitor::DEFAULT_MAX_LINE,
            stdin: stdin.open,
            stdin_once: stdin.open && stdin.once,
            tty: stdin.tty,
        };
        let mut cmd = std::process::Command::new(exe);
        cmd.args(args.to_args())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(spawn_log(run_dir));
        let ready_write = write.as_raw_fd();
        // SAFETY: the closure runs in the child between fork and exec and
        // only calls dup2, which is async-signal-safe; `write` stays open in
        // the parent until after spawn. dup2 clears CLOEXEC on the copy, so
        // exactly this pipe end reaches the monitor as fd 3.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(ready_write, READY_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // The monitor double-forks: this child exits at once and is reaped here.
        let status = tokio::task::spawn_blocking(move || {
            let status = cmd.status();
            drop(write);
            status
        })
        .await
        .map_err(|e| RuntimeError::os("spawning the monitor", id, e))?
        .map_err(|e| RuntimeError::os("spawning the monitor", id, e))?;
        if !status.success() {
            let why = std::fs::read_to_string(run_dir.monitor_spawn_log()).unwrap_or_default();
            return Err(RuntimeError::os(
                "spawning the monitor",
                id,
                format!("monitor exited with {status}: {}", why.trim()),
            ));
        }
        let answer = tokio::time::timeout(READY_TIMEOUT, read_all(read))
            .await
            .map_err(|_| RuntimeError::Timeout {
                op: "waiting for the container to come up",
                id: id.to_owned(),
                seconds: READY_TIMEOUT.as_secs(),
            })?
            .map_err(|e| RuntimeError::os("reading the monitor's answer", id, e))?;
        let answer = answer.trim();
        if let Some(pid) = answer.strip_prefix("ok ") {
            return pid.trim().parse().map_err(|_| {
                RuntimeError::os(
                    "starting the container",
                    id,
                    format!("bad monitor answer {answer:?}"),
                )
            });
        }
        let detail = std::fs::read_to_string(run_dir.lxc_log()).unwrap_or_default();
        Err(RuntimeError::os(
            "starting the container",
            id,
            format!(
                "{} {}",
                answer.strip_prefix("err ").unwrap_or(answer),
                tail(&detail, 3000)
            ),
        ))
    }

    /// Releases the container's init so it execs the workload.
    pub async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let mut c = self.container(id)?;
        if c.state != ContainerState::Created {
            return Err(RuntimeError::container_state(
                &c,
                "only a created container can be started",
            ));
        }
        let fifo = self.container_run_dir(&c.id)?.start_fifo();
        crate::failpoint::hit("start.before_release")?;
        release_init(&fifo, c.init_pid, c.init_start_time)
            .await
            .map_err(|e| RuntimeError::os("releasing the container's init", &c.id, e))?;
        // Return once the workload has replaced pvecri-init: until then a
        // stop signal would reach init, which as PID 1 without handlers
        // ignores it (runc's start likewise returns after the exec).
        wait_for_exec(c.init_pid, c.init_start_time).await;
        crate::failpoint::hit("start.before_record")?;
        c.started_at_ns = now_ns();
        c.state = ContainerState::Running;
        self.store.put(&c)?;
        info!(container_id = %c.id, "container started");
        self.emit_container_event(crate::events::EventKind::Started, &c);
        Ok(())
    }

    /// Stops a running container: the stop signal, then SIGKILL once
    /// `timeout` seconds have passed. Idempotent.
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<(), RuntimeError> {
        let c = match self.container(id) {
            Ok(c) => c,
            Err(RuntimeError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if c.state == ContainerState::Exited || c.state == ContainerState::Unknown {
            return Ok(());
        }
        let run_dir = self.container_run_dir(&c.id)?;
        let graceful = c.state == ContainerState::Running
            && timeout > 0
            && self
                .graceful_stop(
                    &c,
                    &run_dir,
                    parse_signal(&c.stop_signal).unwrap_or(nix::sys::signal::Signal::SIGTERM),
                    Duration::from_secs(timeout as u64),
                )
                .await;
        // Init has exited, or the grace period is over: SIGKILL whatever
        // is left in the cgroup, init included. Children of a hostPID or
        // shared-PID-namespace container survive their init otherwise.
        if !graceful {
            self.signal_init(&c, nix::sys::signal::Signal::SIGKILL);
        }
        crate::failpoint::hit("stop.after_signal")?;
        teardown::kill_leftovers(&c.id, &c.cgroup).await?;
        if !graceful && !wait_for_exit(&run_dir, &c.id, Duration::from_secs(10)).await {
            return Err(RuntimeError::Timeout {
                op: "stopping the container",
                id: c.id,
                seconds: 10,
            });
        }
        self.settle_if_monitor_lost(&c, run_dir).await;
        self.container(id)?;
        info!(container_id = %c.id, "container stopped");
        Ok(())
    }

    /// A container whose monitor is gone gets its exit recorded here
    /// (`teardown::settle_lost_monitor`).
    async fn settle_if_monitor_lost(&self, c: &ContainerRecord, run_dir: RunDir) {
        if run_dir.exit().exists() || teardown::monitor_alive(&run_dir, &c.id) {
            return;
        }
        let (id, cgroup) = (c.id.clone(), c.cgroup.clone());
        let _ = tokio::task::spawn_blocking(move || {
            teardown::settle_lost_monitor(&run_dir, &id, &cgroup)
        })
        .await;
    }

    /// Sends the stop signal and waits up to `timeout` for the exit. The
    /// workload is PID 1 of its namespace, and the kernel drops a signal
    /// that PID 1 has no handler for; right after StartContainer the
    /// workload may not have installed its handler yet. So while the
    /// signal is neither caught nor ignored it is sent again once the
    /// handler appears, never twice to a handler that got the first.
    async fn graceful_stop(
        &self,
        c: &ContainerRecord,
        run_dir: &RunDir,
        sig: nix::sys::signal::Signal,
        timeout: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut delivered = signal_disposition(c.init_pid, sig) != Disposition::Default;
        self.signal_init(c, sig);
        loop {
            let step = Duration::from_millis(if delivered { 1000 } else { 50 });
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if wait_for_exit(run_dir, &c.id, step.min(left)).await {
                return true;
            }
            if left <= step {
                return false;
            }
            if !delivered {
                match signal_disposition(c.init_pid, sig) {
                    Disposition::Caught => {
                        self.signal_init(c, sig);
                        delivered = true;
                    }
                    Disposition::Ignored => delivered = true,
                    Disposition::Default => {}
                }
            }
        }
    }

    fn signal_init(&self, c: &ContainerRecord, sig: nix::sys::signal::Signal) {
        if c.init_pid <= 0 || proc_start_time(c.init_pid) != Some(c.init_start_time) {
            return;
        }
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.init_pid), sig);
    }

    /// Removes the container and everything it left on disk. Idempotent.
    pub async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
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
        Ok(())
    }

    async fn cleanup_container_dirs(&self, id: &str) {
        let snapshots = self.images.snapshots().clone();
        let lxc_dir = self.config.lxc_path().join(id);
        // IDs here are the store's (or a fresh one), so always valid.
        let run_dir = self.container_run_dir(id).ok();
        let staging = self.staging_dir(id);
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
            for dir in std::iter::once(lxc_dir).chain(run_dir) {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        warn!(container_id = %id2, dir = %dir.display(), error = %crate::errors::chain(&e), "cannot remove");
                    }
                }
            }
        })
        .await;
    }

    /// The container's record with its state brought up to date from the
    /// monitor's exit record.
    pub fn container(&self, id: &str) -> Result<ContainerRecord, RuntimeError> {
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
            c.finished_at_ns = exit.finished_at_ns;
            if c.started_at_ns == 0 {
                // Died before StartContainer (or start raced the exit).
                c.started_at_ns = c.finished_at_ns;
            }
            self.store.put(&c)?;
            self.emit_container_event(crate::events::EventKind::Stopped, &c);
        }
        Ok(c)
    }

    pub fn list_containers(
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

    /// Applies new resources to the live cgroup and records them.
    pub async fn update_container_resources(
        &self,
        id: &str,
        resources: limits::Resources,
    ) -> Result<(), RuntimeError> {
        let mut c = self.container(id)?;
        if c.state == ContainerState::Running || c.state == ContainerState::Created {
            limits::apply_live(&self.cgroup_layout, &c.cgroup, &resources)
                .map_err(|e| RuntimeError::os("updating cgroup resources", &c.id, e))?;
        }
        c.config.resources = resources;
        self.store.put(&c)?;
        Ok(())
    }

    /// Asks the monitor to reopen the log file (after the kubelet rotated it).
    pub async fn reopen_container_log(&self, id: &str) -> Result<(), RuntimeError> {
        let c = self.container(id)?;
        if c.state != ContainerState::Running {
            return Err(RuntimeError::container_state(
                &c,
                "only a running container's log can be reopened",
            ));
        }
        let short = self
            .container_run_dir(&c.id)?
            .open_short()
            .map_err(|e| RuntimeError::os("connecting to the monitor", &c.id, e))?;
        let mut stream = tokio::net::UnixStream::connect(short.control_socket())
            .await
            .map_err(|e| RuntimeError::os("connecting to the monitor", &c.id, e))?;
        use tokio::io::AsyncWriteExt;
        stream
            .write_all(b"reopen\n")
            .await
            .map_err(|e| RuntimeError::os("asking the monitor to reopen the log", &c.id, e))?;
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
            .await
            .map_err(|_| RuntimeError::Timeout {
                op: "reopening the log",
                id: c.id.clone(),
                seconds: 10,
            })?
            .map_err(|e| RuntimeError::os("reading the monitor's answer", &c.id, e))?;
        if answer.trim() == "ok" {
            Ok(())
        } else {
            Err(RuntimeError::os("reopening the log", &c.id, answer.trim()))
        }
    }
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        // Non-blocking: ENXIO instead of a hang when init is not reading.
        self.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
    }
}

/// Where the monitor's first child reports errors from before it detached.
fn spawn_log(run_dir: &RunDir) -> std::process::Stdio {
    std::fs::File::create(run_dir.monitor_spawn_log())
        .map(std::process::Stdio::from)
        .unwrap_or_else(|_| std::process::Stdio::null())
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn tail(s: &str, max: usize) -> &str {
    let s = s.trim();
    let start = s.len().saturating_sub(max);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    &s[start..]
}

fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

async fn read_all(fd: OwnedFd) -> std::io::Result<String> {
    let mut rx = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
    let mut out = String::new();
    rx.read_to_string(&mut out).await?;
    Ok(out)
}

/// Writes the start byte into init's FIFO. Init may not have opened its
/// end yet right after the container came up (the open then fails with
/// ENXIO), so retry for a bounded time while init is alive.
async fn release_init(fifo: &Path, pid: i32, start_time: u64) -> std::io::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags_nonblock()
            .open(fifo)
        {
            Ok(mut f) => return f.write_all(b"S"),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                if proc_start_time(pid) != Some(start_time) {
                    return Err(std::io::Error::other(
                        "the container's init exited before it was started",
                    ));
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(std::io::Error::other(
                        "the container's init is not waiting for its start signal",
                    ));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Waits (bounded) until process `pid` no longer runs pvecri-init: it
/// exec'd the workload, or it exited.
async fn wait_for_exec(pid: i32, start_time: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if proc_start_time(pid) != Some(start_time) {
            return;
        }
        match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            Ok(comm) if comm.trim_end() == INIT_COMM => {}
            _ => return,
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    Default,
    Caught,
    Ignored,
}

/// How process `pid` handles `sig`, from the SigCgt/SigIgn masks in
/// /proc; `Default` when it cannot be read.
fn signal_disposition(pid: i32, sig: nix::sys::signal::Signal) -> Disposition {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mask = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    let bit = 1u64 << (sig as i32 - 1);
    if mask("SigCgt:") & bit != 0 {
        Disposition::Caught
    } else if mask("SigIgn:") & bit != 0 {
        Disposition::Ignored
    } else {
        Disposition::Default
    }
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

/// The kernel's name for a process running `/.pvecri-init`.
const INIT_COMM: &str = ".pvecri-init";

/// Waits for the container's exit record, or for its monitor to be gone
/// (then nobody writes one: see `teardown::settle_lost_monitor`).
async fn wait_for_exit(run_dir: &RunDir, id: &str, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    for round in 0u32.. {
        if run_dir.exit().exists() {
            return true;
        }
        if round % 20 == 19 && !teardown::monitor_alive(run_dir, id) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// Field 22 of /proc/<pid>/stat: the process start time in clock ticks.
pub(crate) use crate::sandbox::infra::proc_start_time;

/// `SIGTERM`, `TERM`, `15` -> the signal.
pub(crate) fn parse_signal(s: &str) -> Option<nix::sys::signal::Signal> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).ok();
    }
    let name = if s.starts_with("SIG") {
        s.to_owned()
    } else {
        format!("SIG{s}")
    };
    name.parse().ok()
}

/// The container's stdio as its config asks: a stdin attach clients write
/// to (`open`), closed after the first client's stdin ends (`once`), on a
/// terminal (`tty`).
#[derive(Debug, Clone, Copy)]
struct StdinMode {
    open: bool,
    once: bool,
    tty: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse() {
        use nix::sys::signal::Signal;
        assert_eq!(parse_signal("SIGTERM"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("QUIT"), Some(Signal::SIGQUIT));
        assert_eq!(parse_signal("9"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal(""), None);
        assert_eq!(parse_signal("NOPE"), None);
    }

    #[test]
    fn start_time_of_self() {
        assert!(proc_start_time(std::process::id() as i32).is_some());
        assert_eq!(proc_start_time(-5), None);
    }
}
