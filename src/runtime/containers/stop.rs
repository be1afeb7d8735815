//! StopContainer: the stop signal (redelivered until the workload handles
//! it), then SIGKILL to the whole cgroup once the grace period is over.

use std::time::Duration;

use tracing::info;

use super::proc_start_time;
use crate::container::run_dir::RunDir;
use crate::container::{ContainerRecord, ContainerState};
use crate::runtime::error::RuntimeError;
use crate::runtime::{teardown, Runtime};

impl Runtime {
    /// Stops a running container: the stop signal, then SIGKILL once
    /// `timeout` seconds have passed. Idempotent.
    pub(crate) async fn stop_container(&self, id: &str, timeout: i64) -> Result<(), RuntimeError> {
        let c = match self.container(id) {
            Ok(c) => c,
            Err(RuntimeError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if c.state == ContainerState::Exited || c.state == ContainerState::Unknown {
            return Ok(());
        }
        let run_dir = self.container_run_dir(&c.id)?;
        // A restored container that was never started has no process yet
        // (one whose start is under way has its monitor: stopped below).
        if c.restored
            && c.state == ContainerState::Created
            && !teardown::monitor_alive(&run_dir, &c.id)
        {
            return Ok(());
        }
        let graceful = c.state == ContainerState::Running
            && timeout > 0
            && self
                .graceful_stop(
                    &c,
                    &run_dir,
                    parse_signal(&c.stop_signal).unwrap_or(nix::sys::signal::Signal::SIGTERM),
                    Duration::from_secs(timeout as u64),
                )
                .await;
        // Init has exited, or the grace period is over: SIGKILL whatever
        // is left in the cgroup, init included. Children of a hostPID or
        // shared-PID-namespace container survive their init otherwise.
        if !graceful {
            self.signal_init(&c, nix::sys::signal::Signal::SIGKILL);
        }
        crate::failpoint::hit("stop.after_signal")?;
        teardown::kill_leftovers(&c.id, &c.cgroup).await?;
        if !graceful && !wait_for_exit(&run_dir, &c.id, Duration::from_secs(10)).await {
            return Err(RuntimeError::Timeout {
                op: "stopping the container",
                id: c.id,
                seconds: 10,
            });
        }
        self.settle_if_monitor_lost(&c, run_dir).await;
        self.container(id)?;
        info!(container_id = %c.id, "container stopped");
        Ok(())
    }

    /// A container whose monitor is gone gets its exit recorded here
    /// (`teardown::settle_lost_monitor`).
    async fn settle_if_monitor_lost(&self, c: &ContainerRecord, run_dir: RunDir) {
        if run_dir.exit().exists() || teardown::monitor_alive(&run_dir, &c.id) {
            return;
        }
        let (id, cgroup) = (c.id.clone(), c.cgroup.clone());
        let _ = tokio::task::spawn_blocking(move || {
            teardown::settle_lost_monitor(&run_dir, &id, &cgroup)
        })
        .await;
    }

    /// Sends the stop signal and waits up to `timeout` for the exit. The
    /// workload is PID 1 of its namespace, and the kernel drops a signal
    /// that PID 1 has no handler for; right after StartContainer the
    /// workload may not have installed its handler yet. So while the
    /// signal is neither caught nor ignored it is sent again once the
    /// handler appears, never twice to a handler that got the first.
    async fn graceful_stop(
        &self,
        c: &ContainerRecord,
        run_dir: &RunDir,
        sig: nix::sys::signal::Signal,
        timeout: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut delivered = signal_disposition(c.init_pid, sig) != Disposition::Default;
        self.signal_init(c, sig);
        loop {
            let step = Duration::from_millis(if delivered { 1000 } else { 50 });
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if wait_for_exit(run_dir, &c.id, step.min(left)).await {
                return true;
            }
            if left <= step {
                return false;
            }
            if !delivered {
                match signal_disposition(c.init_pid, sig) {
                    Disposition::Caught => {
                        self.signal_init(c, sig);
                        delivered = true;
                    }
                    Disposition::Ignored => delivered = true,
                    Disposition::Default => {}
                }
            }
        }
    }

    fn signal_init(&self, c: &ContainerRecord, sig: nix::sys::signal::Signal) {
        if c.init_pid <= 0 || proc_start_time(c.init_pid) != Some(c.init_start_time) {
            return;
        }
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.init_pid), sig);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    Default,
    Caught,
    Ignored,
}

/// How process `pid` handles `sig`, from the SigCgt/SigIgn masks in
/// /proc; `Default` when it cannot be read.
fn signal_disposition(pid: i32, sig: nix::sys::signal::Signal) -> Disposition {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mask = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    let bit = 1u64 << (sig as i32 - 1);
    if mask("SigCgt:") & bit != 0 {
        Disposition::Caught
    } else if mask("SigIgn:") & bit != 0 {
        Disposition::Ignored
    } else {
        Disposition::Default
    }
}

/// Waits for the container's exit record, or for its monitor to be gone
/// (then nobody writes one: see `teardown::settle_lost_monitor`).
async fn wait_for_exit(run_dir: &RunDir, id: &str, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    for round in 0u32.. {
        if run_dir.exit().exists() {
            return true;
        }
        if round % 20 == 19 && !teardown::monitor_alive(run_dir, id) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// `SIGTERM`, `TERM`, `15` -> the signal.
pub(crate) fn parse_signal(s: &str) -> Option<nix::sys::signal::Signal> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).ok();
    }
    let name = if s.starts_with("SIG") {
        s.to_owned()
    } else {
        format!("SIG{s}")
    };
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse() {
        use nix::sys::signal::Signal;
        assert_eq!(parse_signal("SIGTERM"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("QUIT"), Some(Signal::SIGQUIT));
        assert_eq!(parse_signal("9"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal(""), None);
        assert_eq!(parse_signal("NOPE"), None);
    }
}
