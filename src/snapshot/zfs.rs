//! The ZFS backend: layers as datasets and snapshots, container roots as
//! clones, all under one configured parent dataset.
//!
//! Datasets (every one `mountpoint=legacy`, mounted only by pvecri):
//! - `<parent>/layers/<hex>` with snapshot `@layer`: one committed layer,
//!   cloned from its parent layer's snapshot and unpacked once, so images
//!   share layers as they do on overlayfs;
//! - `<parent>/layers/tmp-<hex>-<pid>-<n>`: a layer being unpacked; it is
//!   renamed to `<hex>` only after its snapshot is taken, so a crash leaves
//!   only `tmp-` datasets, which [`ZfsSnapshotter::open`] destroys;
//! - `<parent>/containers/<id>`: a container's root, a clone of its top
//!   layer's snapshot, mounted on `containers/<id>/rootfs` under the
//!   backend's directory (the same layout as the other backends, which
//!   the runtime's crash recovery reads).
//!
//! Nothing outside `<parent>` is created, mounted or destroyed.

use std::path::{Path, PathBuf};

use super::dir::{open_path_to_containers, remove_tree, set_mode};
use super::error::io;
use super::{container_dir_name, id_hex, Idmap, SnapshotError, Snapshotter, Usage};
use crate::snapshot::unpack::{unpack_layer, WhiteoutMode};
use crate::zfs::{ZfsError, ZfsOps};

const LAYER_SNAPSHOT: &str = "layer";
const TMP_PREFIX: &str = "tmp-";

pub struct ZfsSnapshotter {
    zfs: Box<dyn ZfsOps>,
    parent: String,
    layers: PathBuf,
    containers: PathBuf,
    /// Mount points of layers being unpacked.
    staging: PathBuf,
}

fn zfs_err(source: ZfsError) -> SnapshotError {
    SnapshotError::Zfs { source }
}

impl ZfsSnapshotter {
    /// Opens the backend on `parent` (created if missing; its own parent
    /// must exist) with its directories under `root`, and removes what an
    /// interrupted unpack or container creation left.
    pub(crate) fn open(
        root: PathBuf,
        parent: &str,
        zfs: Box<dyn ZfsOps>,
    ) -> Result<Self, SnapshotError> {
        crate::zfs::check_dataset_name(parent).map_err(zfs_err)?;
        let s = Self {
            zfs,
            parent: parent.to_owned(),
            layers: root.join("layers"),
            containers: root.join("containers"),
            staging: root.join("staging"),
        };
        for dir in [&root, &s.layers, &s.containers, &s.staging] {
            std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        }
        open_path_to_containers(&root, &s.containers)?;
        for ds in [s.parent.clone(), s.layers_ds(), s.containers_ds()] {
            if !s.zfs.exists(&ds) {
                s.zfs.create(&ds).map_err(zfs_err)?;
            }
        }
        s.remove_partial_layers()?;
        s.expose_container_datasets()?;
        Ok(s)
    }

    fn layers_ds(&self) -> String {
        format!("{}/layers", self.parent)
    }

    fn containers_ds(&self) -> String {
        format!("{}/containers", self.parent)
    }

    fn layer_ds(&self, chain_id: &str) -> Result<String, SnapshotError> {
        Ok(format!("{}/{}", self.layers_ds(), id_hex(chain_id)?))
    }

    fn layer_snapshot(&self, chain_id: &str) -> Result<String, SnapshotError> {
        Ok(format!("{}@{LAYER_SNAPSHOT}", self.layer_ds(chain_id)?))
    }

    fn container_ds(&self, id: &str) -> Result<String, SnapshotError> {
        Ok(format!(
            "{}/{}",
            self.containers_ds(),
            container_dir_name(id)?
        ))
    }

    /// Destroys a filesystem and its snapshots; a missing one is fine.
    fn destroy_tree(&self, ds: &str) -> Result<(), SnapshotError> {
        if !self.zfs.exists(ds) {
            return Ok(());
        }
        for snap in self.zfs.snapshots(ds).map_err(zfs_err)? {
            self.zfs.destroy(&snap).map_err(zfs_err)?;
        }
        self.zfs.destroy(ds).map_err(zfs_err)
    }

    /// Unmounts and destroys `tmp-` layers and their staging mount points.
    fn remove_partial_layers(&self) -> Result<(), SnapshotError> {
        for entry in std::fs::read_dir(&self.staging).map_err(io("read", &self.staging))? {
            let path = entry.map_err(io("read", &self.staging))?.path();
            self.zfs.unmount(&path).map_err(zfs_err)?;
            remove_tree(&path)?;
        }
        for ds in self.zfs.children(&self.layers_ds()).map_err(zfs_err)? {
            if leaf(&ds).starts_with(TMP_PREFIX) {
                tracing::info!(dataset = %ds, "destroying a layer left half-made by a crash");
                self.destroy_tree(&ds)?;
            }
        }
        Ok(())
    }

    /// Gives every container dataset its directory, so that the runtime's
    /// crash recovery, which walks `containers/`, sees (and removes) one a
    /// crash left without a record.
    fn expose_container_datasets(&self) -> Result<(), SnapshotError> {
        for ds in self.zfs.children(&self.containers_ds()).map_err(zfs_err)? {
            if let Ok(name) = container_dir_name(leaf(&ds)) {
                let dir = self.containers.join(name);
                std::fs::create_dir_all(dir.join("rootfs")).map_err(io("create", &dir))?;
            }
        }
        Ok(())
    }

    fn unpack_into(
        &self,
        tmp: &str,
        chain_id: &str,
        parent: Option<&str>,
        blob: &Path,
    ) -> Result<(), SnapshotError> {
        match parent {
            Some(parent) => {
                let origin = self.layer_snapshot(parent)?;
                if !self.zfs.exists(&origin) {
                    return Err(SnapshotError::MissingParent {
                        chain_id: chain_id.to_owned(),
                        parent: parent.to_owned(),
                    });
                }
                self.zfs.clone_snapshot(tmp, &origin).map_err(zfs_err)?;
            }
            None => self.zfs.create(tmp).map_err(zfs_err)?,
        }
        let mnt = self.staging.join(leaf(tmp));
        std::fs::create_dir_all(&mnt).map_err(io("create", &mnt))?;
        self.zfs.mount(tmp, &mnt).map_err(zfs_err)?;
        let unpacked = (|| {
            if parent.is_none() {
                set_mode(&mnt, 0o755)?;
            }
            unpack_layer(blob, &mnt, WhiteoutMode::Apply).map_err(|source| SnapshotError::Unpack {
                chain_id: chain_id.to_owned(),
                source,
            })
        })();
        let unmounted = self.zfs.unmount(&mnt).map_err(zfs_err);
        let _ = std::fs::remove_dir(&mnt);
        unpacked?;
        unmounted?;
        self.zfs
            .snapshot(&format!("{tmp}@{LAYER_SNAPSHOT}"))
            .map_err(zfs_err)?;
        self.zfs
            .rename(tmp, &self.layer_ds(chain_id)?)
            .map_err(zfs_err)
    }

    fn make_rootfs(
        &self,
        ds: &str,
        rootfs: &Path,
        top: Option<&str>,
        idmap: Option<&Idmap>,
    ) -> Result<(), SnapshotError> {
        match top {
            Some(top) => {
                let origin = self.layer_snapshot(top)?;
                self.zfs.clone_snapshot(ds, &origin).map_err(zfs_err)?;
            }
            None => self.zfs.create(ds).map_err(zfs_err)?,
        }
        self.zfs.mount(ds, rootfs).map_err(zfs_err)?;
        if top.is_none() {
            set_mode(rootfs, 0o755)?;
        }
        if let Some(map) = idmap {
            // The clone is the container's own: an idmapped mount of it on
            // itself maps it for the pod (OpenZFS 2.2 or later).
            let userns = std::fs::File::open(&map.userns).map_err(io("open", &map.userns))?;
            crate::sandbox::idmap::IdmappedTree::new(rootfs, &userns, false)
                .and_then(|tree| tree.attach(rootfs))
                .map_err(|source| SnapshotError::Idmap { source })?;
        }
        Ok(())
    }

    /// A fresh name for a layer being unpacked.
    fn temporary_name(&self, hex: &str) -> String {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!(
            "{}/{TMP_PREFIX}{hex}-{}-{n}",
            self.layers_ds(),
            std::process::id()
        )
    }
}

/// The last component of a dataset name.
fn leaf(ds: &str) -> &str {
    ds.rsplit('/').next().unwrap_or(ds)
}

impl Snapshotter for ZfsSnapshotter {
    fn has_layer(&self, chain_id: &str) -> bool {
        self.layer_snapshot(chain_id)
            .map(|snap| self.zfs.exists(&snap))
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
        let tmp = self.temporary_name(id_hex(chain_id)?);
        let result = self.unpack_into(&tmp, chain_id, parent, blob);
        if result.is_err() {
            let mnt = self.staging.join(leaf(&tmp));
            let _ = self.zfs.unmount(&mnt);
            let _ = std::fs::remove_dir(&mnt);
            if let Err(e) = self.destroy_tree(&tmp) {
                tracing::warn!(dataset = %tmp, error = %crate::errors::chain(&e), "cannot destroy a failed layer; it goes at the next start");
            }
        }
        result
    }

    fn remove_layer(&self, chain_id: &str) -> Result<(), SnapshotError> {
        self.destroy_tree(&self.layer_ds(chain_id)?)
    }

    fn layers(&self) -> Result<Vec<String>, SnapshotError> {
        Ok(self
            .zfs
            .children(&self.layers_ds())
            .map_err(zfs_err)?
            .iter()
            .map(|ds| leaf(ds))
            .filter(|name| id_hex(name).is_ok())
            .map(|hex| format!("sha256:{hex}"))
            .collect())
    }

    fn prepare_rootfs(
        &self,
        id: &str,
        top: Option<&str>,
        idmap: Option<&Idmap>,
    ) -> Result<PathBuf, SnapshotError> {
        let ds = self.container_ds(id)?;
        if let Some(top) = top {
            if !self.has_layer(top) {
                return Err(SnapshotError::MissingParent {
                    chain_id: id.to_owned(),
                    parent: top.to_owned(),
                });
            }
        }
        self.remove_rootfs(id)?;
        let dir = self.containers.join(container_dir_name(id)?);
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(io("create", &rootfs))?;
        if idmap.is_some() {
            set_mode(&dir, 0o711)?;
        }
        if let Err(e) = self.make_rootfs(&ds, &rootfs, top, idmap) {
            let _ = self.remove_rootfs(id);
            return Err(e);
        }
        Ok(rootfs)
    }

    fn mount_rootfs(&self, id: &str, top: Option<&str>) -> Result<PathBuf, SnapshotError> {
        let ds = self.container_ds(id)?;
        let rootfs = self.containers.join(container_dir_name(id)?).join("rootfs");
        if self.zfs.is_mounted(&rootfs) {
            return Ok(rootfs);
        }
        if !self.zfs.exists(&ds) {
            return self.prepare_rootfs(id, top, None);
        }
        std::fs::create_dir_all(&rootfs).map_err(io("create", &rootfs))?;
        self.zfs.mount(&ds, &rootfs).map_err(zfs_err)?;
        Ok(rootfs)
    }

    fn remove_rootfs(&self, id: &str) -> Result<(), SnapshotError> {
        let ds = self.container_ds(id)?;
        let dir = self.containers.join(container_dir_name(id)?);
        self.zfs.unmount(&dir.join("rootfs")).map_err(zfs_err)?;
        self.destroy_tree(&ds)?;
        remove_tree(&dir)
    }

    fn layers_root(&self) -> &Path {
        &self.layers
    }

    fn rootfs_root(&self) -> &Path {
        &self.containers
    }

    fn layers_usage(&self) -> Usage {
        // ZFS has no fixed inode table: only bytes are reported.
        match self.zfs.space(&self.layers_ds()) {
            Ok(space) => Usage {
                bytes: space.used,
                inodes: 0,
            },
            Err(e) => {
                tracing::warn!(error = %crate::errors::chain(&e), "cannot read the layers' space");
                Usage::default()
            }
        }
    }

    fn rootfs_total_usage(&self) -> Usage {
        match self.zfs.space(&self.containers_ds()) {
            Ok(space) => Usage {
                bytes: space.used,
                inodes: 0,
            },
            Err(e) => {
                tracing::warn!(error = %crate::errors::chain(&e), "cannot read the containers' space");
                Usage::default()
            }
        }
    }

    fn rootfs_usage(&self, id: &str) -> Option<Usage> {
        // A clone's `used` is what the container wrote itself: its
        // writable layer.
        let ds = self.container_ds(id).ok()?;
        let space = self.zfs.space(&ds).ok()?;
        Some(Usage {
            bytes: space.used,
            inodes: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::test_support::{chain_id, is_root, names, Layer};
    use crate::zfs::fake::FakeZfs;

    const PARENT: &str = "tank/pvecri";

    fn open(tmp: &Path, fake: &FakeZfs) -> ZfsSnapshotter {
        ZfsSnapshotter::open(tmp.join("snapshots/zfs"), PARENT, Box::new(fake.clone())).unwrap()
    }

    fn setup() -> (tempfile::TempDir, FakeZfs, ZfsSnapshotter) {
        let tmp = tempfile::tempdir().unwrap();
        let fake = FakeZfs::new(tmp.path(), "tank");
        let s = open(tmp.path(), &fake);
        (tmp, fake, s)
    }

    /// A base layer and a child that changes, deletes and adds a file.
    fn two_layers(tmp: &Path, s: &ZfsSnapshotter) -> (String, String) {
        let base = Layer::new()
            .dir("etc")
            .file("etc/os-release", b"ID=base\n")
            .file("etc/doomed", b"x")
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

    fn layer_ds(c: char) -> String {
        format!("{PARENT}/layers/{}", c.to_string().repeat(64))
    }

    #[test]
    fn layers_are_clones_of_their_parents_and_roots_clones_of_the_top() {
        if !is_root("zfs layers") {
            return;
        }
        let (tmp, fake, s) = setup();
        let (a, b) = two_layers(tmp.path(), &s);
        assert!(s.has_layer(&a) && s.has_layer(&b));
        let mut layers = s.layers().unwrap();
        layers.sort();
        assert_eq!(layers, [a.clone(), b.clone()]);
        for ds in [layer_ds('a'), layer_ds('b')] {
            assert!(fake.exists(&format!("{ds}@layer")), "{ds}@layer");
        }
        // Committing again changes nothing.
        let again = Layer::new()
            .file("other", b"o")
            .blob(tmp.path(), "again.tar");
        s.commit_layer(&b, Some(&a), &again).unwrap();

        let rootfs = s.prepare_rootfs("c1", Some(&b), None).unwrap();
        assert_eq!(rootfs, s.rootfs_root().join("c1/rootfs"));
        assert!(fake.is_mounted(&rootfs));
        let read = |p: &str| std::fs::read_to_string(rootfs.join(p)).unwrap();
        assert_eq!(read("etc/os-release"), "ID=child\n");
        assert_eq!(read("new"), "n");
        assert!(!rootfs.join("etc/doomed").exists());
        // The container writes its own clone, not the layer.
        std::fs::write(rootfs.join("etc/os-release"), "mine").unwrap();
        let layer_file = fake.dir_of(&format!("{}@layer", layer_ds('b')));
        assert_eq!(
            std::fs::read_to_string(layer_file.join("etc/os-release")).unwrap(),
            "ID=child\n"
        );
        assert!(s.rootfs_usage("c1").unwrap().bytes > 0);

        // A layer under a clone cannot go; the container's root can.
        assert!(matches!(
            s.remove_layer(&b),
            Err(SnapshotError::Zfs {
                source: ZfsError::Busy { .. }
            })
        ));
        s.remove_rootfs("c1").unwrap();
        assert!(!fake.exists(&format!("{PARENT}/containers/c1")));
        assert!(names(s.rootfs_root()).is_empty());
        s.remove_rootfs("c1").unwrap();

        // Children first: the base is busy while the child exists.
        assert!(s.remove_layer(&a).is_err());
        s.remove_layer(&b).unwrap();
        s.remove_layer(&a).unwrap();
        s.remove_layer(&a).unwrap();
        assert!(s.layers().unwrap().is_empty());
        // Nothing outside the parent dataset was ever made.
        assert_eq!(
            fake.all(),
            [
                "tank",
                "tank/pvecri",
                "tank/pvecri/containers",
                "tank/pvecri/layers"
            ]
        );
    }

    #[test]
    fn an_empty_root_and_a_remount_after_restart() {
        if !is_root("zfs empty root") {
            return;
        }
        let (tmp, fake, s) = setup();
        let rootfs = s.prepare_rootfs("empty", None, None).unwrap();
        assert!(names(&rootfs).is_empty());
        std::fs::write(rootfs.join("kept"), "k").unwrap();
        // As after a reboot: unmounted, then mounted again with its data.
        fake.unmount(&rootfs).unwrap();
        drop(s);
        let s = open(tmp.path(), &fake);
        let again = s.mount_rootfs("empty", None).unwrap();
        assert_eq!(std::fs::read_to_string(again.join("kept")).unwrap(), "k");
        // Mounted already: a no-op.
        s.mount_rootfs("empty", None).unwrap();
        s.remove_rootfs("empty").unwrap();
    }

    #[test]
    fn failed_unpacks_leave_nothing_and_crash_leftovers_are_removed() {
        if !is_root("zfs leftovers") {
            return;
        }
        let (tmp, fake, s) = setup();
        let bad = tmp.path().join("bad.tar");
        std::fs::write(&bad, b"not a tarball, not compressed either").unwrap();
        assert!(s.commit_layer(&chain_id('a'), None, &bad).is_err());
        let base = Layer::new().file("f", b"1").blob(tmp.path(), "base.tar");
        fake.fail_once("snapshot", &format!("{PARENT}/layers/tmp-"));
        assert!(s.commit_layer(&chain_id('a'), None, &base).is_err());
        assert!(
            matches!(
                s.commit_layer(&chain_id('b'), Some(&chain_id('f')), &base),
                Err(SnapshotError::MissingParent { .. })
            ),
            "a missing parent is named"
        );
        assert!(fake
            .children(&format!("{PARENT}/layers"))
            .unwrap()
            .is_empty());
        assert!(names(&s.staging).is_empty());

        // What a kill leaves: an unpack in progress, mounted, and a
        // container clone whose directory was never made.
        let tmp_ds = format!("{PARENT}/layers/tmp-{}-1-1", "c".repeat(64));
        fake.create(&tmp_ds).unwrap();
        let mnt = s.staging.join(leaf(&tmp_ds));
        std::fs::create_dir_all(&mnt).unwrap();
        fake.mount(&tmp_ds, &mnt).unwrap();
        fake.create(&format!("{PARENT}/containers/orphan")).unwrap();
        drop(s);
        let s = open(tmp.path(), &fake);
        assert!(!fake.exists(&tmp_ds));
        assert!(names(&s.staging).is_empty());
        assert_eq!(names(s.rootfs_root()), ["orphan"]);
        s.remove_rootfs("orphan").unwrap();
        s.commit_layer(&chain_id('a'), None, &base).unwrap();
        assert_eq!(s.layers().unwrap(), [chain_id('a')]);
    }

    #[test]
    fn hostile_ids_and_parents_are_refused() {
        let (tmp, fake, s) = setup();
        for id in ["../x", "a/b", "", "a@b"] {
            assert!(s.prepare_rootfs(id, None, None).is_err(), "{id:?}");
        }
        assert!(s
            .commit_layer("sha256:../../x", None, Path::new("/dev/null"))
            .is_err());
        assert!(!s.has_layer("sha256:../../x"));
        for parent in ["tank", "tank/../etc", "tank/x@y", "/tank/x"] {
            assert!(
                ZfsSnapshotter::open(tmp.path().join("z"), parent, Box::new(fake.clone())).is_err(),
                "{parent:?}"
            );
        }
        assert_eq!(fake.all().len(), 4);
    }

    #[test]
    fn usage_comes_from_the_datasets() {
        if !is_root("zfs usage") {
            return;
        }
        let (tmp, _fake, s) = setup();
        let base = Layer::new()
            .file("f", &[7u8; 20000])
            .blob(tmp.path(), "base.tar");
        s.commit_layer(&chain_id('a'), None, &base).unwrap();
        assert!(s.layers_usage().bytes >= 20000);
        s.prepare_rootfs("c", Some(&chain_id('a')), None).unwrap();
        assert!(s.rootfs_total_usage().bytes >= 20000);
        assert!(s.rootfs_usage("missing").is_none());
        s.remove_rootfs("c").unwrap();
    }
}
