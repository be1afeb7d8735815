//! Volumes of a `hostUsers: false` pod: each bind-mount source is cloned,
//! idmapped with the pod's user namespace where its filesystem allows
//! (`crate::sandbox::idmap`), and attached at `R/staging/<id>/<n>`;
//! liblxc then binds from there.
//!
//! Two reasons: files owned by host root show as the pod root's (as they
//! would without a user namespace), and liblxc opens the sources as the
//! pod's root, an unprivileged host ID that cannot walk private host
//! paths such as the kubelet's pod directories, while it can walk the
//! staging dir (mode 0711). Not under the container's run dir: liblxc binds
//! that into the container non-recursively, which the kernel refuses in a
//! user namespace while it has mounts beneath it.
//!
//! The staged mounts are only needed while liblxc sets the container up;
//! [`unstage`] detaches them once it has. Only [`unstage`] removes the
//! staging dir: removing it as a tree while a volume is still attached
//! would delete the volume's files.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::lxc_config::BindMount;
use crate::sandbox::idmap::IdmappedTree;

#[derive(Debug, Error)]
pub(crate) enum StagingError {
    #[error("staging volume {source_path} at {target}: {step} failed")]
    Io {
        source_path: PathBuf,
        target: PathBuf,
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Idmap(#[from] crate::sandbox::idmap::IdmapError),
}

/// Stages every mount's source and points the mount at its staged copy.
/// Sources on filesystems that cannot be idmapped are staged as plain
/// clones (their files keep showing as the host's IDs).
pub(crate) fn stage(
    dir: &Path,
    mounts: &mut [BindMount],
    userns: &File,
) -> Result<(), StagingError> {
    for (n, m) in mounts.iter_mut().enumerate() {
        let target = dir.join(n.to_string());
        let fail = |step| {
            let (source_path, target) = (m.source.clone(), target.clone());
            move |source| StagingError::Io {
                source_path,
                target,
                step,
                source,
            }
        };
        std::fs::create_dir_all(dir).map_err(fail("creating the staging dir"))?;
        // Traversable by the pod's root.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .map_err(fail("opening the staging dir"))?;
        if m.source.is_dir() {
            std::fs::create_dir(&target).map_err(fail("creating the mount point"))?;
        } else {
            File::create(&target).map_err(fail("creating the mount point"))?;
        }
        let tree = match IdmappedTree::new(&m.source, userns, true) {
            Ok(tree) => tree,
            Err(e) if e.source.raw_os_error() == Some(libc::EINVAL) => {
                tracing::warn!(source = %m.source.display(), "the volume's filesystem cannot be idmapped; its files keep their host IDs");
                IdmappedTree::plain(&m.source, true)?
            }
            Err(e) => return Err(e.into()),
        };
        tree.attach(&target)?;
        m.source = target;
    }
    Ok(())
}

/// Detaches and removes what [`stage`] made in `dir`; removes only empty
/// directories and mount-point files, never a tree. A missing `dir` is
/// fine.
pub(crate) fn unstage(dir: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        loop {
            match nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
                Ok(()) => continue,
                Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => break,
                Err(e) => return Err(e.into()),
            }
        }
        if path.is_dir() {
            std::fs::remove_dir(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    std::fs::remove_dir(dir)
}
