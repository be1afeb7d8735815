//! When a streaming connection last moved data either way, for the idle
//! timeout both transports enforce.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(super) struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    pub(super) fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub(super) fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    /// Resolves once nothing has moved for `idle`: bounds how long a
    /// connection reader may wait on a consumer that has stopped.
    pub(super) async fn expired(&self, idle: Duration) {
        loop {
            let left = idle.saturating_sub(self.idle_for());
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left).await;
        }
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touching_resets_the_idle_time() {
        let a = Activity::new();
        std::thread::sleep(Duration::from_millis(20));
        assert!(a.idle_for() >= Duration::from_millis(20));
        a.touch();
        assert!(a.idle_for() < Duration::from_millis(20));
    }

    #[tokio::test]
    async fn expiry_waits_for_the_idle_time_since_the_last_touch() {
        let a = Activity::new();
        let started = std::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(30)).await;
        a.touch();
        a.expired(Duration::from_millis(60)).await;
        assert!(started.elapsed() >= Duration::from_millis(90));
    }
}
