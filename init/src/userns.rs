//! `pvecri-init userns [net] [ipc] [uts] [pid]`: creates the user namespace
//! of a `hostUsers: false` pod and the pod's other namespaces inside it, so
//! that the pod's root owns them (sysfs and mqueue mounts, hostname and
//! sysctls inside the pod all check the owning user namespace).
//!
//! The daemon cannot do this itself: `unshare(CLONE_NEWUSER)` refuses a
//! multithreaded caller, and a process cannot write its own ID maps
//! without privilege in the parent namespace. So this single-threaded
//! helper talks to the daemon over its stdio, one line at a time:
//! 1. it unshares the user namespace and prints `ready`;
//! 2. the daemon writes `/proc/<pid>/{uid,gid}_map` and sends a line;
//! 3. it unshares the requested namespaces (with `pid`: forks the PID 1 of
//!    the new PID namespace, confined as `pause`'s, having first re-executed
//!    itself from a sealed copy) and prints that PID 1's host PID, or 0;
//! 4. the daemon pins `/proc/<pid>/ns/*` and closes stdin; it exits.

use std::io::{BufRead, Write};

use crate::sys::{self, Errno};

pub(crate) fn run(args: &[std::ffi::OsString]) -> ! {
    let code = match steps(args) {
        Ok(()) => 0,
        Err((step, errno)) => {
            let _ = writeln!(
                std::io::stderr().lock(),
                "pvecri-init userns: {step}: {errno}"
            );
            1
        }
    };
    std::process::exit(code)
}

fn flags(args: &[std::ffi::OsString]) -> Result<(libc::c_int, bool), (&'static str, Errno)> {
    let mut flags = 0;
    let mut pid = false;
    for arg in args {
        match arg.to_str() {
            Some("net") => flags |= libc::CLONE_NEWNET,
            Some("ipc") => flags |= libc::CLONE_NEWIPC,
            Some("uts") => flags |= libc::CLONE_NEWUTS,
            Some("pid") => pid = true,
            _ => return Err(("unknown namespace argument", Errno(libc::EINVAL))),
        }
    }
    Ok((flags, pid))
}

fn steps(args: &[std::ffi::OsString]) -> Result<(), (&'static str, Errno)> {
    let (flags, pid) = flags(args)?;
    if pid {
        // The PID 1 forked below stays in the pod: see `pause`.
        crate::sealed::reexec_sealed()?;
    }
    sys::unshare(libc::CLONE_NEWUSER).map_err(|e| ("unshare(CLONE_NEWUSER)", e))?;
    say("ready")?;
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    match stdin.read_line(&mut line) {
        Ok(n) if n > 0 => {}
        // The daemon gave up (its maps failed): nothing to do.
        _ => return Err(("waiting for the ID maps", Errno(libc::ECANCELED))),
    }
    if flags != 0 {
        sys::unshare(flags).map_err(|e| ("unshare", e))?;
    }
    let pid1 = if pid {
        sys::unshare_pid().map_err(|e| ("unshare(CLONE_NEWPID)", e))?;
        // SAFETY: this process is single-threaded.
        unsafe { crate::holder::spawn() }?
    } else {
        0
    };
    say(&pid1.to_string())?;
    // Held open until the daemon has pinned what it needs.
    line.clear();
    while matches!(stdin.read_line(&mut line), Ok(n) if n > 0) {
        line.clear();
    }
    Ok(())
}

fn say(line: &str) -> Result<(), (&'static str, Errno)> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| ("writing to the daemon", Errno::from(e)))
}
