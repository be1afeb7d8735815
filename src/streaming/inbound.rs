//! Bounded queues for what a streaming client sends: stdin, terminal
//! sizes and port-forward data.
//!
//! Each input channel gets a queue of [`QUEUE_CHUNKS`] chunks of at most
//! [`MAX_CHUNK`] bytes. The task that reads the client's connection awaits
//! room in the queue before it reads on, so a client sending faster than
//! the command (or the pod's socket) takes its input is slowed down by TCP
//! itself: nothing is dropped, and at most 512 KiB per channel waits here
//! besides the one message being handed over. Messages are split into
//! chunks as slices of one buffer, without copying.

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

/// Chunks a channel's queue holds before the connection reader waits.
pub(super) const QUEUE_CHUNKS: usize = 16;
/// Largest chunk in a queue; bigger messages are split.
pub(super) const MAX_CHUNK: usize = 32 * 1024;
/// Largest single message (SPDY frame, WebSocket message) read from a
/// client: the most one connection buffers before backpressure applies.
pub(super) const MAX_MESSAGE: usize = 16 << 20;

/// The consumer of a queue has gone; what was sent is dropped.
#[derive(Debug, thiserror::Error)]
#[error("nobody reads this input channel any more")]
pub(super) struct Gone;

/// A new queue: the connection reader's end and the consumer's end.
pub(super) fn queue() -> (InboundTx, Inbound) {
    let (tx, rx) = mpsc::channel(QUEUE_CHUNKS);
    (InboundTx(tx), Inbound { rx, _guard: None })
}

/// The connection reader's end.
pub(super) struct InboundTx(mpsc::Sender<Bytes>);

impl InboundTx {
    /// Queues `data` in chunks, waiting for room as long as it takes.
    pub(super) async fn send(&self, mut data: Bytes) -> Result<(), Gone> {
        while !data.is_empty() {
            let chunk = data.split_to(data.len().min(MAX_CHUNK));
            self.0.send(chunk).await.map_err(|_| Gone)?;
        }
        Ok(())
    }
}

/// The consumer's end; ends once the client closes the channel.
pub(crate) struct Inbound {
    rx: mpsc::Receiver<Bytes>,
    /// Lives exactly as long as this end (a SPDY stream's slot, which
    /// counts the stream as open while anything of it is in use).
    _guard: Option<Arc<dyn Any + Send + Sync>>,
}

impl Inbound {
    pub(crate) async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }

    /// Keeps `guard` alive until this end is dropped.
    pub(crate) fn guarded(mut self, guard: Arc<dyn Any + Send + Sync>) -> Self {
        self._guard = Some(guard);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn big_messages_arrive_in_order_as_bounded_chunks() {
        let (tx, mut rx) = queue();
        let data: Vec<u8> = (0..MAX_CHUNK * 3 + 5).map(|i| i as u8).collect();
        let sent = Bytes::from(data.clone());
        let sender = tokio::spawn(async move { tx.send(sent).await });
        let mut got = Vec::new();
        while let Some(chunk) = rx.recv().await {
            assert!(chunk.len() <= MAX_CHUNK);
            got.extend_from_slice(&chunk);
        }
        sender.await.unwrap().unwrap();
        assert_eq!(got, data);
    }

    /// A consumer that does not read stops the sender once the queue is
    /// full, and lets it go on as soon as it reads.
    #[tokio::test]
    async fn a_full_queue_makes_the_sender_wait() {
        let (tx, mut rx) = queue();
        for _ in 0..QUEUE_CHUNKS {
            tx.send(Bytes::from_static(b"x")).await.unwrap();
        }
        let blocked =
            tokio::time::timeout(Duration::from_millis(50), tx.send(Bytes::from_static(b"y")))
                .await;
        assert!(blocked.is_err(), "a full queue took more");
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"x"));
        tokio::time::timeout(Duration::from_secs(5), tx.send(Bytes::from_static(b"y")))
            .await
            .expect("room after a read")
            .unwrap();
    }

    #[tokio::test]
    async fn sending_to_a_dropped_consumer_fails_instead_of_waiting() {
        let (tx, rx) = queue();
        drop(rx);
        assert!(tx.send(Bytes::from_static(b"x")).await.is_err());
    }

    #[tokio::test]
    async fn the_guard_lives_as_long_as_the_consumer() {
        let guard: Arc<dyn Any + Send + Sync> = Arc::new(());
        let weak = Arc::downgrade(&guard);
        let (_tx, rx) = queue();
        let rx = rx.guarded(guard);
        assert!(weak.upgrade().is_some());
        drop(rx);
        assert!(weak.upgrade().is_none());
    }
}
