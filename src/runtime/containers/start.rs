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
        let mut c = self.container(id)?;
        if c.state != ContainerState::Created {
            return Err(RuntimeError::container_state(
                &c,
                "only a created container can be started",
            ));
        }
        if c.restored {
            let started_at_ns = now_ns();
            let pid = self.start_restored(&c).await?;
            c.init_pid = pid;
            c.init_start_time = proc_start_time(pid).unwrap_or_default();
            c.started_at_ns = started_at_ns;
            c.state = ContainerState::Running;
            self.store.put(&c)?;
            info!(container_id = %c.id, "container started");
            self.emit_container_event(crate::events::EventKind::Started, &c);
            return Ok(());
        }
        let fifo = self.container_run_dir(&c.id)?.start_fifo();
        crate::failpoint::hit("start.before_release")?;
        // The workload may run and exit before this call returns; its start
        // time is taken before it is released, so that it never follows the
        // exit time the monitor records.
        let started_at_ns = now_ns();
        release_init(&fifo, c.init_pid, c.init_start_time)
            .await
            .map_err(|e| RuntimeError::os("releasing the container's init", &c.id, e))?;
        // Return once the workload has replaced pvecri-init: until then a
        // stop signal would reach init, which as PID 1 without handlers
        // ignores it (runc's start likewise returns after the exec).
        wait_for_exec(c.init_pid, c.init_start_time).await;
        crate::failpoint::hit("start.before_record")?;
        c.started_at_ns = started_at_ns;
        c.state = ContainerState::Running;
        self.store.put(&c)?;
        info!(container_id = %c.id, "container started");
        self.emit_container_event(crate::events::EventKind::Started, &c);
        Ok(())
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

/// Writes the start byte into init's FIFO. Init may not have opened its
/// end yet right after the container came up (the open then fails with
/// ENXIO), so retry for a bounded time while init is alive.
async fn release_init(fifo: &Path, pid: i32, start_time: u64) -> std::io::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags_nonblock()
            .open(fifo)
        {
            Ok(mut f) => return f.write_all(b"S"),
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
/// exec'd the workload, or it exited.
async fn wait_for_exec(pid: i32, start_time: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if proc_start_time(pid) != Some(start_time) {
            return;
        }
        match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            Ok(comm) if comm.trim_end() == INIT_COMM => {}
            _ => return,
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The kernel's name for a process running `/.pvecri-init`.
const INIT_COMM: &str = ".pvecri-init";
