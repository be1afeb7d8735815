//! The monitor's control socket, `<run-dir>/monitor.sock`: one request line
//! per connection, one answer line. `reopen\n` reopens the container log
//! (after the kubelet rotated it) and answers `ok\n` or `err <why>\n`;
//! anything else gets `err unknown command\n`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use crate::container::run_dir::RunDir;

/// How long the monitor waits for a client's request line: the only client
/// is the daemon, which writes it right after connecting.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot reach the monitor at {path:?}")]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("monitor at {path:?} failed the request")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("monitor at {path:?} refused {request:?}: {answer}")]
    Refused {
        path: PathBuf,
        request: &'static str,
        answer: String,
    },
}

/// The listening side, owned by the monitor.
pub(crate) struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlServer {
    /// Binds `run_dir/monitor.sock`, replacing a stale socket.
    pub(crate) fn bind(run_dir: &RunDir) -> io::Result<Self> {
        let path = run_dir.control_socket();
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        // std creates the socket with SOCK_CLOEXEC.
        let short = run_dir.open_short()?;
        let listener = UnixListener::bind(short.control_socket())?;
        listener.set_nonblocking(true)?;
        Ok(Self { listener, path })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Serves every pending connection; `reopen` runs `on_reopen`, whose
    /// error (with its causes) is the answer.
    pub(crate) fn serve_pending<E: std::error::Error + 'static>(
        &self,
        mut on_reopen: impl FnMut() -> Result<(), E>,
    ) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Err(err) = serve_one(stream, &mut on_reopen) {
                        tracing::warn!(error = %err, "control request failed");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot accept a control connection");
                    return;
                }
            }
        }
    }

    /// Removes the socket file (the monitor is exiting).
    pub(crate) fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_one<E: std::error::Error + 'static>(
    stream: UnixStream,
    on_reopen: &mut impl FnMut() -> Result<(), E>,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new((&stream).take(256)).read_line(&mut line)?;
    let answer = match line.trim_end_matches('\n') {
        "reopen" => match on_reopen() {
            Ok(()) => "ok\n".to_owned(),
            Err(why) => format!("err {}\n", crate::errors::chain(&why).replace('\n', " ")),
        },
        _ => "err unknown command\n".to_owned(),
    };
    (&stream).write_all(answer.as_bytes())
}

/// Asks the monitor of `run_dir` to reopen its log file (ReopenContainerLog).
/// Blocking: call it off the async threads.
pub fn request_reopen(run_dir: &RunDir, timeout: Duration) -> Result<(), ControlError> {
    let answer = request(run_dir, "reopen", timeout)?;
    if answer == "ok" {
        Ok(())
    } else {
        Err(ControlError::Refused {
            path: run_dir.control_socket(),
            request: "reopen",
            answer,
        })
    }
}

fn request(
    run_dir: &RunDir,
    command: &'static str,
    timeout: Duration,
) -> Result<String, ControlError> {
    let path = run_dir.control_socket();
    let stream = run_dir
        .open_short()
        .and_then(|short| UnixStream::connect(short.control_socket()))
        .map_err(|source| ControlError::Connect {
            path: path.clone(),
            source,
        })?;
    let io_err = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    (&stream)
        .write_all(format!("{command}\n").as_bytes())
        .map_err(io_err)?;
    let mut answer = String::new();
    BufReader::new((&stream).take(4096))
        .read_line(&mut answer)
        .map_err(io_err)?;
    Ok(answer.trim_end_matches('\n').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Runs one client call on a thread while the server serves inline.
    fn exchange<T: Send + 'static>(
        server: &ControlServer,
        client: impl FnOnce() -> T + Send + 'static,
        on_reopen: impl FnMut() -> Result<(), io::Error>,
    ) -> T {
        let handle = std::thread::spawn(client);
        let mut on_reopen = on_reopen;
        while !handle.is_finished() {
            server.serve_pending(&mut on_reopen);
            std::thread::sleep(Duration::from_millis(2));
        }
        handle.join().unwrap()
    }

    #[test]
    fn reopen_runs_the_callback_and_answers_ok() {
        let tmp = tempfile::tempdir().unwrap();
        let run_dir = RunDir::at(tmp.path());
        let server = ControlServer::bind(&run_dir).unwrap();
        let calls = Cell::new(0);
        let res = exchange(
            &server,
            move || request_reopen(&run_dir, Duration::from_secs(5)),
            || {
                calls.set(calls.get() + 1);
                Ok(())
            },
        );
        res.unwrap();
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn failed_reopen_and_unknown_commands_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::at(tmp.path());
        let server = ControlServer::bind(&dir).unwrap();
        let run_dir = dir.clone();
        let err = exchange(
            &server,
            move || request_reopen(&run_dir, Duration::from_secs(5)),
            || Err(io::Error::other("disk\nfull")),
        )
        .unwrap_err();
        assert!(
            matches!(&err, ControlError::Refused { answer, .. } if answer == "err disk full"),
            "{err}"
        );

        let run_dir = dir.clone();
        let answer = exchange(
            &server,
            move || request(&run_dir, "frobnicate", Duration::from_secs(5)),
            || Ok(()),
        )
        .unwrap();
        assert_eq!(answer, "err unknown command");
    }

    #[test]
    fn bind_replaces_a_stale_socket_and_remove_deletes_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::at(tmp.path());
        drop(ControlServer::bind(&dir).unwrap());
        let server = ControlServer::bind(&dir).unwrap();
        assert!(dir.control_socket().exists());
        server.remove();
        assert!(!dir.control_socket().exists());
        assert!(matches!(
            request_reopen(&dir, Duration::from_secs(1)),
            Err(ControlError::Connect { .. })
        ));
    }
}
