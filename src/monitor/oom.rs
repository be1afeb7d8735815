//! OOM-kill detection for a running container's memory cgroup.
//!
//! The kernel counts OOM kills per cgroup: `oom_kill N` in `memory.events`
//! (v2, hierarchical) or in `memory.oom_control` (v1, kernel >= 4.13, the
//! cgroup's own tasks only). liblxc removes the cgroup as soon as the
//! container stops, so the count must be read while it exists: the monitor
//! samples it on its poll tick, right away when the kernel signals a change
//! (inotify on `memory.events` for v2, an OOM eventfd registered through
//! `cgroup.event_control` for v1), in a short burst of fast re-reads after
//! such a signal (the kill is counted just after the OOM is signalled), and
//! once more when the container's output pipes close. The highest count seen
//! wins; the cgroup is new with the container, so any kill counts.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::cgroups::memory::{CgroupVersion, MemoryCgroup};

/// How long to keep re-reading the counter quickly after a notification.
pub(super) const BURST: Duration = Duration::from_millis(50);

/// Parses the `oom_kill N` line shared by `memory.events` and
/// `memory.oom_control`.
pub(super) fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "oom_kill")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// Watches one container's memory cgroup for OOM kills.
pub(super) struct OomWatch {
    cgroup: MemoryCgroup,
    /// inotify (v2) or eventfd (v1); `None` when the kernel refused, and the
    /// tick sampling alone remains.
    notify: Option<OwnedFd>,
    max_seen: u64,
    /// Whether the last read succeeded (false once the cgroup is gone).
    readable: bool,
    burst_until: Option<Instant>,
}

impl OomWatch {
    /// Starts watching `cgroup` and takes a first sample.
    pub(super) fn new(cgroup: MemoryCgroup) -> Self {
        let notify = match cgroup.version {
            CgroupVersion::V2 => inotify_on(&cgroup),
            CgroupVersion::V1 => oom_eventfd(&cgroup),
        };
        if let Err(err) = &notify {
            tracing::warn!(cgroup = %cgroup.dir.display(), error = %err, "no OOM notifications, sampling only");
        }
        let mut watch = Self {
            cgroup,
            notify: notify.ok(),
            max_seen: 0,
            readable: true,
            burst_until: None,
        };
        watch.sample();
        watch
    }

    /// The fd to poll for readability, if notifications are set up.
    pub(super) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.notify.as_ref().map(|fd| fd.as_fd())
    }

    /// Called when [`OomWatch::fd`] is readable: drains it, samples, and
    /// starts a burst of fast re-reads.
    pub(super) fn on_notify(&mut self) {
        if let Some(fd) = &self.notify {
            let mut buf = [0u8; 4096];
            // SAFETY: `fd` is our own open, non-blocking inotify/eventfd;
            // `buf` is writable for its length. Errors (EAGAIN) end the drain.
            while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
        }
        self.sample();
        if self.readable {
            self.burst_until = Some(Instant::now() + BURST);
        } else {
            // The cgroup is gone (v1 signals its removal on the eventfd too).
            self.notify = None;
        }
    }

    /// Reads the counter if the cgroup still exists. Returns whether it did.
    pub(super) fn sample(&mut self) -> bool {
        if !self.readable {
            return false;
        }
        match std::fs::read_to_string(self.cgroup.counter_file()) {
            Ok(text) => {
                if let Some(n) = parse_oom_kill(&text) {
                    if n > self.max_seen {
                        tracing::info!(cgroup = %self.cgroup.dir.display(), oom_kill = n, "OOM kill in container");
                    }
                    self.max_seen = self.max_seen.max(n);
                }
                true
            }
            Err(_) => {
                self.readable = false;
                self.burst_until = None;
                false
            }
        }
    }

    /// Whether a fast re-read is due now (during a burst).
    pub(super) fn in_burst(&mut self, now: Instant) -> bool {
        match self.burst_until {
            Some(until) if now < until => true,
            Some(_) => {
                self.burst_until = None;
                false
            }
            None => false,
        }
    }

    /// Whether any process of the container was OOM-killed.
    pub(super) fn oom_killed(&self) -> bool {
        self.max_seen > 0
    }
}

fn inotify_on(cgroup: &MemoryCgroup) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked before use.
    let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let path = std::ffi::CString::new(cgroup.counter_file().into_os_string().into_encoded_bytes())
        .map_err(std::io::Error::other)?;
    // SAFETY: `fd` is a live inotify fd and `path` a valid C string.
    let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), libc::IN_MODIFY) };
    if wd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// Registers an eventfd that the kernel signals on every OOM in the cgroup
/// (and once when the cgroup is removed).
fn oom_eventfd(cgroup: &MemoryCgroup) -> std::io::Result<OwnedFd> {
    let control = File::open(cgroup.counter_file())?;
    // SAFETY: plain syscall; the result is checked before use.
    let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let efd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut event_control = std::fs::OpenOptions::new()
        .write(true)
        .open(cgroup.dir.join("cgroup.event_control"))?;
    event_control.write_all(format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()).as_bytes())?;
    Ok(efd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v2_memory_events() {
        let text = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(text), Some(1));
    }

    #[test]
    fn parses_v1_oom_control() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_oom_kill(text), Some(3));
    }

    #[test]
    fn old_kernels_without_the_counter_give_none() {
        assert_eq!(parse_oom_kill("oom_kill_disable 0\nunder_oom 0\n"), None);
        assert_eq!(parse_oom_kill("oom_kill_disable 1\n"), None);
    }

    #[test]
    fn counts_kills_and_stops_when_the_cgroup_goes() {
        let dir = tempfile::tempdir().unwrap();
        let cg = MemoryCgroup {
            version: CgroupVersion::V2,
            dir: dir.path().join("c1"),
        };
        std::fs::create_dir(&cg.dir).unwrap();
        std::fs::write(cg.counter_file(), "oom 0\noom_kill 0\n").unwrap();
        let mut watch = OomWatch::new(cg.clone());
        assert!(!watch.oom_killed());
        assert!(watch.fd().is_some(), "inotify works on any file");

        std::fs::write(cg.counter_file(), "oom 1\noom_kill 1\n").unwrap();
        watch.on_notify();
        assert!(watch.oom_killed());
        assert!(watch.in_burst(Instant::now()));
        assert!(!watch.in_burst(Instant::now() + BURST * 2));

        std::fs::remove_dir_all(&cg.dir).unwrap();
        assert!(!watch.sample());
        assert!(!watch.sample(), "a vanished cgroup stays vanished");
        assert!(watch.oom_killed(), "the last value seen is kept");
    }
}
