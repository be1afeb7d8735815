//! Detaching the monitor from the daemon: `setsid` and a double fork, so the
//! monitor survives daemon restarts and is never a session leader.
//!
//! The process the daemon spawned waits for the intermediate child and exits
//! with its status, so once the daemon has reaped it `monitor.pid` exists
//! (the intermediate child writes the final pid before exiting).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::process::ExitCode;

use anyhow::{bail, Context};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, setsid, ForkResult, Pid};

use crate::container::run_dir::RunDir;

/// Which process returned from [`detach`].
pub(super) enum Role {
    /// The process the daemon spawned: exit with this code.
    Launcher(ExitCode),
    /// The detached monitor.
    Monitor,
}

/// Takes the run dir's monitor lock, failing if another monitor holds it.
/// The lock lives as long as the returned file's descriptor in any process:
/// taken before [`detach`], it passes to the monitor with the fork.
pub(super) fn lock_run_dir(run_dir: &RunDir) -> anyhow::Result<std::fs::File> {
    let path = run_dir.monitor_lock();
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on an fd we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } < 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let pid = std::fs::read_to_string(run_dir.monitor_pid()).unwrap_or_default();
            bail!(
                "another monitor (pid {}) is running for {}",
                pid.trim(),
                run_dir.path().display()
            );
        }
        return Err(err).with_context(|| format!("cannot lock {}", path.display()));
    }
    Ok(file)
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ThreadsError {
    #[error("cannot list /proc/self/task")]
    List(#[source] std::io::Error),
    #[error("this process must be single-threaded, it has {0} threads")]
    Many(usize),
}

/// Fails unless this process has exactly one thread: forking a threaded
/// process, liblxc's foreground start and entering a user or mount
/// namespace need that (the monitor and the exec helper).
pub(crate) fn ensure_single_threaded() -> Result<(), ThreadsError> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map_err(ThreadsError::List)?
        .count();
    if threads != 1 {
        return Err(ThreadsError::Many(threads));
    }
    Ok(())
}

/// Detaches; returns in the launcher (after the intermediate child exited)
/// and in the final monitor process. With `pid_file`, the intermediate
/// child writes the final pid into that run dir's `monitor.pid` first (a
/// spare monitor has no run dir yet: it writes its own once it has one).
pub(super) fn detach(pid_file: Option<&RunDir>) -> anyhow::Result<Role> {
    ensure_single_threaded()?;
    // SAFETY: the process is single-threaded (checked above), so the child
    // may run arbitrary code after fork.
    match unsafe { fork() }.context("first fork")? {
        ForkResult::Parent { child } => {
            let code = match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => ExitCode::SUCCESS,
                _ => ExitCode::FAILURE,
            };
            Ok(Role::Launcher(code))
        }
        ForkResult::Child => {
            if let Err(err) = setsid() {
                eprintln!("pvecri monitor: setsid: {err}");
                exit_now(1);
            }
            // SAFETY: still single-threaded: the first child only forked.
            match unsafe { fork() } {
                Ok(ForkResult::Parent { child }) => {
                    let written = pid_file.map_or(Ok(()), |dir| write_pid_file(dir, child));
                    let code = match written {
                        Ok(()) => 0,
                        Err(err) => {
                            eprintln!("pvecri monitor: {err:#}");
                            let _ =
                                nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                            1
                        }
                    };
                    exit_now(code)
                }
                Ok(ForkResult::Child) => Ok(Role::Monitor),
                Err(err) => {
                    eprintln!("pvecri monitor: second fork: {err}");
                    exit_now(1)
                }
            }
        }
    }
}

/// Points stdin at /dev/null and stdout/stderr at `run_dir/monitor.log`, so
/// the monitor holds nothing of the daemon's and its diagnostics persist.
pub(super) fn redirect_stdio(run_dir: &RunDir) -> anyhow::Result<()> {
    let null = std::fs::File::open("/dev/null").context("cannot open /dev/null")?;
    let path = run_dir.monitor_log();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    nix::unistd::dup2_stdin(null.as_fd()).context("dup2 stdin")?;
    nix::unistd::dup2_stdout(log.as_fd()).context("dup2 stdout")?;
    nix::unistd::dup2_stderr(log.as_fd()).context("dup2 stderr")?;
    Ok(())
}

/// Points stdin, stdout and stderr at /dev/null: a spare monitor holds
/// nothing of the daemon's while it waits for a container.
pub(super) fn quiet_stdio() -> anyhow::Result<()> {
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("cannot open /dev/null")?;
    nix::unistd::dup2_stdin(null.as_fd()).context("dup2 stdin")?;
    nix::unistd::dup2_stdout(null.as_fd()).context("dup2 stdout")?;
    nix::unistd::dup2_stderr(null.as_fd()).context("dup2 stderr")?;
    Ok(())
}

/// Writes the pid file whole (temp file and rename).
pub(super) fn write_pid_file(run_dir: &RunDir, pid: Pid) -> anyhow::Result<()> {
    let path = run_dir.monitor_pid();
    let tmp = run_dir.monitor_pid_tmp();
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    writeln!(file, "{pid}").with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot rename to {}", path.display()))
}

/// Ends a forked intermediate process without running destructors or
/// flushing state it shares with its parent.
pub(super) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit only terminates the calling process.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_dir_lock_is_exclusive_until_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::at(tmp.path());
        std::fs::write(dir.monitor_pid(), "4321\n").unwrap();
        let held = lock_run_dir(&dir).unwrap();
        let err = lock_run_dir(&dir).unwrap_err();
        assert!(
            err.to_string().contains("another monitor (pid 4321)"),
            "{err}"
        );
        drop(held);
        lock_run_dir(&dir).unwrap();
    }

    #[test]
    fn pid_file_is_written_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::at(tmp.path());
        write_pid_file(&dir, Pid::from_raw(1234)).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.monitor_pid()).unwrap(),
            "1234\n"
        );
        assert!(!dir.monitor_pid_tmp().exists());
    }
}
