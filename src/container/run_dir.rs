//! A container's run dir, `<runtime_dir>/containers/<id>/`: the files the
//! daemon, the container's monitor, the exec helper and pvecri-init (which
//! sees the dir bind-mounted at [`IN_CONTAINER`]) hand to each other.
//!
//! The layout is a contract between processes of possibly different pvecri
//! versions (a monitor started before an upgrade keeps writing where it
//! always did), so every name lives here once and callers ask [`RunDir`]
//! for paths instead of joining strings. Changing a name here changes the
//! on-disk layout: don't, without a migration.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The dir under the runtime dir that holds one run dir per container.
const CONTAINERS: &str = "containers";

/// Where the run dir is bind-mounted inside its container (pvecri-init's
/// `RUN_DIR`).
pub(crate) const IN_CONTAINER: &str = "/.pvecri";

/// The process spec pvecri-init and the exec helper read.
const SPEC: &str = "spec.json";
/// The FIFO pvecri-init blocks on until StartContainer writes to it.
const START_FIFO: &str = "start";
/// Written by pvecri-init when it could not exec the workload.
const START_ERROR: &str = "start-error";
/// The exit record the monitor writes once.
const EXIT: &str = "exit.json";
/// liblxc's own log (`lxc.log.file`).
const LXC_LOG: &str = "lxc.log";
/// The detached monitor's pid.
const MONITOR_PID: &str = "monitor.pid";
/// The monitor's own diagnostics (its stdout and stderr once detached).
const MONITOR_LOG: &str = "monitor.log";
/// Held locked (flock) by the live monitor of the run dir.
const MONITOR_LOCK: &str = "monitor.lock";
/// The stderr of the monitor the daemon spawned, before it detached.
const MONITOR_SPAWN_LOG: &str = "monitor-spawn.log";
/// The monitor's control socket (log reopen).
const CONTROL_SOCKET: &str = "monitor.sock";
/// The monitor's attach socket (CRI Attach).
const ATTACH_SOCKET: &str = "attach.sock";

/// Why a string cannot name a run dir.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },
}

/// Refuses a container ID that would not stay one path component under
/// the containers dir (or could not become a C string for liblxc).
pub(crate) fn check_id(id: &str) -> Result<(), RunDirError> {
    let reason = if id.is_empty() {
        "it is empty"
    } else if id == "." || id == ".." {
        "it is a relative path component"
    } else if id.contains('/') {
        "it contains '/'"
    } else if id.contains('\0') {
        "it contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(RunDirError::InvalidId {
        id: id.to_owned(),
        reason,
    })
}

/// One container's run dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// The run dir of container `id` under `runtime_dir`.
    pub fn new(runtime_dir: &Path, id: &str) -> Result<Self, RunDirError> {
        check_id(id)?;
        Ok(Self {
            path: Self::all(runtime_dir).join(id),
        })
    }

    /// A run dir named by its whole path (the monitor's `--run-dir`, which
    /// the daemon built with [`RunDir::new`]).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The dir holding every container's run dir under `runtime_dir`.
    pub fn all(runtime_dir: &Path) -> PathBuf {
        runtime_dir.join(CONTAINERS)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `spec.json`: the process spec.
    pub fn spec(&self) -> PathBuf {
        self.path.join(SPEC)
    }

    /// `start`: the FIFO that releases pvecri-init.
    pub fn start_fifo(&self) -> PathBuf {
        self.path.join(START_FIFO)
    }

    /// `start-error`: why pvecri-init could not exec the workload.
    pub fn start_error(&self) -> PathBuf {
        self.path.join(START_ERROR)
    }

    /// `exit.json`: the exit record; present means the container exited.
    pub fn exit(&self) -> PathBuf {
        self.path.join(EXIT)
    }

    /// The temp file the exit record is written to before its rename.
    pub fn exit_tmp(&self) -> PathBuf {
        self.path.join(format!(".{EXIT}.tmp"))
    }

    /// `lxc.log`: liblxc's log of the container.
    pub fn lxc_log(&self) -> PathBuf {
        self.path.join(LXC_LOG)
    }

    /// `monitor.pid`: the detached monitor's pid.
    pub fn monitor_pid(&self) -> PathBuf {
        self.path.join(MONITOR_PID)
    }

    /// The temp file the pid is written to before its rename.
    pub fn monitor_pid_tmp(&self) -> PathBuf {
        self.path.join(format!(".{MONITOR_PID}.tmp"))
    }

    /// `monitor.log`: the detached monitor's stdout and stderr.
    pub fn monitor_log(&self) -> PathBuf {
        self.path.join(MONITOR_LOG)
    }

    /// `monitor.lock`: flocked by the live monitor.
    pub fn monitor_lock(&self) -> PathBuf {
        self.path.join(MONITOR_LOCK)
    }

    /// `monitor-spawn.log`: the spawned monitor's stderr until it detaches.
    pub fn monitor_spawn_log(&self) -> PathBuf {
        self.path.join(MONITOR_SPAWN_LOG)
    }

    /// `monitor.sock`: the monitor's control socket (full path; connect
    /// and bind through [`RunDir::open_short`]).
    pub fn control_socket(&self) -> PathBuf {
        self.path.join(CONTROL_SOCKET)
    }

    /// `attach.sock`: the monitor's attach socket (full path; connect and
    /// bind through [`RunDir::open_short`]).
    pub fn attach_socket(&self) -> PathBuf {
        self.path.join(ATTACH_SOCKET)
    }

    /// The pid in `monitor.pid`, if the file holds one.
    pub fn read_monitor_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.monitor_pid())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Opens the dir for short socket addresses: unix socket paths are
    /// limited to 107 bytes, which a deep runtime dir plus a 64-digit
    /// container ID can exceed, while `/proc/self/fd/<n>/<name>` is short
    /// wherever the dir is.
    pub fn open_short(&self) -> io::Result<ShortRunDir> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&self.path)?;
        Ok(ShortRunDir { dir })
    }
}

/// A run dir held open by an `O_PATH` descriptor; its addresses are valid
/// while it lives.
#[derive(Debug)]
pub struct ShortRunDir {
    dir: File,
}

impl ShortRunDir {
    fn join(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}/{name}", self.dir.as_raw_fd()))
    }

    /// The short address of `monitor.sock`.
    pub fn control_socket(&self) -> PathBuf {
        self.join(CONTROL_SOCKET)
    }

    /// The short address of `attach.sock`.
    pub fn attach_socket(&self) -> PathBuf {
        self.join(ATTACH_SOCKET)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are what monitors and pvecri-init of earlier releases
    /// read and write: this test pins the layout.
    #[test]
    fn layout_is_the_one_on_disk() {
        let d = RunDir::new(Path::new("/run/pvecri"), "c1").unwrap();
        let base = "/run/pvecri/containers/c1";
        assert_eq!(d.path(), Path::new(base));
        assert_eq!(
            RunDir::all(Path::new("/run/pvecri")),
            Path::new("/run/pvecri/containers")
        );
        for (got, name) in [
            (d.spec(), "spec.json"),
            (d.start_fifo(), "start"),
            (d.start_error(), "start-error"),
            (d.exit(), "exit.json"),
            (d.exit_tmp(), ".exit.json.tmp"),
            (d.lxc_log(), "lxc.log"),
            (d.monitor_pid(), "monitor.pid"),
            (d.monitor_pid_tmp(), ".monitor.pid.tmp"),
            (d.monitor_log(), "monitor.log"),
            (d.monitor_lock(), "monitor.lock"),
            (d.monitor_spawn_log(), "monitor-spawn.log"),
            (d.control_socket(), "monitor.sock"),
            (d.attach_socket(), "attach.sock"),
        ] {
            assert_eq!(got, Path::new(base).join(name));
        }
        assert_eq!(RunDir::at(base), d);
    }

    #[test]
    fn ids_that_leave_the_containers_dir_are_refused() {
        let root = Path::new("/run/pvecri");
        for bad in ["", ".", "..", "a/b", "../x", "/abs", "x\0y"] {
            let err = RunDir::new(root, bad).unwrap_err();
            assert!(
                matches!(&err, RunDirError::InvalidId { id, .. } if id == bad),
                "{bad:?}: {err}"
            );
        }
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert!(RunDir::new(root, id).is_ok());
        assert!(RunDir::new(root, "..x").is_ok(), "a name, not a component");
    }

    #[test]
    fn short_addresses_reach_the_run_dir() {
        let dir = tempfile::tempdir().unwrap();
        let d = RunDir::at(dir.path());
        std::fs::write(d.control_socket(), "c").unwrap();
        std::fs::write(d.attach_socket(), "a").unwrap();
        let short = d.open_short().unwrap();
        assert!(short.control_socket().as_os_str().len() < 40);
        assert_eq!(
            std::fs::read_to_string(short.control_socket()).unwrap(),
            "c"
        );
        assert_eq!(std::fs::read_to_string(short.attach_socket()).unwrap(), "a");
    }

    #[test]
    fn monitor_pid_is_read_when_it_is_a_number() {
        let dir = tempfile::tempdir().unwrap();
        let d = RunDir::at(dir.path());
        assert_eq!(d.read_monitor_pid(), None);
        std::fs::write(d.monitor_pid(), "garbage").unwrap();
        assert_eq!(d.read_monitor_pid(), None);
        std::fs::write(d.monitor_pid(), "1234\n").unwrap();
        assert_eq!(d.read_monitor_pid(), Some(1234));
    }
}
