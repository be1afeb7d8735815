//! The runtime side of Exec, Attach and PortForward: checks made when the
//! CRI call arrives, and the processes and connections a streaming session
//! drives once the client has connected.
//!
//! Exec runs `pvecri exec-helper` (see `crate::exec`) with pipes, or with a
//! pseudo-terminal made here whose slave end becomes the helper's stdio.
//! The terminal comes from the container's own devpts instance (its
//! `/dev/pts/ptmx` reached through `/proc/<init>/root`, the slave opened
//! with TIOCGPTPEER), so inside the container `tty` and `ttyname` find it
//! under `/dev/pts`; the host's openpty is the fallback. Port-forward connects from a dedicated
//! thread that joins the pod's network namespace: a socket stays in the
//! namespace it was created in, so the connected socket is handed back to
//! tokio and the thread ends. No tool runs inside the container.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncWrite};

use super::error::RuntimeError;
use super::Runtime;
use crate::container::run_dir::RunDir;
use crate::container::ContainerState;
use crate::exec::ExecHelperArgs;

/// A started exec: its stdio and how to wait for it.
pub(crate) struct ExecProcess {
    pub stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    pub stdout: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub stderr: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// The terminal's master side, for resizes (TTY mode only).
    pub terminal: Option<Terminal>,
    child: tokio::process::Child,
    pgid: i32,
}

impl ExecProcess {
    /// Waits for the command; its exit code, 128 + signal when killed.
    pub(crate) async fn wait(&mut self) -> std::io::Result<i32> {
        use std::os::unix::process::ExitStatusExt;
        let status = self.child.wait().await?;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }

    /// Kills the command and the helper (a client that went away).
    pub(crate) fn kill(&mut self) {
        if self.pgid > 0 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.start_kill();
    }
}

/// The master side of an exec's pseudo-terminal.
pub(crate) struct Terminal(OwnedFd);

impl Terminal {
    /// Applies a client's window size; the command gets SIGWINCH.
    pub(crate) fn resize(&self, width: u16, height: u16) {
        let size = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: the fd is an open pty master owned by `self`, and
        // TIOCSWINSZ reads one `winsize` from the valid pointer.
        let ret = unsafe { libc::ioctl(self.0.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        if ret < 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "terminal resize failed");
        }
    }
}

/// Which stdio an exec or attach carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamStdio {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl StreamStdio {
    /// The rules every streaming request shares.
    pub(crate) fn validate(&self) -> Result<(), RuntimeError> {
        if !(self.stdin || self.stdout || self.stderr) {
            return Err(RuntimeError::Invalid {
                field: "stdin",
                message: "one of stdin, stdout or stderr must be set".into(),
            });
        }
        if self.tty && self.stderr {
            return Err(RuntimeError::Invalid {
                field: "stderr",
                message: "a tty merges stderr into stdout; stderr must be false with tty".into(),
            });
        }
        Ok(())
    }
}

impl Runtime {
    /// Checks an Exec request when it arrives: the container runs, the
    /// command and stdio make sense.
    pub(crate) fn check_exec(
        &self,
        id: &str,
        cmd: &[String],
        stdio: StreamStdio,
    ) -> Result<String, RuntimeError> {
        if cmd.is_empty() {
            return Err(RuntimeError::Invalid {
                field: "cmd",
                message: "a command is required".into(),
            });
        }
        stdio.validate()?;
        self.running_container(id, "exec needs a running container")
    }

    /// Checks an Attach request when it arrives.
    pub(crate) fn check_attach(
        &self,
        id: &str,
        stdio: StreamStdio,
    ) -> Result<String, RuntimeError> {
        stdio.validate()?;
        self.running_container(id, "attach needs a running container")
    }

    fn running_container(&self, id: &str, message: &str) -> Result<String, RuntimeError> {
        if id.is_empty() {
            return Err(RuntimeError::Invalid {
                field: "container_id",
                message: "a container ID is required".into(),
            });
        }
        let c = self.container(id)?;
        if c.state != ContainerState::Running {
            return Err(RuntimeError::container_state(&c, message));
        }
        Ok(c.id)
    }

    /// Checks a PortForward request; returns the full pod ID and the
    /// pinned network namespace to connect in (`None`: the host's).
    pub(crate) fn check_port_forward(
        &self,
        pod_id: &str,
    ) -> Result<(String, Option<PathBuf>), RuntimeError> {
        if pod_id.is_empty() {
            return Err(RuntimeError::Invalid {
                field: "pod_sandbox_id",
                message: "a pod sandbox ID is required".into(),
            });
        }
        let pod = self.ready_pod(pod_id, "port-forward needs a ready pod")?;
        Ok((pod.id, pod.net_ns.map(PathBuf::from)))
    }

    /// Connects to the monitor's attach socket of container `id` (see
    /// `crate::monitor::attach` for the framing).
    pub(crate) async fn connect_attach(
        &self,
        id: &str,
    ) -> Result<tokio::net::UnixStream, RuntimeError> {
        let short = RunDir::new(&self.config.runtime_dir, id)?
            .open_short()
            .map_err(|e| RuntimeError::os("finding the attach socket", id, e))?;
        tokio::net::UnixStream::connect(short.attach_socket())
            .await
            .map_err(|e| RuntimeError::os("connecting to the container's monitor", id, e))
    }

    /// Starts `cmd` in container `id` with the asked stdio.
    pub(crate) fn spawn_exec(
        &self,
        id: &str,
        cmd: &[String],
        stdio: StreamStdio,
    ) -> Result<ExecProcess, RuntimeError> {
        let spec = RunDir::new(&self.config.runtime_dir, id)?.spec();
        let record = self.container(id).ok();
        let (init_pid, init_start_time) = record
            .as_ref()
            .map_or((None, None), super::exec::direct_init);
        let args = ExecHelperArgs {
            id: id.to_owned(),
            lxcpath: self.config.lxc_path(),
            spec,
            init: self.init_for_exec(),
            timeout: 0,
            tty: stdio.tty,
            init_pid,
            init_start_time,
            argv: cmd.to_vec(),
        };
        let mut command = tokio::process::Command::new(&self.helper_exe);
        command.args(args.to_args()).kill_on_drop(true);
        let os = |op, e: std::io::Error| RuntimeError::os(op, id, e);
        if stdio.tty {
            let pty = match record.and_then(|c| container_pty(c.init_pid).ok()) {
                Some(pty) => pty,
                None => nix::pty::openpty(None, None)
                    .map_err(|e| os("opening a pseudo-terminal", e.into()))?,
            };
            let slave = |fd: &OwnedFd| -> Result<Stdio, RuntimeError> {
                Ok(Stdio::from(
                    fd.try_clone()
                        .map_err(|e| os("duplicating the terminal", e))?,
                ))
            };
            command
                .stdin(slave(&pty.slave)?)
                .stdout(slave(&pty.slave)?)
                .stderr(slave(&pty.slave)?);
            // The helper makes itself a session leader with this terminal
            // as its controlling one (see `crate::exec`).
            let child = command
                .spawn()
                .map_err(|e| os("spawning the exec helper", e))?;
            drop(pty.slave);
            let pgid = child.id().unwrap_or_default() as i32;
            let reader = pty
                .master
                .try_clone()
                .map_err(|e| os("duplicating the terminal", e))?;
            let writer = pty
                .master
                .try_clone()
                .map_err(|e| os("duplicating the terminal", e))?;
            return Ok(ExecProcess {
                stdin: stdio.stdin.then(|| {
                    Box::new(tokio::fs::File::from_std(writer.into()))
                        as Box<dyn AsyncWrite + Send + Unpin>
                }),
                stdout: Some(Box::new(tokio::fs::File::from_std(reader.into()))),
                stderr: None,
                terminal: Some(Terminal(pty.master)),
                child,
                pgid,
            });
        }
        let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
        command
            .stdin(piped(stdio.stdin))
            .stdout(piped(stdio.stdout))
            .stderr(piped(stdio.stderr))
            // Its own process group, so a vanished client's exec can be
            // killed with the command it attached.
            .process_group(0);
        let mut child = command
            .spawn()
            .map_err(|e| os("spawning the exec helper", e))?;
        let pgid = child.id().unwrap_or_default() as i32;
        Ok(ExecProcess {
            stdin: child
                .stdin
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncWrite + Send + Unpin>),
            stdout: child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>),
            stderr: child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>),
            terminal: None,
            child,
            pgid,
        })
    }
}

/// Connects to `127.0.0.1:port` inside the network namespace pinned at
/// `net_ns` (`None`: the host's), falling back to `[::1]`.
pub(crate) async fn connect_in_netns(
    net_ns: Option<PathBuf>,
    port: u16,
) -> std::io::Result<tokio::net::TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pvecri-portfwd".into())
        .spawn(move || {
            let _ = tx.send(connect_blocking(net_ns, port));
        })?;
    let stream = rx
        .await
        .map_err(|_| std::io::Error::other("port-forward connect thread died"))??;
    stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(stream)
}

/// Runs on a thread of its own, which it leaves in the pod's namespace:
/// the thread ends right after, so no other work ever runs there.
fn connect_blocking(net_ns: Option<PathBuf>, port: u16) -> std::io::Result<std::net::TcpStream> {
    if let Some(path) = net_ns {
        let ns = std::fs::File::open(&path)?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
            std::io::Error::other(format!(
                "cannot join network namespace {}: {e}",
                path.display()
            ))
        })?;
    }
    let timeout = std::time::Duration::from_secs(10);
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    match std::net::TcpStream::connect_timeout(&v4, timeout) {
        Ok(s) => Ok(s),
        Err(err) => {
            let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
            std::net::TcpStream::connect_timeout(&v6, timeout).map_err(|_| err)
        }
    }
}

/// A pseudo-terminal from the devpts instance mounted in the container of
/// `init_pid`.
fn container_pty(init_pid: i32) -> std::io::Result<nix::pty::OpenptyResult> {
    use std::os::fd::FromRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    if init_pid <= 0 {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    let master: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(format!("/proc/{init_pid}/root/dev/pts/ptmx"))?
        .into();
    // SAFETY: master is a live ptmx fd; unlockpt's ioctl takes a pointer
    // to an int that lives across the call.
    let unlocked = unsafe { libc::unlockpt(master.as_raw_fd()) };
    if unlocked != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: TIOCGPTPEER takes open flags and returns a new fd for the
    // slave of this master (Linux 4.13+), which nothing else owns.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(nix::pty::OpenptyResult {
        master,
        // SAFETY: see above: a fresh fd owned here.
        slave: unsafe { OwnedFd::from_raw_fd(slave) },
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn stdio(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> StreamStdio {
        StreamStdio {
            stdin,
            stdout,
            stderr,
            tty,
        }
    }

    fn invalid_field(result: Result<(), RuntimeError>) -> Option<&'static str> {
        match result {
            Err(RuntimeError::Invalid { field, .. }) => Some(field),
            Err(other) => panic!("{other:?}"),
            Ok(()) => None,
        }
    }

    #[test]
    fn streams_need_some_stdio_and_no_stderr_with_a_tty() {
        assert_eq!(
            invalid_field(stdio(false, false, false, false).validate()),
            Some("stdin")
        );
        assert_eq!(
            invalid_field(stdio(false, false, false, true).validate()),
            Some("stdin")
        );
        assert_eq!(
            invalid_field(stdio(true, true, true, true).validate()),
            Some("stderr")
        );
        assert_eq!(
            invalid_field(stdio(false, true, true, false).validate()),
            None
        );
        assert_eq!(
            invalid_field(stdio(true, true, false, true).validate()),
            None
        );
        assert_eq!(
            invalid_field(stdio(true, false, false, false).validate()),
            None
        );
        assert_eq!(
            invalid_field(stdio(false, false, true, false).validate()),
            None
        );
    }

    /// A real process in its own group, as `spawn_exec` starts the helper.
    fn exec(script: &str) -> ExecProcess {
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pgid = child.id().unwrap() as i32;
        ExecProcess {
            stdin: None,
            stdout: None,
            stderr: None,
            terminal: None,
            child,
            pgid,
        }
    }

    #[tokio::test]
    async fn exit_codes_and_signals_become_the_exec_exit_code() {
        assert_eq!(exec("exit 0").wait().await.unwrap(), 0);
        assert_eq!(exec("exit 42").wait().await.unwrap(), 42);
        assert_eq!(exec("kill -TERM $$").wait().await.unwrap(), 128 + 15);
    }

    /// Whether `pid` is gone or a zombie nobody reaped yet.
    fn dead(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    #[tokio::test]
    async fn kill_ends_the_command_and_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let mut p = exec(&format!(
            "sleep 600 & echo $! > {}.tmp && mv {0}.tmp {0}; wait",
            pidfile.display()
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        let grandchild: i32 = loop {
            if let Ok(pid) = std::fs::read_to_string(&pidfile) {
                break pid.trim().parse().unwrap();
            }
            assert!(Instant::now() < deadline, "the command never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        p.kill();
        assert_eq!(p.wait().await.unwrap(), 128 + 9);
        while !dead(grandchild) {
            assert!(Instant::now() < deadline, "pid {grandchild} outlived kill");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn resize_sets_the_terminal_window_size() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let terminal = Terminal(pty.master);
        terminal.resize(132, 43);
        let mut size = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: the slave fd is open for the whole call and TIOCGWINSZ
        // writes one `winsize` into the valid pointer.
        let ret = unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
        assert_eq!(ret, 0);
        assert_eq!((size.ws_col, size.ws_row), (132, 43));
    }

    #[test]
    fn no_container_pty_without_a_container_process() {
        for pid in [0, -1] {
            let err = container_pty(pid).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ESRCH));
        }
    }

    #[tokio::test]
    async fn port_forward_connects_on_the_hosts_loopback() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (client, accepted) = tokio::join!(connect_in_netns(None, port), listener.accept());
        let mut client = client.unwrap();
        let (mut server, _) = accepted.unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    }

    #[test]
    fn port_forward_falls_back_to_ipv6_loopback() {
        let listener = match std::net::TcpListener::bind("[::1]:0") {
            Ok(l) => l,
            Err(e) => {
                eprintln!("skipping port_forward_falls_back_to_ipv6_loopback: no ::1 here: {e}");
                return;
            }
        };
        let port = listener.local_addr().unwrap().port();
        // Nothing may listen on the same port on 127.0.0.1 for the test
        // to mean anything.
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            eprintln!(
                "skipping port_forward_falls_back_to_ipv6_loopback: port {port} taken on 127.0.0.1"
            );
            return;
        }
        let stream = connect_blocking(None, port).unwrap();
        assert!(stream.peer_addr().unwrap().is_ipv6());
    }

    #[tokio::test]
    async fn port_forward_errors_name_their_cause() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let err = connect_in_netns(None, port).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");

        let missing = PathBuf::from("/nonexistent/pvecri-test-netns");
        let err = connect_in_netns(Some(missing), port).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    }
}
