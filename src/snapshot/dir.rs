//! The plain-directory backend, for filesystems without overlayfs: every
//! layer is a full tree (its parent copied, then the layer applied), and a
//! container root is a full copy of its top layer. Slow and large, but it
//! works anywhere.
//!
//! Also the shared helpers for committing a layer directory atomically.

use std::path::{Path, PathBuf};

use super::error::io;
use super::{container_dir_name, copy::copy_tree, id_hex, Idmap, SnapshotError, Snapshotter};
use crate::snapshot::unpack::{unpack_layer, WhiteoutMode};

const TMP_PREFIX: &str = ".tmp-";

pub struct DirSnapshotter {
    layers: PathBuf,
    containers: PathBuf,
}

impl DirSnapshotter {
    pub fn open(root: PathBuf) -> Result<Self, SnapshotError> {
        let s = Self {
            layers: root.join("layers"),
            containers: root.join("containers"),
        };
        for dir in [&s.layers, &s.containers] {
            std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        }
        open_path_to_containers(&root, &s.containers)?;
        remove_temporaries(&s.layers)?;
        Ok(s)
    }

    fn fs_of(&self, chain_id: &str) -> Result<PathBuf, SnapshotError> {
        Ok(self.layers.join(id_hex(chain_id)?).join("fs"))
    }
}

impl Snapshotter for DirSnapshotter {
    fn has_layer(&self, chain_id: &str) -> bool {
        self.fs_of(chain_id).map(|d| d.is_dir()).unwrap_or(false)
    }

    fn commit_layer(
        &self,
        chain_id: &str,
        parent: Option<&str>,
        blob: &Path,
    ) -> Result<(), SnapshotError> {
        if self.has_layer(chain_id) {
            return Ok(());
        }
        let hex = id_hex(chain_id)?;
        let tmp = temporary(&self.layers, hex);
        let fs = tmp.join("fs");
        let result = (|| {
            std::fs::create_dir_all(&tmp).map_err(io("create", &tmp))?;
            match parent {
                Some(parent) if !self.has_layer(parent) => {
                    return Err(SnapshotError::MissingParent {
                        chain_id: chain_id.to_owned(),
                        parent: parent.to_owned(),
                    })
                }
                Some(parent) => copy_tree(&self.fs_of(parent)?, &fs)?,
                None => {
                    std::fs::create_dir_all(&fs).map_err(io("create", &fs))?;
                    set_mode(&fs, 0o755)?;
                }
            }
            unpack_layer(blob, &fs, WhiteoutMode::Apply).map_err(|source| {
                SnapshotError::Unpack {
                    chain_id: chain_id.to_owned(),
                    source,
                }
            })?;
            commit(&tmp, &self.layers.join(hex))
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }

    fn remove_layer(&self, chain_id: &str) -> Result<(), SnapshotError> {
        let dir = self.layers.join(id_hex(chain_id)?);
        remove_committed(&self.layers, &dir)
    }

    fn layers(&self) -> Result<Vec<String>, SnapshotError> {
        committed_ids(&self.layers)
    }

    fn prepare_rootfs(
        &self,
        id: &str,
        top: Option<&str>,
        idmap: Option<&Idmap>,
    ) -> Result<PathBuf, SnapshotError> {
        let dir = self.containers.join(container_dir_name(id)?);
        let rootfs = dir.join("rootfs");
        detach_all(&rootfs)?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        if idmap.is_some() {
            set_mode(&dir, 0o711)?;
        }
        match top {
            Some(top) => copy_tree(&self.fs_of(top)?, &rootfs)?,
            None => {
                std::fs::create_dir(&rootfs).map_err(io("create", &rootfs))?;
                set_mode(&rootfs, 0o755)?;
            }
        }
        if let Some(map) = idmap {
            // The copy is the container's own: an idmapped mount of it on
            // itself maps it for the pod.
            let userns = std::fs::File::open(&map.userns).map_err(io("open", &map.userns))?;
            crate::sandbox::idmap::IdmappedTree::new(&rootfs, &userns, false)
                .and_then(|tree| tree.attach(&rootfs))
                .map_err(|source| SnapshotError::Idmap { source })?;
        }
        Ok(rootfs)
    }

    fn mount_rootfs(&self, id: &str, top: Option<&str>) -> Result<PathBuf, SnapshotError> {
        let rootfs = self.containers.join(container_dir_name(id)?).join("rootfs");
        if rootfs.is_dir() {
            Ok(rootfs)
        } else {
            self.prepare_rootfs(id, top, None)
        }
    }

    fn remove_rootfs(&self, id: &str) -> Result<(), SnapshotError> {
        let dir = self.containers.join(container_dir_name(id)?);
        detach_all(&dir.join("rootfs"))?;
        remove_tree(&dir)
    }

    fn layers_root(&self) -> &Path {
        &self.layers
    }

    fn rootfs_root(&self) -> &Path {
        &self.containers
    }
}

/// Unmounts every mount stacked on `path` (idmapped mounts live on the
/// same device as their source, so a device check cannot see them).
pub(crate) fn detach_all(path: &Path) -> Result<(), SnapshotError> {
    loop {
        match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => return Ok(()),
            Err(source) => {
                return Err(SnapshotError::Unmount {
                    target: path.to_owned(),
                    source,
                })
            }
        }
    }
}

/// Makes the path from the snapshots dir to `containers` traversable (not
/// listable): the root of a `hostUsers: false` pod is an unprivileged host
/// ID while liblxc mounts its root filesystem. Layers stay private.
pub(crate) fn open_path_to_containers(root: &Path, containers: &Path) -> Result<(), SnapshotError> {
    if let Some(snapshots) = root.parent() {
        set_mode(snapshots, 0o711)?;
    }
    set_mode(root, 0o711)?;
    set_mode(containers, 0o711)
}

/// Removes a directory tree; one that is already gone is not an error.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), SnapshotError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", dir)(e)),
    }
}

/// Sets a directory's mode regardless of the daemon's private umask.
pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), SnapshotError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io("chmod", path))
}

/// A fresh temporary directory name next to the committed layers.
pub(crate) fn temporary(layers: &Path, hex: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    layers.join(format!("{TMP_PREFIX}{hex}-{}-{n}", std::process::id()))
}

/// Renames a fully written temporary layer into place. Losing a race with
/// a concurrent commit of the same layer is fine: the winner's copy stays.
pub(crate) fn commit(tmp: &Path, target: &Path) -> Result<(), SnapshotError> {
    match std::fs::rename(tmp, target) {
        Ok(()) => Ok(()),
        Err(_) if target.join("fs").is_dir() => {
            let _ = std::fs::remove_dir_all(tmp);
            Ok(())
        }
        Err(e) => Err(io("rename", target)(e)),
    }
}

/// Removes a committed layer by first renaming it out of sight, so that a
/// crash half-way never leaves a partial layer that looks committed.
pub(crate) fn remove_committed(layers: &Path, dir: &Path) -> Result<(), SnapshotError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let doomed = temporary(layers, &format!("del-{name}"));
    match std::fs::rename(dir, &doomed) {
        Ok(()) => std::fs::remove_dir_all(&doomed).map_err(io("remove", &doomed)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("rename", dir)(e)),
    }
}

/// Deletes temporaries left by an interrupted unpack or removal.
pub(crate) fn remove_temporaries(layers: &Path) -> Result<(), SnapshotError> {
    for entry in std::fs::read_dir(layers).map_err(io("list", layers))? {
        let entry = entry.map_err(io("list", layers))?;
        if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            let path = entry.path();
            tracing::info!(path = %path.display(), "removing leftover of an interrupted layer operation");
            std::fs::remove_dir_all(&path).map_err(io("remove", &path))?;
        }
    }
    Ok(())
}

/// Chain IDs of committed layers.
pub(crate) fn committed_ids(layers: &Path) -> Result<Vec<String>, SnapshotError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(layers).map_err(io("list", layers))? {
        let entry = entry.map_err(io("list", layers))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && id_hex(&name).is_ok() {
            out.push(format!("sha256:{name}"));
        }
    }
    out.sort();
    Ok(out)
}
