//! `pvecri exec-helper`: one short-lived, single-threaded process per exec,
//! because liblxc's attach forks inside the caller (which must not be the
//! multithreaded daemon). It joins the container as its workload runs:
//! same user, groups, environment and working directory (from the
//! container's spec.json), all namespaces, the container's cgroup.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::container::process::ProcessSpec;
use crate::lxc::{AttachOptions, Container};

#[derive(Debug, clap::Args)]
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
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

pub fn run(args: ExecHelperArgs) -> anyhow::Result<ExitCode> {
    let spec: ProcessSpec = serde_json::from_slice(
        &std::fs::read(&args.spec)
            .with_context(|| format!("cannot read {}", args.spec.display()))?,
    )
    .with_context(|| format!("invalid {}", args.spec.display()))?;
    let container = Container::open(&args.id, &args.lxcpath.display().to_string())?;
    if !container.is_running() {
        anyhow::bail!("container {} is not running", args.id);
    }
    let opts = AttachOptions {
        uid: spec.uid,
        gid: spec.gid,
        groups: spec.additional_gids.clone(),
        cwd: spec.cwd.clone(),
        env: spec.env.clone(),
        stdin: 0,
        stdout: 1,
        stderr: 2,
    };
    let status = container.attach_run_wait(&opts, &args.argv)?;
    Ok(ExitCode::from(exit_code(status)))
}

/// A wait status as a shell reports it: the exit code, or 128 + signal.
pub fn exit_code(status: i32) -> u8 {
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
