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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use super::*;
    use crate::snapshot::test_support::{chain_id, is_root, names, Layer};
    use crate::snapshot::Usage;

    fn open() -> (tempfile::TempDir, OverlaySnapshotter) {
        let tmp = tempfile::tempdir().unwrap();
        let s = OverlaySnapshotter::open(tmp.path().join("snapshots/overlay")).unwrap();
        (tmp, s)
    }

    /// Detaches whatever is still mounted at the paths when a test ends,
    /// passing or not, so a failure leaves no mount behind in /tmp.
    struct Unmount(Vec<PathBuf>);

    impl Drop for Unmount {
        fn drop(&mut self) {
            for path in &self.0 {
                let _ = super::super::dir::detach_all(path);
            }
        }
    }

    fn base_layer(tmp: &Path) -> PathBuf {
        Layer::new()
            .dir("etc")
            .file("etc/os-release", b"ID=base\n")
            .dir("bin")
            .file("bin/sh", b"#!")
            .blob(tmp, "base.tar")
    }

    fn child_layer(tmp: &Path) -> PathBuf {
        Layer::new()
            .file("etc/os-release", b"ID=child\n")
            .file("new", b"n")
            .blob(tmp, "child.tar")
    }

    fn read(path: PathBuf) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn a_committed_layer_has_its_files_parent_and_short_link() {
        let (tmp, s) = open();
        let (a, b) = (chain_id('a'), chain_id('b'));
        s.commit_layer(&a, None, &base_layer(tmp.path())).unwrap();
        s.commit_layer(&b, Some(&a), &child_layer(tmp.path()))
            .unwrap();
        assert!(s.has_layer(&a) && s.has_layer(&b));
        assert_eq!(s.layers().unwrap(), [a.clone(), b.clone()]);

        // Each layer holds only its own files: the overlay stacks them.
        let dir_b = s.layer_dir(&b).unwrap();
        assert_eq!(names(&dir_b.join("fs")), ["etc", "new"]);
        assert_eq!(read(dir_b.join("parent")), a);
        assert!(!s.layer_dir(&a).unwrap().join("parent").exists());

        let short = read(dir_b.join("link"));
        assert_eq!(short, "b".repeat(SHORT_LEN));
        let link = s.links.join(&short);
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("../layers").join("b".repeat(64)).join("fs")
        );
        assert_eq!(read(link.join("new")), "n");

        // Lower dirs come topmost first, through the short links.
        assert_eq!(
            s.lower_dirs(&b).unwrap(),
            [
                s.links.join("b".repeat(SHORT_LEN)),
                s.links.join("a".repeat(SHORT_LEN))
            ]
        );
        assert_eq!(
            read_parent(&s.layer_dir(&b).unwrap()).unwrap(),
            Some(a.clone())
        );
        assert_eq!(read_parent(&s.layer_dir(&a).unwrap()).unwrap(), None);
    }

    #[test]
    fn committing_an_existing_layer_changes_nothing() {
        let (tmp, s) = open();
        let a = chain_id('a');
        s.commit_layer(&a, None, &base_layer(tmp.path())).unwrap();
        std::fs::write(tmp.path().join("junk"), b"not a tarball").unwrap();
        s.commit_layer(&a, None, &tmp.path().join("junk")).unwrap();
        assert_eq!(names(&s.layer_dir(&a).unwrap().join("fs")), ["bin", "etc"]);
    }

    #[test]
    fn a_missing_parent_or_a_bad_blob_leaves_nothing() {
        let (tmp, s) = open();
        let err = s
            .commit_layer(
                &chain_id('b'),
                Some(&chain_id('a')),
                &child_layer(tmp.path()),
            )
            .unwrap_err();
        assert!(
            matches!(err, SnapshotError::MissingParent { .. }),
            "{err:?}"
        );

        std::fs::write(tmp.path().join("junk"), vec![7u8; 4096]).unwrap();
        let err = s
            .commit_layer(&chain_id('a'), None, &tmp.path().join("junk"))
            .unwrap_err();
        assert!(matches!(err, SnapshotError::Unpack { .. }), "{err:?}");

        assert!(!s.has_layer(&chain_id('a')));
        assert!(names(s.layers_root()).is_empty());
        assert!(names(&s.links).is_empty());
        assert!(matches!(
            s.commit_layer("sha256:..", None, &child_layer(tmp.path())),
            Err(SnapshotError::BadId { .. })
        ));
    }

    #[test]
    fn leftovers_of_a_crash_are_cleared_on_open() {
        let (tmp, s) = open();
        s.commit_layer(&chain_id('a'), None, &base_layer(tmp.path()))
            .unwrap();
        let half = super::super::dir::temporary(s.layers_root(), &"c".repeat(64));
        std::fs::create_dir_all(half.join("fs/usr")).unwrap();
        assert!(!s.has_layer(&chain_id('c')));
        assert_eq!(s.layers().unwrap(), [chain_id('a')]);

        let reopened = OverlaySnapshotter::open(tmp.path().join("snapshots/overlay")).unwrap();
        assert!(!half.exists());
        assert_eq!(names(reopened.layers_root()), ["a".repeat(64)]);
        assert!(reopened.has_layer(&chain_id('a')));
    }

    #[test]
    fn removing_a_layer_takes_its_link_and_is_idempotent() {
        let (tmp, s) = open();
        let (a, b) = (chain_id('a'), chain_id('b'));
        s.commit_layer(&a, None, &base_layer(tmp.path())).unwrap();
        s.commit_layer(&b, Some(&a), &child_layer(tmp.path()))
            .unwrap();
        s.remove_layer(&b).unwrap();
        s.remove_layer(&b).unwrap();
        s.remove_layer(&chain_id('e')).unwrap();
        assert_eq!(s.layers().unwrap(), std::slice::from_ref(&a));
        assert_eq!(names(&s.links), ["a".repeat(SHORT_LEN)]);
        s.remove_layer(&a).unwrap();
        assert!(names(s.layers_root()).is_empty());
        assert!(names(&s.links).is_empty());
    }

    #[test]
    fn too_deep_an_image_fails_before_mounting() {
        let (tmp, s) = open();
        let blob = Layer::new().file("f", b"f").blob(tmp.path(), "f.tar");
        // Real chain IDs are hashes: their short links differ.
        let ids: Vec<String> = (0..120u32)
            .map(|n| {
                let hash = <sha2::Sha256 as sha2::Digest>::digest(n.to_le_bytes());
                format!("sha256:{}", hex::encode(hash))
            })
            .collect();
        for (i, id) in ids.iter().enumerate() {
            let parent = i.checked_sub(1).map(|p| ids[p].as_str());
            s.commit_layer(id, parent, &blob).unwrap();
        }
        // The short links keep the options well under the limit for all
        // but deep stacks, whose failure names the cause.
        let err = s
            .prepare_rootfs("deep", Some(ids.last().unwrap()), None)
            .unwrap_err();
        match err {
            SnapshotError::TooManyLayers {
                id,
                layers,
                max,
                len,
            } => {
                assert_eq!((id.as_str(), layers, max), ("deep", 120, MAX_MOUNT_DATA));
                assert!(len > MAX_MOUNT_DATA);
            }
            other => panic!("{other:?}"),
        }
        assert!(!is_mountpoint(&s.rootfs_root().join("deep/rootfs")).unwrap());
    }

    #[test]
    fn mountpoints_are_told_by_device() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(!is_mountpoint(tmp.path()).unwrap());
        assert!(!is_mountpoint(&tmp.path().join("missing")).unwrap());
        assert!(is_mountpoint(Path::new("/proc")).unwrap());
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        // mknod of the 0:0 character device needs root.
        if !is_root("whiteouts_become_overlay_whiteouts") {
            return;
        }
        let (tmp, s) = open();
        s.commit_layer(&chain_id('a'), None, &base_layer(tmp.path()))
            .unwrap();
        let blob = Layer::new()
            .whiteout("bin", "sh")
            .blob(tmp.path(), "wh.tar");
        s.commit_layer(&chain_id('b'), Some(&chain_id('a')), &blob)
            .unwrap();
        let wh = s.layer_dir(&chain_id('b')).unwrap().join("fs/bin/sh");
        let meta = std::fs::symlink_metadata(&wh).unwrap();
        assert!(meta.file_type().is_char_device());
        assert_eq!(meta.rdev(), 0);
    }

    #[test]
    fn a_root_filesystem_is_an_overlay_of_its_layers() {
        if !is_root("a_root_filesystem_is_an_overlay_of_its_layers") {
            return;
        }
        let (tmp, s) = open();
        let (a, b) = (chain_id('a'), chain_id('b'));
        s.commit_layer(&a, None, &base_layer(tmp.path())).unwrap();
        s.commit_layer(&b, Some(&a), &child_layer(tmp.path()))
            .unwrap();
        let dir = s.rootfs_root().join("c1");
        let _unmount = Unmount(vec![dir.join("rootfs")]);
        let rootfs = s.prepare_rootfs("c1", Some(&b), None).unwrap();
        assert_eq!(rootfs, dir.join("rootfs"));
        assert!(is_mountpoint(&rootfs).unwrap());
        assert_eq!(read(rootfs.join("etc/os-release")), "ID=child\n");
        assert_eq!(read(rootfs.join("bin/sh")), "#!");

        // Writes land in the container's upper dir, never in a layer.
        std::fs::write(rootfs.join("bin/sh"), b"mine").unwrap();
        assert_eq!(read(dir.join("upper/bin/sh")), "mine");
        assert_eq!(read(s.layer_dir(&a).unwrap().join("fs/bin/sh")), "#!");

        // The walk stops at the mount: only the upper dir's copy counts.
        let big = vec![1u8; 512 * 1024];
        std::fs::write(s.layer_dir(&a).unwrap().join("fs/big"), &big).unwrap();
        assert!(Usage::of(s.layers_root()).bytes >= big.len() as u64);
        assert!(Usage::of(s.rootfs_root()).bytes < big.len() as u64);

        // Mounted already: a no-op. After a reboot: mounted again, with
        // what the container wrote.
        assert_eq!(s.mount_rootfs("c1", Some(&b)).unwrap(), rootfs);
        umount2(&rootfs, MntFlags::MNT_DETACH).unwrap();
        assert!(!is_mountpoint(&rootfs).unwrap());
        assert_eq!(s.mount_rootfs("c1", Some(&b)).unwrap(), rootfs);
        assert!(is_mountpoint(&rootfs).unwrap());
        assert_eq!(read(rootfs.join("bin/sh")), "mine");

        s.remove_rootfs("c1").unwrap();
        assert!(!dir.exists());
        s.remove_rootfs("c1").unwrap();
        assert_eq!(read(s.layer_dir(&a).unwrap().join("fs/bin/sh")), "#!");
        assert!(s.has_layer(&b));
    }

    #[test]
    fn a_root_filesystem_without_layers_is_empty_and_writable() {
        if !is_root("a_root_filesystem_without_layers_is_empty_and_writable") {
            return;
        }
        let (_tmp, s) = open();
        let dir = s.rootfs_root().join("bare");
        let _unmount = Unmount(vec![dir.join("rootfs")]);
        let rootfs = s.prepare_rootfs("bare", None, None).unwrap();
        assert!(is_mountpoint(&rootfs).unwrap());
        assert!(names(&rootfs).is_empty());
        std::fs::write(rootfs.join("f"), b"x").unwrap();
        assert!(names(&s.empty).is_empty());
        s.remove_rootfs("bare").unwrap();
        assert!(names(s.rootfs_root()).is_empty());
    }

    #[test]
    fn removal_detaches_layer_clones_a_crash_left_mounted() {
        if !is_root("removal_detaches_layer_clones_a_crash_left_mounted") {
            return;
        }
        let (tmp, s) = open();
        let a = chain_id('a');
        s.commit_layer(&a, None, &base_layer(tmp.path())).unwrap();
        // What a crash between staging and unstaging leaves: a clone of a
        // layer mounted under m/ (a bind mount stands in for the idmapped
        // one) and an empty staging slot.
        let dir = s.rootfs_root().join("c1");
        let clone = dir.join("m/0");
        std::fs::create_dir_all(&clone).unwrap();
        std::fs::create_dir_all(dir.join("m/1")).unwrap();
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        let _unmount = Unmount(vec![clone.clone()]);
        mount(
            Some(&s.layer_dir(&a).unwrap().join("fs")),
            &clone,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        assert_eq!(read(clone.join("bin/sh")), "#!");

        s.remove_rootfs("c1").unwrap();
        assert!(!dir.exists());
        // Deleting the container's tree never reached into the layer.
        assert_eq!(read(s.layer_dir(&a).unwrap().join("fs/bin/sh")), "#!");
    }
}
