//! Stall detection. A pull fails when no bytes arrive for the stall
//! timeout, however long it has been running; a slow but moving download
//! never times out. Each wait (a request, or the next chunk of a body) gets
//! its own deadline.

use std::fmt;
use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, Stream, StreamExt};

/// Marks a stream error as a stall so the puller can tell it from a
/// transport failure after it has travelled through the content store.
#[derive(Debug)]
pub(super) struct StallTimeout(pub Duration);

impl fmt::Display for StallTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no data for {:?}", self.0)
    }
}

impl std::error::Error for StallTimeout {}

/// Runs `request` with the stall timeout; `None` means it stalled.
pub(super) async fn within<F: Future>(timeout: Duration, request: F) -> Option<F::Output> {
    tokio::time::timeout(timeout, request).await.ok()
}

/// Passes `body` through, failing with [`StallTimeout`] (and ending) when
/// a chunk takes longer than `timeout` to arrive.
pub(super) fn guard<S>(body: S, timeout: Duration) -> impl Stream<Item = io::Result<Bytes>>
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    let body: BoxStream<'static, io::Result<Bytes>> = body.boxed();
    stream::unfold(Some(body), move |state| async move {
        let mut body = state?;
        match tokio::time::timeout(timeout, body.next()).await {
            Ok(Some(item)) => Some((item, Some(body))),
            Ok(None) => None,
            Err(_) => Some((
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    StallTimeout(timeout),
                )),
                None,
            )),
        }
    })
}

/// Whether `err` came from [`guard`].
pub(super) fn is_stall(err: &io::Error) -> bool {
    err.get_ref()
        .is_some_and(|inner| inner.is::<StallTimeout>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slow_but_moving_is_fine_silence_is_not() {
        let timeout = Duration::from_millis(300);
        // Chunks 150ms apart: 600ms in total, never 300ms of silence.
        let slow = stream::iter(0..4).then(|i| async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            Ok(Bytes::from(vec![i as u8]))
        });
        let got: Vec<_> = guard(slow, timeout).collect().await;
        assert_eq!(got.len(), 4);
        assert!(got.iter().all(Result::is_ok));

        let silent = stream::iter(vec![Ok(Bytes::from_static(b"a"))]).chain(stream::pending());
        let got: Vec<_> = guard(silent, timeout).collect().await;
        assert_eq!(
            got.len(),
            2,
            "one chunk, then the stall error, then the end"
        );
        let err = got[1].as_ref().unwrap_err();
        assert!(is_stall(err));
        assert!(!is_stall(&io::Error::other("reset")));
    }

    #[tokio::test]
    async fn within_times_out() {
        let t = Duration::from_millis(100);
        assert_eq!(within(t, async { 7 }).await, Some(7));
        assert_eq!(within(t, std::future::pending::<()>()).await, None);
    }
}
