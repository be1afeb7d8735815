//! Process descriptors (`pidfd_open(2)`, Linux 5.3+): a pidfd refers to
//! one process for as long as it is held, whatever happens to its pid, and
//! turns readable once that process has exited. The daemon waits on the
//! monitors' (`runtime::exit_watch`), the exec helper on its command's and
//! joins a restored container's init through one (`exec::join`).

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// A close-on-exec pidfd for `pid`. Polled for readability only (never
/// read), so it needs no `PIDFD_NONBLOCK`, which kernels before 5.10 refuse.
pub(crate) fn open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new
    // descriptor or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Blocks until the process of `pidfd` has exited (`true`) or `timeout`
/// has passed (`false`); `None` waits without limit.
pub(crate) fn wait_exited(pidfd: &OwnedFd, timeout: Option<Duration>) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let wait_ms: i32 = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Rounded up: never wake just before the deadline.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            }
        };
        let mut fds = [libc::pollfd {
            fd: pidfd.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: `fds` is a valid array of one pollfd for the call's
        // duration, and its descriptor is open (borrowed from `pidfd`).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, wait_ms) };
        if n > 0 {
            return Ok(true);
        }
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINTR) {
                return Err(err);
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_the_exit_or_the_timeout() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.3")
            .spawn()
            .unwrap();
        let fd = open(child.id() as i32).unwrap();
        let started = Instant::now();
        assert!(!wait_exited(&fd, Some(Duration::from_millis(50))).unwrap());
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(wait_exited(&fd, Some(Duration::from_secs(10))).unwrap());
        assert!(started.elapsed() >= Duration::from_millis(250));
        // Exited but not yet reaped: still readable.
        assert!(wait_exited(&fd, None).unwrap());
        child.wait().unwrap();
    }

    #[test]
    fn a_gone_process_has_no_pidfd() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        let err = open(pid).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH));
    }
}
