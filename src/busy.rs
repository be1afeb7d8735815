//! "One at a time" for background work: a shared flag set while the work
//! runs, cleared when its [`Busy`] guard drops, also when the work panics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set while the work it guards runs.
pub(crate) struct Busy(Arc<AtomicBool>);

impl Busy {
    /// The guard, unless the work already runs.
    pub(crate) fn try_start(flag: &Arc<AtomicBool>) -> Option<Self> {
        (!flag.swap(true, Ordering::SeqCst)).then(|| Self(flag.clone()))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_at_a_time_and_cleared_even_by_a_panic() {
        let flag = Arc::new(AtomicBool::new(false));
        let first = Busy::try_start(&flag).expect("free");
        assert!(Busy::try_start(&flag).is_none());
        drop(first);
        let f = flag.clone();
        let _ = std::thread::spawn(move || {
            let _busy = Busy::try_start(&f).unwrap();
            panic!("work failed");
        })
        .join();
        assert!(Busy::try_start(&flag).is_some());
    }
}
