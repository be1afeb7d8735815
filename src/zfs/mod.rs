//! ZFS datasets for the `zfs` snapshotter: the operations it needs as a
//! trait ([`ZfsOps`]), implemented over libzfs_core ([`Lzc`], feature
//! `zfs`) and, for unit tests of the snapshotter's logic, by a fake that
//! keeps datasets as directories.
//!
//! Everything here takes full dataset names (`pool/a/b`, `pool/a/b@snap`)
//! that the caller built from a validated parent ([`check_dataset_name`])
//! and components it checked itself.

#[cfg(test)]
pub(crate) mod fake;
#[cfg(feature = "zfs")]
mod lzc;
#[cfg(feature = "zfs")]
mod nvlist;

#[cfg(feature = "zfs")]
pub(crate) use lzc::Lzc;

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Longest dataset name pvecri configures as a parent: ZFS allows 255
/// bytes in all, and pvecri appends up to `/containers/<128-byte id>`.
const MAX_PARENT_LEN: usize = 100;

#[derive(Debug, Error)]
pub enum ZfsError {
    #[error("ZFS support is not built in (build pvecri with the `zfs` feature)")]
    NotBuilt,
    #[error("cannot use ZFS: /dev/zfs cannot be opened (is the zfs module loaded?)")]
    NoDevice {
        #[source]
        source: std::io::Error,
    },
    #[error("{dataset:?} is not a valid ZFS dataset name: {why}")]
    BadName { dataset: String, why: &'static str },
    #[error("zfs {op} {dataset} failed")]
    Op {
        op: &'static str,
        dataset: String,
        #[source]
        source: std::io::Error,
    },
    #[error("zfs {op} {dataset}: {dataset} still has dependents (snapshots or clones)")]
    Busy { op: &'static str, dataset: String },
    #[error("ZFS query on {dataset} failed: {message}")]
    Query { dataset: String, message: String },
    #[error("mount of ZFS dataset {dataset} on {target} failed")]
    Mount {
        dataset: String,
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("unmount of {target} failed")]
    Unmount {
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
}

impl ZfsError {
    /// An operation's errno as a typed error naming the dataset.
    #[cfg_attr(not(feature = "zfs"), allow(dead_code))]
    pub(crate) fn from_errno(op: &'static str, dataset: &str, errno: i32) -> ZfsError {
        if errno == libc::EBUSY || errno == libc::EEXIST && op == "destroy" {
            return ZfsError::Busy {
                op,
                dataset: dataset.to_owned(),
            };
        }
        ZfsError::Op {
            op,
            dataset: dataset.to_owned(),
            source: std::io::Error::from_raw_os_error(errno),
        }
    }
}

/// Space accounting of one dataset, in bytes (ZFS's `used`, `referenced`
/// and `available` properties).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Space {
    /// Everything the dataset and its descendants and snapshots hold; for
    /// a clone, only what it wrote itself.
    pub used: u64,
    /// What the dataset's own files reference, shared blocks included.
    pub referenced: u64,
    /// What it may still write.
    pub available: u64,
}

/// The dataset operations the snapshotter uses. Filesystems are always
/// created with `mountpoint=legacy`: pvecri mounts them itself, the ZFS
/// services never do.
pub(crate) trait ZfsOps: Send + Sync {
    /// Whether a filesystem or snapshot exists.
    fn exists(&self, name: &str) -> bool;
    /// Creates an empty filesystem (`mountpoint=legacy`).
    fn create(&self, name: &str) -> Result<(), ZfsError>;
    /// Creates filesystem `name` as a clone of snapshot `origin`.
    fn clone_snapshot(&self, name: &str, origin: &str) -> Result<(), ZfsError>;
    /// Takes snapshot `name` (`fs@snap`).
    fn snapshot(&self, name: &str) -> Result<(), ZfsError>;
    /// Destroys a filesystem without snapshots, or a snapshot without
    /// clones; [`ZfsError::Busy`] otherwise.
    fn destroy(&self, name: &str) -> Result<(), ZfsError>;
    /// Renames a filesystem (its snapshots follow).
    fn rename(&self, from: &str, to: &str) -> Result<(), ZfsError>;
    /// Full names of the direct child filesystems of `name`.
    fn children(&self, name: &str) -> Result<Vec<String>, ZfsError>;
    /// Full names (`fs@snap`) of the snapshots of `name`.
    fn snapshots(&self, name: &str) -> Result<Vec<String>, ZfsError>;
    /// Space accounting of `name`.
    fn space(&self, name: &str) -> Result<Space, ZfsError>;
    /// The `mountpoint` property of `name`.
    fn mountpoint(&self, name: &str) -> Result<String, ZfsError>;
    /// Mounts filesystem `name` on the directory `target`.
    fn mount(&self, name: &str, target: &Path) -> Result<(), ZfsError>;
    /// Unmounts whatever is mounted on `target` (a dataset, and an
    /// idmapped mount of it); nothing mounted is fine.
    fn unmount(&self, target: &Path) -> Result<(), ZfsError>;
    /// Whether a filesystem is mounted on `target`.
    fn is_mounted(&self, target: &Path) -> bool;
}

/// Opens the node's ZFS through libzfs_core.
pub(crate) fn open() -> Result<Box<dyn ZfsOps>, ZfsError> {
    #[cfg(feature = "zfs")]
    {
        Ok(Box::new(Lzc::open()?))
    }
    #[cfg(not(feature = "zfs"))]
    {
        Err(ZfsError::NotBuilt)
    }
}

/// Whether this build has ZFS support.
pub(crate) const fn built_in() -> bool {
    cfg!(feature = "zfs")
}

/// Checks a configured parent dataset name (`pool/path`): components of
/// letters, digits and `-_.:`, no snapshot or bookmark part, not a pool
/// alone (pvecri never takes a whole pool) and short enough for what
/// pvecri appends.
pub(crate) fn check_dataset_name(name: &str) -> Result<(), ZfsError> {
    let bad = |why| {
        Err(ZfsError::BadName {
            dataset: name.to_owned(),
            why,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_PARENT_LEN {
        return bad("longer than 100 bytes");
    }
    if !name.contains('/') {
        return bad("a whole pool; name a dataset inside it (pool/path)");
    }
    for part in name.split('/') {
        if part.is_empty() {
            return bad("empty path component");
        }
        if part == "." || part == ".." {
            return bad("`.` or `..` component");
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            return bad("only letters, digits and -_.: are allowed");
        }
    }
    if !name.as_bytes()[0].is_ascii_alphabetic() {
        return bad("a pool name starts with a letter");
    }
    Ok(())
}

/// The pool a dataset lives in.
#[cfg_attr(not(feature = "zfs"), allow(dead_code))]
pub(crate) fn pool_of(name: &str) -> &str {
    name.split(['/', '@']).next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_names_are_checked() {
        assert!(check_dataset_name("rpool/data/pvecri").is_ok());
        assert!(check_dataset_name("tank/k8s:x_1.2-3").is_ok());
        for bad in [
            "",
            "rpool",
            "rpool/",
            "/rpool/data",
            "rpool//x",
            "rpool/../x",
            "rpool/x@snap",
            "rpool/x#b",
            "rpool/x y",
            "1pool/x",
            &format!("rpool/{}", "a".repeat(100)),
        ] {
            assert!(check_dataset_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn errors_name_the_dataset_and_spot_busy_and_missing() {
        let e = ZfsError::from_errno("destroy", "p/a", libc::EEXIST);
        assert!(matches!(e, ZfsError::Busy { .. }));
        assert!(e.to_string().contains("p/a"));
        let e = ZfsError::from_errno("create", "p/a", libc::ENOENT);
        assert!(matches!(e, ZfsError::Op { .. }));
        assert!(e.to_string().contains("zfs create p/a"));
        assert_eq!(pool_of("rpool/data@x"), "rpool");
        assert_eq!(pool_of("tank"), "tank");
    }
}
