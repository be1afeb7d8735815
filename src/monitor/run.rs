//! The monitor's life: validate, lock the run dir, detach, then hand over
//! to the [`Session`] until the container is gone and its exit record is
//! written; failures on the way still end in `err` and an exit record.

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{bail, Context};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::{self, SigHandler, Signal};

use super::detach::{self, Role};
use super::exit::ExitRecord;
use super::ready::{Readiness, ReadyFd};
use super::session::Session;
use super::timestamp::unix_nanos;
use super::MonitorArgs;
use crate::container::run_dir::{self, RunDir};

/// Checked arguments.
pub(super) struct Settings {
    pub(super) id: String,
    pub(super) lxcpath: String,
    pub(super) run_dir: RunDir,
    pub(super) cgroup: Option<String>,
    pub(super) log: Option<PathBuf>,
    pub(super) max_log_line: usize,
    pub(super) stdin: bool,
    pub(super) stdin_once: bool,
    pub(super) tty: bool,
    pub(super) restore: Option<PathBuf>,
}

impl Settings {
    fn from_args(args: &MonitorArgs) -> anyhow::Result<Self> {
        let id = args.id.clone();
        run_dir::check_id(&id)?;
        let Some(lxcpath) = args.lxcpath.to_str() else {
            bail!("lxcpath {:?} is not UTF-8", args.lxcpath);
        };
        if !args.run_dir.is_dir() {
            bail!("run dir {:?} is not a directory", args.run_dir);
        }
        if args.max_log_line == 0 {
            bail!("--max-log-line must be at least 1");
        }
        Ok(Self {
            id,
            lxcpath: lxcpath.to_owned(),
            run_dir: RunDir::at(&args.run_dir),
            cgroup: args.cgroup.clone().filter(|c| !c.is_empty()),
            log: args.log.clone().filter(|p| !p.as_os_str().is_empty()),
            max_log_line: args.max_log_line,
            stdin: args.stdin,
            stdin_once: args.stdin_once,
            tty: args.tty,
            restore: args.restore.clone(),
        })
    }
}

/// `pvecri monitor`: returns in the launcher process once the monitor is
/// detached, and in the monitor when the container is gone.
pub(crate) fn run(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    set_signals()?;
    let mut ready = take_ready_fd(args.ready_fd)?;
    let (settings, _lock) = match prepare(&args) {
        Ok(p) => p,
        Err(err) => return Err(fail_ready(&mut ready, err)),
    };
    match detach::detach(Some(&settings.run_dir))? {
        Role::Launcher(code) => return Ok(code),
        Role::Monitor => {}
    }
    Ok(serve(&settings, &mut ready, PidFile::Written))
}

/// A spare monitor's container (`super::spare`): the same as [`run`] after
/// the detach, which the spare did long before. Its own pid goes into
/// `monitor.pid` before anything can report the container running.
pub(super) fn run_assigned(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    let mut ready = take_ready_fd(args.ready_fd)?;
    let (settings, _lock) = match prepare(&args) {
        Ok(p) => p,
        Err(err) => return Err(fail_ready(&mut ready, err)),
    };
    Ok(serve(&settings, &mut ready, PidFile::Write))
}

/// Whether the monitor writes its own `monitor.pid` (a spare's does; a
/// monitor started on demand had its launcher write it at the detach).
#[derive(Clone, Copy, PartialEq, Eq)]
enum PidFile {
    Write,
    Written,
}

/// The signal dispositions a monitor needs, whatever its parent left.
pub(super) fn set_signals() -> anyhow::Result<()> {
    // SAFETY: ignoring a signal installs no handler code. Writes to a
    // vanished reader (ready fd, control client) must be errors, not death.
    unsafe { signal::signal(Signal::SIGPIPE, SigHandler::SigIgn) }.context("ignore SIGPIPE")?;
    // SAFETY: restoring the default installs no handler code. An inherited
    // SIG_IGN would make the kernel reap our children before waitpid.
    unsafe { signal::signal(Signal::SIGCHLD, SigHandler::SigDfl) }.context("reset SIGCHLD")?;
    Ok(())
}

/// Checks the arguments and takes the run dir: the lock is held for the
/// monitor's life (a second monitor for the same run dir would clobber
/// monitor.sock, monitor.pid and exit.json).
fn prepare(args: &MonitorArgs) -> anyhow::Result<(Settings, std::fs::File)> {
    let settings = Settings::from_args(args)?;
    let lock = detach::lock_run_dir(&settings.run_dir)?;
    // An exit record of an earlier start of this container is stale.
    match std::fs::remove_file(settings.run_dir.exit()) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(e).context("cannot remove the stale exit record");
        }
        _ => {}
    }
    Ok((settings, lock))
}

/// The detached monitor's life: its container from start to exit record.
fn serve(settings: &Settings, ready: &mut Option<ReadyFd>, pid_file: PidFile) -> ExitCode {
    // Nothing of the daemon's working directory is held (the starter and
    // the container inherit it).
    let _ = std::env::set_current_dir("/");
    // The starter is forked before the monitor's own files are made
    // (`Session::start`); should the start fail before that, they are made
    // here, for the failure's log lines.
    let mut set_up = false;
    let session = Session::start(settings, ready, || {
        set_up = true;
        own_setup(settings, pid_file)
    });
    if !set_up {
        let _ = own_setup(settings, pid_file);
    }
    let span = tracing::info_span!("monitor", container_id = %settings.id);
    let _enter = span.enter();
    let result = session.and_then(|mut session| {
        tracing::info!(
            pid = std::process::id(),
            starter = session.starter().as_raw(),
            "monitor started"
        );
        // The start's temporary allocations are freed: hand the memory
        // back before the long wait (hundreds of monitors run on a node).
        crate::memory::trim();
        session.run_loop()?;
        session.finish()
    });
    if let Err(err) = &result {
        tracing::error!(error = format!("{err:#}"), "monitor failed");
        let record = ExitRecord::start_failed(format!("{err:#}"), unix_nanos(SystemTime::now()));
        if let Err(e) = record.write_atomic(&settings.run_dir) {
            tracing::error!(error = %e, "cannot write the exit record");
        }
        send_failure(ready, err);
        let _ = std::fs::remove_file(settings.run_dir.control_socket());
    }
    let _ = std::fs::remove_file(settings.run_dir.monitor_pid());
    tracing::info!("monitor exiting");
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What the monitor needs of its own, none of it before the container
/// runs: its pid file (`pid_file`), no terminal, and diagnostics in
/// monitor.log.
fn own_setup(settings: &Settings, pid_file: PidFile) -> anyhow::Result<()> {
    if pid_file == PidFile::Write {
        detach::write_pid_file(&settings.run_dir, nix::unistd::getpid())?;
    }
    detach::redirect_stdio(&settings.run_dir)?;
    init_tracing();
    Ok(())
}

/// Reports `err` on the ready fd, if it is still open.
fn send_failure(ready: &mut Option<ReadyFd>, err: &anyhow::Error) {
    if let Some(ready) = ready.take() {
        ready.send(&Readiness::Failed {
            message: format!("{err:#}"),
        });
    }
}

fn fail_ready(ready: &mut Option<ReadyFd>, err: anyhow::Error) -> anyhow::Error {
    send_failure(ready, &err);
    err
}

/// Takes ownership of the inherited ready fd and makes it close-on-exec so
/// neither the starter's liblxc nor the container inherit it.
fn take_ready_fd(fd: Option<i32>) -> anyhow::Result<Option<ReadyFd>> {
    let Some(fd) = fd else { return Ok(None) };
    Ok(Some(ReadyFd::new(take_inherited_fd("--ready-fd", fd)?)))
}

/// Takes ownership of descriptor `fd`, which the daemon passed as the
/// option `option` for this process's use alone, and makes it
/// close-on-exec.
pub(super) fn take_inherited_fd(option: &str, fd: i32) -> anyhow::Result<OwnedFd> {
    if fd <= 2 {
        bail!("{option} {fd} would be one of stdin/stdout/stderr");
    }
    // SAFETY: F_GETFD only checks that the number is an open fd.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        bail!("{option} {fd} is not an open file descriptor");
    }
    // SAFETY: the daemon passed this fd to us for our exclusive use and
    // nothing else in this process has claimed it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    fcntl(owned.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .with_context(|| format!("set CLOEXEC on {option} {fd}"))?;
    Ok(owned)
}

fn init_tracing() {
    // A plain writer on stderr (monitor.log): no background threads, which
    // the starter's fork and liblxc's foreground start both need. A level,
    // not an EnvFilter: a node runs hundreds of monitors, and the filter's
    // directive matchers cost each of them memory of its own.
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(io::stderr)
        .with_ansi(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn args(run_dir: &Path) -> MonitorArgs {
        MonitorArgs {
            id: "c1".into(),
            lxcpath: "/var/lib/pvecri/lxc".into(),
            run_dir: run_dir.to_owned(),
            cgroup: None,
            log: Some(PathBuf::new()),
            ready_fd: None,
            max_log_line: 16384,
            stdin: false,
            stdin_once: false,
            tty: false,
            restore: None,
        }
    }

    #[test]
    fn settings_validate_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::from_args(&args(dir.path())).unwrap();
        assert_eq!(s.log, None, "an empty --log discards");
        for bad in ["", "..", "a/b", "x\0y"] {
            let mut a = args(dir.path());
            a.id = bad.into();
            assert!(Settings::from_args(&a).is_err(), "{bad:?}");
        }
        let mut a = args(dir.path());
        a.run_dir = dir.path().join("missing");
        assert!(Settings::from_args(&a).is_err());
        let mut a = args(dir.path());
        a.max_log_line = 0;
        assert!(Settings::from_args(&a).is_err());
    }

    #[test]
    fn ready_fd_must_be_open_and_not_stdio() {
        assert!(take_ready_fd(Some(1)).is_err());
        assert!(take_ready_fd(Some(987_654)).is_err());
        assert!(take_ready_fd(None).unwrap().is_none());
    }
}
