//! The container event stream behind `GetContainerEvents` and
//! `pvecri events`.
//!
//! A broadcast hub: every subscriber has its own bounded queue of
//! [`QUEUE_LEN`] events. Publishing never waits: a subscriber that falls
//! further behind loses its oldest events and is told how many (see
//! [`Subscription::next`]), so a stuck client cannot stall the daemon or
//! the other subscribers.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::container::ContainerRecord;
use crate::pod::PodRecord;

/// Events a subscriber may fall behind by before it loses the oldest.
pub(crate) const QUEUE_LEN: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    Created,
    Started,
    Stopped,
    Deleted,
}

/// One lifecycle change, with the state of its pod at that moment (what
/// the kubelet's evented PLEG updates its cache from).
#[derive(Debug, Clone)]
pub(crate) struct ContainerEvent {
    pub kind: EventKind,
    /// A container's ID, or the pod's for the pod sandbox's own events.
    pub container_id: String,
    pub at_ns: i64,
    /// The pod; `None` when it is gone already.
    pub pod: Option<PodRecord>,
    /// The pod's containers after the change.
    pub containers: Vec<ContainerRecord>,
}

pub(crate) struct EventHub {
    /// `None` once closed: streams end so shutdown does not wait on them.
    tx: std::sync::Mutex<Option<broadcast::Sender<Arc<ContainerEvent>>>>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new(QUEUE_LEN)
    }
}

impl EventHub {
    pub(crate) fn new(queue_len: usize) -> Self {
        let (tx, _) = broadcast::channel(queue_len);
        Self {
            tx: std::sync::Mutex::new(Some(tx)),
        }
    }

    fn sender(&self) -> std::sync::MutexGuard<'_, Option<broadcast::Sender<Arc<ContainerEvent>>>> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `event` to every current subscriber; never blocks.
    pub(crate) fn publish(&self, event: ContainerEvent) {
        if let Some(tx) = self.sender().as_ref() {
            // An error only means nobody is subscribed.
            let _ = tx.send(Arc::new(event));
        }
    }

    /// A new subscription; after [`close`](Self::close) one that is
    /// already at its end.
    pub(crate) fn subscribe(&self) -> Subscription {
        let rx = match self.sender().as_ref() {
            Some(tx) => tx.subscribe(),
            None => broadcast::channel(1).1,
        };
        Subscription { rx }
    }

    pub(crate) fn subscribers(&self) -> usize {
        self.sender().as_ref().map_or(0, |tx| tx.receiver_count())
    }

    /// Ends every subscription once it has read what was sent (daemon
    /// shutdown: event streams must not hold the server's grace period).
    pub(crate) fn close(&self) {
        self.sender().take();
    }
}

pub(crate) struct Subscription {
    rx: broadcast::Receiver<Arc<ContainerEvent>>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Event(Arc<ContainerEvent>),
    /// This subscriber fell behind and lost this many events.
    Lost(u64),
    /// The hub is gone (daemon shutdown).
    Closed,
}

impl PartialEq for ContainerEvent {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.container_id == other.container_id
            && self.at_ns == other.at_ns
    }
}

impl Eq for ContainerEvent {}

impl Subscription {
    pub(crate) async fn next(&mut self) -> Next {
        match self.rx.recv().await {
            Ok(ev) => Next::Event(ev),
            Err(broadcast::error::RecvError::Lagged(n)) => Next::Lost(n),
            Err(broadcast::error::RecvError::Closed) => Next::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, kind: EventKind) -> ContainerEvent {
        ContainerEvent {
            kind,
            container_id: id.into(),
            at_ns: 1,
            pod: None,
            containers: Vec::new(),
        }
    }

    #[tokio::test]
    async fn every_subscriber_sees_events_in_order() {
        let hub = EventHub::new(8);
        let mut a = hub.subscribe();
        let mut b = hub.subscribe();
        hub.publish(ev("c1", EventKind::Created));
        hub.publish(ev("c1", EventKind::Started));
        for s in [&mut a, &mut b] {
            let Next::Event(e) = s.next().await else {
                panic!("expected an event")
            };
            assert_eq!(e.kind, EventKind::Created);
            let Next::Event(e) = s.next().await else {
                panic!("expected an event")
            };
            assert_eq!(e.kind, EventKind::Started);
        }
    }

    #[tokio::test]
    async fn a_slow_subscriber_loses_old_events_without_blocking() {
        let hub = EventHub::new(4);
        let mut slow = hub.subscribe();
        let mut fast = hub.subscribe();
        for i in 0..10 {
            // Publishing returns even though `slow` reads nothing.
            hub.publish(ev(&format!("c{i}"), EventKind::Created));
            let Next::Event(e) = fast.next().await else {
                panic!("fast subscriber must see every event")
            };
            assert_eq!(e.container_id, format!("c{i}"));
        }
        assert_eq!(slow.next().await, Next::Lost(6));
        let Next::Event(e) = slow.next().await else {
            panic!("then the newest events")
        };
        assert_eq!(e.container_id, "c6");
        hub.close();
        assert_eq!(hub.subscribers(), 0);
        assert_eq!(hub.subscribe().next().await, Next::Closed);
        for _ in 0..3 {
            slow.next().await;
        }
        assert_eq!(slow.next().await, Next::Closed);
    }
}
