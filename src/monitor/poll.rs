//! A minimal safe `poll(2)` for the monitor's single-threaded event loop.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// The fds to watch for input; the set borrows them for its lifetime.
pub(super) struct PollSet<'fd> {
    fds: Vec<libc::pollfd>,
    _borrow: PhantomData<BorrowedFd<'fd>>,
}

impl<'fd> PollSet<'fd> {
    pub(super) fn new() -> Self {
        Self {
            fds: Vec::new(),
            _borrow: PhantomData,
        }
    }

    /// Adds `fd` (or an empty slot for `None`, which poll ignores) and
    /// returns its index.
    pub(super) fn add(&mut self, fd: Option<BorrowedFd<'fd>>) -> usize {
        self.fds.push(libc::pollfd {
            fd: fd.map_or(-1, |fd| fd.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        });
        self.fds.len() - 1
    }

    /// Waits until some fd is ready or `timeout` passes. EINTR counts as a
    /// timeout.
    pub(super) fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let nfds = libc::nfds_t::try_from(self.fds.len()).map_err(io::Error::other)?;
        // SAFETY: `fds` is a valid, exclusively borrowed array of `nfds`
        // pollfd structs; the kernel writes only their `revents`. The fds
        // are borrowed for the set's lifetime, so they are still open.
        let ret = unsafe { libc::poll(self.fds.as_mut_ptr(), nfds, ms) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                self.fds.iter_mut().for_each(|p| p.revents = 0);
                return Ok(());
            }
            return Err(err);
        }
        Ok(())
    }

    /// Whether slot `index` has input, EOF or an error to look at.
    pub(super) fn ready(&self, index: usize) -> bool {
        self.fds[index].fd >= 0 && self.fds[index].revents != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn reports_readable_pipe_and_ignores_empty_slots() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let mut set = PollSet::new();
        let empty = set.add(None);
        let pipe = set.add(Some(r.as_fd()));
        set.wait(Duration::from_millis(1)).unwrap();
        assert!(!set.ready(pipe));
        nix::unistd::write(&w, b"x").unwrap();
        let mut set = PollSet::new();
        let empty2 = set.add(None);
        let pipe = set.add(Some(r.as_fd()));
        set.wait(Duration::from_secs(5)).unwrap();
        assert!(set.ready(pipe));
        assert!(!set.ready(empty) && !set.ready(empty2));
    }
}
