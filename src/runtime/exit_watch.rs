//! Noticing that a container ended without anyone asking: a pidfd on each
//! live monitor becomes readable when the monitor exits, which it does
//! right after writing the container's exit record (or when it is killed,
//! which `Runtime::refresh` then settles). The daemon thus learns of every
//! exit as it happens and keeps its records current, so the List RPCs can
//! answer from memory without a file read per container.
//!
//! The watcher loop in [`super::events`] receives the IDs of monitors that
//! ended and brings those records up to date; once a second it also
//! watches any live container that has no watch yet (containers found at
//! start-up, a registration that failed).

use std::collections::HashSet;
use std::sync::Mutex;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;

use crate::container::run_dir::RunDir;
use crate::runtime::teardown;

pub(crate) struct ExitWatch {
    /// Containers whose monitor has a pidfd being waited on.
    watched: Mutex<HashSet<String>>,
    ended_tx: mpsc::UnboundedSender<String>,
    ended_rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
}

/// What [`ExitWatch::watch`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watch {
    /// The monitor is watched (now or already).
    Watching,
    /// There is no live monitor to watch: the caller should look at the
    /// container's exit record now.
    NoMonitor,
    /// Watching is not possible here (no tokio runtime, no pidfds): the
    /// periodic pass keeps looking.
    Unavailable,
}

impl Default for ExitWatch {
    fn default() -> Self {
        let (ended_tx, ended_rx) = mpsc::unbounded_channel();
        Self {
            watched: Mutex::default(),
            ended_tx,
            ended_rx: Mutex::new(Some(ended_rx)),
        }
    }
}

impl ExitWatch {
    /// The receiver of ended monitors' container IDs (once; the watcher
    /// loop takes it).
    pub(crate) fn take_receiver(&self) -> Option<mpsc::UnboundedReceiver<String>> {
        self.ended_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    pub(crate) fn is_watched(&self, id: &str) -> bool {
        self.lock().contains(id)
    }

    /// Stops tracking `id` (its monitor ended or the container is gone).
    pub(crate) fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits, in a task, for the monitor of container `id` to exit and
    /// then reports `id` to the watcher loop.
    pub(crate) fn watch(&self, id: &str, run_dir: &RunDir) -> Watch {
        if self.is_watched(id) {
            return Watch::Watching;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Watch::Unavailable;
        };
        let Some(pid) = run_dir.read_monitor_pid() else {
            return Watch::NoMonitor;
        };
        let pidfd = match crate::node::pidfd::open(pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Watch::NoMonitor,
            Err(_) => return Watch::Unavailable,
        };
        // Checked after the pidfd is held: the pidfd names this process
        // for good, so the pid cannot be recycled between the two.
        if !teardown::monitor_alive(run_dir, id) {
            return Watch::NoMonitor;
        }
        let mut watched = self.lock();
        if !watched.insert(id.to_owned()) {
            return Watch::Watching;
        }
        drop(watched);
        let tx = self.ended_tx.clone();
        let id = id.to_owned();
        handle.spawn(async move {
            // SAFETY: the AsyncFd owns the pidfd, which stays open and the
            // same descriptor until the AsyncFd is dropped.
            match unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) } {
                Ok(fd) => {
                    // Readable once the process has exited.
                    let _ = fd.readable().await;
                }
                Err(e) => {
                    tracing::warn!(container_id = %id, error = %e, "cannot wait on the monitor's pidfd; looking at the container now");
                }
            }
            let _ = tx.send(id);
        });
        Watch::Watching
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pidfd_is_readable_once_its_process_exits() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut child = std::process::Command::new("sleep")
                .arg("0.2")
                .spawn()
                .unwrap();
            let pidfd = crate::node::pidfd::open(child.id() as i32).unwrap();
            // SAFETY: the AsyncFd owns the pidfd until it is dropped.
            let fd = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }.unwrap();
            let started = std::time::Instant::now();
            let _ = fd.readable().await.unwrap();
            assert!(started.elapsed() >= std::time::Duration::from_millis(100));
            child.wait().unwrap();
        });
    }

    #[test]
    fn a_dir_without_a_live_monitor_is_not_watched() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::at(tmp.path());
        let watch = ExitWatch::default();
        let _g = rt.enter();
        assert_eq!(watch.watch("c1", &dir), Watch::NoMonitor);
        // A live process that is not this container's monitor.
        std::fs::write(dir.monitor_pid(), std::process::id().to_string()).unwrap();
        assert_eq!(watch.watch("c1", &dir), Watch::NoMonitor);
        assert!(!watch.is_watched("c1"));
    }

    #[test]
    fn without_a_tokio_runtime_watching_is_unavailable() {
        let tmp = tempfile::tempdir().unwrap();
        let watch = ExitWatch::default();
        assert_eq!(
            watch.watch("c1", &RunDir::at(tmp.path())),
            Watch::Unavailable
        );
    }
}
