//! Why a container did not start, and how that is reported: one line
//! `StartError: <message>` in `/.pvecri/start-error` (the monitor turns it
//! into the exit reason) and on stderr (the container log), plus the exit
//! code of docs/lifecycle.md: 127 not found, 126 other exec failure, 128
//! everything before exec.

use std::fmt;
use std::path::PathBuf;

use crate::security::SecurityError;
use crate::spec::SpecError;
use crate::sys::Errno;

/// The exit reason the monitor records for these failures.
pub(crate) const REASON: &str = "StartError";

#[derive(Debug)]
pub(crate) enum StartError {
    OpenRunDir {
        errno: Errno,
    },
    WaitForStart {
        errno: Errno,
    },
    ReadSpec {
        errno: Errno,
    },
    Spec(SpecError),
    /// Descriptors above stderr could not be kept from the workload.
    CloseFds {
        errno: Errno,
    },
    Unmount {
        path: &'static str,
        errno: Errno,
    },
    SetGroups {
        gids: Vec<u32>,
        errno: Errno,
    },
    SetGid {
        gid: u32,
        errno: Errno,
    },
    SetUid {
        uid: u32,
        errno: Errno,
    },
    NoNewPrivs {
        errno: Errno,
    },
    Chdir {
        cwd: String,
        errno: Errno,
    },
    NotInPath {
        name: String,
    },
    Exec {
        path: PathBuf,
        errno: Errno,
    },
    Security(SecurityError),
    /// `pvecri-init exec` called without `<spec fd> -- <argv>`.
    Usage,
}

impl StartError {
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            Self::NotInPath { .. }
            | Self::Exec {
                errno: Errno(libc::ENOENT),
                ..
            } => 127,
            Self::Exec { .. } => 126,
            _ => 128,
        }
    }

    /// The `start-error` line, newline included; newlines from the spec
    /// (a cwd, say) are escaped so the file stays one line.
    pub(crate) fn line(&self) -> String {
        let message = self.to_string().replace('\n', "\\n");
        format!("{REASON}: {message}\n")
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OpenRunDir { errno } => write!(f, "open /.pvecri: {errno}"),
            Self::WaitForStart { errno } => write!(f, "wait on /.pvecri/start: {errno}"),
            Self::ReadSpec { errno } => write!(f, "read /.pvecri/spec.json: {errno}"),
            Self::Spec(e) => e.fmt(f),
            Self::CloseFds { errno } => write!(f, "close inherited descriptors: {errno}"),
            Self::Unmount { path, errno } => write!(f, "unmount {path}: {errno}"),
            Self::SetGroups { gids, errno } => write!(f, "setgroups {gids:?}: {errno}"),
            Self::SetGid { gid, errno } => write!(f, "setgid {gid}: {errno}"),
            Self::SetUid { uid, errno } => write!(f, "setuid {uid}: {errno}"),
            Self::NoNewPrivs { errno } => write!(f, "set no_new_privs: {errno}"),
            Self::Chdir { cwd, errno } => write!(f, "chdir to {cwd}: {errno}"),
            Self::NotInPath { name } => write!(f, "executable {name:?} not found in $PATH"),
            Self::Exec { path, errno } => {
                write!(f, "exec {:?}: {errno}", path.display().to_string())
            }
            Self::Security(e) => e.fmt(f),
            Self::Usage => f.write_str("usage: pvecri-init exec <spec fd> -- <command> [args]"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Spec(e) => Some(e),
            Self::Security(e) => Some(e),
            Self::NotInPath { .. } | Self::Usage => None,
            Self::OpenRunDir { errno }
            | Self::WaitForStart { errno }
            | Self::ReadSpec { errno }
            | Self::CloseFds { errno }
            | Self::Unmount { errno, .. }
            | Self::SetGroups { errno, .. }
            | Self::SetGid { errno, .. }
            | Self::SetUid { errno, .. }
            | Self::NoNewPrivs { errno }
            | Self::Chdir { errno, .. }
            | Self::Exec { errno, .. } => Some(errno),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_exit_codes() {
        let cases = [
            (
                StartError::NotInPath {
                    name: "nginx".into(),
                },
                "StartError: executable \"nginx\" not found in $PATH\n",
                127,
            ),
            (
                StartError::Exec {
                    path: "/app/run".into(),
                    errno: Errno(libc::ENOENT),
                },
                "StartError: exec \"/app/run\": no such file or directory\n",
                127,
            ),
            (
                StartError::Exec {
                    path: "/app/run".into(),
                    errno: Errno(libc::EACCES),
                },
                "StartError: exec \"/app/run\": permission denied\n",
                126,
            ),
            (
                StartError::Exec {
                    path: "/app/bin".into(),
                    errno: Errno(libc::ENOEXEC),
                },
                "StartError: exec \"/app/bin\": exec format error\n",
                126,
            ),
            (
                StartError::Chdir {
                    cwd: "/work dir".into(),
                    errno: Errno(libc::ENOENT),
                },
                "StartError: chdir to /work dir: no such file or directory\n",
                128,
            ),
            (
                StartError::SetUid {
                    uid: 1000,
                    errno: Errno(libc::EINVAL),
                },
                "StartError: setuid 1000: invalid argument\n",
                128,
            ),
            (
                StartError::SetGroups {
                    gids: vec![1, 2],
                    errno: Errno(libc::EPERM),
                },
                "StartError: setgroups [1, 2]: operation not permitted\n",
                128,
            ),
            (
                StartError::Spec(SpecError::EmptyArgs),
                "StartError: spec.json has no args\n",
                128,
            ),
        ];
        for (err, line, code) in cases {
            assert_eq!(err.line(), line);
            assert_eq!(err.exit_code(), code, "{line}");
        }
    }

    #[test]
    fn every_line_is_one_line() {
        let err = StartError::Chdir {
            cwd: "/a\nb".into(),
            errno: Errno(libc::ENOENT),
        };
        assert_eq!(
            err.line(),
            "StartError: chdir to /a\\nb: no such file or directory\n"
        );
    }
}
