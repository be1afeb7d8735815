//! pvecri-init: `lxc.init.cmd` of every pvecri container (docs/lifecycle.md).
//!
//! Waits on the `/.pvecri/start` FIFO until StartContainer (the CRI
//! create/start split), reads `/.pvecri/spec.json`, hides the run dir and
//! itself from the workload, drops to the workload's credentials, enters its
//! cwd and `execve`s it, so the workload becomes the container's PID 1 as with
//! runc. Single-threaded, statically linked (scripts/build-init.sh), no NSS:
//! uids and gids arrive numeric in the spec.
//!
//! Failures are reported once, by `fail`: a `StartError` line in
//! `/.pvecri/start-error` and on stderr, and the exit code of the contract.
//!
//! A library as well as the binary (`src/main.rs` calls [`run`]): the exec
//! helper confines an exec'd command with the same code, in its own child
//! ([`Confinement`]), instead of executing pvecri-init's exec mode first.

#![deny(clippy::undocumented_unsafe_blocks)]

mod error;
mod fds;
mod holder;
mod path;
mod pause;
mod sealed;
mod security;
mod shared;
mod spec;
mod sys;
mod userns;

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use error::StartError;
use spec::Spec;
use sys::Errno;

const RUN_DIR: &CStr = c"/.pvecri";
const SELF_PATH: &CStr = c"/.pvecri-init";

/// pvecri-init's `main`: the mode its arguments name, else a container's
/// init.
pub fn run() -> ! {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "exec") {
        exec_mode(&args[2..]);
    }
    if args.get(1).is_some_and(|a| a == "pause") {
        pause::run();
    }
    if args.get(1).is_some_and(|a| a == "userns") {
        userns::run(&args[2..]);
    }
    if args.get(1).is_some_and(|a| a == "mount-shared") {
        shared::run(&args[2..]);
    }
    let run_dir = match sys::open_dir(RUN_DIR) {
        Ok(fd) => fd,
        Err(errno) => fail(None, None, StartError::OpenRunDir { errno }),
    };
    let mut error_file = None;
    match start(run_dir.as_fd(), &mut error_file) {
        // The container was removed before it was started.
        Ok(NotStarted) => std::process::exit(0),
        Err(err) => fail(Some(run_dir.as_fd()), error_file, err),
    }
}

/// `pvecri-init exec <spec fd> -- <argv>`: the exec helper runs this
/// (attached to the container, still root) so an exec'd process gets the
/// same user, capabilities, no_new_privs and seccomp filter as the
/// workload. The spec is the container's, read from an inherited fd (a
/// sealed copy) and closed; the argv replaces its args. This binary itself
/// runs from a sealed copy too, whose inherited descriptor
/// `confine_and_exec` keeps from the command along with everything else
/// above stderr.
fn exec_mode(args: &[std::ffi::OsString]) -> ! {
    let run = || -> Result<std::convert::Infallible, StartError> {
        let (fd, argv) = match args {
            [fd, sep, argv @ ..] if sep == "--" && !argv.is_empty() => (fd, argv),
            _ => return Err(StartError::Usage),
        };
        let fd: i32 = fd
            .to_str()
            .and_then(|s| s.parse().ok())
            .ok_or(StartError::Usage)?;
        let mut bytes = Vec::new();
        // SAFETY: the exec helper passes this fd open for us alone; it is
        // closed when the File drops.
        let mut file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        file.read_to_end(&mut bytes)
            .map_err(|e| StartError::ReadSpec { errno: e.into() })?;
        drop(file);
        let argv: Vec<String> = argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        confine_and_exec(&command_spec(&bytes, argv)?)
    };
    let Err(err) = run();
    let _ = write!(std::io::stderr().lock(), "pvecri-init: {}", err.line());
    std::process::exit(err.exit_code())
}

/// The container's spec (`spec.json`'s bytes) with its args replaced by an
/// exec'd command's `argv`.
fn command_spec(bytes: &[u8], argv: Vec<String>) -> Result<Spec, StartError> {
    let mut spec = spec::parse(bytes).map_err(StartError::Spec)?;
    if argv.is_empty() || argv.iter().any(|a| a.contains('\0')) {
        return Err(StartError::Usage);
    }
    spec.args = argv;
    Ok(spec)
}

/// An exec'd command's confinement, as pvecri-init's exec mode applies it:
/// the container's spec with the command as its args, parsed ahead of the
/// fork that runs it.
#[derive(Debug)]
pub struct Confinement(Spec);

/// Why a command could not be confined or executed: the `pvecri-init:`
/// line exec mode would print, and its exit code (127 not found, 126 not
/// executable, 128 any other step).
#[derive(Debug)]
pub struct ConfineError(StartError);

impl ConfineError {
    /// The line, newline included.
    pub fn line(&self) -> String {
        self.0.line()
    }

    /// The exit code exec mode would end with.
    pub fn exit_code(&self) -> i32 {
        self.0.exit_code()
    }
}

impl Confinement {
    /// The container's `spec.json` (its bytes, as the daemon wrote them)
    /// with `argv` as the command.
    pub fn new(spec_json: &[u8], argv: Vec<String>) -> Result<Self, ConfineError> {
        command_spec(spec_json, argv)
            .map(Self)
            .map_err(ConfineError)
    }

    /// Confines the calling process and executes the command; returns only
    /// on failure. For a single-threaded process, already in the
    /// container's namespaces and cgroups, as the container's root with its
    /// working directory at `/`: it closes every descriptor above stderr
    /// on the exec, sets the umask, seccomp filter, capabilities, groups,
    /// user, no_new_privs and AppArmor profile of the spec, enters its cwd
    /// and resolves the command on the spec's `PATH`.
    pub fn exec(&self) -> ConfineError {
        let Err(err) = confine_and_exec(&self.0);
        ConfineError(err)
    }
}

/// `start` returned without exec'ing: nobody asked for a start.
struct NotStarted;

/// Everything up to `execve`, which only returns on failure. What does
/// not depend on being started (the spec, the masked and read-only paths)
/// is done while the container is only created, as runc's create does, so
/// StartContainer waits for no more than the confinement and the exec.
fn start(run_dir: BorrowedFd<'_>, error_file: &mut Option<File>) -> Result<NotStarted, StartError> {
    // Opened while still root: once the capabilities are dropped a non-root
    // workload could not create it. Left empty when the start succeeds.
    let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC;
    *error_file = sys::open_at(run_dir, c"start-error", flags, 0o644)
        .ok()
        .map(File::from);
    let spec = read_spec(run_dir)?;
    if let Err(errno) = sys::terminal_as_console() {
        let _ = writeln!(
            std::io::stderr().lock(),
            "pvecri-init: cannot show the terminal as /dev/console: {errno}"
        );
    }
    security::apply_mounts(&spec).map_err(StartError::Security)?;

    // Held open (close-on-exec) until the exec: the daemon learns that the
    // workload replaced this process when the FIFO loses its last reader.
    let Some(_fifo) =
        wait_for_start(run_dir).map_err(|errno| StartError::WaitForStart { errno })?
    else {
        return Ok(NotStarted);
    };

    // While still privileged: a detach needs CAP_SYS_ADMIN. `run_dir` keeps the
    // detached /.pvecri reachable for `fail`, and is closed by the exec.
    for path in [RUN_DIR, SELF_PATH] {
        match sys::umount_detach(path) {
            // Not a mount point (or not there): nothing to hide.
            Ok(()) | Err(Errno(libc::EINVAL | libc::ENOENT)) => {}
            Err(errno) => {
                let path = path.to_str().expect("ASCII constant");
                return Err(StartError::Unmount { path, errno });
            }
        }
    }

    let Err(err) = confine_and_exec(&spec);
    Err(err)
}

/// Descriptors, seccomp, capabilities, credentials, no_new_privs, cwd,
/// then `execve`; only returns on failure. The order matters: every
/// descriptor above stderr is marked close-on-exec first (a Localhost
/// seccomp profile might not allow close_range), the bounding set needs
/// CAP_SETPCAP (so before setuid), and a filter needs CAP_SYS_ADMIN unless
/// no_new_privs is set (so early without it, last with it).
fn confine_and_exec(spec: &Spec) -> Result<std::convert::Infallible, StartError> {
    fds::cloexec_above_stdio().map_err(|errno| StartError::CloseFds { errno })?;
    sys::set_workload_umask();
    if let (Some(filter), false) = (&spec.seccomp, spec.no_new_privs) {
        security::load_seccomp(filter).map_err(StartError::Security)?;
    }
    if let Some(keep) = spec.capabilities {
        security::drop_bounding(keep).map_err(StartError::Security)?;
    }
    // Groups first: setgroups and setgid need the privileges setuid drops.
    // keep_caps keeps the permitted set across setuid for the capset below.
    let _ = sys::keep_caps();
    let gids = &spec.additional_gids;
    sys::setgroups(gids).map_err(|errno| StartError::SetGroups {
        gids: gids.clone(),
        errno,
    })?;
    sys::setgid(spec.gid).map_err(|errno| StartError::SetGid {
        gid: spec.gid,
        errno,
    })?;
    sys::setuid(spec.uid).map_err(|errno| StartError::SetUid {
        uid: spec.uid,
        errno,
    })?;
    if let Some(keep) = spec.capabilities {
        security::set_capabilities(keep, spec.ambient_capabilities)
            .map_err(StartError::Security)?;
    }
    if spec.no_new_privs {
        sys::set_no_new_privs().map_err(|errno| StartError::NoNewPrivs { errno })?;
        if let Some(filter) = &spec.seccomp {
            security::load_seccomp(filter).map_err(StartError::Security)?;
        }
    }
    if let Some(profile) = &spec.apparmor_profile {
        sys::apparmor_exec_label(profile).map_err(|errno| {
            StartError::Security(security::SecurityError::AppArmor {
                profile: profile.clone(),
                errno,
            })
        })?;
    }
    let cwd = CString::new(spec.cwd.as_str()).expect("validated by Spec::parse");
    sys::chdir(&cwd).map_err(|errno| StartError::Chdir {
        cwd: spec.cwd.clone(),
        errno,
    })?;

    let name = &spec.args[0];
    let path = path::resolve(name, spec::path_var(spec))
        .ok_or_else(|| StartError::NotInPath { name: name.clone() })?;
    let c_path = CString::new(path.as_os_str().as_bytes()).expect("validated by Spec::parse");
    sys::reset_signals();
    let errno = sys::execve(
        &c_path,
        &spec::c_strings(&spec.args),
        &spec::c_strings(&spec.env),
    );
    Err(StartError::Exec { path, errno })
}

/// Blocks until the daemon opens the FIFO for writing; the FIFO once the
/// start byte came, `None` when the daemon closed it without one.
fn wait_for_start(run_dir: BorrowedFd<'_>) -> Result<Option<OwnedFd>, Errno> {
    let fifo = sys::open_at(run_dir, c"start", libc::O_RDONLY, 0)?;
    Ok(sys::read_byte(fifo.as_fd())?.map(|_| fifo))
}

fn read_spec(run_dir: BorrowedFd<'_>) -> Result<Spec, StartError> {
    let read = || -> Result<Vec<u8>, Errno> {
        let mut file = File::from(sys::open_at(run_dir, c"spec.json", libc::O_RDONLY, 0)?);
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let bytes = read().map_err(|errno| StartError::ReadSpec { errno })?;
    spec::parse(&bytes).map_err(StartError::Spec)
}

/// Reports `err` to the monitor (start-error) and the container log
/// (stderr), then exits with the contract's code.
fn fail(run_dir: Option<BorrowedFd<'_>>, error_file: Option<File>, err: StartError) -> ! {
    let line = err.line();
    let mut stderr = std::io::stderr().lock();
    // Nothing useful to do if stderr itself is gone.
    let _ = write!(stderr, "pvecri-init: {line}");
    if let Some(mut file) = error_file {
        if let Err(e) = file.write_all(line.as_bytes()) {
            let _ = writeln!(stderr, "pvecri-init: write /.pvecri/start-error: {e}");
        }
    } else if let Some(dir) = run_dir {
        if let Err(errno) = write_start_error(dir, &line) {
            let _ = writeln!(stderr, "pvecri-init: write /.pvecri/start-error: {errno}");
        }
    }
    std::process::exit(err.exit_code())
}

fn write_start_error(run_dir: BorrowedFd<'_>, line: &str) -> Result<(), Errno> {
    // The workload's uid usually may not create files in the run dir.
    let _ = sys::raise_dac_override();
    let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC;
    let mut file = File::from(sys::open_at(run_dir, c"start-error", flags, 0o644)?);
    file.write_all(line.as_bytes())?;
    Ok(())
}
