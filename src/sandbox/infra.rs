//! The infra process of a pod that shares one PID namespace between its
//! containers: `pvecri-init pause` creates the namespace and leaves its
//! PID 1 running, detached from the daemon; the namespace is pinned next to
//! the pod's others as `pid`, and containers join it with
//! `lxc.namespace.share.pid`. Killing the infra process ends the namespace.
//!
//! Every container of the pod sees that PID 1, so pvecri-init confines it
//! before it reports its PID: it runs from a sealed copy of the binary, in
//! an empty read-only root of its own mount namespace, without
//! capabilities, with no_new_privs, not dumpable, holding only /dev/null.
//! A failure there fails `start` with the step that failed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub(crate) enum InfraError {
    #[error("cannot run {init} pause: {source}")]
    Spawn {
        init: PathBuf,
        source: std::io::Error,
    },
    #[error("{init} pause failed: {message}")]
    Failed { init: PathBuf, message: String },
    #[error("cannot pin the PID namespace of infra process {pid} at {path}: {source}")]
    Pin {
        pid: i32,
        path: PathBuf,
        source: nix::Error,
    },
}

/// Starts the infra process and pins its PID namespace at `ns_dir/pid`;
/// returns its host PID. Blocking: call from a blocking thread.
pub(crate) fn start(init: &Path, ns_dir: &Path) -> Result<i32, InfraError> {
    let out = Command::new(init)
        .arg("pause")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| InfraError::Spawn {
            init: init.to_owned(),
            source,
        })?;
    let output = out.wait_with_output().map_err(|source| InfraError::Spawn {
        init: init.to_owned(),
        source,
    })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let pid: i32 = match (output.status.success(), text.trim().parse()) {
        (true, Ok(pid)) => pid,
        _ => {
            return Err(InfraError::Failed {
                init: init.to_owned(),
                message: format!(
                    "{}; {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            })
        }
    };
    pin(ns_dir, pid)?;
    Ok(pid)
}

/// Pins the PID namespace of `pid` at `ns_dir/pid`; kills `pid` when that
/// fails (nothing else would end the namespace).
pub(crate) fn pin(ns_dir: &Path, pid: i32) -> Result<(), InfraError> {
    let path = ns_dir.join("pid");
    let io = |e: std::io::Error| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let pin = || -> nix::Result<()> {
        std::fs::create_dir_all(ns_dir).map_err(io)?;
        std::fs::File::create(&path).map_err(io)?;
        nix::mount::mount(
            Some(Path::new(&format!("/proc/{pid}/ns/pid"))),
            &path,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    if let Err(source) = pin() {
        kill(pid, None);
        return Err(InfraError::Pin { pid, path, source });
    }
    Ok(())
}

/// Kills the infra process (and with it every process left in the pod's
/// PID namespace), unless `pid` has since been reused: `start_time`, when
/// known, must match /proc's.
pub(crate) fn kill(pid: i32, start_time: Option<u64>) {
    if pid <= 0 {
        return;
    }
    if let Some(expected) = start_time {
        if proc_start_time(pid) != Some(expected) {
            return;
        }
    }
    let started = start_time.or_else(|| proc_start_time(pid));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    // The namespace ends, and every process in it is killed, when its PID 1
    // is gone: wait for that (bounded), so a stopped pod has nothing left.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline
        && started.is_some()
        && proc_start_time(pid) == started
        && !crate::cgroups::tree::is_zombie(pid)
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Field 22 of /proc/<pid>/stat: start time in clock ticks since boot.
pub(crate) fn proc_start_time(pid: i32) -> Option<u64> {
    start_time_of_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The start time (field 22) in the text of a /proc/<pid>/stat; the
/// command name before it is in parentheses and may itself hold some.
pub(crate) fn start_time_of_stat(stat: &str) -> Option<u64> {
    let after_comm = stat.rsplit_once(')')?.1;
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_start_time_follows_a_command_name_holding_parentheses() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 977 0 0";
        assert_eq!(super::start_time_of_stat(stat), Some(977));
        assert_eq!(super::start_time_of_stat("42 (x) S 1"), None);
    }
}
