//! Snapshot backends: where unpacked image layers live and how a container
//! gets a writable root filesystem on top of them.
//!
//! A layer is identified by its chain ID (the OCI image-spec digest of the
//! layer and everything beneath it), so two images sharing a base share its
//! layers on disk. A layer is committed by renaming a fully unpacked
//! directory into place: a crash mid-unpack leaves only a temporary
//! directory, which [`Snapshots::open`] removes.
//!
//! Backends are a trait plus enum dispatch: `overlay` (the default; layers
//! are overlayfs lower dirs, a container gets its own upper/work dirs) and
//! `dir` (full copies, for filesystems without overlayfs) and `zfs` (a
//! layer chain as dataset snapshots, a container as a clone; see
//! [`zfs`](self::zfs)).

mod copy;
mod dir;
mod error;
mod overlay;
pub(crate) mod unpack;
mod usage;
mod zfs;

#[cfg(test)]
pub(crate) mod test_support;

pub(crate) use dir::DirSnapshotter;
pub(crate) use error::SnapshotError;
pub(crate) use overlay::OverlaySnapshotter;
pub(crate) use usage::Usage;
pub(crate) use zfs::ZfsSnapshotter;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Which backend keeps layers and root filesystems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Overlay,
    Dir,
    Zfs,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Overlay => "overlay",
            BackendKind::Dir => "dir",
            BackendKind::Zfs => "zfs",
        }
    }
}

/// What every backend provides.
pub trait Snapshotter: Send + Sync {
    /// Whether the layer `chain_id` is committed.
    fn has_layer(&self, chain_id: &str) -> bool;
    /// Unpacks `blob` on top of `parent` and commits it as `chain_id`.
    /// Committing a layer that exists already is a no-op.
    fn commit_layer(
        &self,
        chain_id: &str,
        parent: Option<&str>,
        blob: &Path,
    ) -> Result<(), SnapshotError>;
    /// Removes a committed layer; missing layers are not an error.
    fn remove_layer(&self, chain_id: &str) -> Result<(), SnapshotError>;
    /// Committed layer chain IDs.
    fn layers(&self) -> Result<Vec<String>, SnapshotError>;
    /// Creates and mounts a writable root filesystem for `id` on top of the
    /// layer `top` (none: an empty root) and returns its path. With
    /// `idmap`, the root filesystem shows the layers' files as owned by
    /// the IDs of a user namespace (see [`Idmap`]).
    fn prepare_rootfs(
        &self,
        id: &str,
        top: Option<&str>,
        idmap: Option<&Idmap>,
    ) -> Result<PathBuf, SnapshotError>;
    /// Re-mounts a prepared root filesystem after a reboot or crash; a no-op
    /// when it is mounted.
    fn mount_rootfs(&self, id: &str, top: Option<&str>) -> Result<PathBuf, SnapshotError>;
    /// Unmounts and deletes a root filesystem; missing ones are not an error.
    fn remove_rootfs(&self, id: &str) -> Result<(), SnapshotError>;
    /// Directory holding committed layers (the image filesystem).
    fn layers_root(&self) -> &Path;
    /// Directory holding container root filesystems.
    fn rootfs_root(&self) -> &Path;
    /// Disk usage of the committed layers.
    fn layers_usage(&self) -> Usage {
        Usage::of(self.layers_root())
    }
    /// Disk usage of every container's writable layer together.
    fn rootfs_total_usage(&self) -> Usage {
        Usage::of(self.rootfs_root())
    }
    /// Disk usage of container `id`'s writable layer (none: no such root).
    fn rootfs_usage(&self, id: &str) -> Option<Usage> {
        let dir = self.rootfs_root().join(container_dir_name(id).ok()?);
        dir.exists().then(|| Usage::of(&dir))
    }
}

/// How a root filesystem for a `hostUsers: false` pod is mapped: through
/// mounts idmapped with the pod's user namespace (`crate::sandbox::idmap`),
/// so layer files owned by 0 belong to the pod's root, whose host IDs are
/// `uid`/`gid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idmap {
    /// The pod's pinned user namespace (an nsfs file).
    pub userns: PathBuf,
    pub uid: u32,
    pub gid: u32,
}

/// The configured backend.
pub enum Snapshots {
    Overlay(OverlaySnapshotter),
    Dir(DirSnapshotter),
    Zfs(ZfsSnapshotter),
}

impl Snapshots {
    /// Opens the backend under `state_dir/snapshots/<kind>` and clears
    /// leftovers of interrupted unpacks. `zfs_dataset` is the parent
    /// dataset of the `zfs` backend (required for it, unused otherwise).
    pub fn open(
        state_dir: &Path,
        kind: BackendKind,
        zfs_dataset: Option<&str>,
    ) -> Result<Self, SnapshotError> {
        let root = state_dir.join("snapshots").join(kind.as_str());
        Ok(match kind {
            BackendKind::Overlay => Snapshots::Overlay(OverlaySnapshotter::open(root)?),
            BackendKind::Dir => Snapshots::Dir(DirSnapshotter::open(root)?),
            BackendKind::Zfs => {
                let dataset = zfs_dataset.ok_or(SnapshotError::NoZfsDataset)?;
                let zfs = crate::zfs::open().map_err(|source| SnapshotError::Zfs { source })?;
                Snapshots::Zfs(ZfsSnapshotter::open(root, dataset, zfs)?)
            }
        })
    }

    pub fn kind(&self) -> BackendKind {
        match self {
            Snapshots::Overlay(_) => BackendKind::Overlay,
            Snapshots::Dir(_) => BackendKind::Dir,
            Snapshots::Zfs(_) => BackendKind::Zfs,
        }
    }

    fn inner(&self) -> &(dyn Snapshotter + 'static) {
        match self {
            Snapshots::Overlay(s) => s,
            Snapshots::Dir(s) => s,
            Snapshots::Zfs(s) => s,
        }
    }
}

impl std::ops::Deref for Snapshots {
    type Target = dyn Snapshotter + 'static;
    fn deref(&self) -> &Self::Target {
        self.inner()
    }
}

/// Chain IDs of a layer stack from its diff IDs, lowest layer first:
/// `chain(L1) = diff(L1)`, `chain(Ln) = sha256(chain(Ln-1) + " " + diff(Ln))`.
pub(crate) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => diff.clone(),
            Some(parent) => {
                let hash = Sha256::digest(format!("{parent} {diff}").as_bytes());
                format!("sha256:{}", hex::encode(hash))
            }
        };
        out.push(next);
    }
    out
}

/// The hex part of a `sha256:<hex>` ID, checked so that it is safe as a
/// file name.
pub(crate) fn id_hex(id: &str) -> Result<&str, SnapshotError> {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(hex)
    } else {
        Err(SnapshotError::BadId { id: id.to_owned() })
    }
}

/// A container ID checked to be safe as a directory name.
pub(crate) fn container_dir_name(id: &str) -> Result<&str, SnapshotError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && id != "."
        && id != "..";
    if ok {
        Ok(id)
    } else {
        Err(SnapshotError::BadId { id: id.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        let expected = hex::encode(Sha256::digest(format!("{a} {b}").as_bytes()));
        assert_eq!(chain[1], format!("sha256:{expected}"));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn ids_are_checked_before_use_as_paths() {
        assert!(id_hex(&format!("sha256:{}", "0".repeat(64))).is_ok());
        assert!(id_hex("sha256:../../etc").is_err());
        assert!(id_hex(&format!("sha256:{}", "G".repeat(64))).is_err());
        assert!(container_dir_name("abc-123").is_ok());
        assert!(container_dir_name("..").is_err());
        assert!(container_dir_name("a/b").is_err());
        assert!(container_dir_name("").is_err());
    }
}
