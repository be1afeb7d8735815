//! `pvecri monitor`: the per-container supervisor (pvecri's conmon).
//!
//! The daemon spawns one per container. It detaches (`setsid`, double
//! fork) so containers outlive daemon restarts, forks a *starter* child that
//! runs the container with liblxc in the foreground (liblxc refuses that in
//! the threaded daemon), and then, single-threaded around one `poll(2)`:
//! turns the container's stdout/stderr pipes into the CRI log file, reports
//! readiness on the daemon's ready fd, serves `monitor.sock` (log reopen),
//! watches the memory cgroup for OOM kills and finally writes `exit.json`.
//! The contract with the daemon is docs/lifecycle.md ("The monitor").
//!
//! One job per file: [`detach`], [`starter`], [`run`] (the loop), [`log`]
//! (CRI log format), [`exit`] (status decoding, exit record), [`oom`] (OOM
//! detection, on the memory cgroup `crate::cgroups::memory` finds),
//! [`control`] (the socket), [`ready`] (the ready fd), [`lxclog`] (liblxc's
//! errors for failure messages), [`poll`] and [`timestamp`] (helpers),
//! [`attach`] (the attach socket), [`spare`] (a monitor started before its
//! container, and [`proctitle`], which lets it look like any other).

pub(crate) mod attach;
pub(crate) mod control;
mod detach;
pub(crate) mod exit;
mod log;
mod lxclog;
mod oom;
mod poll;
mod proctitle;
pub(crate) mod ready;
mod restorer;
mod run;
mod session;
pub(crate) mod spare;
mod starter;
pub(crate) mod timestamp;

use std::ffi::OsString;
use std::path::PathBuf;

pub(crate) use detach::{ensure_single_threaded, ThreadsError};
pub use log::DEFAULT_MAX_LINE;
pub(crate) use run::run;
pub use spare::{Assignment, SpareArgs};

/// `pvecri monitor` arguments (a hidden subcommand spawned by the daemon).
/// The daemon builds the command line with [`MonitorArgs::to_args`], so
/// what it writes and what the monitor parses cannot drift apart.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct MonitorArgs {
    /// Container ID: the LXC container name under `--lxcpath`.
    #[arg(long)]
    pub id: String,
    /// liblxc's lxcpath holding `<id>/config`.
    #[arg(long, value_name = "DIR")]
    pub lxcpath: PathBuf,
    /// The container's run dir (`container::run_dir::RunDir`: exit.json,
    /// monitor.sock, monitor.pid, ...).
    #[arg(long, value_name = "DIR")]
    pub run_dir: PathBuf,
    /// The container's cgroup (`lxc.cgroup.dir.container`), relative to
    /// the hierarchy roots; omitted: read from the LXC config.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<String>,
    /// The CRI log file; omitted or empty: discard the output.
    #[arg(long, value_name = "PATH")]
    pub log: Option<PathBuf>,
    /// An inherited fd to report readiness on (`ok <pid>` / `err <msg>`).
    #[arg(long, value_name = "FD")]
    pub ready_fd: Option<i32>,
    /// Lines longer than this many bytes are split into partial records.
    #[arg(long, value_name = "BYTES", default_value_t = log::DEFAULT_MAX_LINE)]
    pub max_log_line: usize,
    /// Give the container a stdin pipe that attach clients write to
    /// (the container config's `stdin`); without it stdin is /dev/null.
    #[arg(long)]
    pub stdin: bool,
    /// Close the container's stdin when the first attach client closes its
    /// own (`stdin_once`).
    #[arg(long)]
    pub stdin_once: bool,
    /// Run the container on a pseudo-terminal (the container config's
    /// `tty`): its output is one stream, attach clients can resize it.
    #[arg(long)]
    pub tty: bool,
    /// Restore the container from a checkpoint with this plan
    /// (`crate::checkpoint::restore`) instead of starting it with liblxc.
    #[arg(long, value_name = "PATH")]
    pub restore: Option<PathBuf>,
}

impl MonitorArgs {
    /// The subcommand's name on the `pvecri` command line.
    pub const VERB: &'static str = "monitor";

    /// The arguments after the program name (the verb first) that parse
    /// back into `self`. Options at their default are left out, so the
    /// command line reads as it did when it was written by hand.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec![Self::VERB.into()];
        let mut opt = |name: &str, value: OsString| {
            out.push(name.into());
            out.push(value);
        };
        opt("--id", self.id.clone().into());
        opt("--lxcpath", self.lxcpath.clone().into());
        opt("--run-dir", self.run_dir.clone().into());
        if let Some(cgroup) = &self.cgroup {
            opt("--cgroup", cgroup.into());
        }
        if let Some(log) = &self.log {
            opt("--log", log.clone().into());
        }
        if let Some(fd) = self.ready_fd {
            opt("--ready-fd", fd.to_string().into());
        }
        if let Some(plan) = &self.restore {
            opt("--restore", plan.clone().into());
        }
        if self.max_log_line != log::DEFAULT_MAX_LINE {
            opt("--max-log-line", self.max_log_line.to_string().into());
        }
        for (set, flag) in [
            (self.stdin, "--stdin"),
            (self.stdin_once, "--stdin-once"),
            (self.tty, "--tty"),
        ] {
            if set {
                out.push(flag.into());
            }
        }
        out
    }
}
