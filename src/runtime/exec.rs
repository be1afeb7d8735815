//! ExecSync: a command in a running container, its output captured.
//!
//! The output is read to its end and kept up to a budget
//! ([`super::exec_output`]), so a command writing without end blocks
//! neither itself nor the call. The call returns at the timeout, or once
//! the command has exited and its pipes closed; a process the command left
//! in the background may keep them open, so after the exit the pipes get
//! [`DRAIN_AFTER_EXIT`] more and are then abandoned.

use std::time::Duration;

use super::error::RuntimeError;
use super::exec_output::{self, Captured};
use super::Runtime;
use crate::container::run_dir::RunDir;
use crate::container::{ContainerRecord, ContainerState};
use crate::exec::ExecHelperArgs;

/// How long output is still read once the command has exited.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

pub(crate) struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

impl Runtime {
    pub(crate) async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        if cmd.is_empty() {
            return Err(RuntimeError::Invalid {
                field: "cmd",
                message: "a command is required".into(),
            });
        }
        let c = self.container(id)?;
        if c.state != ContainerState::Running {
            return Err(RuntimeError::container_state(
                &c,
                "exec needs a running container",
            ));
        }
        let exe = self.helper_exe.clone();
        let spec = RunDir::new(&self.config.runtime_dir, &c.id)?.spec();
        let (init_pid, init_start_time) = direct_init(&c);
        let args = ExecHelperArgs {
            id: c.id.clone(),
            lxcpath: self.config.lxc_path(),
            spec,
            init: self.init_for_exec(),
            timeout: timeout.as_secs(),
            tty: false,
            init_pid,
            init_start_time,
            argv: cmd,
        };
        let mut child = tokio::process::Command::new(exe)
            .args(args.to_args())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            // Its own process group, so a timeout kills the attached command too.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| RuntimeError::os("spawning the exec helper", &c.id, e))?;
        let pid = child.id().unwrap_or_default() as i32;
        let started = std::time::Instant::now();
        let mut out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let (mut so, mut se) = (Captured::default(), Captured::default());
        let run = async {
            let (exited_tx, exited) = tokio::sync::oneshot::channel::<()>();
            let wait = async {
                let status = child.wait().await;
                let _ = exited_tx.send(());
                status
            };
            let read = async {
                let both = async { tokio::join!(so.read_all(&mut out), se.read_all(&mut err)) };
                let drain_deadline = async {
                    let _ = exited.await;
                    tokio::time::sleep(DRAIN_AFTER_EXIT).await;
                };
                tokio::select! {
                    (r1, r2) = both => r1.and(r2).map(|()| true),
                    () = drain_deadline => Ok(false),
                }
            };
            let (status, drained) = tokio::join!(wait, read);
            let drained = drained.map_err(|e| RuntimeError::os("reading exec output", id, e))?;
            let status =
                status.map_err(|e| RuntimeError::os("waiting for the exec helper", id, e))?;
            Ok::<_, RuntimeError>((status, drained))
        };
        // The helper enforces the timeout itself (it owns the attached
        // process); this bound only catches a helper that hangs.
        let result = if timeout.is_zero() {
            run.await
        } else {
            match tokio::time::timeout(timeout + Duration::from_secs(5), run).await {
                Ok(r) => r,
                Err(_) => {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    return Err(RuntimeError::Timeout {
                        op: "exec",
                        id: c.id,
                        seconds: timeout.as_secs(),
                    });
                }
            }
        };
        let (status, drained) = result?;
        if !drained {
            tracing::info!(
                container_id = %c.id,
                "exec output still open after the command exited (a background process holds it); returning what was read"
            );
        }
        let (mut stdout, mut stderr) = (so.data, se.data);
        let discarded = so.discarded + se.discarded + exec_output::fit(&mut stdout, &mut stderr);
        if discarded > 0 {
            tracing::info!(
                container_id = %c.id,
                discarded,
                kept = stdout.len() + stderr.len(),
                "exec output truncated"
            );
        }
        // 124 from the helper means it killed the command at the deadline;
        // a command that itself exits 124 before the deadline is not a timeout.
        if status.code() == Some(i32::from(crate::exec::TIMED_OUT))
            && !timeout.is_zero()
            && started.elapsed() >= timeout
        {
            return Err(RuntimeError::Timeout {
                op: "exec",
                id: c.id,
                seconds: timeout.as_secs(),
            });
        }
        use std::os::unix::process::ExitStatusExt;
        let exit_code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        Ok(ExecOutput {
            stdout,
            stderr,
            exit_code,
        })
    }
}

/// The init (pid, start time) the exec helper joins the container
/// through (`exec::join`): every container whose init was recorded, which
/// is every one created or restored by this version. `None`s (liblxc's
/// attach) only for a record without one.
pub(super) fn direct_init(c: &ContainerRecord) -> (Option<i32>, Option<u64>) {
    if c.init_pid > 0 && c.init_start_time > 0 {
        (Some(c.init_pid), Some(c.init_start_time))
    } else {
        (None, None)
    }
}
