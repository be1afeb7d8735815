//! Freezing the container's cgroup around a dump.
//!
//! The container is frozen before CRIU starts and thawed after the
//! writable layer is copied, so the memory image and the rootfs diff show
//! the same moment (CRIU given a frozen cgroup leaves it frozen). A
//! [`Frozen`] thaws on drop: an error, a timeout or a cancelled call never
//! leaves the workload stopped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cgroups::tree::{self, Hierarchy};

/// The cgroup file that freezes, and its two values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Freezer {
    /// The cgroup directory (what `criu --freeze-cgroup` takes).
    pub dir: PathBuf,
    v2: bool,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum FreezeError {
    #[error("cgroup {0} has no freezer (neither v1 freezer.state nor cgroup2 cgroup.freeze)")]
    NoFreezer(String),
    #[error("cannot freeze {dir}")]
    Write {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{dir} did not freeze within {seconds}s")]
    Slow { dir: PathBuf, seconds: u64 },
}

impl Freezer {
    /// The freezer of cgroup `rel` on this node: the v1 freezer hierarchy
    /// when there is one (it is what freezes on a hybrid layout), else
    /// cgroup2.
    pub(crate) fn find(hierarchies: &[Hierarchy], rel: &str) -> Result<Self, FreezeError> {
        let dirs = tree::dirs(hierarchies, rel);
        let v1 = dirs
            .iter()
            .find(|(h, d)| h.freezer && d.join("freezer.state").exists());
        let v2 = dirs
            .iter()
            .find(|(h, d)| h.v2 && d.join("cgroup.freeze").exists());
        match (v1, v2) {
            (Some((_, d)), _) => Ok(Freezer {
                dir: d.clone(),
                v2: false,
            }),
            (None, Some((_, d))) => Ok(Freezer {
                dir: d.clone(),
                v2: true,
            }),
            (None, None) => Err(FreezeError::NoFreezer(rel.to_owned())),
        }
    }

    fn control(&self) -> (PathBuf, &'static str, &'static str) {
        if self.v2 {
            (self.dir.join("cgroup.freeze"), "1", "0")
        } else {
            (self.dir.join("freezer.state"), "FROZEN", "THAWED")
        }
    }

    /// Whether every task has stopped.
    fn is_frozen(&self) -> bool {
        if self.v2 {
            std::fs::read_to_string(self.dir.join("cgroup.events"))
                .is_ok_and(|t| events_say_frozen(&t))
        } else {
            std::fs::read_to_string(self.dir.join("freezer.state"))
                .is_ok_and(|t| t.trim() == "FROZEN")
        }
    }

    /// Freezes and waits until the kernel reports it frozen.
    pub(crate) fn freeze(&self, within: Duration) -> Result<Frozen<'_>, FreezeError> {
        let (file, freeze, _) = self.control();
        std::fs::write(&file, freeze).map_err(|source| FreezeError::Write {
            dir: self.dir.clone(),
            source,
        })?;
        let frozen = Frozen { freezer: self };
        let start = Instant::now();
        while !self.is_frozen() {
            if start.elapsed() > within {
                return Err(FreezeError::Slow {
                    dir: self.dir.clone(),
                    seconds: within.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(frozen)
    }

    /// Thaws; errors are logged, as there is nobody to return them to.
    pub(crate) fn thaw(&self) {
        let (file, _, thaw) = self.control();
        if let Err(e) = std::fs::write(&file, thaw) {
            tracing::warn!(cgroup = %self.dir.display(), error = %e, "cannot thaw the container");
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A frozen cgroup, thawed on drop.
pub(crate) struct Frozen<'a> {
    freezer: &'a Freezer,
}

impl Frozen<'_> {
    /// Keeps the cgroup frozen past this guard: the returned one, which
    /// owns the freezer, thaws it on drop unless it [`HeldFreeze::end`]s
    /// the container.
    pub(crate) fn hold(self, cgroup: &str) -> HeldFreeze {
        let held = HeldFreeze {
            freezer: self.freezer.clone(),
            cgroup: cgroup.to_owned(),
        };
        std::mem::forget(self);
        held
    }
}

/// A container kept frozen after its dump, until the caller has what it
/// needs (a pod's whole archive): then [`HeldFreeze::end`] kills it; a
/// drop instead thaws it, and it runs on.
#[derive(Debug)]
pub(crate) struct HeldFreeze {
    freezer: Freezer,
    /// The container's cgroup, relative to the hierarchy roots.
    cgroup: String,
}

impl HeldFreeze {
    /// Kills every process of the container while it is still frozen
    /// (cgroup2 kills frozen tasks; v1 ones die at the thaw that follows).
    pub(crate) fn end(self) -> Result<(), crate::cgroups::tree::TreeError> {
        let hierarchies = crate::cgroups::tree::hierarchies()?;
        let method = crate::cgroups::tree::kill(&hierarchies, &self.cgroup);
        tracing::info!(cgroup = %self.cgroup, ?method, "checkpointed container ended");
        Ok(())
    }
}

impl Drop for HeldFreeze {
    fn drop(&mut self) {
        self.freezer.thaw();
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        self.freezer.thaw();
    }
}

fn events_say_frozen(events: &str) -> bool {
    events.lines().any(|l| l.trim() == "frozen 1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v1_freezer_wins_on_hybrid_nodes_and_drop_thaws() {
        let tmp = tempfile::tempdir().unwrap();
        let v1 = tmp.path().join("freezer");
        let v2 = tmp.path().join("unified");
        for (root, file) in [(&v1, "freezer.state"), (&v2, "cgroup.freeze")] {
            std::fs::create_dir_all(root.join("k/c1")).unwrap();
            std::fs::write(root.join("k/c1").join(file), "").unwrap();
        }
        let h = [
            Hierarchy {
                mount_point: v2.clone(),
                v2: true,
                freezer: false,
            },
            Hierarchy {
                mount_point: v1.clone(),
                v2: false,
                freezer: true,
            },
        ];
        let f = Freezer::find(&h, "k/c1").unwrap();
        assert_eq!(f.dir(), v1.join("k/c1"));
        // On these plain files v1 reads back FROZEN at once; the guard
        // thaws when dropped.
        let frozen = f.freeze(Duration::from_secs(1)).unwrap();
        assert_eq!(
            std::fs::read_to_string(v1.join("k/c1/freezer.state")).unwrap(),
            "FROZEN"
        );
        drop(frozen);
        assert_eq!(
            std::fs::read_to_string(v1.join("k/c1/freezer.state")).unwrap(),
            "THAWED"
        );
        // cgroup2 without a cgroup.events saying "frozen 1": the wait
        // gives up, and the guard made before it thaws.
        let only_v2 = Freezer::find(&h[..1], "k/c1").unwrap();
        assert_eq!(only_v2.dir(), v2.join("k/c1"));
        let err = only_v2.freeze(Duration::from_millis(20)).err().unwrap();
        assert!(matches!(err, FreezeError::Slow { .. }), "{err}");
        assert_eq!(
            std::fs::read_to_string(v2.join("k/c1/cgroup.freeze")).unwrap(),
            "0"
        );
        assert!(Freezer::find(&h, "k/none").is_err());
    }

    #[test]
    fn cgroup_events_are_read() {
        assert!(events_say_frozen("populated 1\nfrozen 1\n"));
        assert!(!events_say_frozen("populated 1\nfrozen 0\n"));
    }
}
