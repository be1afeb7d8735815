//! StartContainer: releases the container's init, which waits on its
//! start FIFO, and returns once the workload has replaced it.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use tracing::info;

use super::proc_start_time;
use crate::container::ContainerState;
use crate::runtime::error::RuntimeError;
use crate::runtime::{now_ns, Runtime};

impl Runtime {
    /// Releases the container's init so it execs the workload.
    pub(crate) async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        // A spare monitor's start waits until container starts pause.
        self.spares.note_busy();
        let c = self.container(id)?;
        if c.state != ContainerState::Created {
            return Err(RuntimeError::container_state(
                &c,
                "only a created container can be started",
            ));
        }
        if c.restored {
            let started_at_ns = now_ns();
            let pid = self.start_restored(&c).await?;
            let start_time = proc_start_time(pid).unwrap_or_default();
            let c = self.record_started(&c.id, started_at_ns, Some((pid, start_time)))?;
            info!(container_id = %c.id, "container started");
            self.emit_container_event(crate::events::EventKind::Started, &c);
            self.watch_exit(&c);
            return Ok(());
        }
        let fifo = self.container_run_dir(&c.id)?.start_fifo();
        crate::failpoint::hit("start.before_release")?;
        // The workload may run and exit before this call returns; its start
        // time is taken before it is released, so that it never follows the
        // exit time the monitor records.
        let started_at_ns = now_ns();
        let released = release_init(&fifo, c.init_pid, c.init_start_time)
            .await
            .map_err(|e| RuntimeError::os("releasing the container's init", &c.id, e))?;
        // Return once the workload has replaced pvecri-init: until then a
        // stop signal would reach init, which as PID 1 without handlers
        // ignores it (runc's start likewise returns after the exec).
        wait_for_exec(c.init_pid, c.init_start_time, released).await;
        self.spares.note_busy();
        crate::failpoint::hit("start.before_record")?;
        let c = self.record_started(&c.id, started_at_ns, None)?;
        info!(container_id = %c.id, "container started");
        self.emit_container_event(crate::events::EventKind::Started, &c);
        Ok(())
    }

    /// Records the start on the stored copy: a workload that already ended
    /// may have been recorded exited meanwhile (its monitor's exit is
    /// noticed at once), and that must not be undone; its start time is
    /// kept, never later than its end.
    fn record_started(
        &self,
        id: &str,
        started_at_ns: i64,
        init: Option<(i32, u64)>,
    ) -> Result<crate::container::ContainerRecord, RuntimeError> {
        let stored = self
            .store
            .update::<crate::container::ContainerRecord>(id, |r| {
                if let Some((pid, start_time)) = init {
                    r.init_pid = pid;
                    r.init_start_time = start_time;
                }
                match r.state {
                    ContainerState::Created => {
                        r.started_at_ns = started_at_ns;
                        r.state = ContainerState::Running;
                    }
                    ContainerState::Exited => {
                        r.started_at_ns = started_at_ns.min(r.finished_at_ns);
                    }
                    ContainerState::Running | ContainerState::Unknown => {}
                }
                true
            })?;
        stored.ok_or_else(|| RuntimeError::NotFound {
            what: "container",
            id: id.to_owned(),
        })
    }
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        // Non-blocking: ENXIO instead of a hang when init is not reading.
        self.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
    }
}

/// Writes the start byte into init's FIFO and returns the FIFO's write
/// end. Init may not have opened its end yet right after the container
/// came up (the open then fails with ENXIO), so retry for a bounded time
/// while init is alive.
async fn release_init(fifo: &Path, pid: i32, start_time: u64) -> std::io::Result<std::fs::File> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags_nonblock()
            .open(fifo)
        {
            Ok(mut f) => return f.write_all(b"S").map(|()| f),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                if proc_start_time(pid) != Some(start_time) {
                    return Err(std::io::Error::other(
                        "the container's init exited before it was started",
                    ));
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(std::io::Error::other(
                        "the container's init is not waiting for its start signal",
                    ));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Waits (bounded) until process `pid` no longer runs pvecri-init: it
/// exec'd the workload, or it exited. pvecri-init holds the start FIFO's
/// read end open, close-on-exec, until its exec: `fifo` (the write end)
/// reports an error once that last reader is gone, which is the moment
/// to look. An init that does not hold it (one of an older pvecri) is
/// polled for, at a fine step on this blocking thread (tokio's timers
/// round up to whole milliseconds).
async fn wait_for_exec(pid: i32, start_time: u64, fifo: std::fs::File) {
    let _ = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        wait_for_no_reader(&fifo, deadline);
        let stat = format!("/proc/{pid}/stat");
        let mut step = EXEC_POLL;
        while std::time::Instant::now() < deadline {
            // One read gives both the start time and the command name.
            let Ok(text) = std::fs::read_to_string(&stat) else {
                return;
            };
            if crate::sandbox::infra::start_time_of_stat(&text) != Some(start_time)
                || command_of_stat(&text) != Some(INIT_COMM)
            {
                return;
            }
            std::thread::sleep(step);
            // Fine steps first, then coarser: a slow init is not spun on.
            step = (step * 2).min(EXEC_POLL_MAX);
        }
    })
    .await;
}

/// Blocks until the FIFO of write end `fifo` has no reader left (or the
/// deadline passes).
fn wait_for_no_reader(fifo: &std::fs::File, deadline: std::time::Instant) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        if ms == 0 {
            return;
        }
        // No events asked for: POLLERR (no reader) is always reported.
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::empty())];
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return,
        }
    }
}

/// The command name in the text of a /proc/<pid>/stat (in parentheses,
/// and possibly holding some itself).
fn command_of_stat(stat: &str) -> Option<&str> {
    let (_, rest) = stat.split_once('(')?;
    Some(rest.rsplit_once(')')?.0)
}

/// The first step of [`wait_for_exec`], doubled up to [`EXEC_POLL_MAX`].
const EXEC_POLL: Duration = Duration::from_micros(100);
const EXEC_POLL_MAX: Duration = Duration::from_millis(2);

/// The kernel's name for a process running `/.pvecri-init`.
const INIT_COMM: &str = ".pvecri-init";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_read_between_the_outer_parentheses() {
        assert_eq!(
            command_of_stat("42 (.pvecri-init) S 1 42 42 0 -1"),
            Some(".pvecri-init")
        );
        assert_eq!(command_of_stat("7 (a) b) R 1"), Some("a) b"));
        assert_eq!(command_of_stat("garbage"), None);
    }
}
