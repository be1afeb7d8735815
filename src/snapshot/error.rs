use std::path::PathBuf;

use thiserror::Error;

use crate::snapshot::unpack::UnpackError;

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("{op} {path} failed")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot unpack layer {chain_id}")]
    Unpack {
        chain_id: String,
        #[source]
        source: UnpackError,
    },
    #[error("parent layer {parent} of {chain_id} is not committed")]
    MissingParent { chain_id: String, parent: String },
    #[error("{id:?} is not a valid snapshot or container id")]
    BadId { id: String },
    #[error("mount of {target} failed ({options})")]
    Mount {
        target: PathBuf,
        options: String,
        #[source]
        source: nix::Error,
    },
    #[error("unmount of {target} failed")]
    Unmount {
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot map the root filesystem for a user namespace")]
    Idmap {
        #[source]
        source: crate::sandbox::idmap::IdmapError,
    },
    #[error("the zfs snapshotter needs `[images] zfs_dataset` (the parent dataset, e.g. \"rpool/data/pvecri\")")]
    NoZfsDataset,
    #[error("ZFS snapshotter")]
    Zfs {
        #[source]
        source: crate::zfs::ZfsError,
    },
    #[error("overlay mount options for {id} are {len} bytes, over the kernel's {max}-byte limit ({layers} layers)")]
    TooManyLayers {
        id: String,
        len: usize,
        max: usize,
        layers: usize,
    },
}

/// `map_err` helper: an io error with the operation and path.
pub(crate) fn io(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> SnapshotError {
    let path = path.into();
    move |source| SnapshotError::Io { op, path, source }
}
