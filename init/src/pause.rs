//! `pvecri-init pause`: the infra process of a pod that shares one PID
//! namespace between its containers (shareProcessNamespace). It creates the
//! namespace, forks its PID 1 (see `holder`: confined to an empty root
//! without capabilities), prints that child's host PID once it is confined
//! and exits; the child reaps the orphans the namespace hands it until the
//! daemon kills it (which ends the namespace and every process left in it).
//!
//! It first re-executes itself from a sealed copy (see `sealed`), so that
//! the pod's `/proc/1/exe` is never the host's pvecri-init.

use std::io::Write;

use crate::sys::{self, Errno};

pub(crate) fn run() -> ! {
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
    crate::sealed::reexec_sealed()?;
    sys::unshare_pid().map_err(|e| ("unshare(CLONE_NEWPID)", e))?;
    // SAFETY: this process is single-threaded.
    unsafe { crate::holder::spawn() }
}
