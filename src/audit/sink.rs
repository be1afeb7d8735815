//! Where audit lines are written: the journal's native socket, an
//! append-only file, or the daemon's own log when no journal listens.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use thiserror::Error;

use super::Entry;
use crate::config::{AuditConfig, AuditOutput};

/// journald's socket for native-protocol datagrams.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

#[derive(Debug, Error)]
pub(crate) enum AuditError {
    #[error("cannot open the audit log {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make a socket for the journal")]
    Socket(#[source] std::io::Error),
}

#[derive(Debug)]
pub(crate) enum Sink {
    Journal {
        socket: UnixDatagram,
        path: PathBuf,
    },
    File(Mutex<std::fs::File>),
    /// The daemon's log, at info level under the `pvecri::audit` target.
    Log,
}

impl Sink {
    /// The sink `config` names; `None` when auditing is off.
    pub(crate) fn open(config: &AuditConfig) -> Result<Option<Self>, AuditError> {
        match config.output {
            AuditOutput::Off => Ok(None),
            AuditOutput::Journal => Ok(Some(Self::journal(Path::new(JOURNAL_SOCKET))?)),
            AuditOutput::File => Ok(Some(Self::file(&config.path)?)),
        }
    }

    fn journal(path: &Path) -> Result<Self, AuditError> {
        if !path.exists() {
            tracing::warn!(
                socket = %path.display(),
                "no journal listens: audit lines go to the daemon's log"
            );
            return Ok(Self::Log);
        }
        let socket = UnixDatagram::unbound().map_err(AuditError::Socket)?;
        Ok(Self::Journal {
            socket,
            path: path.to_owned(),
        })
    }

    /// The file opened for appending, mode 0600, its directory made 0700
    /// when missing.
    fn file(path: &Path) -> Result<Self, AuditError> {
        let open_err = |source| AuditError::Open {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(open_err)?;
        }
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(path)
            .map_err(open_err)?;
        Ok(Self::File(Mutex::new(file)))
    }

    /// Writes one entry. A failure is logged, never returned: auditing
    /// must not fail the call it records.
    pub(crate) fn write(&self, entry: &Entry) {
        let line = entry.to_json();
        let result = match self {
            Self::Journal { socket, path } => {
                let datagram = format!(
                    "SYSLOG_IDENTIFIER=pvecri-audit\nPRIORITY=6\nPVECRI_METHOD={}\nMESSAGE={line}\n",
                    entry.method
                );
                socket.send_to(datagram.as_bytes(), path).map(drop)
            }
            Self::File(file) => {
                let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
                // One write of the whole line: O_APPEND keeps it in one piece.
                file.write_all(format!("{line}\n").as_bytes())
            }
            Self::Log => {
                tracing::info!(target: "pvecri::audit", "{line}");
                Ok(())
            }
        };
        if let Err(err) = result {
            tracing::warn!(%err, method = entry.method, "cannot write an audit line");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_sink_appends_lines_to_a_0600_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/audit.log");
        let sink = Sink::file(&path).unwrap();
        sink.write(&Entry::new("RunPodSandbox"));
        sink.write(&Entry::new("StopPodSandbox"));
        let text = std::fs::read_to_string(&path).unwrap();
        let methods: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["method"].to_string())
            .collect();
        assert_eq!(methods, ["\"RunPodSandbox\"", "\"StopPodSandbox\""]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_file_sink_does_not_follow_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        let link = dir.path().join("audit.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(Sink::file(&link).is_err());
    }

    #[test]
    fn journal_datagrams_carry_the_line_as_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let sink = Sink::journal(&path).unwrap();
        let mut e = Entry::new("PullImage");
        e.set_image("docker.io/library/busybox:latest");
        sink.write(&e);
        let mut buf = [0u8; 4096];
        let n = server.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.contains("SYSLOG_IDENTIFIER=pvecri-audit\n"), "{text}");
        let message = text
            .lines()
            .find_map(|l| l.strip_prefix("MESSAGE="))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(message).unwrap();
        assert_eq!(v["image"], "docker.io/library/busybox:latest");
    }

    #[test]
    fn no_journal_socket_falls_back_to_the_log() {
        let sink = Sink::journal(Path::new("/nonexistent/journal.sock")).unwrap();
        assert!(matches!(sink, Sink::Log));
    }
}
