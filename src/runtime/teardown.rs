//! Ending a container for good: every process left in its cgroup, the
//! cgroups themselves (the container's and its monitor's, on every
//! hierarchy), and a monitor that died before it could record how the
//! container ended.

use std::time::Duration;

use tracing::{info, warn};

use super::RuntimeError;
use crate::cgroups::tree::{self, KillMethod};
use crate::container::run_dir::RunDir;
use crate::monitor::exit::ExitRecord;

/// How long the processes of a cgroup get to die once SIGKILLed, and a
/// cgroup to become removable.
pub(crate) const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a monitor gets to write its exit record and leave on its own
/// once its container is gone, before it is killed too.
const MONITOR_GRACE: Duration = Duration::from_secs(3);

fn tree_error(op: &'static str, id: &str, e: tree::TreeError) -> RuntimeError {
    RuntimeError::os(op, id, e)
}

/// SIGKILLs whatever is still in the container's cgroup and waits until it
/// is gone. With its own PID namespace the container's processes die with
/// its init; with the host's (hostPID) or the pod's shared one they do not.
pub(crate) async fn kill_leftovers(id: &str, container_cgroup: &str) -> Result<(), RuntimeError> {
    let (id2, rel) = (id.to_owned(), container_cgroup.to_owned());
    let method = tokio::task::spawn_blocking(move || {
        let h = tree::hierarchies()?;
        tree::kill_and_wait(&h, &rel, KILL_TIMEOUT)
    })
    .await
    .map_err(|e| RuntimeError::os("killing the container's processes", &id2, e))?
    .map_err(|e| tree_error("killing the container's processes", id, e))?;
    if method != KillMethod::Empty {
        info!(container_id = %id, ?method, "killed processes left in the container's cgroup");
    }
    Ok(())
}

/// Kills what is left of the container (its cgroup) and of its monitor
/// (the monitor's cgroup, after a grace period in which it exits by
/// itself), then removes both cgroups on every hierarchy. Fails, naming
/// the survivors, when a cgroup cannot be emptied or removed.
pub(crate) async fn remove_cgroups(
    id: &str,
    container_cgroup: &str,
    monitor_cgroup: &str,
) -> Result<(), RuntimeError> {
    let (id2, c, m) = (
        id.to_owned(),
        container_cgroup.to_owned(),
        monitor_cgroup.to_owned(),
    );
    tokio::task::spawn_blocking(move || {
        let h = tree::hierarchies()?;
        tree::kill_and_wait(&h, &c, KILL_TIMEOUT)?;
        let deadline = std::time::Instant::now() + MONITOR_GRACE;
        while !tree::members(&h, &m).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        tree::kill_and_wait(&h, &m, KILL_TIMEOUT)?;
        tree::remove(&h, &c, KILL_TIMEOUT)?;
        tree::remove(&h, &m, KILL_TIMEOUT)
    })
    .await
    .map_err(|e| RuntimeError::os("removing the container's cgroups", &id2, e))?
    .map_err(|e| tree_error("removing the container's cgroups", id, e))
}

/// Whether the container's monitor is running: the pid in its pid file is
/// a live `pvecri monitor` for this container.
pub(crate) fn monitor_alive(run_dir: &RunDir, id: &str) -> bool {
    let Some(pid) = run_dir.read_monitor_pid() else {
        return false;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_monitor = args.contains(&&b"monitor"[..]) && args.contains(&id.as_bytes());
    is_monitor && !tree::is_zombie(pid)
}

/// A container whose monitor died (killed, OOM) has nobody to collect its
/// exit, relay its output or record how it ended. It is ended here: its
/// processes are SIGKILLed and an exit record says why, so the kubelet
/// sees it exited and restarts it by its policy.
pub(crate) fn settle_lost_monitor(run_dir: &RunDir, id: &str, container_cgroup: &str) {
    // The monitor may have written its record just before it went.
    if run_dir.exit().exists() {
        return;
    }
    warn!(container_id = %id, "the container's monitor is gone: killing the container");
    // No waiting here (this runs inside status queries): StopContainer and
    // RemoveContainer wait for the cgroup to empty.
    match tree::hierarchies() {
        Ok(h) => {
            tree::kill(&h, container_cgroup);
        }
        Err(e) => {
            warn!(container_id = %id, error = %crate::errors::chain(&e), "cannot kill the container")
        }
    }
    let record = ExitRecord::unknown(
        false,
        "the container's monitor died and its process was lost; pvecri killed what was left"
            .to_owned(),
        super::now_ns(),
    );
    if let Err(e) = record.write_atomic(run_dir) {
        warn!(container_id = %id, error = %crate::errors::chain(&e), "cannot write the exit record");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_naming_something_else_is_no_monitor() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::at(tmp.path());
        assert!(!monitor_alive(&dir, "c1"), "no pid file");
        std::fs::write(dir.monitor_pid(), "garbage").unwrap();
        assert!(!monitor_alive(&dir, "c1"));
        // This test process is alive but is not `pvecri monitor --id c1`.
        std::fs::write(dir.monitor_pid(), std::process::id().to_string()).unwrap();
        assert!(!monitor_alive(&dir, "c1"));
    }

    #[test]
    fn a_lost_monitor_leaves_an_exit_record_saying_so() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::at(tmp.path());
        settle_lost_monitor(&dir, "c1", "pvecri-test-no-such-cgroup/c1");
        let record = ExitRecord::read(&dir).unwrap().unwrap();
        assert_eq!(record.exit_code, crate::monitor::exit::UNKNOWN_EXIT_CODE);
        assert!(
            record.message.contains("monitor died"),
            "{}",
            record.message
        );
        // A second call keeps the first record.
        settle_lost_monitor(&dir, "c1", "pvecri-test-no-such-cgroup/c1");
    }
}
