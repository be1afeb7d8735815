//! The starter of a container restored from a checkpoint: instead of
//! liblxc's foreground start it has CRIU recreate the container's process
//! tree ([`crate::checkpoint::restore`]) and then waits for the restored
//! init, its child, as the liblxc starter waits for a started one.
//!
//! The starter joins the container's cgroups and the pod's namespaces and
//! takes a private copy of the mount table (so nothing criu mounts leaks
//! to the host), then runs criu. Its report on the status pipe has one
//! more line first: `running <pid>` once criu is done, which the monitor
//! takes as readiness (there is no liblxc command socket to ask).

use std::io::Write;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;
use nix::sched::CloneFlags;
use nix::unistd::{fork, ForkResult, Pid};

use super::detach::exit_now;
use super::starter::{setup_process, StarterFds, StarterReport, STATUS_FD};
use crate::checkpoint::restore::{RestorePlan, INHERITED_FD_BASE};

/// The line that reports the restored init's pid.
pub(super) fn running_line(pid: i32) -> String {
    format!("running {pid}\n")
}

/// The pid of a `running <pid>` first line, once that line is complete.
pub(super) fn parse_running(text: &str) -> Option<i32> {
    let (line, _) = text.split_once('\n')?;
    line.strip_prefix("running ")?.trim().parse().ok()
}

/// Forks the restoring starter (the caller is single-threaded).
pub(super) fn spawn(plan: RestorePlan, fds: StarterFds) -> anyhow::Result<Pid> {
    super::detach::ensure_single_threaded()?;
    // SAFETY: the monitor is single-threaded (checked above).
    match unsafe { fork() }.context("cannot fork the restoring starter")? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => restorer_main(plan, fds),
    }
}

fn restorer_main(plan: RestorePlan, fds: StarterFds) -> ! {
    let stdin = fds.stdin.map(IntoRawFd::into_raw_fd);
    let stdout = fds.stdout.into_raw_fd();
    let stderr = fds.stderr.into_raw_fd();
    let status = fds.status.into_raw_fd();
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    if let Err(err) = setup_process(stdin, stdout, stderr, status) {
        let _ = writeln!(std::io::stderr(), "pvecri monitor: restorer setup: {err:#}");
        exit_now(1);
    }
    // SAFETY: STATUS_FD is the status pipe's write end set up above, owned
    // by nothing else in this process.
    let mut status = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(STATUS_FD) });
    let report = match restore(&plan) {
        Ok(pid) => {
            let _ = status.write_all(running_line(pid.as_raw()).as_bytes());
            wait_init(pid)
        }
        Err(err) => StarterReport::Failed {
            message: format!("{err:#}"),
        },
    };
    let _ = status.write_all(report.line().as_bytes());
    exit_now(0)
}

/// Enters the namespaces, runs criu in the container's cgroups and
/// returns the restored init's pid.
fn restore(plan: &RestorePlan) -> anyhow::Result<Pid> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).context("cannot unshare the mount namespace")?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .context("cannot make the mount namespace a slave of the host's")?;
    for (path, flag) in [
        (&plan.net, CloneFlags::CLONE_NEWNET),
        (&plan.ipc, CloneFlags::CLONE_NEWIPC),
        (&plan.uts, CloneFlags::CLONE_NEWUTS),
    ] {
        let Some(path) = path else { continue };
        let ns = std::fs::File::open(path)
            .with_context(|| format!("cannot open the namespace pin {}", path.display()))?;
        nix::sched::setns(&ns, flag)
            .with_context(|| format!("cannot enter the namespace {}", path.display()))?;
    }
    // init's stdio for criu to hand over, out of the way of criu's own.
    for fd in 0..3 {
        move_fd(fd, INHERITED_FD_BASE + fd)?;
    }
    // Opened only now, so that none of them lands on 10-12. Only criu
    // joins the container's cgroups (the tree it makes inherits
    // them): the starter stays out, so a kill of the cgroup on stop or an
    // OOM kill cannot take the process that reaps init and reports.
    let mut procs = Vec::with_capacity(plan.cgroups.len());
    for dir in &plan.cgroups {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .with_context(|| format!("cannot open the cgroup {}", dir.display()))?;
        procs.push(file);
    }
    let out =
        std::fs::File::create(plan.work_dir.join("criu.out")).context("cannot create criu.out")?;
    let err = out.try_clone().context("cannot create criu.out")?;
    let _ = std::fs::remove_file(plan.pid_file());
    let raw: Vec<RawFd> = procs.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
    let mut cmd = Command::new(&plan.criu);
    cmd.args(plan.criu_args())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: runs in the child between fork and exec and only calls
    // write(2) on fds opened above, which stay open in the parent until
    // the child has exec'd; writing "0" moves the writer itself.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            for fd in &raw {
                if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let run = cmd.status().with_context(|| {
        format!(
            "cannot run {} in the container's cgroups",
            plan.criu.display()
        )
    });
    drop(procs);
    // The restored init has its own copies now; ours would keep the
    // monitor's pipes open after it exits.
    for fd in 0..3 {
        // SAFETY: closes the copies made by move_fd, which no Rust object owns.
        unsafe { libc::close(INHERITED_FD_BASE + fd) };
    }
    let run = run?;
    if !run.success() {
        let log = std::fs::read_to_string(plan.log_file()).unwrap_or_default();
        let mut errors = crate::checkpoint::criu::error_lines(&log, 5);
        if errors.is_empty() {
            let out = std::fs::read_to_string(plan.work_dir.join("criu.out")).unwrap_or_default();
            errors = out.lines().take(5).map(str::to_owned).collect();
        }
        anyhow::bail!("criu restore failed ({run}): {}", errors.join("; "));
    }
    read_pid(&plan.pid_file())
}

/// Copies `from` to `to` (inheritable): the restored init gets it from criu.
fn move_fd(from: RawFd, to: RawFd) -> anyhow::Result<()> {
    // SAFETY: dup2 from one of this process's open stdio fds onto a number
    // no Rust object owns (setup_process closed everything above the
    // status fd); the copy has no CLOEXEC.
    if unsafe { libc::dup2(from, to) } < 0 {
        return Err(std::io::Error::last_os_error()).context("dup2");
    }
    Ok(())
}

fn read_pid(path: &Path) -> anyhow::Result<Pid> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("criu wrote no pid file {}", path.display()))?;
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("bad pid file {}: {text:?}", path.display()))?;
    anyhow::ensure!(pid > 0, "bad pid {pid} in {}", path.display());
    Ok(Pid::from_raw(pid))
}

/// Waits for the restored init, the starter's child thanks to
/// `--restore-sibling`; its raw wait status is reported as liblxc's
/// `error_num` is.
fn wait_init(pid: Pid) -> StarterReport {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid.as_raw(), &mut status, 0) };
        if r == pid.as_raw() {
            return StarterReport::Exited { error_num: status };
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return StarterReport::Failed {
                message: format!("cannot wait for the restored init {pid}: {err}"),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_line_comes_before_the_report() {
        let text = format!(
            "{}{}",
            running_line(4242),
            StarterReport::Exited { error_num: 0 }.line()
        );
        assert_eq!(parse_running(&text), Some(4242));
        assert_eq!(parse_running("running 42"), None, "incomplete line");
        assert_eq!(parse_running("exit 0\n"), None);
        assert_eq!(
            StarterReport::parse(&text),
            Some(StarterReport::Exited { error_num: 0 })
        );
    }
}
