//! What the daemon's pools of things made ahead of need share (the spare
//! monitors, `super::spares`, and the spare network namespaces,
//! `super::netns_spares`): the idle items, how many are being made, the
//! refill at idle priority once pod and container starts pause, the
//! back-off after a failure, and shutdown.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::warn;

/// How long no pod or container may have been made or started before a
/// refill begins.
pub(super) const QUIET: Duration = Duration::from_millis(20);
/// The longest a refill waits for such a pause (on a node that starts
/// containers without pause, it then runs anyway).
const QUIET_AT_MOST: Duration = Duration::from_secs(1);
/// How long refills pause after an item could not be made (a node where
/// it cannot work would otherwise pay a failure after every start).
pub(super) const BACKOFF: Duration = Duration::from_secs(60);

/// When a pod or container was last made or started: refills wait for a
/// pause in that.
pub(crate) struct Activity {
    at: Mutex<Instant>,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            at: Mutex::new(Instant::now()),
        }
    }

    /// Something was made or started just now.
    pub(crate) fn note(&self) {
        *self.at.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn since(&self) -> Duration {
        self.at.lock().unwrap_or_else(|p| p.into_inner()).elapsed()
    }

    /// Returns once nothing was noted for [`QUIET`], or after
    /// [`QUIET_AT_MOST`] in any case.
    async fn settle(&self) {
        let asked = Instant::now();
        loop {
            let wait = QUIET.saturating_sub(self.since());
            if wait.is_zero() || asked.elapsed() >= QUIET_AT_MOST {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// What an item's make failed with.
pub(super) type MakeError = Box<dyn std::error::Error + Send + Sync>;

/// How a pool's items are made and thrown away.
pub(super) struct Maker<T> {
    /// Makes one item (blocking; runs at idle priority).
    pub(super) make: Box<dyn Fn() -> Result<T, MakeError> + Send + Sync>,
    /// Ends an item made after shutdown began.
    pub(super) discard: fn(T),
    /// Logged, with the error, when an item cannot be made.
    pub(super) failure: &'static str,
}

/// A pool of `T`s kept made ahead of need.
pub(super) struct Pool<T> {
    /// How many idle items to keep (0: none, made on demand instead).
    target: usize,
    idle: Mutex<Vec<T>>,
    /// Items being made now (counted toward `target`).
    making: AtomicUsize,
    /// Set at shutdown: nothing is made or handed out any more.
    closed: AtomicBool,
    /// Whether a refill waits for a pause ([`Self::refill_when_quiet`]).
    waiting: AtomicBool,
    /// When an item last failed to be made.
    failed_at: Mutex<Option<Instant>>,
    activity: Arc<Activity>,
    maker: Maker<T>,
}

impl<T: Send + 'static> Pool<T> {
    pub(super) fn new(target: usize, activity: Arc<Activity>, maker: Maker<T>) -> Arc<Self> {
        Arc::new(Self {
            target,
            idle: Mutex::new(Vec::new()),
            making: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            waiting: AtomicBool::new(false),
            failed_at: Mutex::new(None),
            activity,
            maker,
        })
    }

    pub(super) fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    pub(super) fn idle(&self) -> MutexGuard<'_, Vec<T>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// The newest idle item (none once closed).
    pub(super) fn pop(&self) -> Option<T> {
        if self.is_closed() {
            return None;
        }
        self.idle().pop()
    }

    /// Closes the pool and returns its idle items.
    pub(super) fn close(&self) -> Vec<T> {
        self.closed.store(true, Ordering::SeqCst);
        std::mem::take(&mut *self.idle())
    }

    /// Whether an item failed to be made less than [`BACKOFF`] ago.
    pub(super) fn backing_off(&self) -> bool {
        self.failed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() < BACKOFF)
    }

    /// Refills the pool ([`Self::refill`]) once no pod or container has
    /// been made or started for [`QUIET`] (or after [`QUIET_AT_MOST`] in
    /// any case). One waiting refill serves any number of calls. Needs a
    /// tokio runtime.
    pub(super) fn refill_when_quiet(self: &Arc<Self>) {
        self.activity.note();
        if self.target == 0 || self.waiting.swap(true, Ordering::SeqCst) {
            return;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            pool.activity.settle().await;
            pool.waiting.store(false, Ordering::SeqCst);
            pool.refill();
        });
    }

    /// Makes items on a blocking thread, at idle priority (inherited by
    /// what it forks or spawns), until `target` are idle or being made.
    /// One made after shutdown began is discarded. A failure ends this
    /// refill, is logged, and pauses the next for [`BACKOFF`]. Needs a
    /// tokio runtime.
    pub(super) fn refill(self: &Arc<Self>) {
        if self.is_closed() || self.backing_off() {
            return;
        }
        // Counted under the lock, so two refills never overshoot.
        let want = {
            let idle = self.idle();
            let have = idle.len() + self.making.load(Ordering::SeqCst);
            let want = self.target.saturating_sub(have);
            self.making.fetch_add(want, Ordering::SeqCst);
            want
        };
        if want == 0 {
            return;
        }
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let _idle = IdlePriority::enter();
            for left in (0..want).rev() {
                let made = (pool.maker.make)();
                let mut idle = pool.idle();
                pool.making.fetch_sub(1, Ordering::SeqCst);
                match made {
                    Ok(item) if !pool.is_closed() => idle.push(item),
                    Ok(item) => {
                        drop(idle);
                        (pool.maker.discard)(item);
                    }
                    Err(err) => {
                        drop(idle);
                        // The rest of this refill is not tried either.
                        pool.making.fetch_sub(left, Ordering::SeqCst);
                        *pool.failed_at.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(Instant::now());
                        warn!(error = %crate::errors::chain(&*err), retry_in = ?BACKOFF, "{}", pool.maker.failure);
                        return;
                    }
                }
            }
        });
    }

    #[cfg(test)]
    pub(super) fn making(&self) -> usize {
        self.making.load(Ordering::SeqCst)
    }

    #[cfg(test)]
    pub(super) fn waiting(&self) -> bool {
        self.waiting.load(Ordering::SeqCst)
    }
}

/// The calling thread at `SCHED_IDLE` until dropped (then back to
/// `SCHED_OTHER`, its nice value unchanged).
pub(super) struct IdlePriority {
    entered: bool,
}

impl IdlePriority {
    pub(super) fn enter() -> Self {
        Self {
            entered: set_policy(libc::SCHED_IDLE).is_ok(),
        }
    }
}

impl Drop for IdlePriority {
    fn drop(&mut self) {
        if self.entered {
            if let Err(err) = set_policy(libc::SCHED_OTHER) {
                warn!(error = %err, "cannot restore a blocking thread's scheduling policy");
            }
        }
    }
}

/// Sets the calling thread's scheduling policy (a normal one: priority 0).
fn set_policy(policy: libc::c_int) -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param
    // that outlives the call.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_priority_is_left_on_drop() {
        std::thread::spawn(|| {
            let policy = || {
                // SAFETY: pid 0 is the calling thread.
                unsafe { libc::sched_getscheduler(0) }
            };
            {
                let idle = IdlePriority::enter();
                assert!(idle.entered);
                assert_eq!(policy(), libc::SCHED_IDLE);
            }
            assert_eq!(policy(), libc::SCHED_OTHER);
        })
        .join()
        .unwrap();
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot")]
    struct Cannot;

    /// A pool of `n`s, or of failures when `n` is `None`.
    fn pool_of(n: Option<u32>) -> Arc<Pool<u32>> {
        let maker = Maker {
            make: Box::new(move || n.ok_or_else(|| Cannot.into())),
            discard: |_| {},
            failure: "test",
        };
        Pool::new(2, Arc::new(Activity::new()), maker)
    }

    #[tokio::test]
    async fn a_failed_make_pauses_the_refills() {
        let pool = pool_of(None);
        pool.refill();
        for _ in 0..500 {
            if pool.backing_off() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(pool.backing_off());
        assert_eq!(pool.making(), 0, "the rest was not tried");
        pool.refill();
        assert_eq!(pool.making(), 0, "no refill while backing off");
        assert!(pool.idle().is_empty());
    }

    /// A refill asked for after a hand-over waits while pods and
    /// containers keep being started, then runs once they pause.
    #[tokio::test]
    async fn a_refill_waits_for_starts_to_pause() {
        let pool = pool_of(Some(7));
        pool.refill_when_quiet();
        pool.refill_when_quiet();
        for _ in 0..10 {
            tokio::time::sleep(QUIET / 4).await;
            pool.activity().note();
            assert!(pool.idle().is_empty(), "refilled while starts went on");
        }
        for _ in 0..500 {
            if pool.idle().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(*pool.idle(), vec![7, 7], "no refill after the pause");
        assert!(!pool.waiting());
        assert_eq!(pool.close(), vec![7, 7]);
        assert!(pool.pop().is_none());
    }
}
