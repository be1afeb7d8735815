//! The container's mounts: the fixed ones, the pod's files, volumes
//! (image volumes as snapshots of their own), device nodes, each placed
//! inside the root filesystem (`container_mounts`); bidirectional volumes
//! once init runs (`attach_shared_mounts`).

use std::path::{Path, PathBuf};

use crate::container::devices::Rule;
use crate::container::lxc_config::{BindMount, Propagation};
use crate::container::run_dir::RunDir;
use crate::container::ContainerConfig;
use crate::pod::PodRecord;
use crate::runtime::error::RuntimeError;
use crate::runtime::Runtime;

/// A bind mount of `source` at `target` before it is placed.
fn bind(source: PathBuf, target: &str, file: bool, readonly: bool) -> BindMount {
    BindMount {
        source,
        target: target.to_owned(),
        readonly,
        flags: Default::default(),
        propagation: Propagation::Private,
        file,
        create: false,
        optional: false,
    }
}

/// A host path volume whose source does not exist gets it as an empty
/// directory (mode 0755, parents too), as containerd and CRI-O do: the
/// kubelet hands over hostPath volumes of type "" unchecked, and pods
/// expect them to appear. Anything that exists, a dangling symlink
/// included, is left alone for the bind to judge.
fn create_missing_source(id: &str, source: &Path) -> Result<(), RuntimeError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::symlink_metadata(source) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(RuntimeError::Os {
                op: "inspecting a volume's host path",
                id: id.to_owned(),
                source: format!("{}: {e}", source.display()).into(),
            })
        }
    }
    // Each missing component in turn, chmod'ed past the daemon's umask.
    let missing: Vec<&Path> = source
        .ancestors()
        .take_while(|p| std::fs::symlink_metadata(p).is_err())
        .collect();
    for dir in missing.into_iter().rev() {
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(dir)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(e),
            })
            .and_then(|()| {
                std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            })
            .map_err(|e| RuntimeError::Os {
                op: "creating a missing volume host path",
                id: id.to_owned(),
                source: format!("{}: {e}", dir.display()).into(),
            })?;
    }
    tracing::info!(container = id, path = %source.display(), "created the missing host path of a volume");
    Ok(())
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
fn devices(config: &ContainerConfig) -> Result<(Vec<BindMount>, Option<Vec<Rule>>), RuntimeError> {
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
        // A device given with no access at all (CDI `none`) is bound
        // without a rule.
        rules.extend(
            nodes
                .iter()
                .filter(|n| !n.rule.access.is_empty())
                .map(|n| n.rule.clone()),
        );
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

impl Runtime {
    /// Every bind mount of the container, each placed inside `rootfs`:
    /// pvecri-init and the run dir, the pod's files and volumes, device
    /// nodes; volumes are staged for a pod with its own user namespace.
    /// Also the device policy (`devices`).
    pub(super) fn container_mounts(
        &self,
        id: &str,
        pod: &PodRecord,
        config: &ContainerConfig,
        rootfs: &Path,
        run_dir: &RunDir,
        idmap: Option<&crate::snapshot::Idmap>,
    ) -> Result<(Vec<BindMount>, Option<Vec<Rule>>), RuntimeError> {
        let mut tree = crate::container::mountpoints::MountTree::new(
            rootfs,
            idmap.map(|m| (m.uid, m.gid)),
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
        let mut volumes = self.volume_mounts(id, pod, config)?;
        let (mut devices, device_rules) = devices(config)?;
        for m in fixed
            .iter_mut()
            .chain(volumes.iter_mut())
            .chain(devices.iter_mut())
        {
            place(&mut tree, m)?;
        }
        if let Some(map) = idmap {
            let userns = std::fs::File::open(&map.userns)
                .map_err(|e| RuntimeError::os("opening the pod's user namespace", id, e))?;
            crate::container::staging::stage(&self.staging_dir(id), &mut volumes, &userns)
                .map_err(|e| RuntimeError::os("staging volumes", id, crate::errors::chain(&e)))?;
        }
        let mut mounts = fixed;
        mounts.append(&mut volumes);
        mounts.append(&mut devices);
        Ok((mounts, device_rules))
    }

    /// The pod's hostname, hosts and resolv.conf files (unless a volume
    /// replaces one) and the requested volumes, parents before children
    /// (as containerd orders them), with image volumes' sub-paths resolved
    /// inside their image.
    pub(super) fn volume_mounts(
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
                None => {
                    let source = PathBuf::from(&m.host_path);
                    create_missing_source(id, &source)?;
                    source
                }
            };
            mounts.push(BindMount {
                file: source.is_file(),
                source,
                target: m.container_path.clone(),
                readonly: m.readonly,
                flags: m.flags,
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
    pub(super) async fn prepare_image_volumes(
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
    pub(super) async fn attach_shared_mounts(
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
}
