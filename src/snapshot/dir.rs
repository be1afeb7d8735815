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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::snapshot::test_support::{chain_id, is_root, names, Layer};
    use crate::snapshot::Usage;

    fn open() -> (tempfile::TempDir, DirSnapshotter) {
        let tmp = tempfile::tempdir().unwrap();
        let s = DirSnapshotter::open(tmp.path().join("snapshots/dir")).unwrap();
        (tmp, s)
    }

    /// A base layer and a child that changes a file, deletes one and adds
    /// one; returns their chain IDs.
    fn two_layers(tmp: &Path, s: &DirSnapshotter) -> (String, String) {
        let base = Layer::new()
            .dir("etc")
            .file("etc/os-release", b"ID=base\n")
            .file("etc/doomed", b"x")
            .dir("bin")
            .file("bin/sh", b"#!")
            .blob(tmp, "base.tar");
        let child = Layer::new()
            .file("etc/os-release", b"ID=child\n")
            .whiteout("etc", "doomed")
            .file("new", b"n")
            .blob(tmp, "child.tar");
        let (a, b) = (chain_id('a'), chain_id('b'));
        s.commit_layer(&a, None, &base).unwrap();
        s.commit_layer(&b, Some(&a), &child).unwrap();
        (a, b)
    }

    fn read(path: PathBuf) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn open_makes_the_container_path_traversable_only() {
        let (tmp, s) = open();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&tmp.path().join("snapshots")), 0o711);
        assert_eq!(mode(&tmp.path().join("snapshots/dir")), 0o711);
        assert_eq!(mode(s.rootfs_root()), 0o711);
        assert_eq!(s.layers_root(), tmp.path().join("snapshots/dir/layers"));
        assert!(s.layers().unwrap().is_empty());
    }

    #[test]
    fn a_child_layer_is_a_full_tree_with_its_changes_applied() {
        let (tmp, s) = open();
        let (a, b) = two_layers(tmp.path(), &s);
        assert!(s.has_layer(&a) && s.has_layer(&b));
        assert_eq!(s.layers().unwrap(), [a.clone(), b.clone()]);

        let fs_b = s.fs_of(&b).unwrap();
        assert_eq!(read(fs_b.join("etc/os-release")), "ID=child\n");
        assert!(!fs_b.join("etc/doomed").exists());
        assert!(!fs_b.join("etc/.wh.doomed").exists());
        assert_eq!(read(fs_b.join("bin/sh")), "#!");
        assert_eq!(read(fs_b.join("new")), "n");

        // The parent is copied, not shared: it keeps its own content.
        let fs_a = s.fs_of(&a).unwrap();
        assert_eq!(read(fs_a.join("etc/os-release")), "ID=base\n");
        assert!(fs_a.join("etc/doomed").exists());
        assert!(!fs_a.join("new").exists());
        assert_eq!(
            std::fs::metadata(&fs_a).unwrap().permissions().mode() & 0o777,
            0o755
        );
        // Only committed layers are left next to each other.
        assert_eq!(names(s.layers_root()), ["a".repeat(64), "b".repeat(64)]);
    }

    #[test]
    fn committing_an_existing_layer_changes_nothing() {
        let (tmp, s) = open();
        let (a, _) = two_layers(tmp.path(), &s);
        std::fs::write(s.fs_of(&a).unwrap().join("marker"), b"kept").unwrap();
        let other = Layer::new()
            .file("other", b"o")
            .blob(tmp.path(), "other.tar");
        s.commit_layer(&a, None, &other).unwrap();
        // Not even a corrupt blob is read for a committed layer.
        std::fs::write(tmp.path().join("junk"), b"not a tarball").unwrap();
        s.commit_layer(&a, None, &tmp.path().join("junk")).unwrap();
        let fs_a = s.fs_of(&a).unwrap();
        assert_eq!(read(fs_a.join("marker")), "kept");
        assert!(!fs_a.join("other").exists());
    }

    #[test]
    fn a_missing_parent_is_refused_and_leaves_nothing() {
        let (tmp, s) = open();
        let blob = Layer::new().file("f", b"f").blob(tmp.path(), "l.tar");
        let err = s
            .commit_layer(&chain_id('b'), Some(&chain_id('a')), &blob)
            .unwrap_err();
        assert!(
            matches!(&err, SnapshotError::MissingParent { parent, .. } if *parent == chain_id('a')),
            "{err:?}"
        );
        assert!(!s.has_layer(&chain_id('b')));
        assert!(names(s.layers_root()).is_empty());
    }

    #[test]
    fn a_failed_unpack_leaves_nothing() {
        let (tmp, s) = open();
        std::fs::write(tmp.path().join("junk"), vec![7u8; 4096]).unwrap();
        let err = s
            .commit_layer(&chain_id('a'), None, &tmp.path().join("junk"))
            .unwrap_err();
        assert!(matches!(err, SnapshotError::Unpack { .. }), "{err:?}");
        assert!(!s.has_layer(&chain_id('a')));
        assert!(s.layers().unwrap().is_empty());
        assert!(names(s.layers_root()).is_empty());
    }

    #[test]
    fn ids_that_are_not_safe_names_are_refused() {
        let (tmp, s) = open();
        let blob = Layer::new().file("f", b"f").blob(tmp.path(), "l.tar");
        for bad in ["sha256:../../etc", "", &"A".repeat(64)] {
            assert!(!s.has_layer(bad));
            assert!(matches!(
                s.commit_layer(bad, None, &blob),
                Err(SnapshotError::BadId { .. })
            ));
            assert!(matches!(
                s.remove_layer(bad),
                Err(SnapshotError::BadId { .. })
            ));
        }
        for bad in ["..", "a/b", ""] {
            assert!(matches!(
                s.prepare_rootfs(bad, None, None),
                Err(SnapshotError::BadId { .. })
            ));
            assert!(matches!(
                s.remove_rootfs(bad),
                Err(SnapshotError::BadId { .. })
            ));
        }
        assert!(names(s.layers_root()).is_empty());
        assert!(names(s.rootfs_root()).is_empty());
    }

    #[test]
    fn leftovers_of_a_crash_are_ignored_then_cleared_on_open() {
        let (tmp, s) = open();
        let (a, _) = two_layers(tmp.path(), &s);
        // A crash mid-unpack and one mid-removal, as `temporary` names them.
        let hex = "c".repeat(64);
        let unpacking = temporary(s.layers_root(), &hex);
        std::fs::create_dir_all(unpacking.join("fs/etc")).unwrap();
        std::fs::write(unpacking.join("fs/etc/half"), b"").unwrap();
        let removing = temporary(s.layers_root(), &format!("del-{}", "a".repeat(64)));
        std::fs::create_dir_all(removing.join("fs")).unwrap();

        // Not layers, and they do not block committing the same layer.
        assert!(!s.has_layer(&chain_id('c')));
        assert_eq!(s.layers().unwrap().len(), 2);
        let blob = Layer::new().file("f", b"f").blob(tmp.path(), "c.tar");
        s.commit_layer(&chain_id('c'), None, &blob).unwrap();
        assert!(s.has_layer(&chain_id('c')));
        assert!(unpacking.exists());

        let reopened = DirSnapshotter::open(tmp.path().join("snapshots/dir")).unwrap();
        assert!(!unpacking.exists() && !removing.exists());
        assert_eq!(
            names(reopened.layers_root()),
            ["a".repeat(64), "b".repeat(64), "c".repeat(64)]
        );
        assert!(reopened.has_layer(&a));
    }

    #[test]
    fn removing_layers_is_idempotent() {
        let (tmp, s) = open();
        let (a, b) = two_layers(tmp.path(), &s);
        s.remove_layer(&b).unwrap();
        s.remove_layer(&b).unwrap();
        s.remove_layer(&chain_id('f')).unwrap();
        assert!(!s.has_layer(&b));
        assert_eq!(s.layers().unwrap(), std::slice::from_ref(&a));
        // The parent is a tree of its own, whole after its child is gone.
        assert_eq!(read(s.fs_of(&a).unwrap().join("bin/sh")), "#!");
        s.remove_layer(&a).unwrap();
        assert!(names(s.layers_root()).is_empty());
    }

    #[test]
    fn usage_of_layers_follows_commit_and_removal() {
        let (tmp, s) = open();
        let empty = Usage::of(s.layers_root());
        let blob = Layer::new()
            .file("big", &vec![1u8; 256 * 1024])
            .blob(tmp.path(), "big.tar");
        s.commit_layer(&chain_id('a'), None, &blob).unwrap();
        let full = Usage::of(s.layers_root());
        assert!(full.bytes >= empty.bytes + 256 * 1024, "{empty:?} {full:?}");
        // layers, <hex>, fs, big
        assert_eq!(full.inodes, empty.inodes + 3);
        s.remove_layer(&chain_id('a')).unwrap();
        // A directory keeps blocks it once grew to on some filesystems, so
        // only the inodes are back exactly.
        let after = Usage::of(s.layers_root());
        assert_eq!(after.inodes, empty.inodes);
        assert!(after.bytes < 256 * 1024, "{after:?}");
    }

    #[test]
    fn a_root_filesystem_is_a_private_copy_of_its_top_layer() {
        // Detaching mounts on the root filesystem (umount2) needs root.
        if !is_root("a_root_filesystem_is_a_private_copy_of_its_top_layer") {
            return;
        }
        let (tmp, s) = open();
        let (a, b) = two_layers(tmp.path(), &s);
        let rootfs = s.prepare_rootfs("c1", Some(&b), None).unwrap();
        assert_eq!(rootfs, s.rootfs_root().join("c1/rootfs"));
        assert_eq!(read(rootfs.join("etc/os-release")), "ID=child\n");
        assert!(!rootfs.join("etc/doomed").exists());

        // Writes stay in the container; layers going away do not touch it.
        std::fs::write(rootfs.join("etc/os-release"), b"ID=mine\n").unwrap();
        assert_eq!(
            read(s.fs_of(&b).unwrap().join("etc/os-release")),
            "ID=child\n"
        );
        s.remove_layer(&b).unwrap();
        s.remove_layer(&a).unwrap();
        assert_eq!(read(rootfs.join("bin/sh")), "#!");

        // After a restart the existing copy is used as it is.
        assert_eq!(s.mount_rootfs("c1", Some(&b)).unwrap(), rootfs);
        assert_eq!(read(rootfs.join("etc/os-release")), "ID=mine\n");

        s.remove_rootfs("c1").unwrap();
        assert!(!s.rootfs_root().join("c1").exists());
        s.remove_rootfs("c1").unwrap();
        s.remove_rootfs("never-made").unwrap();
    }

    #[test]
    fn preparing_again_starts_from_a_fresh_copy() {
        if !is_root("preparing_again_starts_from_a_fresh_copy") {
            return;
        }
        let (tmp, s) = open();
        let (a, _) = two_layers(tmp.path(), &s);
        let rootfs = s.prepare_rootfs("c1", Some(&a), None).unwrap();
        std::fs::write(rootfs.join("stale"), b"").unwrap();
        let again = s.prepare_rootfs("c1", Some(&a), None).unwrap();
        assert_eq!(again, rootfs);
        assert!(!rootfs.join("stale").exists());
        assert!(rootfs.join("etc/doomed").exists());
    }

    #[test]
    fn a_root_filesystem_without_layers_is_an_empty_directory() {
        if !is_root("a_root_filesystem_without_layers_is_an_empty_directory") {
            return;
        }
        let (_tmp, s) = open();
        let rootfs = s.prepare_rootfs("bare", None, None).unwrap();
        assert!(names(&rootfs).is_empty());
        assert_eq!(
            std::fs::metadata(&rootfs).unwrap().permissions().mode() & 0o777,
            0o755
        );
        // A root filesystem that vanished (a crash mid-removal) is remade.
        std::fs::remove_dir(&rootfs).unwrap();
        assert_eq!(s.mount_rootfs("bare", None).unwrap(), rootfs);
        assert!(rootfs.is_dir());
        let usage = Usage::of(s.rootfs_root());
        assert_eq!(usage.inodes, 3); // containers, bare, rootfs
    }
}
