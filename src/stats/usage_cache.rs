//! Disk usage measured off the request path: walking a directory tree is
//! by far the costliest part of a stats or ImageFsInfo call (a full walk
//! of 200 writable layers takes a quarter of a second), and the kubelet
//! asks for the same figures every few seconds. A request is answered
//! from the last measurement, however old; one older than the cache's
//! time to live is marked, and a background pass measures the marked ones
//! again. Only a key never measured is measured in the request itself (by
//! the caller).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) struct UsageCache<V> {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry<V>>>,
}

struct Entry<V> {
    at: Instant,
    value: V,
    /// Asked for while older than the time to live.
    wanted: bool,
}

impl<V: Clone> UsageCache<V> {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry<V>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last measurement of `key`, however old; one older than the
    /// time to live is marked for the background pass.
    pub(crate) fn get(&self, key: &str, now: Instant) -> Option<V> {
        let mut entries = self.lock();
        let entry = entries.get_mut(key)?;
        if now.saturating_duration_since(entry.at) >= self.ttl {
            entry.wanted = true;
        }
        Some(entry.value.clone())
    }

    pub(crate) fn put(&self, key: &str, now: Instant, value: V) {
        self.lock().insert(
            key.to_owned(),
            Entry {
                at: now,
                value,
                wanted: false,
            },
        );
    }

    /// The keys asked for since they grew old, for the background pass to
    /// measure again (their marks are cleared).
    pub(crate) fn take_wanted(&self) -> Vec<String> {
        let mut entries = self.lock();
        entries
            .iter_mut()
            .filter(|(_, e)| e.wanted)
            .map(|(k, e)| {
                e.wanted = false;
                k.clone()
            })
            .collect()
    }

    /// Drops measurements nobody renewed for `unused` (containers that are
    /// gone, figures nobody asks for).
    pub(crate) fn prune(&self, now: Instant, unused: Duration) {
        self.lock()
            .retain(|_, e| now.saturating_duration_since(e.at) < unused);
    }

    pub(crate) fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    #[test]
    fn requests_get_the_last_figure_and_old_ones_are_renewed_in_the_background() {
        let cache = UsageCache::new(TTL);
        let t0 = Instant::now();
        assert_eq!(cache.get("c1", t0), None);
        cache.put("c1", t0, 1);
        let fresh = t0 + TTL - Duration::from_millis(1);
        assert_eq!(cache.get("c1", fresh), Some(1));
        assert!(cache.take_wanted().is_empty());
        // Old: still answered from the cache, and marked once.
        let old = t0 + TTL;
        assert_eq!(cache.get("c1", old), Some(1));
        assert_eq!(cache.take_wanted(), ["c1"]);
        assert!(cache.take_wanted().is_empty());
        // The background pass renews it.
        cache.put("c1", old, 2);
        assert_eq!(cache.get("c1", old), Some(2));
        assert!(cache.take_wanted().is_empty());
    }

    #[test]
    fn unused_figures_are_dropped() {
        let cache = UsageCache::new(TTL);
        let t0 = Instant::now();
        cache.put("gone", t0, 1);
        cache.put("kept", t0 + Duration::from_secs(50), 2);
        cache.prune(t0 + Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!(cache.get("gone", t0), None);
        assert_eq!(cache.get("kept", t0), Some(2));
        cache.forget("kept");
        assert_eq!(cache.get("kept", t0), None);
    }
}
