//! The PID 1 of a pod's shared PID namespace (`pause`, and `userns ...
//! pid`). Every container of the pod sees it as PID 1, so it must show them
//! nothing: `/proc/1/root` and `/proc/1/cwd` lead into an empty read-only
//! tmpfs that it pivoted into in a mount namespace of its own, with the old
//! root detached (a chroot would not do: `..` walks out of a chroot dir
//! reached through `/proc/1/root`); it holds no capability in any set,
//! no_new_privs is set, it is not dumpable, stdio is /dev/null and no other
//! descriptor is open. It only reaps the orphans the namespace hands it,
//! until the daemon's SIGKILL ends it and the namespace.
//!
//! The forking process learns whether all of that worked over a pipe: the
//! child writes the failed step and errno and exits, or closes its end
//! once confined.

use std::ffi::CStr;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::sys::{self, Errno};

/// Where the empty root is mounted before the pivot: a directory every
/// host has, covered only in the holder's own mount namespace.
const EMPTY_ROOT_AT: &CStr = c"/proc";

/// The steps of [`confine`], as reported to the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Step {
    NewSession,
    StdioToNull,
    CloseFds,
    MountNamespace,
    PrivateMounts,
    MountEmptyRoot,
    EnterEmptyRoot,
    PivotRoot,
    DetachOldRoot,
    ChdirRoot,
    BoundingSet,
    AmbientSet,
    Capset,
    NoNewPrivs,
    NotDumpable,
}

impl Step {
    const ALL: [Step; 15] = [
        Step::NewSession,
        Step::StdioToNull,
        Step::CloseFds,
        Step::MountNamespace,
        Step::PrivateMounts,
        Step::MountEmptyRoot,
        Step::EnterEmptyRoot,
        Step::PivotRoot,
        Step::DetachOldRoot,
        Step::ChdirRoot,
        Step::BoundingSet,
        Step::AmbientSet,
        Step::Capset,
        Step::NoNewPrivs,
        Step::NotDumpable,
    ];

    fn name(self) -> &'static str {
        match self {
            Step::NewSession => "PID 1: setsid",
            Step::StdioToNull => "PID 1: stdio to /dev/null",
            Step::CloseFds => "PID 1: close descriptors",
            Step::MountNamespace => "PID 1: unshare(CLONE_NEWNS)",
            Step::PrivateMounts => "PID 1: make mounts private",
            Step::MountEmptyRoot => "PID 1: mount the empty root",
            Step::EnterEmptyRoot => "PID 1: chdir to the empty root",
            Step::PivotRoot => "PID 1: pivot_root",
            Step::DetachOldRoot => "PID 1: detach the old root",
            Step::ChdirRoot => "PID 1: chdir /",
            Step::BoundingSet => "PID 1: drop the bounding set",
            Step::AmbientSet => "PID 1: clear the ambient set",
            Step::Capset => "PID 1: capset",
            Step::NoNewPrivs => "PID 1: set no_new_privs",
            Step::NotDumpable => "PID 1: set not dumpable",
        }
    }

    fn encode(self, errno: Errno) -> [u8; 5] {
        let e = errno.0.to_le_bytes();
        [self as u8, e[0], e[1], e[2], e[3]]
    }

    fn decode(bytes: &[u8]) -> Option<(Step, Errno)> {
        let [step, e @ ..] = bytes else { return None };
        let step = *Step::ALL.get(usize::from(*step))?;
        Some((step, Errno(i32::from_le_bytes(e.try_into().ok()?))))
    }
}

/// Forks the PID 1 of the PID namespace this process unshared (with
/// `unshare(CLONE_NEWPID)`) and returns its host PID once it is confined.
///
/// # Safety
/// The calling process must be single-threaded (see [`sys::fork`]).
pub(crate) unsafe fn spawn() -> Result<libc::pid_t, (&'static str, Errno)> {
    let (read, write) = sys::pipe().map_err(|e| ("pipe", e))?;
    // SAFETY: the caller guarantees a single-threaded process.
    let child = match unsafe { sys::fork() }.map_err(|e| ("fork", e))? {
        None => {
            drop(read);
            run(write)
        }
        Some(child) => child,
    };
    drop(write);
    let mut report = Vec::new();
    let read_result = std::fs::File::from(read).read_to_end(&mut report);
    if report.is_empty() && read_result.is_ok() {
        return Ok(child);
    }
    // SAFETY: the child is ours and exits after a failed step; a null
    // status pointer is allowed.
    unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
    match (Step::decode(&report), read_result) {
        (Some((step, errno)), _) => Err((step.name(), errno)),
        (None, Err(e)) => Err(("reading the PID 1's report", e.into())),
        (None, Ok(_)) => Err(("reading the PID 1's report", Errno(libc::EPROTO))),
    }
}

/// The child: confined, then reaping until killed.
fn run(report: OwnedFd) -> ! {
    if let Err((step, errno)) = confine(&report) {
        // SAFETY: writing our own buffer to our own pipe end.
        unsafe {
            libc::write(report.as_raw_fd(), step.encode(errno).as_ptr().cast(), 5);
            libc::_exit(1)
        }
    }
    // Closing the last descriptor beyond stdio tells the parent it worked.
    drop(report);
    reap_forever()
}

/// Everything that makes PID 1 show nothing and hold nothing, in an
/// order where each step still has what it needs: /proc for the
/// descriptor fallback before the pivot, CAP_SYS_ADMIN for the mounts
/// before the capabilities go, the capabilities before dumpable (capset
/// does not reset it, but a uid change would).
fn confine(report: &OwnedFd) -> Result<(), (Step, Errno)> {
    let at = |step: Step| move |errno: Errno| (step, errno);
    // Its own session: nothing ties it to the daemon's terminal or group.
    // SAFETY: plain syscall without pointers.
    if unsafe { libc::setsid() } < 0 {
        return Err((Step::NewSession, Errno::last()));
    }
    sys::stdio_to_null().map_err(at(Step::StdioToNull))?;
    crate::fds::close_above_stdio_except(report.as_raw_fd()).map_err(at(Step::CloseFds))?;

    sys::unshare(libc::CLONE_NEWNS).map_err(at(Step::MountNamespace))?;
    sys::make_mounts_private().map_err(at(Step::PrivateMounts))?;
    sys::mount_empty_tmpfs(EMPTY_ROOT_AT).map_err(at(Step::MountEmptyRoot))?;
    sys::chdir(EMPTY_ROOT_AT).map_err(at(Step::EnterEmptyRoot))?;
    sys::pivot_root_here().map_err(at(Step::PivotRoot))?;
    // The old root is stacked on the new one at "."; detaching it leaves
    // the tmpfs as the namespace's only mount, its own parent.
    sys::umount_detach(c".").map_err(at(Step::DetachOldRoot))?;
    sys::chdir(c"/").map_err(at(Step::ChdirRoot))?;

    // Every number a capability may have: numbers this kernel does not
    // know are skipped (cap_last_cap is no longer readable here).
    for cap in 0..64 {
        sys::drop_bounding(cap).map_err(at(Step::BoundingSet))?;
    }
    sys::clear_ambient().map_err(at(Step::AmbientSet))?;
    sys::capset(sys::CapSets {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    })
    .map_err(at(Step::Capset))?;
    sys::set_no_new_privs().map_err(at(Step::NoNewPrivs))?;
    sys::set_dumpable(false).map_err(at(Step::NotDumpable))?;
    Ok(())
}

fn reap_forever() -> ! {
    sys::block_sigchld();
    loop {
        // Reap every exited orphan; then sleep until the next SIGCHLD,
        // which stays pending if it arrives in between.
        // SAFETY: a null status pointer is allowed.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        sys::wait_for_sigchld();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() {
        for step in Step::ALL {
            let bytes = step.encode(Errno(libc::EPERM));
            assert_eq!(Step::decode(&bytes), Some((step, Errno(libc::EPERM))));
        }
    }

    #[test]
    fn every_step_is_listed_at_its_number() {
        for (i, step) in Step::ALL.into_iter().enumerate() {
            assert_eq!(step as usize, i, "{step:?}");
        }
    }

    #[test]
    fn a_short_or_unknown_report_is_no_report() {
        assert_eq!(Step::decode(&[]), None);
        assert_eq!(Step::decode(&[0, 1, 0]), None);
        assert_eq!(Step::decode(&[200, 1, 0, 0, 0]), None);
    }
}
