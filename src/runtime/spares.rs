//! The daemon's spare monitors (`crate::monitor::spare`): a few
//! `pvecri-helper monitor-spare` processes started ahead of need, so that
//! CreateContainer hands its container to one that already runs instead of
//! paying a fork, an exec and a detach on the request path.
//!
//! The pool is refilled off the async threads once container starts have
//! paused for a moment after a hand-over ([`Spares::refill_when_quiet`]):
//! a spare's start (fork, exec, detach) shares the node's CPUs with
//! whatever runs then, and the create and start of the pod that just took
//! a spare should not be it. When the pool is empty (a burst of creates),
//! CreateContainer starts a monitor the old way; a spare that died meanwhile is skipped. At shutdown the pool
//! closes its sockets, which ends every idle spare, and waits for them.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::monitor::spare::{Assignment, SpareArgs};
use crate::monitor::MonitorArgs;

/// The fd number the spare gets its socket on.
const SOCKET_FD: i32 = 3;
/// How long a starting spare may take to say it is ready (it starts at idle
/// priority: on a busy node that takes a while).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long refills pause after a spare failed to start.
const BACKOFF: Duration = Duration::from_secs(60);
/// How long shutdown waits for the idle spares to end.
const EXIT_WAIT: Duration = Duration::from_secs(2);
/// How long no container may have been created or started before a
/// refill begins.
pub(super) const QUIET: Duration = Duration::from_millis(20);
/// The longest a refill waits for such a pause (on a node that creates
/// containers without pause, it then runs anyway).
const QUIET_AT_MOST: Duration = Duration::from_secs(1);

/// When a pod or container was last made or started: refills of the pools
/// of things made ahead of need wait for a pause in that.
pub(crate) struct Activity {
    at: Mutex<Instant>,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            at: Mutex::new(Instant::now()),
        }
    }

    /// Something was made or started just now.
    pub(crate) fn note(&self) {
        *self.at.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn since(&self) -> Duration {
        self.at.lock().unwrap_or_else(|p| p.into_inner()).elapsed()
    }

    /// Returns once nothing was noted for [`QUIET`], or after
    /// [`QUIET_AT_MOST`] in any case.
    pub(crate) async fn settle(&self) {
        let asked = Instant::now();
        loop {
            let wait = QUIET.saturating_sub(self.since());
            if wait.is_zero() || asked.elapsed() >= QUIET_AT_MOST {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// An idle spare: the daemon's end of its socket and its pid.
struct Spare {
    socket: OwnedFd,
    pid: i32,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SpareError {
    #[error("cannot make the spare's socket pair")]
    Socket(#[source] nix::Error),
    #[error("cannot start {exe}")]
    Spawn {
        exe: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the spare's launcher exited with {0}")]
    Launcher(std::process::ExitStatus),
    #[error("the spare did not say it is ready: {0}")]
    NotReady(String),
}

/// The pool.
pub(crate) struct Spares {
    exe: PathBuf,
    lxcpath: PathBuf,
    /// How many idle spares to keep (0: none, every monitor is started
    /// on demand).
    target: usize,
    idle: Mutex<Vec<Spare>>,
    /// Spares being started now (counted toward `target`).
    starting: AtomicUsize,
    /// Set at shutdown: nothing is started or handed out any more.
    closed: AtomicBool,
    /// When a spare last failed to start: refills wait [`BACKOFF`] after
    /// one (a node where spares cannot work would otherwise pay a failed
    /// start after every create).
    failed_at: Mutex<Option<Instant>>,
    /// When a pod or container was last made or started.
    activity: Arc<Activity>,
    /// Whether a refill is waiting for a pause ([`Self::refill_when_quiet`]).
    waiting: AtomicBool,
}

impl Spares {
    pub(crate) fn new(exe: PathBuf, lxcpath: PathBuf, target: usize) -> Arc<Self> {
        Arc::new(Self {
            exe,
            lxcpath,
            target,
            idle: Mutex::new(Vec::new()),
            starting: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            failed_at: Mutex::new(None),
            activity: Arc::new(Activity::new()),
            waiting: AtomicBool::new(false),
        })
    }

    /// Notes that a container was created or started just now, which a
    /// waiting refill lets pass first.
    pub(crate) fn note_busy(&self) {
        self.activity.note();
    }

    /// The clock the refills wait on, for the other pools to share.
    pub(crate) fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    /// Refills the pool once no container has been created or started for
    /// [`QUIET`] (or after [`QUIET_AT_MOST`] in any case). Called after a
    /// hand-over; one waiting refill serves any number of calls. Needs a
    /// tokio runtime.
    pub(crate) fn refill_when_quiet(self: &Arc<Self>) {
        self.note_busy();
        if self.target == 0 || self.waiting.swap(true, Ordering::SeqCst) {
            return;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            pool.activity.settle().await;
            pool.waiting.store(false, Ordering::SeqCst);
            pool.refill();
        });
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Spare>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many spares are idle now.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle().len()
    }

    /// Starts spares on a blocking thread until `target` are idle or on
    /// their way. Needs a tokio runtime.
    pub(crate) fn refill(self: &Arc<Self>) {
        if self.closed.load(Ordering::SeqCst) || self.backing_off() {
            return;
        }
        // Counted under the lock, so two refills never overshoot.
        let want = {
            let idle = self.idle();
            let have = idle.len() + self.starting.load(Ordering::SeqCst);
            let want = self.target.saturating_sub(have);
            self.starting.fetch_add(want, Ordering::SeqCst);
            want
        };
        if want == 0 {
            return;
        }
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            // Spares are started at idle priority, so that starting them
            // never takes CPU from a container start (this runs right after
            // one took a spare); the fork inherits it, and a spare leaves
            // it when it gets its container.
            let _idle = IdlePriority::enter();
            for left in (0..want).rev() {
                let started = pool.start_one();
                let mut idle = pool.idle();
                pool.starting.fetch_sub(1, Ordering::SeqCst);
                match started {
                    // A spare that comes up after shutdown began is
                    // dropped at once: its socket closes and it ends.
                    Ok(spare) if !pool.closed.load(Ordering::SeqCst) => idle.push(spare),
                    Ok(_) => {}
                    Err(err) => {
                        drop(idle);
                        // The rest of this refill is not tried either.
                        pool.starting.fetch_sub(left, Ordering::SeqCst);
                        *pool.failed_at.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(Instant::now());
                        warn!(error = %crate::errors::chain(&err), retry_in = ?BACKOFF, "cannot start a spare monitor; monitors start on demand");
                        return;
                    }
                }
            }
        });
    }

    /// Whether a spare failed to start less than [`BACKOFF`] ago.
    fn backing_off(&self) -> bool {
        self.failed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() < BACKOFF)
    }

    /// Starts one spare and waits for its `ready <pid>`.
    fn start_one(&self) -> Result<Spare, SpareError> {
        let (ours, theirs) = crate::monitor::spare::socket_pair().map_err(SpareError::Socket)?;
        let args = SpareArgs {
            lxcpath: self.lxcpath.clone(),
            socket_fd: SOCKET_FD,
        };
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.args(args.to_args())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        // `theirs` stays open here until the launcher has exited.
        super::child_fd::pass_as(&mut cmd, theirs.as_raw_fd(), SOCKET_FD);
        // The launcher double-forks and exits; its stderr (the daemon's)
        // carries any complaint from before the detach.
        let status = cmd.status().map_err(|source| SpareError::Spawn {
            exe: self.exe.display().to_string(),
            source,
        })?;
        drop(theirs);
        if !status.success() {
            return Err(SpareError::Launcher(status));
        }
        let pid = read_ready(&ours)?;
        debug!(pid, "spare monitor ready");
        Ok(Spare { socket: ours, pid })
    }

    /// Hands `args`' container to an idle spare with the ready pipe's write
    /// end; false when no spare took it (none idle, or every idle one had
    /// died), and the caller starts a monitor itself.
    pub(crate) fn assign(&self, args: &MonitorArgs, ready: &OwnedFd) -> bool {
        if self.closed.load(Ordering::SeqCst) {
            return false;
        }
        let assignment = Assignment {
            args: MonitorArgs {
                ready_fd: None,
                ..args.clone()
            },
        };
        loop {
            // Newest first: the longest idle ones are the likeliest to
            // have been killed by someone.
            let Some(spare) = self.idle().pop() else {
                return false;
            };
            match assignment.send(&spare.socket, ready) {
                Ok(()) => {
                    debug!(pid = spare.pid, container_id = %args.id, "container handed to a spare monitor");
                    return true;
                }
                Err(err) => {
                    warn!(pid = spare.pid, error = %err, "a spare monitor is gone; trying another");
                }
            }
        }
    }

    /// Ends every idle spare (their sockets close) and waits a little for
    /// them to be gone; no spare is started or handed out afterwards.
    pub(crate) fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let spares = std::mem::take(&mut *self.idle());
        let pids: Vec<i32> = spares.iter().map(|s| s.pid).collect();
        drop(spares);
        let deadline = Instant::now() + EXIT_WAIT;
        for pid in pids {
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// The calling thread at `SCHED_IDLE` until dropped (then back to
/// `SCHED_OTHER`, its nice value unchanged).
pub(super) struct IdlePriority {
    entered: bool,
}

impl IdlePriority {
    pub(super) fn enter() -> Self {
        Self {
            entered: set_policy(libc::SCHED_IDLE).is_ok(),
        }
    }
}

impl Drop for IdlePriority {
    fn drop(&mut self) {
        if self.entered {
            if let Err(err) = set_policy(libc::SCHED_OTHER) {
                warn!(error = %err, "cannot restore a blocking thread's scheduling policy");
            }
        }
    }
}

/// Sets the calling thread's scheduling policy (a normal one: priority 0).
fn set_policy(policy: libc::c_int) -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param
    // that outlives the call.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether `pid` is a live process (not a zombie; spares are not our
/// children, so they never stay zombies for long).
fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        && !crate::cgroups::tree::is_zombie(pid)
}

/// Reads the spare's `ready <pid>` line, waiting at most [`READY_TIMEOUT`].
fn read_ready(socket: &OwnedFd) -> Result<i32, SpareError> {
    use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout};
    let timeout = nix::sys::time::TimeVal::new(READY_TIMEOUT.as_secs() as i64, 0);
    setsockopt(socket, ReceiveTimeout, &timeout)
        .map_err(|e| SpareError::NotReady(e.to_string()))?;
    let mut buf = [0u8; 64];
    let n = loop {
        match nix::unistd::read(socket, &mut buf) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => {
                return Err(SpareError::NotReady(format!(
                    "no answer in {READY_TIMEOUT:?}"
                )))
            }
            Err(e) => return Err(SpareError::NotReady(e.to_string())),
        }
    };
    parse_ready(&buf[..n]).ok_or_else(|| {
        SpareError::NotReady(format!(
            "unexpected answer {:?}",
            String::from_utf8_lossy(&buf[..n])
        ))
    })
}

/// `ready <pid>\n` to the pid.
fn parse_ready(bytes: &[u8]) -> Option<i32> {
    let text = std::str::from_utf8(bytes).ok()?;
    let pid: i32 = text
        .strip_prefix("ready ")?
        .strip_suffix('\n')?
        .parse()
        .ok()?;
    (pid > 0).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_priority_is_left_on_drop() {
        std::thread::spawn(|| {
            // SAFETY: pid 0 is this thread; no memory is involved.
            let policy = || unsafe { libc::sched_getscheduler(0) };
            {
                let idle = IdlePriority::enter();
                assert!(idle.entered);
                assert_eq!(policy(), libc::SCHED_IDLE);
            }
            assert_eq!(policy(), libc::SCHED_OTHER);
        })
        .join()
        .unwrap();
    }

    #[tokio::test]
    async fn a_failed_start_pauses_the_refills() {
        let pool = Spares::new("/nonexistent/pvecri-helper".into(), "/tmp".into(), 2);
        pool.refill();
        for _ in 0..500 {
            if pool.backing_off() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(pool.backing_off());
        assert_eq!(
            pool.starting.load(Ordering::SeqCst),
            0,
            "the rest was not tried"
        );
        pool.refill();
        assert_eq!(
            pool.starting.load(Ordering::SeqCst),
            0,
            "no refill while backing off"
        );
        assert_eq!(pool.idle_count(), 0);
    }

    /// A refill asked for after a hand-over waits while containers keep
    /// being started, then runs once they pause (here it fails at once on
    /// the missing binary, which shows as the back-off).
    #[tokio::test]
    async fn a_refill_waits_for_starts_to_pause() {
        let pool = Spares::new("/nonexistent/pvecri-helper".into(), "/tmp".into(), 2);
        pool.refill_when_quiet();
        pool.refill_when_quiet();
        for _ in 0..10 {
            tokio::time::sleep(QUIET / 4).await;
            pool.note_busy();
            assert!(!pool.backing_off(), "refilled while starts went on");
        }
        for _ in 0..500 {
            if pool.backing_off() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(pool.backing_off(), "no refill after the pause");
        assert!(!pool.waiting.load(Ordering::SeqCst));
    }

    #[test]
    fn ready_lines_parse() {
        assert_eq!(parse_ready(b"ready 42\n"), Some(42));
        for bad in [
            &b""[..],
            b"ready\n",
            b"ready 0\n",
            b"ready -3\n",
            b"ready 42",
            b"ok 42\n",
            b"ready 4x\n",
        ] {
            assert_eq!(parse_ready(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    fn args() -> MonitorArgs {
        MonitorArgs {
            id: "c1".into(),
            lxcpath: "/tmp".into(),
            run_dir: "/tmp".into(),
            cgroup: None,
            log: None,
            ready_fd: Some(3),
            max_log_line: crate::monitor::DEFAULT_MAX_LINE,
            stdin: false,
            stdin_once: false,
            tty: false,
            restore: None,
        }
    }

    #[test]
    fn an_empty_or_closed_pool_hands_out_nothing() {
        let pool = Spares::new("/nonexistent".into(), "/tmp".into(), 0);
        let (_r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let args = args();
        assert!(!pool.assign(&args, &w));
        pool.shutdown();
        assert!(!pool.assign(&args, &w));
    }

    /// A spare whose socket peer is gone is skipped; the next one takes it.
    #[test]
    fn dead_spares_are_skipped() {
        let pool = Spares::new("/nonexistent".into(), "/tmp".into(), 2);
        let pair = || crate::monitor::spare::socket_pair().unwrap();
        let (live_ours, live_theirs) = pair();
        let (dead_ours, dead_theirs) = pair();
        drop(dead_theirs);
        pool.idle().push(Spare {
            socket: live_ours,
            pid: 1,
        });
        pool.idle().push(Spare {
            socket: dead_ours,
            pid: 2,
        });
        let (_r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        assert!(pool.assign(&args(), &w));
        assert_eq!(pool.idle_count(), 0);
        let mut buf = vec![0u8; 4096];
        let n = nix::unistd::read(&live_theirs, &mut buf).unwrap();
        let got = Assignment::decode(&buf[..n]).unwrap();
        assert_eq!(got.args.id, "c1");
        assert_eq!(got.args.ready_fd, None, "the number is not sent, the fd is");
    }
}
