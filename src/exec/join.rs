//! Entering a running container from its init alone: init's cgroups,
//! namespaces and, where liblxc's attach would set it, AppArmor label;
//! then a fork, so that the command is inside the PID namespace too. The
//! exec helper takes this way into every container whose init the daemon
//! recorded: it is faster than liblxc's attach (no round trip to the
//! monitor, no intermediate process, no cgroup move that waits for a
//! grace period), and it is the only way into a container restored from
//! a checkpoint (no liblxc monitor, so no command socket to attach
//! through).
//!
//! The init is named by pid and start time. A pidfd opened first, and a
//! `/proc/<pid>` directory whose `stat` shows that start time, pin the
//! process: everything read afterwards (cgroups, label, namespaces) goes
//! through them, so a pid reused meanwhile fails instead of leading into
//! another process. The namespaces are entered with one `setns(pidfd,
//! flags)` (Linux 5.8+), atomically; an older kernel refuses a pidfd with
//! EINVAL and gets the `ns/*` files one by one, user first. Only the
//! namespaces that differ from the helper's are entered (the kernel
//! refuses to enter one's own user namespace).
//!
//! The helper moves itself into init's v1 cgroups, and forks the command
//! straight into its cgroup2 cgroup (`CLONE_INTO_CGROUP`; on a kernel
//! without it the helper moves there too). The command enters the cgroup
//! namespace itself, after the fork: the kernel checks a clone into a
//! cgroup against the caller's cgroup namespace, which must still be the
//! host's. The helper is not dumpable from before the first move on, so
//! nothing in the container can read its memory or descriptors. The
//! child confines itself as the workload with pvecri-init's own code,
//! linked in (`pvecri_init::Confinement`, the steps of docs/security.md
//! "Order in pvecri-init"), and executes the command: no second program
//! runs in between, and no descriptor of pvecri-init or of the spec is
//! handed into the container.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};

use crate::cgroups::enter::EnterError;
use crate::lxc::AttachOptions;
use crate::monitor::ThreadsError;
use crate::node::clone3::{self, fork_into_cgroup, Forked};
use pvecri_init::{ConfineError, Confinement};

/// The container's init as the daemon recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Init {
    pub pid: i32,
    /// Field 22 of its /proc/<pid>/stat.
    pub start_time: u64,
}

/// The exit code of the forked command when it could not get as far as
/// executing pvecri-init (the message is on its stderr), as a shell
/// reports a command it found but could not run.
const SETUP_FAILED: i32 = 126;

/// The namespaces of init that the command enters, user first: once in
/// the container's user namespace, the helper holds the capabilities the
/// others' `setns` ask for there.
const NAMESPACES: [(&str, CloneFlags); 7] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("net", CloneFlags::CLONE_NEWNET),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
];

#[derive(Debug, thiserror::Error)]
pub(super) enum JoinError {
    #[error(transparent)]
    Threads(#[from] ThreadsError),
    #[error("init pid {0} is not a process ID")]
    BadPid(i32),
    #[error("cannot open a pidfd for init {pid}")]
    Pidfd {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {what} of init {pid}")]
    Proc {
        pid: i32,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "process {pid} is not the container's init any more (its start time is not {expected})"
    )]
    Recycled { pid: i32, expected: u64 },
    #[error("the direct exec path keeps the helper's stdio; fds {0:?} were asked for")]
    Stdio([RawFd; 3]),
    #[error("{what} {value:?} contains a NUL byte")]
    Nul { what: &'static str, value: String },
    #[error("cannot make the exec helper non-dumpable")]
    Dumpable(#[source] Errno),
    #[error("cannot move into the cgroups of init {pid}")]
    Cgroups {
        pid: i32,
        #[source]
        source: EnterError,
    },
    #[error("cannot enter the {what} namespace(s) of init {pid}")]
    Setns {
        pid: i32,
        what: String,
        #[source]
        source: Errno,
    },
    #[error("cannot fork the command")]
    Fork(#[source] Errno),
}

/// What the forked child does after the fork, all prepared before it.
struct Prepared<'a> {
    /// The command and the workload's confinement, applied by the child.
    confinement: &'a Confinement,
    cwd: CString,
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    /// The host's /proc and the label to exec into, when one is set.
    label: Option<(OwnedFd, String)>,
    /// A user namespace was entered (setgroups may be denied in it).
    in_userns: bool,
    /// init's cgroup namespace, entered by the child (see the module
    /// comment); `None` when it is the helper's own.
    cgroupns: Option<BorrowedFd<'a>>,
}

/// Starts the command of `confinement` inside the container of `init`, as
/// the identity and in the directory of `opts` first, then confined as the
/// workload (pvecri-init's code, in the child); returns its pid (in the
/// helper's PID namespace) without waiting. The helper stays in init's
/// cgroups and namespaces.
pub(super) fn spawn(
    init: Init,
    opts: &AttachOptions,
    confinement: &Confinement,
) -> Result<i32, JoinError> {
    if (opts.stdin, opts.stdout, opts.stderr) != (0, 1, 2) {
        return Err(JoinError::Stdio([opts.stdin, opts.stdout, opts.stderr]));
    }
    let pid = init.pid;
    let (pidfd, dir) = pin(init)?;
    let proc_err = |what: &'static str| move |source| JoinError::Proc { pid, what, source };
    let cgroups = read_at(&dir, "cgroup").map_err(proc_err("the cgroups"))?;
    let label = if opts.lsm_exec && crate::security::apparmor::enabled() {
        apparmor_label(&dir).map_err(proc_err("the AppArmor label"))?
    } else {
        None
    };
    let label = label
        .map(|label| host_proc().map(|proc_fd| (proc_fd, label)))
        .transpose()
        .map_err(proc_err("/proc"))?;
    let (flags, ns_files) = differing_namespaces(&dir).map_err(proc_err("the namespaces"))?;
    let cgroupns = ns_files
        .iter()
        .find(|(flag, _)| *flag == CloneFlags::CLONE_NEWCGROUP)
        .map(|(_, file)| file.as_fd());
    let prepared = Prepared {
        confinement,
        cwd: c_strings("working directory", std::slice::from_ref(&opts.cwd))?.remove(0),
        uid: Uid::from_raw(opts.uid),
        gid: Gid::from_raw(opts.gid),
        groups: opts.groups.iter().map(|g| Gid::from_raw(*g)).collect(),
        label,
        in_userns: flags.contains(CloneFlags::CLONE_NEWUSER),
        cgroupns,
    };

    // One thread: the kernel lets no other enter a user or mount
    // namespace, and the child of a fork may then run any code.
    crate::monitor::ensure_single_threaded()?;
    // Not dumpable before any part of the container is shared: its
    // processes could otherwise ptrace the helper or open its descriptors.
    nix::sys::prctl::set_dumpable(false).map_err(JoinError::Dumpable)?;
    let cgroup_err = |source| JoinError::Cgroups { pid, source };
    let unified = crate::cgroups::enter::enter(&cgroups).map_err(cgroup_err)?;
    let flags = flags - CloneFlags::CLONE_NEWCGROUP;
    let ns_files: Vec<_> = ns_files
        .iter()
        .filter(|(flag, _)| *flag != CloneFlags::CLONE_NEWCGROUP)
        .collect();
    enter_namespaces(pid, &pidfd, flags, &ns_files)?;

    let forked = match unified {
        // SAFETY: single-threaded (checked above); the child only runs
        // `run_child`, which makes system calls and formats an error
        // message, none of it depending on the C library's fork state.
        Some(cgroup) => match unsafe { fork_into_cgroup(cgroup.dir.as_fd()) } {
            Err(e) if clone3::unsupported(e) => {
                cgroup.enter().map_err(cgroup_err)?;
                fork()?
            }
            other => other.map_err(JoinError::Fork)?,
        },
        None => fork()?,
    };
    match forked {
        Forked::Parent { child } => Ok(child),
        Forked::Child => run_child(&prepared),
    }
}

/// A plain fork, as [`Forked`].
fn fork() -> Result<Forked, JoinError> {
    // SAFETY: the only caller, `spawn`, checked that the process is
    // single-threaded, so the child may run any code; it only returns by
    // exec or _exit.
    match unsafe { nix::unistd::fork() }.map_err(JoinError::Fork)? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent {
            child: child.as_raw(),
        }),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

/// A pidfd for `init` and its /proc directory, once the directory shows
/// the recorded start time. The pidfd is opened first: a process that has
/// the start time now held the pid since before that, so it is the
/// pidfd's process too.
fn pin(init: Init) -> Result<(OwnedFd, OwnedFd), JoinError> {
    let Init { pid, start_time } = init;
    if pid <= 0 {
        return Err(JoinError::BadPid(pid));
    }
    let pidfd = crate::node::pidfd::open(pid).map_err(|source| JoinError::Pidfd { pid, source })?;
    let dir = nix::fcntl::open(
        format!("/proc/{pid}").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| JoinError::Proc {
        pid,
        what: "/proc",
        source: e.into(),
    })?;
    let found = read_at(&dir, "stat")
        .ok()
        .and_then(|s| crate::sandbox::infra::start_time_of_stat(&s));
    if found != Some(start_time) {
        return Err(JoinError::Recycled {
            pid,
            expected: start_time,
        });
    }
    Ok((pidfd, dir))
}

/// The host's /proc, for the child to write its own attributes through
/// after it entered the container's mount namespace.
fn host_proc() -> std::io::Result<OwnedFd> {
    Ok(nix::fcntl::open(
        "/proc",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// The text of `name` in the process directory `dir`, not following a
/// symlink at its end.
fn read_at(dir: &OwnedFd, name: &str) -> std::io::Result<String> {
    let fd = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut text = String::new();
    File::from(fd).read_to_string(&mut text)?;
    Ok(text)
}

/// The AppArmor label of init to exec the command into, as liblxc's attach
/// does; `None` when init is unconfined. `attr/apparmor/current` where the
/// kernel stacks LSMs (5.8+), else `attr/current`.
fn apparmor_label(dir: &OwnedFd) -> std::io::Result<Option<String>> {
    let text = match read_at(dir, "attr/apparmor/current") {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => read_at(dir, "attr/current")?,
        other => other?,
    };
    Ok(crate::security::apparmor::exec_label(&text).map(str::to_owned))
}

/// The namespaces of init other than the helper's own, as setns flags and
/// their open `ns/*` files (in [`NAMESPACES`] order). A kind the kernel
/// lacks has no file and is left out.
fn differing_namespaces(dir: &OwnedFd) -> std::io::Result<(CloneFlags, Vec<(CloneFlags, File)>)> {
    let mut flags = CloneFlags::empty();
    let mut files = Vec::new();
    for (name, flag) in NAMESPACES {
        // These are the kernel's magic links to nsfs, opened through init's
        // own /proc directory.
        let theirs = match openat(
            dir,
            format!("ns/{name}").as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => File::from(fd),
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}"))?;
        if !same_file(&theirs.metadata()?, &ours) {
            flags |= flag;
            files.push((flag, theirs));
        }
    }
    Ok((flags, files))
}

fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

/// Enters `flags` of init's namespaces: at once through the pidfd, or, on
/// a kernel that takes no pidfd in setns (EINVAL), file by file.
fn enter_namespaces(
    pid: i32,
    pidfd: &OwnedFd,
    flags: CloneFlags,
    files: &[&(CloneFlags, File)],
) -> Result<(), JoinError> {
    if flags.is_empty() {
        return Ok(());
    }
    let failed = |flags: CloneFlags, source| JoinError::Setns {
        pid,
        what: names(flags),
        source,
    };
    match nix::sched::setns(pidfd, flags) {
        Ok(()) => return Ok(()),
        Err(Errno::EINVAL) => {}
        Err(e) => return Err(failed(flags, e)),
    }
    for (flag, file) in files.iter().copied() {
        nix::sched::setns(file, *flag).map_err(|e| failed(*flag, e))?;
    }
    Ok(())
}

/// `user, mnt` for the flags of those namespaces.
fn names(flags: CloneFlags) -> String {
    NAMESPACES
        .iter()
        .filter(|(_, f)| flags.contains(*f))
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

fn c_strings(what: &'static str, values: &[String]) -> Result<Vec<CString>, JoinError> {
    values
        .iter()
        .map(|v| {
            CString::new(v.as_str()).map_err(|_| JoinError::Nul {
                what,
                value: v.clone(),
            })
        })
        .collect()
}

/// A step of the child that failed, reported on its stderr.
#[derive(Debug, thiserror::Error)]
#[error("exec in the container: cannot {step}: {source}")]
struct ChildError {
    step: &'static str,
    source: Errno,
}

/// The forked child: becomes the command, or reports why not and exits
/// with [`SETUP_FAILED`] (a step of the join) or the code pvecri-init's
/// exec mode gives (a step of the confinement: 127 for a command not
/// found).
fn run_child(p: &Prepared<'_>) -> ! {
    let code = match become_command(p) {
        Err(err) => {
            let _ = writeln!(std::io::stderr().lock(), "pvecri exec-helper: {err}");
            SETUP_FAILED
        }
        Ok(err) => {
            let _ = write!(std::io::stderr().lock(), "pvecri-init: {}", err.line());
            err.exit_code()
        }
    };
    // SAFETY: _exit ends this forked child at once, without the parent's
    // atexit handlers or destructors running a second time.
    unsafe { libc::_exit(code) }
}

/// Joins what is left and execs the confined command; returns only on
/// failure: `Err` for a step of the join, `Ok` for the confinement's.
fn become_command(p: &Prepared<'_>) -> Result<ConfineError, ChildError> {
    let step = |step: &'static str| move |source| ChildError { step, source };
    if let Some(ns) = p.cgroupns {
        nix::sched::setns(ns, CloneFlags::CLONE_NEWCGROUP)
            .map_err(step("enter the cgroup namespace"))?;
    }
    if let Some((proc_fd, label)) = &p.label {
        set_exec_label(proc_fd, label).map_err(step("set the AppArmor exec label"))?;
    }
    match nix::unistd::setgroups(&p.groups) {
        // A user namespace may deny setgroups; its IDs are then what the
        // namespace's creator left, and pvecri-init sets the workload's.
        Err(Errno::EPERM) if p.in_userns => {}
        other => other.map_err(step("set the supplementary groups"))?,
    }
    nix::unistd::setresgid(p.gid, p.gid, p.gid).map_err(step("set the group ID"))?;
    nix::unistd::setresuid(p.uid, p.uid, p.uid).map_err(step("set the user ID"))?;
    nix::unistd::chdir(p.cwd.as_c_str()).map_err(step("enter the working directory"))?;
    // Nothing of the host's stays open: not the namespace files, the
    // pidfd, the cgroup descriptors or the host's /proc.
    close_all_but(&[]);
    Ok(p.confinement.exec())
}

/// Has the next exec land in AppArmor profile `label`. The file is this
/// process's own, reached through the host's /proc (`thread-self` there
/// names the caller), never through the container's.
fn set_exec_label(proc_fd: &OwnedFd, label: &str) -> Result<(), Errno> {
    let open = |name: &str| {
        openat(
            proc_fd,
            name,
            OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    };
    let fd = match open("thread-self/attr/apparmor/exec") {
        Err(Errno::ENOENT) => open("thread-self/attr/exec")?,
        other => other?,
    };
    File::from(fd)
        .write_all(format!("exec {label}").as_bytes())
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// Closes every descriptor above stderr except `keep`.
fn close_all_but(keep: &[RawFd]) {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|fd| u32::try_from(*fd).ok())
        .filter(|fd| *fd > 2)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from = 3u32;
    for fd in keep {
        if fd > from {
            close_range(from, fd - 1);
        }
        from = fd + 1;
    }
    close_range(from, u32::MAX);
}

/// close_range(2) (5.9+); on an older kernel one close per descriptor up
/// to the open-files limit.
fn close_range(first: u32, last: u32) {
    // SAFETY: plain syscall with integer arguments; only this process's
    // descriptors in the range are closed, none of which is borrowed past
    // this point (the child execs or exits next).
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    if ret == 0 {
        return;
    }
    // SAFETY: sysconf only reads a limit.
    let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
    let max = u32::try_from(max)
        .unwrap_or(1024)
        .min(last.saturating_add(1));
    for fd in first..max {
        // SAFETY: as above; a descriptor that is not open gives EBADF.
        unsafe { libc::close(fd as RawFd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_flags_are_named_in_entry_order() {
        assert_eq!(
            names(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUSER),
            "user, mnt"
        );
        assert_eq!(names(CloneFlags::empty()), "");
        assert_eq!(NAMESPACES[0].1, CloneFlags::CLONE_NEWUSER);
    }

    #[test]
    fn own_namespaces_are_not_entered() {
        let dir = nix::fcntl::open(
            format!("/proc/{}", std::process::id()).as_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let (flags, files) = differing_namespaces(&dir).unwrap();
        assert!(flags.is_empty(), "{flags:?}");
        assert!(files.is_empty());
    }

    #[test]
    fn a_recycled_pid_is_refused_before_anything_is_entered() {
        let me = std::process::id() as i32;
        let real = crate::sandbox::infra::proc_start_time(me).unwrap();
        let opts = AttachOptions {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            cwd: "/".into(),
            env: Vec::new(),
            stdin: 0,
            stdout: 1,
            stderr: 2,
            lsm_exec: false,
        };
        let spec = br#"{"args": ["sleep"], "cwd": "/", "uid": 0, "gid": 0}"#;
        let confined = Confinement::new(spec, vec!["true".into()]).unwrap();
        let err = spawn(
            Init {
                pid: me,
                start_time: real + 1,
            },
            &opts,
            &confined,
        )
        .unwrap_err();
        assert!(
            matches!(err, JoinError::Recycled { pid, expected }
                if pid == me && expected == real + 1),
            "{err}"
        );
        let err = spawn(
            Init {
                pid: 0,
                start_time: real,
            },
            &opts,
            &confined,
        )
        .unwrap_err();
        assert!(matches!(err, JoinError::BadPid(0)), "{err}");
    }
}
