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
//! [`Warmer::warm`] has the daemon moved into the cgroup it is already in,
//! on a thread of its own: a move that changes nothing, but takes the lock
//! like any other. RunPodSandbox and CreateContainer call it first thing,
//! so the grace period runs while they do their own work, and liblxc's
//! moves a few milliseconds later find the switch made (or wait only for
//! the rest of that grace period; the cgroup mutex is held meanwhile, so
//! liblxc's cgroup `mkdir`s wait too). The moves then go on every
//! [`PERIOD`] until [`SUSTAIN`] after the last call, so that the next
//! starts of a burst find the switch still made. Each is a no-op move of
//! tens of microseconds; the readers stay on their slow path during a
//! burst and for one grace period after it, as `favordynmods` keeps them
//! for good.
//!
//! A node whose cgroup filesystem is mounted with `favordynmods` needs
//! none of this: there the warmer is not made ([`favors_dynmods`]), and
//! `pvecri doctor` suggests the option elsewhere.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::enter::{procs_files, ProcsFile};
use super::CgroupMount;

/// How long the moves go on after the last [`Warmer::warm`]: the starts of
/// a burst of pods (a deployment scaled up, a node drained onto this one)
/// then find the lock ready however they are spaced, and an idle node
/// makes no move at all.
const SUSTAIN: Duration = Duration::from_millis(250);

/// Between two moves: well under a grace period, so the readers' slow
/// path does not lapse between them.
const PERIOD: Duration = Duration::from_millis(2);

/// Makes the moves on a thread of its own (started with the first
/// [`Warmer::warm`]), from a call of `warm` until [`SUSTAIN`] after the
/// last one.
#[derive(Debug)]
pub(crate) struct Warmer {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    /// The node's cgroup mounts, read once.
    mounts: Vec<CgroupMount>,
    pid: String,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Moves go on until then.
    until: Option<Instant>,
    /// Set by a failed move (a node that refuses one refuses the next) or
    /// by dropping the warmer: the thread ends.
    stop: bool,
}

impl Warmer {
    /// The warmer for this process, or `None` (with the reason logged)
    /// where its cgroup cannot be written.
    pub(crate) fn for_self() -> Option<Self> {
        let mounts = super::read_mounts().ok()?;
        if favors_dynmods(&mounts) {
            tracing::debug!("cgroups are mounted with favordynmods: migrations need no warming");
            return None;
        }
        let shared = Shared {
            mounts,
            pid: std::process::id().to_string(),
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        };
        if let Err(e) = shared.own_procs() {
            tracing::debug!(error = %e, "cannot open this process's cgroup.procs; migrations are not warmed");
            return None;
        }
        Some(Self {
            shared: Arc::new(shared),
            thread: Mutex::new(None),
        })
    }

    /// Has the moves start now, or go on until [`SUSTAIN`] from now.
    /// Returns at once.
    pub(crate) fn warm(&self) {
        {
            let mut state = self.shared.lock();
            if state.stop {
                return;
            }
            state.until = Some(Instant::now() + SUSTAIN);
        }
        self.shared.wake.notify_one();
        let mut thread = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        if thread.is_none() {
            let shared = Arc::clone(&self.shared);
            match std::thread::Builder::new()
                .name("pvecri-warm".into())
                .spawn(move || shared.run())
            {
                Ok(handle) => *thread = Some(handle),
                Err(e) => {
                    self.shared.lock().stop = true;
                    tracing::warn!(error = %e, "cannot start the cgroup warming thread");
                }
            }
        }
    }
}

impl Drop for Warmer {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(handle) = self.thread.get_mut().ok().and_then(Option::take) {
            let _ = handle.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The thread: waits for a deadline, moves every [`PERIOD`] until it
    /// has passed, and waits again.
    fn run(&self) {
        loop {
            {
                let mut state = self.lock();
                loop {
                    if state.stop {
                        return;
                    }
                    match state.until {
                        Some(until) if until > Instant::now() => break,
                        _ => {
                            state.until = None;
                            state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                        }
                    }
                }
            }
            if let Err(e) = self.move_now() {
                self.lock().stop = true;
                tracing::warn!(error = %e, "cannot move the daemon within its own cgroup; container starts will wait for the kernel's grace period");
                return;
            }
            std::thread::sleep(PERIOD);
        }
    }

    /// One move (blocking: the first after a quiet spell waits for a grace
    /// period).
    fn move_now(&self) -> std::io::Result<()> {
        self.own_procs()?.write_all(self.pid.as_bytes())
    }

    /// The `cgroup.procs` of the cgroup this process is in now, looked up
    /// for every move: should something else move the daemon, a move into
    /// where it was would be a real one.
    fn own_procs(&self) -> std::io::Result<File> {
        let own = std::fs::read_to_string("/proc/self/cgroup")?;
        let file = own_procs_file(&own, &self.mounts).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no mounted hierarchy shows this process's cgroup",
            )
        })?;
        std::fs::OpenOptions::new()
            .write(true)
            .open(file.mount_point.join(&file.rel))
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
        // Every thread's cgroups: a move of the process would show in any.
        let cgroups = || -> Vec<String> {
            let mut all: Vec<String> = std::fs::read_dir("/proc/self/task")
                .unwrap()
                .map(|t| std::fs::read_to_string(t.unwrap().path().join("cgroup")).unwrap())
                .collect();
            all.sort();
            all.dedup();
            all
        };
        let before = cgroups();
        let Some(warmer) = Warmer::for_self() else {
            assert!(
                favors_dynmods(&crate::cgroups::read_mounts().unwrap()),
                "the test's own cgroup is writable as root"
            );
            eprintln!("skipping: cgroups are mounted with favordynmods, no warmer is made");
            return;
        };
        warmer.shared.move_now().unwrap();
        warmer.warm();
        assert!(warmer.thread.lock().unwrap().is_some());
        std::thread::sleep(PERIOD * 5);
        warmer.warm();
        assert!(!warmer.shared.lock().stop, "a move failed");
        assert_eq!(cgroups(), before);
        // Past SUSTAIN the thread waits, and makes no more moves.
        std::thread::sleep(SUSTAIN + PERIOD * 10);
        assert_eq!(warmer.shared.lock().until, None);
        // Dropping it ends the waiting thread.
        drop(warmer);
    }
}
