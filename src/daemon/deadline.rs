//! Honour a caller's gRPC deadline with the status gRPC clients expect.
//!
//! tonic's transport enforces the `grpc-timeout` header itself, but when its
//! timer wins the race against the client's own it answers `Cancelled`
//! ("Timeout expired"). A Go client then sees `Canceled` where containerd
//! and CRI-O answer `DeadlineExceeded`, and critest's "public image should
//! timeout if requested" spec fails under load. This layer sits inside
//! tonic's and ends the call slightly earlier, with `DeadlineExceeded`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::codegen::http;

/// How much earlier than the caller's deadline this layer gives up, so its
/// timer always fires on an earlier tick than tonic's own (tokio's timer
/// wheel has a one-millisecond resolution).
const HEADROOM: Duration = Duration::from_millis(1);

/// Wraps a service with [`DeadlineService`].
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct DeadlineLayer;

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService { inner }
    }
}

#[derive(Debug, Clone)]
pub(super) struct DeadlineService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for DeadlineService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let timeout = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let fut = self.inner.call(req);
        match timeout {
            None => Box::pin(fut),
            Some(timeout) => Box::pin(async move {
                match tokio::time::timeout(timeout.saturating_sub(HEADROOM), fut).await {
                    Ok(result) => result,
                    Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                        "the call's deadline of {timeout:?} passed before it finished"
                    ))
                    .into_http()),
                }
            }),
        }
    }
}

/// Parses a `grpc-timeout` header value: at most eight ASCII digits and one
/// unit letter (`H`ours, `M`inutes, `S`econds, `m`illis, `u`micros,
/// `n`anos). Anything else is `None`, and tonic's own layer judges it.
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    #[test]
    fn timeout_header_values_parse() {
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("30S"), Some(Duration::from_secs(30)));
        assert_eq!(parse_grpc_timeout("999m"), Some(Duration::from_millis(999)));
        assert_eq!(parse_grpc_timeout("870u"), Some(Duration::from_micros(870)));
        assert_eq!(parse_grpc_timeout("5n"), Some(Duration::from_nanos(5)));
        assert_eq!(
            parse_grpc_timeout("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
    }

    #[test]
    fn malformed_timeout_headers_are_ignored() {
        for bad in [
            "",
            "S",
            "123",
            "123456789S",
            "-1S",
            "1s",
            "1.5S",
            "１S",
            "1 S",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    fn request(timeout: Option<&str>) -> http::Request<()> {
        let mut req = http::Request::new(());
        if let Some(t) = timeout {
            req.headers_mut().insert("grpc-timeout", t.parse().unwrap());
        }
        req
    }

    fn status_of(resp: &http::Response<String>) -> Option<&str> {
        resp.headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_ends_with_deadline_exceeded() {
        let slow = tower::service_fn(|_req: http::Request<()>| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<_, Infallible>(http::Response::new(String::from("late")))
        });
        let mut svc = tower::Layer::layer(&DeadlineLayer, slow);
        let resp = tower::Service::call(&mut svc, request(Some("1m")))
            .await
            .unwrap();
        assert_eq!(status_of(&resp), Some("4"));
    }

    #[tokio::test]
    async fn calls_without_or_within_their_deadline_are_untouched() {
        let quick = tower::service_fn(|_req: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(String::from("done")))
        });
        let mut svc = tower::Layer::layer(&DeadlineLayer, quick);
        for timeout in [None, Some("10S"), Some("bogus")] {
            let resp = tower::Service::call(&mut svc, request(timeout))
                .await
                .unwrap();
            assert_eq!(resp.body(), "done");
            assert_eq!(status_of(&resp), None);
        }
    }
}
