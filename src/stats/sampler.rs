//! `usage_nano_cores`: the CPU rate between two samples of a cgroup's
//! cumulative CPU time.
//!
//! A rate needs two points in time. The sampler keeps the last sample of
//! each cgroup; a read at least [`MIN_WINDOW_NS`] after it yields a new rate
//! and becomes the next sample, a read sooner returns the previous rate, so
//! two clients polling close together do not see the noise of a
//! millisecond window. The daemon also samples running containers in the
//! background, so the first stats call already has a rate.

use std::collections::HashMap;
use std::sync::Mutex;

/// The shortest window a rate is computed over.
pub(crate) const MIN_WINDOW_NS: i64 = 1_000_000_000;

#[derive(Debug, Clone, Copy)]
struct Sample {
    at_ns: i64,
    usage_ns: u64,
    rate: Option<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct CpuSampler {
    samples: Mutex<HashMap<String, Sample>>,
}

impl CpuSampler {
    /// Records `usage_ns` of `key` at `at_ns` and returns the rate in
    /// nanocores, `None` until two samples far enough apart exist.
    pub(crate) fn observe(&self, key: &str, at_ns: i64, usage_ns: u64) -> Option<u64> {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let next = match samples.get(key) {
            None => Sample {
                at_ns,
                usage_ns,
                rate: None,
            },
            Some(prev) if at_ns - prev.at_ns < MIN_WINDOW_NS => return prev.rate,
            Some(prev) if usage_ns < prev.usage_ns => Sample {
                // The counter went back: a new cgroup under the same key.
                at_ns,
                usage_ns,
                rate: None,
            },
            Some(prev) => {
                let window = (at_ns - prev.at_ns) as u128;
                let used = (usage_ns - prev.usage_ns) as u128;
                Sample {
                    at_ns,
                    usage_ns,
                    rate: Some((used * 1_000_000_000 / window) as u64),
                }
            }
        };
        samples.insert(key.to_owned(), next);
        next.rate
    }

    /// Drops the samples of keys not in `live`.
    pub(crate) fn retain(&self, live: impl Fn(&str) -> bool) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.retain(|k, _| live(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn rate_between_samples() {
        let s = CpuSampler::default();
        assert_eq!(s.observe("c", 0, 0), None);
        // Half a core for two seconds.
        assert_eq!(s.observe("c", 2 * S, 1_000_000_000), Some(500_000_000));
        // Too soon: the previous rate.
        assert_eq!(s.observe("c", 2 * S + 10, 1_000_000_500), Some(500_000_000));
        // Two full cores.
        assert_eq!(s.observe("c", 3 * S, 3_000_000_000), Some(2_000_000_000));
    }

    #[test]
    fn a_counter_reset_starts_over() {
        let s = CpuSampler::default();
        s.observe("c", 0, 5_000);
        assert_eq!(s.observe("c", 2 * S, 10), None);
        assert_eq!(s.observe("c", 3 * S, 10), Some(0));
        s.retain(|k| k != "c");
        assert_eq!(s.observe("c", 4 * S, 10), None);
    }
}
