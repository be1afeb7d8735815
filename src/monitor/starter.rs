//! The starter: a child of the monitor that runs the container in the
//! foreground with liblxc and reports how init ended.
//!
//! liblxc's foreground `start()` blocks until init exits and needs a
//! single-threaded caller, so it runs in its own process while the monitor
//! keeps reading the output pipes. The starter's stdin is /dev/null (or the
//! stdin pipe attach clients write to, for containers with `stdin`) and its
//! stdout/stderr are the two log pipes, which init inherits
//! (`lxc.console.path = none`). Its report goes to fd 3, the status pipe,
//! as one line (see [`StarterReport`]).

use std::io::Write;
use std::os::fd::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use anyhow::Context;
use nix::sys::signal::{self, SigHandler, SigSet, Signal};
use nix::unistd::{fork, ForkResult, Pid};

use super::detach::exit_now;
use crate::lxc::Container;

/// The fd the status pipe gets in the starter.
pub(super) const STATUS_FD: RawFd = 3;

/// What the starter writes to the status pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StarterReport {
    /// `start()` returned true: init ran and ended with this raw status
    /// (liblxc's `error_num`). Line: `exit <error_num>`.
    Exited { error_num: i32 },
    /// The container could not be started. Line: `fail <message>`.
    Failed { message: String },
}

impl StarterReport {
    pub(super) fn line(&self) -> String {
        match self {
            StarterReport::Exited { error_num } => format!("exit {error_num}\n"),
            StarterReport::Failed { message } => format!("fail {}\n", message.replace('\n', " ")),
        }
    }

    /// The report in the status pipe's text; a restoring starter's
    /// `running <pid>` line before it is skipped.
    pub(super) fn parse(text: &str) -> Option<Self> {
        let line = text.lines().find(|l| !l.starts_with("running "))?;
        if let Some(n) = line.strip_prefix("exit ") {
            return n
                .trim()
                .parse()
                .ok()
                .map(|error_num| StarterReport::Exited { error_num });
        }
        line.strip_prefix("fail ").map(|m| StarterReport::Failed {
            message: m.to_owned(),
        })
    }
}

/// The starter's ends of the monitor's pipes.
pub(super) struct StarterFds {
    /// The read end of the stdin pipe; `None`: /dev/null.
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub status: OwnedFd,
}

/// Forks the starter. The caller must be single-threaded and closes its
/// copies of the write ends by dropping `fds` (done here in the parent).
pub(super) fn spawn(id: &str, lxcpath: &str, fds: StarterFds) -> anyhow::Result<Pid> {
    super::detach::ensure_single_threaded()?;
    // SAFETY: the monitor is single-threaded (checked above).
    match unsafe { fork() }.context("cannot fork the starter")? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => starter_main(id, lxcpath, fds),
    }
}

fn starter_main(id: &str, lxcpath: &str, fds: StarterFds) -> ! {
    // From here on fds are handled by number: close_range below closes the
    // ones OwnedFd would otherwise close again.
    let stdin = fds.stdin.map(IntoRawFd::into_raw_fd);
    let stdout = fds.stdout.into_raw_fd();
    let stderr = fds.stderr.into_raw_fd();
    let status = fds.status.into_raw_fd();
    // liblxc creates the container's cgroups (and its mount targets) with
    // the process umask. The daemon's private 077 would make the cgroup
    // directories 0700, which the root of a user-namespaced container
    // cannot walk when it mounts its own cgroup2 view (EACCES on
    // cgroup2-only hosts, found by the VM stage). 022 is what liblxc and
    // systemd use; the workload's own umask is pvecri-init's to set.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    if let Err(err) = setup_process(stdin, stdout, stderr, status) {
        let _ = writeln!(std::io::stderr(), "pvecri monitor: starter setup: {err:#}");
        exit_now(1);
    }
    let report = run_container(id, lxcpath);
    // SAFETY: STATUS_FD is the status pipe's write end, set up above and
    // owned by nothing else in this process.
    let mut status = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(STATUS_FD) });
    let _ = status.write_all(report.line().as_bytes());
    exit_now(0)
}

/// stdio onto the pipes, the status pipe on fd 3, every other fd closed, and
/// default signal handling for the container (init inherits ignored
/// signals and the mask).
pub(super) fn setup_process(
    stdin: Option<RawFd>,
    stdout: RawFd,
    stderr: RawFd,
    status: RawFd,
) -> anyhow::Result<()> {
    if let Some(stdin) = stdin {
        // SAFETY: the pipe fd is open and owned by this function.
        let fd = unsafe { BorrowedFd::borrow_raw(stdin) };
        nix::unistd::dup2_stdin(fd).context("dup2 stdin")?;
    } else {
        let null = std::fs::File::open("/dev/null").context("open /dev/null")?;
        nix::unistd::dup2_stdin(&null).context("dup2 stdin")?;
        // Closed before fd 3 is set up: /dev/null may have landed on fd 3.
        drop(null);
    }
    // SAFETY: the pipe fd is open and owned by this function.
    let out = unsafe { BorrowedFd::borrow_raw(stdout) };
    // SAFETY: as above.
    let err = unsafe { BorrowedFd::borrow_raw(stderr) };
    nix::unistd::dup2_stdout(out).context("dup2 stdout")?;
    nix::unistd::dup2_stderr(err).context("dup2 stderr")?;
    if status != STATUS_FD {
        // SAFETY: plain syscall on fds we own; dup3 replaces whatever fd 3
        // was (a pipe end already copied to 1 or 2 at worst) and keeps the
        // status pipe close-on-exec so init never inherits it.
        if unsafe { libc::dup3(status, STATUS_FD, libc::O_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error()).context("dup3 status pipe");
        }
    }
    // SAFETY: closes every fd above 3; no Rust object in this process owns
    // one any more (the pipe fds were turned into raw numbers, the
    // /dev/null file is closed, and std's stdio uses 0-2).
    if unsafe { libc::close_range(STATUS_FD as u32 + 1, u32::MAX, 0) } < 0 {
        return Err(std::io::Error::last_os_error()).context("close_range");
    }
    // SAFETY: restoring the default disposition installs no handler code.
    unsafe { signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) }.context("reset SIGPIPE")?;
    SigSet::empty()
        .thread_set_mask()
        .context("clear signal mask")?;
    Ok(())
}

fn run_container(id: &str, lxcpath: &str) -> StarterReport {
    let failed = |message: String| StarterReport::Failed { message };
    let c = match Container::open(id, lxcpath) {
        Ok(c) => c,
        Err(err) => return failed(format!("{err}")),
    };
    if !c.is_defined() {
        return failed(format!("container {id:?} has no config in {lxcpath:?}"));
    }
    // A terminal (TTY containers) from the host's devpts is invisible
    // under the container's /dev/pts: bound onto /dev/console while the
    // host's mounts are still reachable, pvecri-init can reopen it there
    // so ttyname(3) works.
    if nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
        if let Ok(slave) = std::fs::read_link("/proc/self/fd/0") {
            let entry = format!("{} dev/console none bind,create=file 0 0", slave.display());
            if let Err(err) = c.set_config_item("lxc.mount.entry", &entry) {
                return failed(format!("{err}"));
            }
        }
    }
    // init must inherit our stdio, not a console pty.
    if c.config_item("lxc.console.path")
        .is_none_or(|v| v.is_empty())
    {
        if let Err(err) = c.set_config_item("lxc.console.path", "none") {
            return failed(format!("{err}"));
        }
    }
    if let Err(err) = c.want_daemonize(false) {
        return failed(format!("{err}"));
    }
    match c.start_foreground() {
        Ok(error_num) => StarterReport::Exited { error_num },
        Err(err) => failed(format!("{err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_round_trip() {
        for r in [
            StarterReport::Exited { error_num: 768 },
            StarterReport::Exited {
                error_num: 9 << 8 | 0x7f,
            },
            StarterReport::Failed {
                message: "liblxc start failed for container \"c1\"".into(),
            },
        ] {
            assert_eq!(StarterReport::parse(&r.line()), Some(r));
        }
    }

    #[test]
    fn truncated_or_empty_reports_are_none() {
        assert_eq!(StarterReport::parse(""), None);
        assert_eq!(StarterReport::parse("exit "), None);
        assert_eq!(StarterReport::parse("exit 7x"), None);
        assert_eq!(StarterReport::parse("bogus"), None);
    }
}
