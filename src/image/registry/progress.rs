//! Pull progress in the daemon's log: while a pull runs, a line every
//! [`INTERVAL`] with the bytes received of the bytes to fetch, the blobs
//! done, and the rate since the start; a last line when it ends. Blobs
//! already in the content store count as done and are left out of the
//! bytes to fetch.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::info;

/// How often a running pull reports.
pub(super) const INTERVAL: Duration = Duration::from_secs(10);

/// What one pull has fetched so far; shared by its downloads.
#[derive(Debug)]
pub(super) struct Progress {
    reference: String,
    started: Instant,
    /// Bytes of the blobs that have to be fetched.
    to_fetch: AtomicU64,
    received: AtomicU64,
    blobs: usize,
    done: AtomicUsize,
}

/// A moment of a [`Progress`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Snapshot {
    pub received: u64,
    pub to_fetch: u64,
    pub done: usize,
    pub blobs: usize,
    pub elapsed: Duration,
}

impl Snapshot {
    /// Bytes per second since the pull started (0 in its first instant).
    pub(super) fn rate(&self) -> u64 {
        let secs = self.elapsed.as_secs_f64();
        if secs < 0.001 {
            0
        } else {
            (self.received as f64 / secs) as u64
        }
    }
}

impl Progress {
    /// A pull of `blobs` blobs (config and layers).
    pub(super) fn new(reference: &str, blobs: usize) -> Arc<Self> {
        Arc::new(Self {
            reference: reference.to_owned(),
            started: Instant::now(),
            to_fetch: AtomicU64::new(0),
            received: AtomicU64::new(0),
            blobs,
            done: AtomicUsize::new(0),
        })
    }

    /// A blob of `size` bytes starts downloading.
    pub(super) fn fetching(&self, size: u64) {
        self.to_fetch.fetch_add(size, Ordering::Relaxed);
    }

    /// `n` more bytes arrived.
    pub(super) fn received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }

    /// A blob is stored (downloaded, or found present).
    pub(super) fn blob_done(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            received: self.received.load(Ordering::Relaxed),
            to_fetch: self.to_fetch.load(Ordering::Relaxed),
            done: self.done.load(Ordering::Relaxed),
            blobs: self.blobs,
            elapsed: self.started.elapsed(),
        }
    }

    fn log(&self, what: &'static str) {
        let s = self.snapshot();
        info!(
            image = %self.reference,
            received_bytes = s.received,
            total_bytes = s.to_fetch,
            blobs = %format_args!("{}/{}", s.done, s.blobs),
            bytes_per_second = s.rate(),
            elapsed_ms = s.elapsed.as_millis() as u64,
            "{what}"
        );
    }
}

/// Reports `progress` every `interval` until dropped, then once more.
pub(super) struct Reporter {
    progress: Arc<Progress>,
    task: tokio::task::JoinHandle<()>,
}

impl Reporter {
    pub(super) fn start(progress: Arc<Progress>, interval: Duration) -> Self {
        let ticking = progress.clone();
        let task = tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            loop {
                tick.tick().await;
                ticking.log("pulling");
            }
        });
        Self { progress, task }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.task.abort();
        let s = self.progress.snapshot();
        // Pulls of images already present fetch nothing: no line for them.
        if s.to_fetch > 0 {
            self.progress.log(if s.done == s.blobs {
                "pull downloaded"
            } else {
                "pull stopped"
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_counts_bytes_blobs_and_rate() {
        let p = Progress::new("docker.io/library/busybox:1", 3);
        p.blob_done(); // present already
        p.fetching(1000);
        p.fetching(3000);
        p.received(1000);
        p.blob_done();
        p.received(500);
        let s = p.snapshot();
        assert_eq!(
            (s.received, s.to_fetch, s.done, s.blobs),
            (1500, 4000, 2, 3)
        );
        let later = Snapshot {
            elapsed: Duration::from_secs(3),
            ..s
        };
        assert_eq!(later.rate(), 500);
        let instant = Snapshot {
            elapsed: Duration::ZERO,
            ..s
        };
        assert_eq!(instant.rate(), 0);
    }

    #[tokio::test]
    async fn the_reporter_ticks_until_dropped() {
        let p = Progress::new("r", 1);
        let reporter = Reporter::start(p.clone(), Duration::from_millis(20));
        tokio::time::sleep(Duration::from_millis(70)).await;
        assert!(!reporter.task.is_finished());
        let task = reporter.task.abort_handle();
        drop(reporter);
        for _ in 0..100 {
            if task.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(task.is_finished());
    }
}
