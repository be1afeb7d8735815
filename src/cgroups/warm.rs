//! Getting the kernel's cgroup-migration lock ready ahead of a container
//! start.
//!
//! Moving a process by `cgroup.procs` takes the kernel's global threadgroup
//! lock for writing. The first writer after a quiet spell first switches
//! the lock's readers (every fork and exit on the node) to their slow path
//! and waits a whole RCU grace period for that: about 7 ms on the 6.18
//! test VM (HZ=250) in one state, under 2 ms in another. A move within
//! about one grace period of the last one finds the switch still made and
//! costs tens of microseconds. liblxc moves its monitor into the
//! container's monitor cgroup that way at every start (on the v1
//! hierarchies it moves the container's init the same way a moment later),
//! so each pod start waited for one grace period of its own.
//!
//! [`Warmer::warm`] has the daemon moved into the cgroup it is already in,
//! on a thread of its own: a move that changes nothing, but takes the lock
//! like any other. RunPodSandbox and CreateContainer call it first thing;
//! the first call of a burst has a move made at once, so the grace period
//! runs while the request does its own work, and liblxc's moves a few
//! milliseconds later find the switch made (or wait only for the rest of
//! that grace period; the cgroup mutex is held meanwhile, so liblxc's
//! cgroup `mkdir`s wait too).
//!
//! Whether more moves pay depends on how long the grace periods are, so
//! the moves are paced by timing some of them ([`Plan`]):
//! - after a slow one (at least [`SLOW_MOVE`]) they go on every [`PERIOD`]
//!   until [`SUSTAIN`] after the last call, so that the next starts of the
//!   burst find the switch still made. Each is a no-op move of tens of
//!   microseconds; the readers stay on their slow path during the burst
//!   and for one grace period after it, as `favordynmods` keeps them for
//!   good. Every [`RECHECK`] the moves pause long enough for the lock to
//!   go cold, and the move at the next call is timed again;
//! - after a quick one, sustained moves would cost the starts more than
//!   the short waits they save (they hold the cgroup mutex, and take a
//!   core's time on a small node), so the thread only makes a timed move
//!   at the first call [`REPROBE`] or more after the last one while the
//!   burst lasts, and turns to sustained moves when one is slow.
//!
//! A timed move can mislead: it finds the lock ready when something else
//! moved a process a moment before, and it can queue behind liblxc's own
//! cgroup work. Making timed moves at calls (a start on its way, the last
//! one's moves behind it) makes the first rarer, and [`RECHECK`] bounds
//! what the second costs.
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
/// 6-8 ms in one state and 0.2-1.9 ms in another; sustained moves cost a
/// pod start about 1 ms in the second (docs/benchmarks.md).
const SLOW_MOVE: Duration = Duration::from_millis(2);

/// The least time between two timed moves while the moves are not
/// sustained.
const REPROBE: Duration = Duration::from_secs(1);

/// How often sustained moves pause to time a move again: a slow reading
/// (a probe that queued behind liblxc's own cgroup work) or a kernel
/// whose grace periods got shorter would otherwise keep them going for as
/// long as pods keep starting.
const RECHECK: Duration = Duration::from_secs(5);

/// The pause before a timed move in sustained pace: several of the grace
/// periods last timed (the lock goes cold one or two grace periods after
/// the last move), within bounds.
fn quiet(grace: Duration) -> Duration {
    (grace * 4).clamp(Duration::from_millis(20), Duration::from_millis(200))
}

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
    /// Counts the calls.
    calls: u64,
    /// Set by a failed move (a node that refuses one refuses the next), a
    /// thread that could not be started, or dropping the warmer: no more
    /// moves.
    stop: bool,
}

/// What the thread does next ([`step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// End the thread.
    Stop,
    /// The burst has ended: wait for a call.
    Idle,
    /// A call started a new burst: move at once.
    NewBurst,
    /// The next move is due.
    Move,
    /// Wait this long (for the next move, or the burst's end).
    Wait(Duration),
}

/// The burst and the call the thread last acted on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Seen {
    burst: u64,
    calls: u64,
}

/// The thread's next step at `now`, from the shared state, what it has
/// seen of it and its plan. A timed move that is due waits for a call: a
/// call is a start on its way, so the move overlaps its grace period with
/// that start's work, and the lock is then most likely cold (the last
/// start's moves are behind it), which is what the timing is meant to
/// find out.
fn step(state: &State, seen: Seen, plan: &Plan, now: Instant) -> Step {
    if state.stop {
        return Step::Stop;
    }
    match state.until {
        Some(until) if until > now => {
            if state.burst != seen.burst {
                Step::NewBurst
            } else if plan.due > now {
                Step::Wait(plan.due.min(until) - now)
            } else if plan.timed && state.calls == seen.calls {
                Step::Wait(until - now)
            } else {
                Step::Move
            }
        }
        _ => Step::Idle,
    }
}

/// How the moves are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    /// Moves every [`PERIOD`], with a timed one every [`RECHECK`].
    Sustained,
    /// A timed move at a call, [`REPROBE`] or more after the last one.
    Probing,
}

/// The thread's schedule: the pace, the next move and whether it is timed.
#[derive(Debug, Clone, Copy)]
struct Plan {
    pace: Pace,
    due: Instant,
    /// The move at `due` is timed: its time sets the pace.
    timed: bool,
    /// The last timed move.
    timed_at: Instant,
    /// How long the last slow timed move took (sizes the pause before a
    /// timed move in sustained pace).
    grace: Duration,
    /// The last move made.
    moved_at: Option<Instant>,
}

impl Plan {
    /// Nothing known yet: the first move is timed.
    fn new(now: Instant) -> Self {
        Self {
            pace: Pace::Probing,
            due: now,
            timed: true,
            timed_at: now,
            grace: Duration::ZERO,
            moved_at: None,
        }
    }

    /// A new burst's first move, at once. It is timed, unless the last
    /// burst's sustained moves ended so recently that the lock is still
    /// ready: that move would be quick whatever the grace period, and the
    /// sustained pace goes on.
    fn new_burst(&mut self, now: Instant) {
        let warm = self.pace == Pace::Sustained
            && self
                .moved_at
                .is_some_and(|at| now.duration_since(at) < quiet(self.grace));
        if !warm {
            *self = Plan {
                moved_at: self.moved_at,
                grace: self.grace,
                ..Plan::new(now)
            };
        }
        self.due = now;
    }

    /// After a move made at `at`, which took `took`: the pace (set by a
    /// timed move) and the next move.
    fn moved(&mut self, at: Instant, took: Duration) {
        self.moved_at = Some(at);
        if self.timed {
            self.timed_at = at;
            if took >= SLOW_MOVE {
                self.pace = Pace::Sustained;
                self.grace = took;
            } else {
                self.pace = Pace::Probing;
            }
        }
        (self.due, self.timed) = match self.pace {
            Pace::Probing => (at + REPROBE, true),
            Pace::Sustained if at.duration_since(self.timed_at) >= RECHECK => {
                (at + quiet(self.grace), true)
            }
            Pace::Sustained => (at + PERIOD, false),
        };
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
        if let Err(e) = shared.own_procs(&mut None) {
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
            state.calls += 1;
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
    #[error("cannot write this process's PID to {path}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The `cgroup.procs` the moves write to: which one, and open.
struct Target {
    procs: ProcsFile,
    file: File,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The thread: waits for a burst, then moves as its [`Plan`] says until
    /// the burst has ended, and waits again.
    fn run(&self) {
        let mut seen = Seen::default();
        let mut plan = Plan::new(Instant::now());
        let mut target: Option<Target> = None;
        loop {
            {
                let mut state = self.lock();
                loop {
                    let now = Instant::now();
                    match step(&state, seen, &plan, now) {
                        Step::Stop => return,
                        Step::Idle => {
                            state.until = None;
                            state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                        }
                        Step::NewBurst => {
                            seen = Seen {
                                burst: state.burst,
                                calls: state.calls,
                            };
                            plan.new_burst(now);
                            break;
                        }
                        Step::Move => {
                            seen.calls = state.calls;
                            break;
                        }
                        Step::Wait(wait) => {
                            state = self
                                .wake
                                .wait_timeout(state, wait)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                        }
                    }
                }
            }
            let at = Instant::now();
            let took = match self.move_now(&mut target) {
                Ok(took) => took,
                Err(e) => {
                    self.lock().stop = true;
                    tracing::warn!(error = %crate::errors::chain(&e), "cannot move the daemon within its own cgroup; container starts will wait for the kernel's grace period");
                    return;
                }
            };
            let before = plan.pace;
            plan.moved(at, took);
            if plan.pace != before {
                tracing::debug!(took_us = took.as_micros() as u64, pace = ?plan.pace, "cgroup migration warming");
            }
        }
    }

    /// One move (blocking: the first after a quiet spell waits for a grace
    /// period) into the cgroup the daemon is in now, looked up for every
    /// move: should something else move the daemon, a move into where it
    /// was would be a real one. The file stays open while that cgroup
    /// does not change; a write that fails is tried once more through a
    /// file opened again. Returns how long the write took.
    fn move_now(&self, target: &mut Option<Target>) -> Result<Duration, WarmError> {
        match self.write_pid(target) {
            Ok(took) => Ok(took),
            Err(_) => {
                *target = None;
                self.write_pid(target)
            }
        }
    }

    fn write_pid(&self, target: &mut Option<Target>) -> Result<Duration, WarmError> {
        let t = self.own_procs(target)?;
        let start = Instant::now();
        t.file
            .write_all(self.pid.as_bytes())
            .map_err(|source| WarmError::Write {
                path: t.procs.mount_point.join(&t.procs.rel),
                source,
            })?;
        Ok(start.elapsed())
    }

    /// The `cgroup.procs` of the cgroup this process is in now: the one in
    /// `target` if that is still it, else opened beneath its mount like
    /// every other cgroup file pvecri writes, and kept in `target`.
    fn own_procs<'t>(&self, target: &'t mut Option<Target>) -> Result<&'t mut Target, WarmError> {
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(WarmError::Own)?;
        let procs = own_procs_file(&own, &self.mounts).ok_or(WarmError::NoHierarchy)?;
        let kept = match target.take() {
            Some(t) if t.procs == procs => t,
            _ => Target {
                file: File::from(open_beneath(&procs, OFlag::O_WRONLY)?),
                procs,
            },
        };
        Ok(target.insert(kept))
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
    use std::os::fd::AsRawFd;
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
    fn the_next_step_follows_the_burst_and_the_plan() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let state = |until: Option<Instant>, burst: u64, calls: u64, stop: bool| State {
            until,
            burst,
            calls,
            stop,
        };
        let seen = Seen { burst: 1, calls: 3 };
        let live = Some(now + ms(100));
        let mut plan = Plan::new(now);
        plan.timed = false;
        assert_eq!(step(&state(live, 1, 3, true), seen, &plan, now), Step::Stop);
        assert_eq!(
            step(&state(None, 1, 3, false), seen, &plan, now),
            Step::Idle
        );
        assert_eq!(
            step(&state(Some(now), 1, 3, false), seen, &plan, now),
            Step::Idle
        );
        assert_eq!(
            step(&state(live, 1, 3, false), seen, &plan, now),
            Step::Move
        );
        plan.due = now + ms(2);
        assert_eq!(
            step(&state(live, 1, 3, false), seen, &plan, now),
            Step::Wait(ms(2))
        );
        // A wait never outlasts the burst.
        plan.due = now + REPROBE;
        assert_eq!(
            step(&state(live, 1, 3, false), seen, &plan, now),
            Step::Wait(ms(100))
        );
        // A new burst moves at once, whatever the old plan had due.
        assert_eq!(
            step(&state(live, 2, 4, false), seen, &plan, now),
            Step::NewBurst
        );
        // A timed move that is due waits for a call.
        plan.due = now;
        plan.timed = true;
        assert_eq!(
            step(&state(live, 1, 3, false), seen, &plan, now),
            Step::Wait(ms(100))
        );
        assert_eq!(
            step(&state(live, 1, 4, false), seen, &plan, now),
            Step::Move
        );
    }

    #[test]
    fn a_slow_timed_move_sustains_the_moves_and_a_quick_one_spaces_them() {
        let t0 = Instant::now();
        let quick = SLOW_MOVE / 4;
        let slow = SLOW_MOVE * 3;
        let mut plan = Plan::new(t0);
        assert!(plan.timed);
        plan.moved(t0, quick);
        assert_eq!(
            (plan.pace, plan.due, plan.timed),
            (Pace::Probing, t0 + REPROBE, true)
        );
        let t1 = t0 + REPROBE;
        plan.moved(t1, slow);
        assert_eq!(
            (plan.pace, plan.due, plan.timed),
            (Pace::Sustained, t1 + PERIOD, false)
        );
        // Sustained moves find the lock ready: quick, and not timed.
        plan.moved(t1 + PERIOD, quick);
        assert_eq!(plan.pace, Pace::Sustained);
        // Every RECHECK a pause, then a timed move decides again.
        let t2 = t1 + RECHECK;
        plan.moved(t2, quick);
        assert_eq!((plan.due, plan.timed), (t2 + quiet(slow), true));
        plan.moved(plan.due, quick);
        assert_eq!(plan.pace, Pace::Probing);
        assert_eq!(quiet(Duration::from_millis(1)), Duration::from_millis(20));
        assert_eq!(quiet(Duration::from_millis(30)), Duration::from_millis(120));
        assert_eq!(quiet(Duration::from_secs(1)), Duration::from_millis(200));
    }

    #[test]
    fn a_burst_right_after_sustained_moves_keeps_their_pace() {
        let t0 = Instant::now();
        let slow = SLOW_MOVE * 3;
        let mut plan = Plan::new(t0);
        plan.moved(t0, slow);
        plan.moved(t0 + PERIOD, Duration::ZERO);
        // Its first move would find the lock ready: not a measure.
        let soon = t0 + PERIOD + Duration::from_millis(5);
        plan.new_burst(soon);
        assert_eq!(
            (plan.pace, plan.due, plan.timed),
            (Pace::Sustained, soon, false)
        );
        // After a pause the lock has gone cold: the first move is timed.
        let later = soon + SUSTAIN;
        plan.new_burst(later);
        assert_eq!(
            (plan.pace, plan.due, plan.timed),
            (Pace::Probing, later, true)
        );
        plan.moved(later, SLOW_MOVE / 4);
        assert_eq!(plan.pace, Pace::Probing);
        // After a probing burst, a new one always starts with a timed move.
        let next = later + Duration::from_millis(1);
        plan.new_burst(next);
        assert_eq!((plan.due, plan.timed), (next, true));
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
        // The moves write through one open file while the cgroup stays.
        let mut target = None;
        warmer.shared.move_now(&mut target).unwrap();
        let file = |t: &Option<Target>| t.as_ref().map(|t| t.file.as_raw_fd());
        let first = file(&target);
        warmer.shared.move_now(&mut target).unwrap();
        assert_eq!(file(&target), first);
        warmer.warm();
        assert!(matches!(warmer.thread.get(), Some(Some(_))));
        std::thread::sleep(PERIOD * 5);
        warmer.warm();
        assert_eq!(cgroups(), before);
        // Past SUSTAIN the thread waits, and makes no more moves.
        let deadline = Instant::now() + Duration::from_secs(10);
        while warmer.shared.lock().until.is_some() {
            assert!(Instant::now() < deadline, "the burst never ended");
            std::thread::sleep(PERIOD * 10);
        }
        assert!(!warmer.shared.lock().stop, "a move failed");
        assert_eq!(cgroups(), before);
        // Dropping it ends the waiting thread.
        drop(warmer);
    }
}
