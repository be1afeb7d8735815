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
//! liblxc's cgroup `mkdir`s wait too).
//!
//! Whether more moves pay depends on the kernel's grace periods, so the
//! first move of a burst of calls is timed ([`Pace`]):
//! - a slow one (at least [`SLOW_MOVE`]) has the moves go on every
//!   [`PERIOD`] until [`SUSTAIN`] after the last call, so that the next
//!   starts of the burst find the switch still made. Each is a no-op move
//!   of tens of microseconds; the readers stay on their slow path during
//!   the burst and for one grace period after it, as `favordynmods` keeps
//!   them for good;
//! - after a quick one, sustained moves would cost the starts more than
//!   the short waits they save (they hold the cgroup mutex, and take a
//!   core's time on a small node), so the thread only times one move
//!   every [`REPROBE`] while the burst lasts, and turns to sustained
//!   moves if one is slow.
//!
//! A node whose cgroup filesystem is mounted with `favordynmods` needs
//! none of this: there the warmer is not made ([`favors_dynmods`]), and
//! `pvecri doctor` suggests the option elsewhere.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;

use super::enter::{open_beneath, procs_files, EnterError, ProcsFile};
use super::CgroupMount;

/// How long a burst lasts after the last [`Warmer::warm`]: the starts of a
/// burst of pods (a deployment scaled up, a node drained onto this one)
/// then find the lock ready however they are spaced, and an idle node
/// makes no move at all.
const SUSTAIN: Duration = Duration::from_millis(250);

/// Between two sustained moves: well under a grace period, so the readers'
/// slow path does not lapse between them.
const PERIOD: Duration = Duration::from_millis(2);

/// A timed move at least this slow waited for a grace period long enough
/// to be worth sustained moves. On the 6.18 test VM a cold move took
/// 6-8 ms in one state and 0.3-1 ms in another; sustained moves cost a
/// pod start about 1 ms there (docs/benchmarks.md).
const SLOW_MOVE: Duration = Duration::from_millis(2);

/// How often, within a burst, a move is timed again (when the moves are
/// not sustained) and the cgroup the daemon is in looked up again (when
/// they are).
const REPROBE: Duration = Duration::from_secs(1);

/// Makes the moves on a thread of its own (started with the first
/// [`Warmer::warm`]), from a call of `warm` until [`SUSTAIN`] after the
/// last one.
#[derive(Debug)]
pub(crate) struct Warmer {
    shared: Arc<Shared>,
    /// The thread, once started; `None` in it if it could not be.
    thread: OnceLock<Option<std::thread::JoinHandle<()>>>,
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
    /// The burst goes on until then.
    until: Option<Instant>,
    /// Counts the bursts: a call after the last one ended starts a new one.
    burst: u64,
    /// Set by a failed move (a node that refuses one refuses the next) or
    /// by dropping the warmer: the thread ends.
    stop: bool,
}

/// The thread's plan within a burst, from the moves it timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    /// Moves every [`PERIOD`].
    Sustained,
    /// One timed move every [`REPROBE`].
    Probing,
}

impl Pace {
    /// The plan after a move that took `took`, from the plan before it
    /// (`None` at the start of a burst): a slow move makes the moves
    /// sustained for the rest of the burst; nothing but a new burst ends
    /// them, since a sustained move finds the lock ready and says nothing
    /// of the grace period.
    fn after(prev: Option<Self>, took: Duration) -> Self {
        match prev {
            Some(Pace::Sustained) => Pace::Sustained,
            _ if took >= SLOW_MOVE => Pace::Sustained,
            _ => Pace::Probing,
        }
    }

    /// When the next move is due after one at `last`.
    fn next(self, last: Instant) -> Instant {
        match self {
            Pace::Sustained => last + PERIOD,
            Pace::Probing => last + REPROBE,
        }
    }
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
            tracing::debug!(error = %crate::errors::chain(&e), "cannot open this process's cgroup.procs; migrations are not warmed");
            return None;
        }
        Some(Self {
            shared: Arc::new(shared),
            thread: OnceLock::new(),
        })
    }

    /// Starts a burst of moves now, or makes the current one last until
    /// [`SUSTAIN`] from now. Returns at once.
    pub(crate) fn warm(&self) {
        {
            let mut state = self.shared.lock();
            if state.stop {
                return;
            }
            let now = Instant::now();
            if state.until.is_none_or(|until| until <= now) {
                state.burst += 1;
            }
            state.until = Some(now + SUSTAIN);
        }
        self.shared.wake.notify_one();
        self.thread.get_or_init(|| {
            let shared = Arc::clone(&self.shared);
            std::thread::Builder::new()
                .name("pvecri-warm".into())
                .spawn(move || shared.run())
                .map_err(|e| {
                    self.shared.lock().stop = true;
                    tracing::warn!(error = %e, "cannot start the cgroup warming thread");
                })
                .ok()
        });
    }
}

impl Drop for Warmer {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(handle) = self.thread.take().flatten() {
            let _ = handle.join();
        }
    }
}

/// Why the daemon could not be moved within its own cgroup.
#[derive(Debug, thiserror::Error)]
enum WarmError {
    #[error("cannot read /proc/self/cgroup")]
    Own(#[source] std::io::Error),
    #[error("no mounted hierarchy shows this process's cgroup")]
    NoHierarchy,
    #[error(transparent)]
    Open(#[from] EnterError),
    #[error("cannot write this process's PID to its cgroup.procs")]
    Write(#[source] std::io::Error),
}

/// The open `cgroup.procs` the moves write to, and when it was looked up.
struct Target {
    file: File,
    opened: Instant,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The thread: waits for a burst, then moves at the [`Pace`] its timed
    /// moves ask for until the burst has ended, and waits again.
    fn run(&self) {
        let mut seen = 0;
        let mut pace: Option<Pace> = None;
        let mut due = Instant::now();
        let mut target: Option<Target> = None;
        loop {
            {
                let mut state = self.lock();
                loop {
                    if state.stop {
                        return;
                    }
                    let now = Instant::now();
                    match state.until {
                        Some(until) if until > now => {
                            if state.burst != seen {
                                // A new burst: its first move is timed.
                                seen = state.burst;
                                pace = None;
                                break;
                            }
                            if due <= now {
                                break;
                            }
                            // Until the next move, or the burst's end.
                            state = self
                                .wake
                                .wait_timeout(state, due.min(until) - now)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                        }
                        _ => {
                            state.until = None;
                            target = None;
                            state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                        }
                    }
                }
            }
            let start = Instant::now();
            let took = match self.move_now(&mut target, start) {
                Ok(took) => took,
                Err(e) => {
                    self.lock().stop = true;
                    tracing::warn!(error = %crate::errors::chain(&e), "cannot move the daemon within its own cgroup; container starts will wait for the kernel's grace period");
                    return;
                }
            };
            let next = Pace::after(pace, took);
            if pace != Some(next) {
                tracing::debug!(took_us = took.as_micros() as u64, pace = ?next, "cgroup migration warming");
            }
            pace = Some(next);
            due = next.next(start);
        }
    }

    /// One move (blocking: the first after a quiet spell waits for a grace
    /// period), into the cgroup `target` names, looked up again when it
    /// is [`REPROBE`] old: should something else move the daemon, a move
    /// into where it was would soon be a real one. Returns how long the
    /// move itself (the write) took.
    fn move_now(&self, target: &mut Option<Target>, now: Instant) -> Result<Duration, WarmError> {
        let t = match target {
            Some(t) if now.duration_since(t.opened) < REPROBE => t,
            _ => target.insert(Target {
                file: self.own_procs()?,
                opened: now,
            }),
        };
        let start = Instant::now();
        t.file
            .write_all(self.pid.as_bytes())
            .map_err(WarmError::Write)?;
        Ok(start.elapsed())
    }

    /// The `cgroup.procs` of the cgroup this process is in now, opened
    /// beneath its mount like every other cgroup file pvecri writes.
    fn own_procs(&self) -> Result<File, WarmError> {
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(WarmError::Own)?;
        let file = own_procs_file(&own, &self.mounts).ok_or(WarmError::NoHierarchy)?;
        Ok(open_beneath(&file, OFlag::O_WRONLY).map(File::from)?)
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
    fn a_slow_move_sustains_the_moves_for_the_rest_of_the_burst() {
        let quick = SLOW_MOVE / 4;
        let slow = SLOW_MOVE * 3;
        assert_eq!(Pace::after(None, quick), Pace::Probing);
        assert_eq!(Pace::after(None, slow), Pace::Sustained);
        assert_eq!(Pace::after(Some(Pace::Probing), quick), Pace::Probing);
        assert_eq!(Pace::after(Some(Pace::Probing), slow), Pace::Sustained);
        // A sustained move finds the lock ready: quick, and no sign that
        // the grace period got shorter.
        assert_eq!(Pace::after(Some(Pace::Sustained), quick), Pace::Sustained);
        let t = Instant::now();
        assert_eq!(Pace::Sustained.next(t), t + PERIOD);
        assert_eq!(Pace::Probing.next(t), t + REPROBE);
    }

    #[test]
    fn a_call_after_the_burst_ended_starts_a_new_one() {
        let warmer = Warmer {
            shared: Arc::new(Shared {
                mounts: Vec::new(),
                pid: String::new(),
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
            }),
            thread: OnceLock::new(),
        };
        // No thread: the calls only count the bursts.
        let _ = warmer.thread.set(None);
        warmer.warm();
        warmer.warm();
        assert_eq!(warmer.shared.lock().burst, 1);
        warmer.shared.lock().until = Some(Instant::now());
        warmer.warm();
        assert_eq!(warmer.shared.lock().burst, 2);
        warmer.shared.lock().stop = true;
        warmer.warm();
        assert_eq!(
            warmer.shared.lock().burst,
            2,
            "a stopped warmer counts nothing"
        );
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
        // Moves through one open file, and after it was looked up again.
        let mut target = None;
        let now = Instant::now();
        warmer.shared.move_now(&mut target, now).unwrap();
        warmer.shared.move_now(&mut target, now).unwrap();
        warmer.shared.move_now(&mut target, now + REPROBE).unwrap();
        assert_eq!(target.as_ref().map(|t| t.opened), Some(now + REPROBE));
        warmer.warm();
        assert!(matches!(warmer.thread.get(), Some(Some(_))));
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
