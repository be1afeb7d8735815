//! ID-mapped mounts (`mount_setattr(2)` with `MOUNT_ATTR_IDMAP`): how a
//! `hostUsers: false` pod sees files owned by its own root.
//!
//! Image layers and volumes are stored with the IDs the image or kubelet
//! gave them (root is 0). Seen through a mount idmapped with the pod's user
//! namespace, a file owned by 0 shows as the pod root's host ID, so root in
//! the pod owns it, and what the pod writes lands on disk with the
//! unshifted IDs. Nothing is chowned, and layers stay shared between pods
//! with different mappings.
//!
//! overlayfs mounts themselves cannot be idmapped (EINVAL); their lower
//! layers can, which is how the overlay backend uses this module.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
#[error("idmapped mount of {source_path} ({step})")]
pub struct IdmapError {
    pub source_path: PathBuf,
    pub step: &'static str,
    #[source]
    pub source: io::Error,
}

/// A detached, idmapped clone of a directory's mount, not yet attached
/// anywhere; dropping it without [`Self::attach`] discards it.
pub(crate) struct IdmappedTree {
    fd: OwnedFd,
    source: PathBuf,
}

impl IdmappedTree {
    /// Clones the mount at `source` (with its submounts when `recursive`)
    /// and idmaps the clone with the user namespace `userns` (an nsfs file).
    pub(crate) fn new(source: &Path, userns: &File, recursive: bool) -> Result<Self, IdmapError> {
        let fail = |step| {
            let source_path = source.to_owned();
            move |source| IdmapError {
                source_path,
                step,
                source,
            }
        };
        let fd = open_tree(source, recursive)?;
        let attr = libc::mount_attr {
            attr_set: libc::MOUNT_ATTR_IDMAP,
            attr_clr: 0,
            propagation: 0,
            userns_fd: userns.as_raw_fd() as u64,
        };
        let mut at = libc::AT_EMPTY_PATH;
        if recursive {
            at |= libc::AT_RECURSIVE;
        }
        // SAFETY: fd is a live detached mount; the empty path is
        // NUL-terminated; attr is a valid mount_attr of the size passed.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                fd.as_raw_fd(),
                c"".as_ptr(),
                at,
                &attr as *const libc::mount_attr,
                std::mem::size_of::<libc::mount_attr>(),
            )
        };
        if ret < 0 {
            return Err(fail("mount_setattr")(io::Error::last_os_error()));
        }
        Ok(Self {
            fd,
            source: source.to_owned(),
        })
    }

    /// A clone of the mount at `source` without an idmap, for filesystems
    /// that refuse one.
    pub(crate) fn plain(source: &Path, recursive: bool) -> Result<Self, IdmapError> {
        Ok(Self {
            fd: open_tree(source, recursive)?,
            source: source.to_owned(),
        })
    }

    /// Attaches the clone at `target` (an existing directory).
    pub(crate) fn attach(self, target: &Path) -> Result<(), IdmapError> {
        let fail = |step| {
            let source_path = self.source.clone();
            move |source| IdmapError {
                source_path,
                step,
                source,
            }
        };
        let target = cstring(target).map_err(fail("target path"))?;
        // SAFETY: both paths are NUL-terminated and outlive the call; fd
        // is a live detached mount.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                self.fd.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                libc::MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        if ret < 0 {
            return Err(fail("move_mount")(io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// open_tree(2) with OPEN_TREE_CLONE: a detached copy of the mount at
/// `source`.
fn open_tree(source: &Path, recursive: bool) -> Result<OwnedFd, IdmapError> {
    let fail = |source_path: &Path, e| IdmapError {
        source_path: source_path.to_owned(),
        step: "open_tree",
        source: e,
    };
    let path = cstring(source).map_err(|e| fail(source, e))?;
    let mut flags = libc::OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: path is NUL-terminated and outlives the call; open_tree
    // takes no other pointers.
    let raw = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    if raw < 0 {
        return Err(fail(source, io::Error::last_os_error()));
    }
    // SAFETY: open_tree returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw as i32) })
}

fn cstring(path: &Path) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Whether directories on the filesystem of `path` can be idmapped with
/// `userns`: the probe behind advertising user namespaces.
pub(crate) fn supported(path: &Path, userns: &File) -> Result<(), IdmapError> {
    IdmappedTree::new(path, userns, false).map(drop)
}

/// Whether the kernel has mount_setattr(2) (5.12 and later), which
/// recursive read-only volumes need.
pub(crate) fn mount_setattr_available() -> bool {
    // SAFETY: a bad fd with a null attr pointer and size 0: the kernel
    // rejects the call without touching memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            c"".as_ptr(),
            0,
            std::ptr::null::<libc::mount_attr>(),
            0usize,
        )
    };
    ret == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS)
}
