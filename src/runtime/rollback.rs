//! Rollback of the multi-step operations (RunPodSandbox, CreateContainer):
//! each step that makes something registers how to undo it, a failure
//! undoes what was registered, newest first, and success disarms it.
//!
//! Two kinds, because a `Drop` cannot await:
//! - [`Undo`] is a drop guard for blocking code (run off the async
//!   threads): an early return drops it, and dropping runs its actions.
//! - [`Rollback`] holds async undo actions for async code. It must be run
//!   explicitly; dropping it runs nothing. That keeps a cancelled request
//!   (the client went away mid-call) doing exactly what it always did:
//!   nothing more, leaving leftovers to the reconcile at the next start.

use std::future::Future;
use std::pin::Pin;

type Action = Box<dyn FnOnce() + Send>;

/// Blocking undo actions, run newest first when the guard is dropped
/// armed. Only for code that may block (a `spawn_blocking` closure).
#[must_use = "an Undo dropped at once undoes at once"]
pub(crate) struct Undo {
    actions: Vec<Action>,
}

impl Undo {
    pub(crate) fn new() -> Self {
        Self {
            actions: Vec::new(),
        }
    }

    /// Registers the undo of a step that just succeeded.
    pub(crate) fn push(&mut self, action: impl FnOnce() + Send + 'static) {
        self.actions.push(Box::new(action));
    }

    /// Hands the actions over (to a [`Rollback`], when the operation goes
    /// on in async code) as one blocking action; the guard is disarmed.
    pub(crate) fn into_action(mut self) -> impl FnOnce() + Send + 'static {
        let actions = std::mem::take(&mut self.actions);
        move || run_newest_first(actions)
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        run_newest_first(std::mem::take(&mut self.actions));
    }
}

fn run_newest_first(mut actions: Vec<Action>) {
    while let Some(action) = actions.pop() {
        action();
    }
}

type AsyncAction<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Async undo actions, run newest first by [`Rollback::run`]. A future
/// does nothing until polled, so registering one runs nothing yet.
#[must_use = "a Rollback does nothing unless run"]
pub(crate) struct Rollback<'a> {
    actions: Vec<AsyncAction<'a>>,
}

impl<'a> Rollback<'a> {
    pub(crate) fn new() -> Self {
        Self {
            actions: Vec::new(),
        }
    }

    /// Registers an async undo.
    pub(crate) fn push(&mut self, action: impl Future<Output = ()> + Send + 'a) {
        self.actions.push(Box::pin(action));
    }

    /// Registers a blocking undo, which runs off the async threads.
    pub(crate) fn push_blocking(&mut self, action: impl FnOnce() + Send + 'static) {
        self.push(async move {
            let _ = tokio::task::spawn_blocking(action).await;
        });
    }

    /// The operation failed: undoes every registered step, newest first.
    pub(crate) async fn run(mut self) {
        while let Some(action) = self.actions.pop() {
            action.await;
        }
    }

    /// The operation succeeded: what the steps made stays.
    pub(crate) fn disarm(self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Log = Arc<Mutex<Vec<u32>>>;

    /// An action that appends `n` to `log`.
    fn record(log: &Log, n: u32) -> impl FnOnce() + Send + 'static {
        let log = log.clone();
        move || log.lock().unwrap().push(n)
    }

    #[test]
    fn undo_runs_newest_first_when_dropped() {
        let log = Log::default();
        let mut undo = Undo::new();
        undo.push(record(&log, 1));
        undo.push(record(&log, 2));
        drop(undo);
        assert_eq!(*log.lock().unwrap(), [2, 1]);
    }

    #[test]
    fn undo_handed_over_runs_only_when_called() {
        let log = Log::default();
        let mut undo = Undo::new();
        undo.push(record(&log, 1));
        undo.push(record(&log, 2));
        let action = undo.into_action();
        assert!(log.lock().unwrap().is_empty());
        action();
        assert_eq!(*log.lock().unwrap(), [2, 1]);
    }

    #[tokio::test]
    async fn rollback_runs_newest_first_or_not_at_all() {
        let log = Log::default();
        let mut rollback = Rollback::new();
        rollback.push_blocking(record(&log, 1));
        let l = log.clone();
        rollback.push(async move { l.lock().unwrap().push(2) });
        rollback.run().await;
        assert_eq!(*log.lock().unwrap(), [2, 1]);

        let mut rollback = Rollback::new();
        rollback.push_blocking(record(&log, 3));
        rollback.disarm();
        let mut dropped = Rollback::new();
        dropped.push_blocking(record(&log, 4));
        drop(dropped);
        assert_eq!(*log.lock().unwrap(), [2, 1]);
    }
}
