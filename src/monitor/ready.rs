//! The readiness handshake on the fd the daemon passes as `--ready-fd`: one
//! line, `ok <init-pid>\n` once the container runs or `err <message>\n`, then
//! the monitor closes it. EOF without a line means the monitor died.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;

/// What the monitor reported on the ready fd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// The container runs; its init has this host pid.
    Running { init_pid: i32 },
    /// The container did not start.
    Failed { message: String },
}

impl Readiness {
    /// Parses the line the monitor wrote (with or without its newline).
    pub fn parse(line: &str) -> Option<Self> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        if let Some(pid) = line.strip_prefix("ok ") {
            let init_pid = pid.trim().parse().ok().filter(|p: &i32| *p > 0)?;
            return Some(Readiness::Running { init_pid });
        }
        let message = line
            .strip_prefix("err ")
            .or((line == "err").then_some(""))?;
        Some(Readiness::Failed {
            message: message.to_owned(),
        })
    }

    /// The line to write, newline included; the message is kept on one line.
    pub fn line(&self) -> String {
        match self {
            Readiness::Running { init_pid } => format!("ok {init_pid}\n"),
            Readiness::Failed { message } => {
                let one_line: Vec<&str> = message
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect();
                format!("err {}\n", one_line.join("; "))
            }
        }
    }
}

/// The write end of the daemon's readiness pipe; used once.
pub(crate) struct ReadyFd(File);

impl ReadyFd {
    pub(crate) fn new(fd: OwnedFd) -> Self {
        Self(File::from(fd))
    }

    /// Gives the fd back as a number (a spare monitor hands the one it was
    /// sent on to the code that takes `--ready-fd`).
    pub(crate) fn into_raw_fd(self) -> std::os::fd::RawFd {
        std::os::fd::IntoRawFd::into_raw_fd(self.0)
    }

    /// Writes the report and closes the fd. A daemon that went away is not
    /// an error worth more than a log line.
    pub(crate) fn send(mut self, report: &Readiness) {
        tracing::info!(report = report.line().trim_end(), "readiness");
        if let Err(err) = self.0.write_all(report.line().as_bytes()) {
            tracing::warn!(error = %err, "cannot write to the ready fd");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        for r in [
            Readiness::Running { init_pid: 4242 },
            Readiness::Failed {
                message: "lxc start failed".into(),
            },
        ] {
            assert_eq!(Readiness::parse(&r.line()), Some(r));
        }
    }

    #[test]
    fn multi_line_messages_are_flattened() {
        let r = Readiness::Failed {
            message: "first\n\n  second\n".into(),
        };
        assert_eq!(r.line(), "err first; second\n");
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "ok", "ok 0", "ok -1", "ok abc", "hello"] {
            assert_eq!(Readiness::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            Readiness::parse("err"),
            Some(Readiness::Failed {
                message: String::new()
            })
        );
    }

    #[test]
    fn send_writes_one_line_and_closes() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        ReadyFd::new(w).send(&Readiness::Running { init_pid: 7 });
        let text = std::io::read_to_string(File::from(r)).unwrap();
        assert_eq!(text, "ok 7\n");
    }
}
