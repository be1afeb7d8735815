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
//! CreateContainer starts a monitor the old way; a spare that died
//! meanwhile is skipped. At shutdown the pool
//! closes its sockets, which ends every idle spare, and waits for them.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::monitor::spare::{Assignment, SpareArgs};
use crate::monitor::MonitorArgs;

use super::refills::{Activity, Maker, Pool};

/// The fd number the spare gets its socket on.
const SOCKET_FD: i32 = 3;
/// How long a starting spare may take to say it is ready (it starts at idle
/// priority: on a busy node that takes a while).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for the idle spares to end.
const EXIT_WAIT: Duration = Duration::from_secs(2);

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
    pool: Arc<Pool<Spare>>,
}

impl Spares {
    /// `target` idle spares of `exe` kept (0: every monitor is started on
    /// demand). Refills start them on a blocking thread at idle priority:
    /// starting one never takes CPU from a container start (the fork
    /// inherits it, and a spare leaves it when it gets its container).
    pub(crate) fn new(exe: PathBuf, lxcpath: PathBuf, target: usize) -> Arc<Self> {
        let maker = Maker {
            make: Box::new(move || start_one(&exe, &lxcpath).map_err(Into::into)),
            // A spare that comes up after shutdown began is dropped at
            // once: its socket closes and it ends.
            discard: drop,
            failure: "cannot start a spare monitor; monitors start on demand",
        };
        Arc::new(Self {
            pool: Pool::new(target, Arc::new(Activity::new()), maker),
        })
    }

    /// Notes that a container was created or started just now, which a
    /// waiting refill lets pass first.
    pub(crate) fn note_busy(&self) {
        self.pool.activity().note();
    }

    /// The clock the refills wait on, for the other pools to share.
    pub(crate) fn activity(&self) -> Arc<Activity> {
        self.pool.activity().clone()
    }

    /// Refills the pool once container starts pause (`Pool::refill_when_quiet`).
    /// Called after a hand-over. Needs a tokio runtime.
    pub(crate) fn refill_when_quiet(&self) {
        self.pool.refill_when_quiet();
    }

    /// Starts spares until the target are idle or on their way
    /// (`Pool::refill`). Needs a tokio runtime.
    pub(crate) fn refill(&self) {
        self.pool.refill();
    }

    /// Hands `args`' container to an idle spare with the ready pipe's write
    /// end; false when no spare took it (none idle, or every idle one had
    /// died), and the caller starts a monitor itself.
    pub(crate) fn assign(&self, args: &MonitorArgs, ready: &OwnedFd) -> bool {
        if self.pool.is_closed() {
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
            let Some(spare) = self.pool.pop() else {
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
        let spares = self.pool.close();
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

/// Starts one spare of `exe` and waits for its `ready <pid>`.
fn start_one(exe: &Path, lxcpath: &Path) -> Result<Spare, SpareError> {
    let (ours, theirs) = crate::monitor::spare::socket_pair().map_err(SpareError::Socket)?;
    let args = SpareArgs {
        lxcpath: lxcpath.to_owned(),
        socket_fd: SOCKET_FD,
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(args.to_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    // `theirs` stays open here until the launcher has exited.
    super::child_fd::pass_as(&mut cmd, theirs.as_raw_fd(), SOCKET_FD);
    // The launcher double-forks and exits; its stderr (the daemon's)
    // carries any complaint from before the detach.
    let status = cmd.status().map_err(|source| SpareError::Spawn {
        exe: exe.display().to_string(),
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

    #[tokio::test]
    async fn a_spare_that_cannot_start_pauses_the_refills() {
        let pool = Spares::new("/nonexistent/pvecri-helper".into(), "/tmp".into(), 2);
        pool.refill();
        for _ in 0..500 {
            if pool.pool.backing_off() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(pool.pool.backing_off());
        assert!(pool.pool.idle().is_empty());
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
        pool.pool.idle().push(Spare {
            socket: live_ours,
            pid: 1,
        });
        pool.pool.idle().push(Spare {
            socket: dead_ours,
            pid: 2,
        });
        let (_r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        assert!(pool.assign(&args(), &w));
        assert!(pool.pool.idle().is_empty());
        let mut buf = vec![0u8; 4096];
        let n = nix::unistd::read(&live_theirs, &mut buf).unwrap();
        let got = Assignment::decode(&buf[..n]).unwrap();
        assert_eq!(got.args.id, "c1");
        assert_eq!(got.args.ready_fd, None, "the number is not sent, the fd is");
    }
}
