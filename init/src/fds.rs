//! Descriptors beyond stdio never reach a workload or stay in the pod's
//! PID 1. Whatever started pvecri-init (liblxc, the exec helper's attach,
//! the daemon) may have left descriptors open without close-on-exec; one of
//! them on a host file is a way out of the container (the exec helper's
//! descriptor of the host's pvecri-init was, CVE-2019-5736 style).
//!
//! close_range(2) does it in one call; kernels without it (before 5.9, or
//! 5.11 for CLOSE_RANGE_CLOEXEC) get the same from a walk of
//! /proc/self/fd.

use std::os::fd::RawFd;

use crate::sys::{self, Errno};

/// The first descriptor after stdin, stdout and stderr.
const FIRST: RawFd = 3;

/// Marks every descriptor above stderr close-on-exec, so that the
/// descriptors pvecri-init still uses until its `execve` (the start-error
/// file, the run dir) stay usable and nothing but stdio crosses the exec.
/// Runs before the seccomp filter, which might not allow close_range.
pub(crate) fn cloexec_above_stdio() -> Result<(), Errno> {
    match sys::close_range_from(
        FIRST as libc::c_uint,
        libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
    ) {
        Err(Errno(libc::ENOSYS | libc::EINVAL)) => mark_cloexec_from(FIRST),
        other => other,
    }
}

/// Closes every descriptor above stderr except `keep`.
pub(crate) fn close_above_stdio_except(keep: RawFd) -> Result<(), Errno> {
    let ranges = [(FIRST, keep - 1), (keep + 1, RawFd::MAX)];
    for (first, last) in ranges.into_iter().filter(|(f, l)| f <= l) {
        match sys::close_between(first as libc::c_uint, last as libc::c_uint) {
            Ok(()) => {}
            Err(Errno(libc::ENOSYS)) => {
                for fd in open_fds()?
                    .into_iter()
                    .filter(|fd| *fd >= FIRST && *fd != keep)
                {
                    sys::close(fd);
                }
                return Ok(());
            }
            Err(errno) => return Err(errno),
        }
    }
    Ok(())
}

/// The fallback of [`cloexec_above_stdio`]: marks each descriptor from
/// `first` up that /proc/self/fd lists.
pub(crate) fn mark_cloexec_from(first: RawFd) -> Result<(), Errno> {
    for fd in open_fds()?.into_iter().filter(|fd| *fd >= first) {
        match sys::set_cloexec(fd) {
            // The directory handle the listing used, closed since.
            Ok(()) | Err(Errno(libc::EBADF)) => {}
            Err(errno) => return Err(errno),
        }
    }
    Ok(())
}

/// The descriptors this process holds, from /proc/self/fd (the listing's
/// own descriptor included; it is closed by the time the caller looks).
fn open_fds() -> Result<Vec<RawFd>, Errno> {
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        if let Some(fd) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) {
            fds.push(fd);
        }
    }
    Ok(fds)
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, OwnedFd};

    use super::*;

    /// A descriptor without close-on-exec, as a careless parent leaves one.
    fn inheritable() -> OwnedFd {
        let file = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: F_SETFD with 0 clears FD_CLOEXEC on our own descriptor.
        let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFD, 0) };
        assert_eq!(ret, 0);
        file.into()
    }

    fn cloexec(fd: &OwnedFd) -> bool {
        // SAFETY: F_GETFD on a descriptor we own.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
        flags & libc::FD_CLOEXEC != 0
    }

    // These mark descriptors of the test process itself close-on-exec,
    // which costs a test binary nothing: it never execs. One at a time, so
    // that one test's marking does not reach another's descriptors.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn close_range_marks_descriptors_close_on_exec() {
        let _serial = SERIAL.lock().unwrap();
        let fds = [inheritable(), inheritable()];
        assert!(fds.iter().all(|fd| !cloexec(fd)));
        cloexec_above_stdio().unwrap();
        assert!(fds.iter().all(cloexec));
    }

    #[test]
    fn the_proc_fallback_marks_them_too() {
        let _serial = SERIAL.lock().unwrap();
        let fds = [inheritable(), inheritable()];
        let first = fds.iter().map(AsRawFd::as_raw_fd).min().unwrap();
        mark_cloexec_from(first).unwrap();
        assert!(fds.iter().all(cloexec));
    }

    #[test]
    fn the_fallback_leaves_lower_descriptors_alone() {
        let _serial = SERIAL.lock().unwrap();
        let low = inheritable();
        let high = inheritable();
        assert!(low.as_raw_fd() < high.as_raw_fd());
        mark_cloexec_from(high.as_raw_fd()).unwrap();
        assert!(!cloexec(&low));
        assert!(cloexec(&high));
    }
}
