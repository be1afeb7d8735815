//! The overlayfs backend.
//!
//! Layout under its root:
//! - `layers/<hex>/fs`: one unpacked layer (overlay-format whiteouts),
//!   `layers/<hex>/parent`: the parent chain ID, `layers/<hex>/link`: its short name;
//! - `l/<short>`: a short symlink to `layers/<hex>/fs`, so that the
//!   `lowerdir=` option of a deep image stays under the kernel's one-page
//!   limit on mount data;
//! - `containers/<id>/{upper,work,rootfs}`: a container's writable layer
//!   and its mount point;
//! - `containers/<id>/m/<n>`: for a `hostUsers: false` pod, idmapped
//!   clones of the lower layers, there only while the overlay is mounted
//!   (overlayfs keeps private references to its layers, so the clones are
//!   detached right after). overlayfs itself cannot be idmapped, so the
//!   lowers are, and the upper dir holds host IDs: its root is chowned to
//!   the pod root's, and what the pod writes is stored as its host IDs.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::error::io;
use super::{container_dir_name, id_hex, Idmap, SnapshotError, Snapshotter};
use crate::snapshot::unpack::{unpack_layer, WhiteoutMode};

/// The kernel copies mount data into one page, NUL included.
const MAX_MOUNT_DATA: usize = 4095;
const SHORT_LEN: usize = 16;

pub struct OverlaySnapshotter {
    root: PathBuf,
    layers: PathBuf,
    links: PathBuf,
    containers: PathBuf,
    empty: PathBuf,
}

impl OverlaySnapshotter {
    pub fn open(root: PathBuf) -> Result<Self, SnapshotError> {
        let s = Self {
            layers: root.join("layers"),
            links: root.join("l"),
            containers: root.join("containers"),
            empty: root.join("empty"),
            root,
        };
        for dir in [&s.root, &s.layers, &s.links, &s.containers, &s.empty] {
            std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        }
        super::dir::set_mode(&s.empty, 0o755)?;
        super::dir::open_path_to_containers(&s.root, &s.containers)?;
        super::dir::remove_temporaries(&s.layers)?;
        Ok(s)
    }

    fn layer_dir(&self, chain_id: &str) -> Result<PathBuf, SnapshotError> {
        Ok(self.layers.join(id_hex(chain_id)?))
    }

    /// Lower dirs for `top`, topmost first, as short-link paths.
    fn lower_dirs(&self, top: &str) -> Result<Vec<PathBuf>, SnapshotError> {
        let mut out = Vec::new();
        let mut next = Some(top.to_owned());
        while let Some(chain_id) = next {
            let dir = self.layer_dir(&chain_id)?;
            let short =
                std::fs::read_to_string(dir.join("link")).map_err(io("read", dir.join("link")))?;
            out.push(self.links.join(short.trim()));
            next = read_parent(&dir)?;
        }
        Ok(out)
    }

    fn mount_overlay(
        &self,
        id: &str,
        top: Option<&str>,
        dir: &Path,
        idmap: Option<&Idmap>,
    ) -> Result<PathBuf, SnapshotError> {
        let mut lowers = match top {
            Some(top) => self.lower_dirs(top)?,
            None => vec![self.empty.clone()],
        };
        let Some(map) = idmap else {
            return self.mount_lowers(id, &lowers, dir);
        };
        let upper = dir.join("upper");
        nix::unistd::chown(
            &upper,
            Some(nix::unistd::Uid::from_raw(map.uid)),
            Some(nix::unistd::Gid::from_raw(map.gid)),
        )
        .map_err(|e| io("chown", &upper)(e.into()))?;
        let result = stage_idmapped(dir, &mut lowers, map)
            .and_then(|()| self.mount_lowers(id, &lowers, dir));
        let unstaged = unstage(dir);
        let target = result?;
        if let Err(e) = unstaged {
            let _ = umount2(&target, MntFlags::MNT_DETACH);
            return Err(e);
        }
        Ok(target)
    }

    fn mount_lowers(
        &self,
        id: &str,
        lowers: &[PathBuf],
        dir: &Path,
    ) -> Result<PathBuf, SnapshotError> {
        let lowerdir = lowers
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let options = format!(
            "lowerdir={lowerdir},upperdir={},workdir={}",
            dir.join("upper").display(),
            dir.join("work").display()
        );
        if options.len() > MAX_MOUNT_DATA {
            return Err(SnapshotError::TooManyLayers {
                id: id.to_owned(),
                len: options.len(),
                max: MAX_MOUNT_DATA,
                layers: lowers.len(),
            });
        }
        let target = dir.join("rootfs");
        mount(
            Some("overlay"),
            &target,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(|source| SnapshotError::Mount {
            target: target.clone(),
            options,
            source,
        })?;
        Ok(target)
    }
}

impl Snapshotter for OverlaySnapshotter {
    fn has_layer(&self, chain_id: &str) -> bool {
        self.layer_dir(chain_id)
            .map(|d| d.join("fs").is_dir())
            .unwrap_or(false)
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
        if let Some(parent) = parent {
            if !self.has_layer(parent) {
                return Err(SnapshotError::MissingParent {
                    chain_id: chain_id.to_owned(),
                    parent: parent.to_owned(),
                });
            }
        }
        let hex = id_hex(chain_id)?;
        let short = &hex[..SHORT_LEN];
        let tmp = super::dir::temporary(&self.layers, hex);
        let fs = tmp.join("fs");
        std::fs::create_dir_all(&fs).map_err(io("create", &fs))?;
        let result = (|| {
            super::dir::set_mode(&fs, 0o755)?;
            unpack_layer(blob, &fs, WhiteoutMode::Overlay).map_err(|source| {
                SnapshotError::Unpack {
                    chain_id: chain_id.to_owned(),
                    source,
                }
            })?;
            if let Some(parent) = parent {
                std::fs::write(tmp.join("parent"), parent)
                    .map_err(io("write", tmp.join("parent")))?;
            }
            std::fs::write(tmp.join("link"), short).map_err(io("write", tmp.join("link")))?;
            let link = self.links.join(short);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(Path::new("../layers").join(hex).join("fs"), &link)
                .map_err(io("symlink", &link))?;
            super::dir::commit(&tmp, &self.layers.join(hex))
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }

    fn remove_layer(&self, chain_id: &str) -> Result<(), SnapshotError> {
        let dir = self.layer_dir(chain_id)?;
        if let Ok(short) = std::fs::read_to_string(dir.join("link")) {
            let _ = std::fs::remove_file(self.links.join(short.trim()));
        }
        super::dir::remove_committed(&self.layers, &dir)
    }

    fn layers(&self) -> Result<Vec<String>, SnapshotError> {
        super::dir::committed_ids(&self.layers)
    }

    fn prepare_rootfs(
        &self,
        id: &str,
        top: Option<&str>,
        idmap: Option<&Idmap>,
    ) -> Result<PathBuf, SnapshotError> {
        let dir = self.containers.join(container_dir_name(id)?);
        for sub in ["upper", "work", "rootfs"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(io("create", &p))?;
            // The upper dir's mode shows through as the root's when no layer
            // sets it: it must be traversable by non-root workloads.
            super::dir::set_mode(&p, 0o755)?;
        }
        if idmap.is_some() {
            super::dir::set_mode(&dir, 0o711)?;
        }
        self.mount_overlay(id, top, &dir, idmap)
    }

    fn mount_rootfs(&self, id: &str, top: Option<&str>) -> Result<PathBuf, SnapshotError> {
        let dir = self.containers.join(container_dir_name(id)?);
        let target = dir.join("rootfs");
        if is_mountpoint(&target)? {
            return Ok(target);
        }
        self.mount_overlay(id, top, &dir, None)
    }

    fn remove_rootfs(&self, id: &str) -> Result<(), SnapshotError> {
        let dir = self.containers.join(container_dir_name(id)?);
        let target = dir.join("rootfs");
        if target.exists() && is_mountpoint(&target)? {
            umount2(&target, MntFlags::MNT_DETACH).map_err(|source| SnapshotError::Unmount {
                target: target.clone(),
                source,
            })?;
        }
        // Idmapped layer clones a crash left behind: unmounted first, or
        // removing the tree would delete the shared layers through them.
        unstage(&dir)?;
        super::dir::remove_tree(&dir)
    }

    fn layers_root(&self) -> &Path {
        &self.layers
    }

    fn rootfs_root(&self) -> &Path {
        &self.containers
    }
}

/// Replaces each lower dir with an idmapped clone of it at `dir/m/<n>`.
fn stage_idmapped(dir: &Path, lowers: &mut [PathBuf], map: &Idmap) -> Result<(), SnapshotError> {
    let userns = std::fs::File::open(&map.userns).map_err(io("open", &map.userns))?;
    let staging = dir.join("m");
    std::fs::create_dir_all(&staging).map_err(io("create", &staging))?;
    for (n, lower) in lowers.iter_mut().enumerate() {
        let target = staging.join(n.to_string());
        std::fs::create_dir(&target).map_err(io("create", &target))?;
        crate::sandbox::idmap::IdmappedTree::new(lower, &userns, false)
            .and_then(|tree| tree.attach(&target))
            .map_err(|source| SnapshotError::Idmap { source })?;
        *lower = target;
    }
    Ok(())
}

/// Detaches and removes the idmapped clones under `dir/m`. Only empty
/// directories are removed: a clone that is still mounted fails the
/// removal instead of exposing a shared layer to deletion.
fn unstage(dir: &Path) -> Result<(), SnapshotError> {
    let staging = dir.join("m");
    let entries = match std::fs::read_dir(&staging) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("read", &staging)(e)),
    };
    for entry in entries {
        let path = entry.map_err(io("read", &staging))?.path();
        super::dir::detach_all(&path)?;
        std::fs::remove_dir(&path).map_err(io("remove", &path))?;
    }
    std::fs::remove_dir(&staging).map_err(io("remove", &staging))
}

fn read_parent(layer_dir: &Path) -> Result<Option<String>, SnapshotError> {
    match std::fs::read_to_string(layer_dir.join("parent")) {
        Ok(p) => Ok(Some(p.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", layer_dir.join("parent"))(e)),
    }
}

/// A directory is a mount point when it sits on another device than its
/// parent (overlay mounts always get their own device number).
pub(crate) fn is_mountpoint(path: &Path) -> Result<bool, SnapshotError> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io("stat", path)(e)),
    };
    let parent = path.parent().unwrap_or(Path::new("/"));
    let parent_meta = std::fs::metadata(parent).map_err(io("stat", parent))?;
    Ok(meta.dev() != parent_meta.dev())
}
