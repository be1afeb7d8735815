//! `pvecri-init pause`: the infra process of a pod that shares one PID
//! namespace between its containers (shareProcessNamespace). It creates the
//! namespace, forks its PID 1, prints that child's host PID and exits; the
//! child detaches, reaps the orphans the namespace hands it, and otherwise
//! sleeps until the daemon kills it (which ends the namespace and every
//! process left in it).

use std::io::Write;

use crate::sys::{self, Errno};

pub fn run() -> ! {
    match start() {
        Ok(child) => {
            let mut out = std::io::stdout().lock();
            let ok = writeln!(out, "{child}").and_then(|()| out.flush()).is_ok();
            std::process::exit(if ok { 0 } else { 1 })
        }
        Err((step, errno)) => {
            let _ = writeln!(
                std::io::stderr().lock(),
                "pvecri-init pause: {step}: {errno}"
            );
            std::process::exit(1)
        }
    }
}

fn start() -> Result<libc::pid_t, (&'static str, Errno)> {
    sys::unshare_pid().map_err(|e| ("unshare(CLONE_NEWPID)", e))?;
    // SAFETY: this process is single-threaded, so the child may run any code.
    match unsafe { libc::fork() } {
        -1 => Err(("fork", Errno::last())),
        0 => namespace_init(),
        child => Ok(child),
    }
}

/// PID 1 of the pod's namespace.
pub fn namespace_init() -> ! {
    // Its own session, stdio on /dev/null: nothing ties it to the daemon.
    // SAFETY: plain syscall without pointers.
    unsafe { libc::setsid() };
    sys::stdio_to_null();
    sys::catch_sigchld();
    loop {
        // Reap every exited orphan; then sleep until the next SIGCHLD.
        // SAFETY: a null status pointer is allowed.
        let reaped = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if reaped <= 0 {
            // SAFETY: pause takes no arguments; a signal wakes it.
            unsafe { libc::pause() };
        }
    }
}
