//! Getting the kernel's cgroup-migration lock ready ahead of a container
//! start.
//!
//! Moving a process by `cgroup.procs` takes the kernel's global threadgroup
//! lock for writing. The first writer after a quiet spell first switches
//! the lock's readers (every fork and exit on the node) to their slow path
//! and waits a whole RCU grace period for that: about 7 ms on the 6.18
//! test VM (HZ=250), sometimes two. A move within about one grace period
//! of the last one finds the switch still made and costs tens of
//! microseconds. liblxc moves its monitor into the container's monitor
//! cgroup that way at every start (on the v1 hierarchies it moves the
//! container's init the same way a moment later), so each pod start waited
//! for one grace period of its own.
//!
//! [`Warmer::warm`] moves the daemon into the cgroup it is already in, on
//! a blocking thread: a move that changes nothing, but takes the lock like
//! any other. RunPodSandbox and CreateContainer call it first thing, so
//! the grace period runs while they do their own work, and liblxc's moves
//! a few milliseconds later find the switch made (or wait only for the
//! rest of that grace period). Nothing else changes: the lock is held for
//! the move alone, and the readers' slow path lasts one grace period past
//! the last writer, as after any move.
//!
//! A node whose cgroup filesystem is mounted with `favordynmods` keeps the
//! readers on their slow path for good, so no move waits: there the
//! warmer is not made ([`favors_dynmods`]), and `pvecri doctor` suggests
//! the option elsewhere.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::enter::{procs_files, ProcsFile};
use super::CgroupMount;

/// The daemon's own `cgroup.procs`, opened once, and whether a move is in
/// flight.
#[derive(Debug)]
pub(crate) struct Warmer {
    procs: File,
    pid: String,
    busy: AtomicBool,
    /// Cleared after the first failed move: a node that refuses one will
    /// refuse the next, and the start does not need these.
    enabled: AtomicBool,
}

impl Warmer {
    /// The warmer for this process, or `None` (with the reason logged)
    /// where its cgroup cannot be written.
    pub(crate) fn for_self() -> Option<Arc<Self>> {
        let mounts = super::read_mounts().ok()?;
        if favors_dynmods(&mounts) {
            tracing::debug!("cgroups are mounted with favordynmods: migrations need no warming");
            return None;
        }
        let found = std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|own| own_procs_file(&own, &mounts));
        let Some(file) = found else {
            tracing::debug!("no cgroup of this process to warm the migration lock with");
            return None;
        };
        let path = file.mount_point.join(&file.rel);
        match std::fs::OpenOptions::new().write(true).open(&path) {
            Ok(procs) => Some(Arc::new(Self {
                procs,
                pid: std::process::id().to_string(),
                busy: AtomicBool::new(false),
                enabled: AtomicBool::new(true),
            })),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "cannot open this process's cgroup.procs; migrations are not warmed");
                None
            }
        }
    }

    /// Starts a move of this process into its own cgroup on a blocking
    /// thread of the current tokio runtime, unless one is in flight (it
    /// serves this caller as well). Returns at once.
    pub(crate) fn warm(self: &Arc<Self>) {
        if !self.enabled.load(Ordering::Relaxed) || self.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        let run = move || {
            if let Err(e) = this.move_now() {
                this.enabled.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, "cannot move the daemon within its own cgroup; container starts will wait for the kernel's grace period");
            }
            this.busy.store(false, Ordering::Release);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(run)),
            Err(_) => self.busy.store(false, Ordering::Release),
        }
    }

    /// The move itself (blocking: it may wait for a grace period).
    fn move_now(&self) -> std::io::Result<()> {
        (&self.procs).write_all(self.pid.as_bytes())
    }
}

/// Whether a cgroup filesystem here is mounted with `favordynmods`: the
/// migration lock is global, so one such mount serves all hierarchies.
pub(crate) fn favors_dynmods(mounts: &[CgroupMount]) -> bool {
    mounts
        .iter()
        .any(|m| m.options.iter().any(|o| o == "favordynmods"))
}

/// Which of a process's hierarchies to move it on: cgroup2 where mounted
/// (it has no v1 controller's attach work, and is all a Proxmox VE node
/// has), else the first v1 hierarchy. The lock is the same for all.
fn own_procs_file(proc_cgroup: &str, mounts: &[CgroupMount]) -> Option<ProcsFile> {
    let files = procs_files(proc_cgroup, mounts);
    let v2 = files.iter().position(|f| f.v2);
    files.into_iter().nth(v2.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::cgroup_mounts;
    use crate::node::mountinfo;
    use std::path::PathBuf;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
36 31 0:33 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn the_cgroup2_file_is_preferred_and_v1_serves_without_it() {
        let hybrid = cgroup_mounts(mountinfo::parse(HYBRID));
        let own = "8:pids:/system.slice/pvecri.service\n0::/system.slice/pvecri.service\n";
        let f = own_procs_file(own, &hybrid).unwrap();
        assert_eq!(f.mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(
            f.rel,
            PathBuf::from("system.slice/pvecri.service/cgroup.procs")
        );
        let f = own_procs_file("8:pids:/a\n", &hybrid).unwrap();
        assert_eq!(f.mount_point, PathBuf::from("/sys/fs/cgroup/pids"));
        assert!(own_procs_file("8:pids:/a\n", &[]).is_none());
    }

    #[test]
    fn favordynmods_on_any_cgroup_mount_is_seen() {
        assert!(!favors_dynmods(&cgroup_mounts(mountinfo::parse(HYBRID))));
        let on = HYBRID.replace("rw,nsdelegate", "rw,nsdelegate,favordynmods");
        assert!(favors_dynmods(&cgroup_mounts(mountinfo::parse(&on))));
    }

    #[test]
    fn a_move_into_the_own_cgroup_changes_nothing() {
        if !crate::snapshot::test_support::is_root("a_move_into_the_own_cgroup_changes_nothing") {
            return;
        }
        let before = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let warmer = Warmer::for_self().expect("the test's own cgroup is writable as root");
        warmer.move_now().unwrap();
        warmer.move_now().unwrap();
        assert_eq!(
            std::fs::read_to_string("/proc/self/cgroup").unwrap(),
            before
        );
    }
}
