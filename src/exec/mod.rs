//! `pvecri exec-helper`: one short-lived, single-threaded process per exec,
//! because liblxc's attach forks inside the caller (which must not be the
//! multithreaded daemon). It joins the container as its workload runs:
//! same user, groups, environment and working directory (from the
//! container's spec.json), all namespaces, the container's cgroup.
//!
//! The daemon names the container's init (`--init-pid`,
//! `--init-start-time`) and the helper joins it directly ([`join`]): faster
//! than liblxc's attach, and the only way into a container restored from a
//! checkpoint, which has no liblxc monitor to ask. Without those (a record
//! that lacks the init) it attaches through liblxc.

mod confine;
mod join;
pub(crate) mod sealed;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::container::process::ProcessSpec;
use crate::lxc::{AttachOptions, Container};

/// `pvecri exec-helper` arguments. The daemon builds the command line with
/// [`ExecHelperArgs::to_args`], so what it writes and what the helper
/// parses cannot drift apart.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ExecHelperArgs {
    /// Container ID (the LXC container name).
    #[arg(long)]
    pub id: String,
    /// pvecri's LXC path.
    #[arg(long)]
    pub lxcpath: PathBuf,
    /// The container's spec.json (user, environment, working directory).
    #[arg(long)]
    pub spec: PathBuf,
    /// pvecri-init on the host: through liblxc's attach the command runs
    /// through its exec mode    /// (from a sealed memfd copy, never this file) so that it gets the
    /// workload's capabilities and seccomp filter.
    #[arg(long)]
    pub init: PathBuf,
    /// Kill the command after this many seconds (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub timeout: u64,
    /// stdio is a terminal (the slave side of a pty the daemon opened):
    /// make it this session's controlling terminal, as a login would.
    #[arg(long)]
    pub tty: bool,
    /// Join the container through this init process (host PID) instead of
    /// through liblxc's attach.
    #[arg(long, requires = "init_start_time")]
    pub init_pid: Option<i32>,
    /// Start time of `--init-pid` (field 22 of its /proc/<pid>/stat): a
    /// process with another one is not joined.
    #[arg(long, requires = "init_pid")]
    pub init_start_time: Option<u64>,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

impl ExecHelperArgs {
    /// The subcommand's name on the `pvecri` command line.
    pub const VERB: &'static str = "exec-helper";

    /// The arguments after the program name (the verb first) that parse
    /// back into `self`; the command follows `--`, so none of its words
    /// is taken for an option of the helper.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec![Self::VERB.into()];
        let mut opt = |name: &str, value: OsString| {
            out.push(name.into());
            out.push(value);
        };
        opt("--id", self.id.clone().into());
        opt("--lxcpath", self.lxcpath.clone().into());
        opt("--spec", self.spec.clone().into());
        opt("--init", self.init.clone().into());
        opt("--timeout", self.timeout.to_string().into());
        if self.tty {
            out.push("--tty".into());
        }
        if let Some(pid) = self.init_pid {
            out.push("--init-pid".into());
            out.push(pid.to_string().into());
        }
        if let Some(start) = self.init_start_time {
            out.push("--init-start-time".into());
            out.push(start.to_string().into());
        }
        out.push("--".into());
        out.extend(self.argv.iter().map(OsString::from));
        out
    }
}

pub(crate) fn run(args: ExecHelperArgs) -> anyhow::Result<ExitCode> {
    // Read here to fail early with a clear message; pvecri-init's code
    // applies it.
    let spec_json = std::fs::read(&args.spec)
        .with_context(|| format!("cannot read {}", args.spec.display()))?;
    let spec: ProcessSpec = serde_json::from_slice(&spec_json)
        .with_context(|| format!("invalid {}", args.spec.display()))?;
    if args.tty {
        take_terminal();
    }
    // Attached as root: pvecri-init drops to the workload's user itself.
    let opts = AttachOptions {
        uid: 0,
        gid: 0,
        groups: Vec::new(),
        cwd: "/".to_owned(),
        env: vec![format!("PATH={}", crate::container::process::DEFAULT_PATH)],
        stdin: 0,
        stdout: 1,
        stderr: 2,
        // With an AppArmor profile in the spec pvecri-init sets the label;
        // liblxc's copy of the init's label would forbid that. Without
        // one, liblxc's (the init's label, or an SELinux context) stays.
        lsm_exec: spec.apparmor_profile.is_none(),
    };
    let pid = match (args.init_pid, args.init_start_time) {
        (Some(pid), Some(start_time)) => {
            let confinement = pvecri_init::Confinement::new(&spec_json, args.argv.clone())
                .map_err(|e| anyhow::anyhow!("{}", e.line().trim_end()))
                .with_context(|| format!("invalid {}", args.spec.display()))?;
            join::spawn(join::Init { pid, start_time }, &opts, &confinement)
                .with_context(|| format!("cannot exec in container {}", args.id))?
        }
        _ => {
            let confined = confine::wrap(&args.init, &args.spec, &args.argv)?;
            let container = Container::open(&args.id, &args.lxcpath.display().to_string())?;
            if !container.is_running() {
                anyhow::bail!("container {} is not running", args.id);
            }
            container.attach_command(&opts, &confined.argv)?
        }
    };
    let status = wait_bounded(pid, args.timeout)?;
    Ok(ExitCode::from(match status {
        Some(status) => exit_code(status),
        None => TIMED_OUT,
    }))
}

/// Makes stdin, a terminal, the controlling terminal of a new session, so
/// the attached command gets job control and terminal signals (^C).
/// Best effort: without it the command still runs, only without a
/// controlling terminal.
fn take_terminal() {
    if let Err(err) = nix::unistd::setsid() {
        tracing::debug!(error = %err, "setsid failed");
        return;
    }
    // SAFETY: fd 0 is open (it is this process's stdin); TIOCSCTTY takes an
    // integer argument (0: do not steal a terminal another session holds).
    let ret = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
    if ret < 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "TIOCSCTTY failed");
    }
}

/// Exit code of the helper when the command ran out of time (and was
/// killed), as `timeout(1)` reports it.
pub(crate) const TIMED_OUT: u8 = 124;

/// Waits for `pid`; past `timeout_secs` (0: forever) kills it and returns
/// `None`. The attached process is the helper's child, so it is reaped here
/// either way and nothing is left running in the container.
fn wait_bounded(pid: i32, timeout_secs: u64) -> anyhow::Result<Option<i32>> {
    use nix::sys::wait::{waitpid, WaitStatus};
    let child = nix::unistd::Pid::from_raw(pid);
    if timeout_secs > 0 {
        // Woken by the exit itself (a pidfd), not by polling.
        let pidfd = crate::node::pidfd::open(pid).context("pidfd of the attached command")?;
        let limit = std::time::Duration::from_secs(timeout_secs);
        if !crate::node::pidfd::wait_exited(&pidfd, Some(limit))
            .context("waiting for the attached command")?
        {
            let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(child, None);
            return Ok(None);
        }
    }
    loop {
        match waitpid(child, None).context("waiting for the attached command")? {
            WaitStatus::Exited(_, code) => return Ok(Some(code << 8)),
            WaitStatus::Signaled(_, sig, _) => return Ok(Some(sig as i32)),
            _ => {}
        }
    }
}

/// A wait status as a shell reports it: the exit code, or 128 + signal.
pub(crate) fn exit_code(status: i32) -> u8 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status) as u8
    } else if libc::WIFSIGNALED(status) {
        (128 + libc::WTERMSIG(status)) as u8
    } else {
        255
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exit_codes() {
        assert_eq!(super::exit_code(3 << 8), 3);
        assert_eq!(super::exit_code(9), 137);
        assert_eq!(super::exit_code(0), 0);
    }
}
