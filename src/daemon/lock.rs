//! One daemon per state directory, enforced with `flock(2)` on a lock file.
//!
//! The kernel drops the lock when the process dies, so a crashed daemon
//! never leaves a stale lock behind; the pid written into the file is only
//! there for the error message.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum LockError {
    #[error("cannot open lock file {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another pvecri daemon{holder} already uses this state directory (lock {path})")]
    Held { path: PathBuf, holder: String },
    #[error("cannot lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("cannot record pid in {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Held for the daemon's lifetime; dropping it releases the lock.
pub(crate) struct StateLock {
    _file: Flock<File>,
}

impl StateLock {
    pub(crate) fn acquire(path: &Path) -> Result<Self, LockError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| LockError::Open {
                path: path.to_owned(),
                source,
            })?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(f) => f,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                let holder = if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                };
                return Err(LockError::Held {
                    path: path.to_owned(),
                    holder,
                });
            }
            Err((_, errno)) => {
                return Err(LockError::Lock {
                    path: path.to_owned(),
                    source: errno,
                })
            }
        };
        let write = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            writeln!(f, "{}", std::process::id())?;
            f.sync_all()
        };
        write(&mut file).map_err(|source| LockError::Write {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self { _file: file })
    }
}

/// Whether a daemon holds the lock at `path`: its pid as written in the
/// file (empty when unreadable), or `None` when the lock is free or the
/// file does not exist. Probes with a shared lock, released at once.
pub(crate) fn holder(path: &Path) -> Result<Option<String>, LockError> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LockError::Open {
                path: path.to_owned(),
                source,
            })
        }
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_free) => Ok(None),
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            Ok(Some(pid.trim().to_owned()))
        }
        Err((_, errno)) => Err(LockError::Lock {
            path: path.to_owned(),
            source: errno,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_named_while_the_lock_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pvecri.lock");
        assert_eq!(holder(&path).unwrap(), None);
        let lock = StateLock::acquire(&path).unwrap();
        assert_eq!(holder(&path).unwrap(), Some(std::process::id().to_string()));
        drop(lock);
        assert_eq!(holder(&path).unwrap(), None);
    }

    #[test]
    fn second_lock_is_refused_with_the_holder_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pvecri.lock");
        let first = StateLock::acquire(&path).unwrap();
        let err = StateLock::acquire(&path)
            .err()
            .expect("second lock refused");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        StateLock::acquire(&path).expect("lock free again after drop");
    }
}
