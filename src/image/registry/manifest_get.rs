//! The manifest GET, with a size cap enforced while the body arrives.
//!
//! oci-client reads a manifest response whole into memory, however big the
//! registry says (or does not say) it is, so the request is made here with
//! reqwest. The cap is checked against `Content-Length` before the body is
//! read, and again on every chunk, so a chunked or lying response stops one
//! chunk past the cap. Each wait (the response head, every chunk) gets the
//! stall timeout. The credential comes from the session's login
//! ([`Presented`]); this module only sends it.
//! Error bodies are read up to their own small cap, parsed into the same
//! `OciDistributionError`s oci-client would produce, so the puller
//! classifies every failure in one place. A body that is not an OCI error
//! envelope is quoted only as a short excerpt of printable characters: the
//! error reaches the pod author, and the body was chosen by whoever
//! answered.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use oci_client::errors::{OciDistributionError, OciEnvelope};
use reqwest::{header, StatusCode};

use super::auth::Presented;
use super::stall;
use crate::image::limits::ERROR_BODY_MAX;

/// Why a manifest could not be fetched.
#[derive(Debug)]
pub(super) enum GetError {
    /// The request failed or the registry refused it.
    Registry(OciDistributionError),
    /// The body is bigger than the cap: `declared` is the
    /// `Content-Length` when that gave it away, `None` when the bytes did.
    TooLarge { declared: Option<u64> },
    /// No response or no data within the stall timeout.
    Stalled,
}

impl From<reqwest::Error> for GetError {
    fn from(err: reqwest::Error) -> Self {
        GetError::Registry(OciDistributionError::RequestError(err))
    }
}

/// One GET of a manifest URL.
pub(super) struct ManifestGet<'a> {
    pub http: &'a reqwest::Client,
    pub url: &'a str,
    pub accept: &'a [&'a str],
    pub auth: &'a Presented,
    /// The most bytes the body may have.
    pub limit: u64,
    pub stall: Duration,
}

impl ManifestGet<'_> {
    pub(super) async fn send(&self) -> Result<Bytes, GetError> {
        let mut response = self.request().await?;
        let status = response.status();
        if status != StatusCode::OK {
            let body = read_capped(&mut response, ERROR_BODY_MAX, self.stall)
                .await
                .unwrap_or_default();
            return Err(GetError::Registry(refusal(status, &body, self.url)));
        }
        if let Some(declared) = response.content_length().filter(|&n| n > self.limit) {
            return Err(GetError::TooLarge {
                declared: Some(declared),
            });
        }
        read_capped(&mut response, self.limit, self.stall).await
    }

    async fn request(&self) -> Result<reqwest::Response, GetError> {
        let accept = self.accept.join(", ");
        self.auth
            .send(|| {
                self.http
                    .get(self.url)
                    .header(header::ACCEPT, accept.as_str())
            })
            .await
    }
}

/// The body, failing once it exceeds `limit` bytes.
pub(super) async fn read_capped(
    response: &mut reqwest::Response,
    limit: u64,
    stall: Duration,
) -> Result<Bytes, GetError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = stall::within(stall, response.chunk())
        .await
        .ok_or(GetError::Stalled)??
    {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(GetError::TooLarge { declared: None });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A non-200 answer as oci-client reports it: 401 as unauthorized, a
/// client error with an OCI error envelope as that envelope, anything else
/// as a server error with an [`excerpt`] of the body as its message.
pub(super) fn refusal(status: StatusCode, body: &[u8], url: &str) -> OciDistributionError {
    let url = url.to_owned();
    if status == StatusCode::UNAUTHORIZED {
        return OciDistributionError::UnauthorizedError { url };
    }
    if status.is_success() {
        return OciDistributionError::SpecViolationError(format!(
            "expected HTTP status 200 from {url}, got {status}"
        ));
    }
    if status.is_client_error() {
        if let Ok(envelope) = serde_json::from_slice::<OciEnvelope>(body) {
            return OciDistributionError::RegistryError { envelope, url };
        }
    }
    OciDistributionError::ServerError {
        code: status.as_u16(),
        url,
        message: excerpt(body),
    }
}

/// The most characters of an error body quoted in an error.
const EXCERPT_MAX: usize = 200;

/// The start of `body` as one line of printable text: control characters
/// (line breaks, escapes) become spaces, runs of white space one space,
/// and at most [`EXCERPT_MAX`] characters are kept.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(4 * EXCERPT_MAX)]);
    let mut out = String::new();
    let mut kept = 0;
    for c in text.chars() {
        if kept == EXCERPT_MAX {
            out.push('…');
            break;
        }
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
        kept += 1;
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_oci_client_s_shapes() {
        let url = "http://r/v2/a/manifests/v1";
        assert!(matches!(
            refusal(StatusCode::UNAUTHORIZED, b"", url),
            OciDistributionError::UnauthorizedError { .. }
        ));
        let envelope = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no"}]}"#;
        assert!(matches!(
            refusal(StatusCode::NOT_FOUND, envelope, url),
            OciDistributionError::RegistryError { .. }
        ));
        assert!(matches!(
            refusal(StatusCode::NOT_FOUND, b"<html>", url),
            OciDistributionError::ServerError { code: 404, .. }
        ));
        assert!(matches!(
            refusal(StatusCode::BAD_GATEWAY, envelope, url),
            OciDistributionError::ServerError { code: 502, .. }
        ));
        assert!(matches!(
            refusal(StatusCode::NO_CONTENT, b"", url),
            OciDistributionError::SpecViolationError(_)
        ));
    }

    #[test]
    fn error_bodies_are_quoted_as_short_printable_excerpts() {
        let mut body = b"<html>\r\n  <b>bad\x1b[31m gateway</b>\n".to_vec();
        body.extend(vec![b'x'; 64 << 10]);
        let OciDistributionError::ServerError { message, .. } =
            refusal(StatusCode::BAD_GATEWAY, &body, "http://r/v2/")
        else {
            panic!("not a server error");
        };
        assert!(
            message.starts_with("<html> <b>bad [31m gateway</b> xxx"),
            "{message}"
        );
        assert!(message.ends_with('…'), "{message}");
        assert_eq!(message.chars().count(), EXCERPT_MAX + 1);
        assert!(!message.chars().any(char::is_control), "{message:?}");
        assert_eq!(excerpt(b"\xff\xfe  plain "), "\u{fffd}\u{fffd} plain");
        assert_eq!(excerpt(b""), "");
    }
}
