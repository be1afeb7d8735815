//! A fake [`ZfsOps`] for unit tests of the snapshotter's logic: datasets
//! are directories under a temp dir, snapshots and clones are copies, and
//! "mounting" replaces the target directory with a symlink to the
//! dataset's directory. It enforces what matters to the snapshotter: a
//! filesystem with snapshots and a snapshot with clones cannot be
//! destroyed, a mounted filesystem neither, names must be new.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{Space, ZfsError, ZfsOps};

#[derive(Default)]
struct State {
    /// Filesystems and snapshots -> origin snapshot of a clone.
    datasets: BTreeMap<String, Option<String>>,
    /// Mount targets -> filesystem.
    mounts: BTreeMap<PathBuf, String>,
    /// Operations made to fail once: (op, name).
    fail: Vec<(&'static str, String)>,
}

/// Clones share one state, so a test keeps a handle on what the
/// snapshotter owns.
#[derive(Clone)]
pub(crate) struct FakeZfs {
    data: PathBuf,
    state: std::sync::Arc<Mutex<State>>,
}

fn busy(op: &'static str, name: &str) -> ZfsError {
    ZfsError::Busy {
        op,
        dataset: name.to_owned(),
    }
}

fn errno(op: &'static str, name: &str, errno: i32) -> ZfsError {
    ZfsError::from_errno(op, name, errno)
}

impl FakeZfs {
    /// A fake with pool `pool` (and its root filesystem) under `dir`.
    pub(crate) fn new(dir: &Path, pool: &str) -> FakeZfs {
        let fake = FakeZfs {
            data: dir.join("fake-zfs"),
            state: Default::default(),
        };
        std::fs::create_dir_all(&fake.data).unwrap();
        fake.create(pool).unwrap();
        fake
    }

    /// Makes the next `op` on a name starting with `prefix` fail with EIO.
    pub(crate) fn fail_once(&self, op: &'static str, prefix: &str) {
        self.lock().fail.push((op, prefix.to_owned()));
    }

    /// Every filesystem and snapshot, sorted.
    pub(crate) fn all(&self) -> Vec<String> {
        self.lock().datasets.keys().cloned().collect()
    }

    /// The directory holding a dataset's files.
    pub(crate) fn dir_of(&self, name: &str) -> PathBuf {
        self.data.join(name.replace('/', "%"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn injected(&self, state: &mut State, op: &'static str, name: &str) -> Result<(), ZfsError> {
        if let Some(i) = state
            .fail
            .iter()
            .position(|(o, p)| *o == op && name.starts_with(p.as_str()))
        {
            state.fail.remove(i);
            return Err(errno(op, name, libc::EIO));
        }
        Ok(())
    }

    fn copy(&self, from: &str, to: &str) {
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(self.dir_of(from))
            .arg(self.dir_of(to))
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl ZfsOps for FakeZfs {
    fn exists(&self, name: &str) -> bool {
        self.lock().datasets.contains_key(name)
    }

    fn create(&self, name: &str) -> Result<(), ZfsError> {
        let mut s = self.lock();
        self.injected(&mut s, "create", name)?;
        if s.datasets.contains_key(name) {
            return Err(errno("create", name, libc::EEXIST));
        }
        if let Some((parent, _)) = name.rsplit_once('/') {
            if !s.datasets.contains_key(parent) {
                return Err(errno("create", name, libc::ENOENT));
            }
        }
        std::fs::create_dir(self.dir_of(name)).unwrap();
        s.datasets.insert(name.to_owned(), None);
        Ok(())
    }

    fn clone_snapshot(&self, name: &str, origin: &str) -> Result<(), ZfsError> {
        let mut s = self.lock();
        self.injected(&mut s, "clone", name)?;
        if !s.datasets.contains_key(origin) || !origin.contains('@') {
            return Err(errno("clone", name, libc::ENOENT));
        }
        if s.datasets.contains_key(name) {
            return Err(errno("clone", name, libc::EEXIST));
        }
        self.copy(origin, name);
        s.datasets.insert(name.to_owned(), Some(origin.to_owned()));
        Ok(())
    }

    fn snapshot(&self, name: &str) -> Result<(), ZfsError> {
        let mut s = self.lock();
        self.injected(&mut s, "snapshot", name)?;
        let (fs, _) = name.split_once('@').expect("a snapshot name");
        if !s.datasets.contains_key(fs) {
            return Err(errno("snapshot", name, libc::ENOENT));
        }
        if s.datasets.contains_key(name) {
            return Err(errno("snapshot", name, libc::EEXIST));
        }
        self.copy(fs, name);
        s.datasets.insert(name.to_owned(), None);
        Ok(())
    }

    fn destroy(&self, name: &str) -> Result<(), ZfsError> {
        let mut s = self.lock();
        self.injected(&mut s, "destroy", name)?;
        if !s.datasets.contains_key(name) {
            return Err(errno("destroy", name, libc::ENOENT));
        }
        let dependents = s.datasets.iter().any(|(n, origin)| {
            n.starts_with(&format!("{name}@"))
                || n.starts_with(&format!("{name}/"))
                || origin.as_deref() == Some(name)
        });
        if dependents || s.mounts.values().any(|m| m == name) {
            return Err(busy("destroy", name));
        }
        std::fs::remove_dir_all(self.dir_of(name)).unwrap();
        s.datasets.remove(name);
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), ZfsError> {
        let mut s = self.lock();
        self.injected(&mut s, "rename", from)?;
        if !s.datasets.contains_key(from) {
            return Err(errno("rename", from, libc::ENOENT));
        }
        if s.datasets.contains_key(to) {
            return Err(errno("rename", from, libc::EEXIST));
        }
        let moved: Vec<String> = s
            .datasets
            .keys()
            .filter(|n| *n == from || n.starts_with(&format!("{from}@")))
            .cloned()
            .collect();
        for old in moved {
            let new = format!("{to}{}", &old[from.len()..]);
            std::fs::rename(self.dir_of(&old), self.dir_of(&new)).unwrap();
            let origin = s.datasets.remove(&old).flatten();
            s.datasets.insert(new.clone(), origin);
            for o in s.datasets.values_mut() {
                if o.as_deref() == Some(old.as_str()) {
                    *o = Some(new.clone());
                }
            }
        }
        Ok(())
    }

    fn children(&self, name: &str) -> Result<Vec<String>, ZfsError> {
        let s = self.lock();
        if !s.datasets.contains_key(name) {
            return Err(errno("list", name, libc::ENOENT));
        }
        let prefix = format!("{name}/");
        Ok(s.datasets
            .keys()
            .filter(|n| {
                n.strip_prefix(&prefix)
                    .is_some_and(|rest| !rest.contains(['/', '@']))
            })
            .cloned()
            .collect())
    }

    fn snapshots(&self, name: &str) -> Result<Vec<String>, ZfsError> {
        let s = self.lock();
        let prefix = format!("{name}@");
        Ok(s.datasets
            .keys()
            .filter(|n| n.starts_with(&prefix))
            .cloned()
            .collect())
    }

    fn space(&self, name: &str) -> Result<Space, ZfsError> {
        if !self.exists(name) {
            return Err(errno("space", name, libc::ENOENT));
        }
        // Like ZFS's `used`: the dataset, its descendants and snapshots.
        let own = |n: &String| {
            n == name || n.starts_with(&format!("{name}/")) || n.starts_with(&format!("{name}@"))
        };
        let bytes = self
            .all()
            .iter()
            .filter(|n| own(n))
            .map(|n| crate::snapshot::Usage::of(&self.dir_of(n)).bytes)
            .sum();
        Ok(Space {
            used: bytes,
            referenced: bytes,
            available: 1 << 30,
        })
    }

    fn mountpoint(&self, name: &str) -> Result<String, ZfsError> {
        match self.exists(name) {
            true => Ok("legacy".to_owned()),
            false => Err(errno("get", name, libc::ENOENT)),
        }
    }

    fn mount(&self, name: &str, target: &Path) -> Result<(), ZfsError> {
        let mut s = self.lock();
        self.injected(&mut s, "mount", name)?;
        let mount_err = |e: nix::Error| ZfsError::Mount {
            dataset: name.to_owned(),
            target: target.to_owned(),
            source: e,
        };
        if !s.datasets.contains_key(name) || name.contains('@') {
            return Err(mount_err(nix::Error::ENOENT));
        }
        if s.mounts.contains_key(target) || !target.is_dir() {
            return Err(mount_err(nix::Error::EBUSY));
        }
        std::fs::remove_dir(target).map_err(|_| mount_err(nix::Error::ENOTEMPTY))?;
        std::os::unix::fs::symlink(self.dir_of(name), target).unwrap();
        s.mounts.insert(target.to_owned(), name.to_owned());
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<(), ZfsError> {
        let mut s = self.lock();
        if s.mounts.remove(target).is_some() {
            std::fs::remove_file(target).unwrap();
            std::fs::create_dir(target).unwrap();
        }
        Ok(())
    }

    fn is_mounted(&self, target: &Path) -> bool {
        self.lock().mounts.contains_key(target)
    }
}
