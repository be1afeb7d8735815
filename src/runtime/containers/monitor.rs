//! Starting a container's monitor (`pvecri monitor`), which detaches and
//! reports on a pipe once the container's init runs.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::non_empty;
use crate::container::run_dir::RunDir;
use crate::monitor::MonitorArgs;
use crate::runtime::error::RuntimeError;
use crate::runtime::Runtime;

/// The fd number the monitor reports readiness on.
const READY_FD: i32 = 3;

/// How long CreateContainer waits for the container's init to come up.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long StartContainer of a restored container waits for CRIU.
const RESTORE_READY_TIMEOUT: Duration = Duration::from_secs(600);

/// The container's stdio as its config asks: a stdin attach clients write
/// to (`open`), closed after the first client's stdin ends (`once`), on a
/// terminal (`tty`).
#[derive(Debug, Clone, Copy)]
pub(super) struct StdinMode {
    pub(super) open: bool,
    pub(super) once: bool,
    pub(super) tty: bool,
}

impl Runtime {
    /// Starts `pvecri monitor` (which detaches) and waits for it to report
    /// the container's init running.
    pub(super) async fn spawn_monitor(
        &self,
        id: &str,
        run_dir: &RunDir,
        cgroup: &str,
        log_file: &str,
        stdin: StdinMode,
        restore: Option<PathBuf>,
    ) -> Result<i32, RuntimeError> {
        let exe = &self.helper_exe;
        // A restore reads the workload's whole memory back first.
        let ready_timeout = if restore.is_some() {
            RESTORE_READY_TIMEOUT
        } else {
            READY_TIMEOUT
        };
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| RuntimeError::os("pipe", id, e))?;
        let args = MonitorArgs {
            id: id.to_owned(),
            lxcpath: self.config.lxc_path(),
            run_dir: run_dir.path().to_owned(),
            cgroup: non_empty(cgroup).map(str::to_owned),
            log: non_empty(log_file).map(PathBuf::from),
            ready_fd: None,
            max_log_line: crate::monitor::DEFAULT_MAX_LINE,
            stdin: stdin.open,
            stdin_once: stdin.open && stdin.once,
            tty: stdin.tty,
            restore,
        };
        let result = if self.spares.assign(&args, &write) {
            // The spare holds its own copy now: ours must go, so that the
            // answer's end of file means the monitor is gone.
            drop(write);
            wait_ready(id, run_dir, read, ready_timeout).await
        } else {
            match start_monitor(exe, args, write, run_dir, id).await {
                Ok(()) => wait_ready(id, run_dir, read, ready_timeout).await,
                Err(e) => Err(e),
            }
        };
        // Whether one was used or none was idle, the pool gets back to its
        // size, once starts pause: a spare's start (a fork and exec of the
        // helper, its detach) would otherwise share the CPU with this
        // container's start.
        self.spares.refill_when_quiet();
        result
    }
}

/// Waits for the monitor's answer on `read`: init's pid once the container
/// runs, or why it did not start.
async fn wait_ready(
    id: &str,
    run_dir: &RunDir,
    read: OwnedFd,
    ready_timeout: Duration,
) -> Result<i32, RuntimeError> {
    let answer = tokio::time::timeout(ready_timeout, read_all(read))
        .await
        .map_err(|_| RuntimeError::Timeout {
            op: "waiting for the container to come up",
            id: id.to_owned(),
            seconds: ready_timeout.as_secs(),
        })?
        .map_err(|e| RuntimeError::os("reading the monitor's answer", id, e))?;
    let answer = answer.trim();
    if let Some(pid) = answer.strip_prefix("ok ") {
        return pid.trim().parse().map_err(|_| {
            RuntimeError::os(
                "starting the container",
                id,
                format!("bad monitor answer {answer:?}"),
            )
        });
    }
    let detail = std::fs::read_to_string(run_dir.lxc_log()).unwrap_or_default();
    Err(RuntimeError::os(
        "starting the container",
        id,
        format!(
            "{} {}",
            answer.strip_prefix("err ").unwrap_or(answer),
            tail(&detail, 3000)
        ),
    ))
}

/// Starts `pvecri-helper monitor` with the ready pipe's write end as fd
/// [`READY_FD`] and returns once it has detached (its pid file written).
async fn start_monitor(
    exe: &std::path::Path,
    args: MonitorArgs,
    write: OwnedFd,
    run_dir: &RunDir,
    id: &str,
) -> Result<(), RuntimeError> {
    let mut cmd = std::process::Command::new(exe);
    cmd.args(
        MonitorArgs {
            ready_fd: Some(READY_FD),
            ..args
        }
        .to_args(),
    )
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(spawn_log(run_dir));
    // `write` stays open here until the launcher has exited.
    crate::runtime::child_fd::pass_as(&mut cmd, write.as_raw_fd(), READY_FD);
    // The monitor double-forks: this child exits at once and is reaped here.
    let status = tokio::task::spawn_blocking(move || {
        let status = cmd.status();
        drop(write);
        status
    })
    .await
    .map_err(|e| RuntimeError::os("spawning the monitor", id, e))?
    .map_err(|e| RuntimeError::os("spawning the monitor", id, e))?;
    if !status.success() {
        let why = std::fs::read_to_string(run_dir.monitor_spawn_log()).unwrap_or_default();
        return Err(RuntimeError::os(
            "spawning the monitor",
            id,
            format!("monitor exited with {status}: {}", why.trim()),
        ));
    }
    Ok(())
}

/// Where the monitor's first child reports errors from before it detached.
fn spawn_log(run_dir: &RunDir) -> std::process::Stdio {
    std::fs::File::create(run_dir.monitor_spawn_log())
        .map(std::process::Stdio::from)
        .unwrap_or_else(|_| std::process::Stdio::null())
}

fn tail(s: &str, max: usize) -> &str {
    let s = s.trim();
    let start = s.len().saturating_sub(max);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    &s[start..]
}

async fn read_all(fd: OwnedFd) -> std::io::Result<String> {
    let mut rx = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
    let mut out = String::new();
    rx.read_to_string(&mut out).await?;
    Ok(out)
}
