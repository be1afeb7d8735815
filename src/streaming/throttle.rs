//! Rate limiting of log lines a streaming client can trigger at will
//! (refused connections, refused streams): one line a minute at most,
//! saying how many events it stands for.

use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(super) struct Throttle {
    last: Option<Instant>,
    since: u64,
}

impl Throttle {
    /// Counts an event; `Some(n)` when a line is due now, for the `n`
    /// events since the last one.
    pub(super) fn event(&mut self) -> Option<u64> {
        self.since += 1;
        if self.last.is_some_and(|t| t.elapsed() < EVERY) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_gives_one_line_and_the_next_one_counts_the_rest() {
        let mut t = Throttle::default();
        assert_eq!(t.event(), Some(1));
        for _ in 0..5 {
            assert_eq!(t.event(), None);
        }
        t.last = Some(Instant::now() - EVERY);
        assert_eq!(t.event(), Some(6));
    }
}
