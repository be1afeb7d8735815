use std::error::Error as StdError;
use std::time::Duration;

use oci_client::errors::OciDistributionError;
use thiserror::Error;

use super::manifest::{hint, ManifestError};
use crate::image::content::ContentError;
use crate::image::signature::SignatureError;

/// Boxed causes from the HTTP stack (oci-client errors, stream I/O errors).
pub(crate) type Cause = Box<dyn StdError + Send + Sync>;

/// A failed pull. `reference` is the normalised image name, `endpoint` the
/// URL of the registry or mirror the failure came from.
#[derive(Debug, Error)]
pub(crate) enum PullError {
    #[error("image {reference} not found at {endpoint}")]
    NotFound {
        reference: String,
        endpoint: String,
        #[source]
        source: Box<OciDistributionError>,
    },
    #[error("pull of {reference} from {endpoint} was not authorized")]
    Unauthorized {
        reference: String,
        endpoint: String,
        #[source]
        source: Box<OciDistributionError>,
    },
    #[error(
        "image {reference} from {endpoint} has no manifest for {wanted}; available: {}",
        available.join(", ")
    )]
    NoMatchingPlatform {
        reference: String,
        endpoint: String,
        wanted: String,
        available: Vec<String>,
    },
    #[error(
        "image {reference} from {endpoint}: unsupported {what} media type {media_type:?}{}",
        hint(what, media_type)
    )]
    Unsupported {
        reference: String,
        endpoint: String,
        what: &'static str,
        media_type: String,
    },
    #[error("image {reference} from {endpoint}: manifest {digest} is invalid")]
    InvalidManifest {
        reference: String,
        endpoint: String,
        digest: String,
        #[source]
        source: Box<ManifestError>,
    },
    #[error(
        "pull of {reference} from {endpoint}: digest mismatch, expected {expected}, got {actual}"
    )]
    DigestMismatch {
        reference: String,
        endpoint: String,
        expected: String,
        actual: String,
    },
    #[error("pull of {reference} stalled: no data for {timeout:?} from {endpoint}")]
    Stalled {
        reference: String,
        endpoint: String,
        timeout: Duration,
    },
    #[error(
        "image {reference} from {endpoint}: {what} {name} is {}over the limit of {limit} bytes",
        size.map(|s| format!("{s} bytes, ")).unwrap_or_default()
    )]
    TooLarge {
        reference: String,
        endpoint: String,
        /// "manifest", "index entry" or "config".
        what: &'static str,
        /// The tag or digest it was fetched by.
        name: String,
        /// The declared size; `None` when the bytes gave it away.
        size: Option<u64>,
        limit: u64,
    },
    #[error(
        "pull of {reference} from {endpoint} failed: network error{}",
        tls_hint(source.as_ref())
    )]
    Network {
        reference: String,
        endpoint: String,
        #[source]
        source: Cause,
    },
    #[error("pull of {reference} from {endpoint} failed")]
    Registry {
        reference: String,
        endpoint: String,
        #[source]
        source: Box<OciDistributionError>,
    },
    #[error("pull of {reference} from {endpoint}: no credential")]
    CredentialHelper {
        reference: String,
        endpoint: String,
        #[source]
        source: Box<crate::image::credential_helper::HelperError>,
    },
    #[error("pull of {reference} from {endpoint}: cannot store blob {digest}")]
    Content {
        reference: String,
        endpoint: String,
        digest: String,
        #[source]
        source: Box<ContentError>,
    },
    #[error("image {reference} is refused by signature policy rule {rule:?}: it rejects every image it covers")]
    PolicyRejected { reference: String, rule: String },
    #[error("image {reference} from {endpoint} is refused by signature policy rule {rule:?}")]
    SignatureRefused {
        reference: String,
        endpoint: String,
        rule: String,
        #[source]
        source: Box<SignatureError>,
    },
    // Each attempt is an error in its own right, so its cause chain is
    // spelled out here; a single `source` could only carry one of them.
    #[error(
        "pull of {reference} failed on every endpoint: {}",
        summarize(attempts)
    )]
    AllEndpointsFailed {
        reference: String,
        attempts: Vec<PullError>,
    },
}

impl PullError {
    /// The image (tag or digest) does not exist. With several endpoints,
    /// only when every one of them said so: a mirror that lacks an image
    /// while the registry is unreachable proves nothing.
    pub(crate) fn is_not_found(&self) -> bool {
        match self {
            PullError::NotFound { .. } => true,
            PullError::AllEndpointsFailed { attempts, .. } => {
                attempts.iter().all(PullError::is_not_found)
            }
            _ => false,
        }
    }

    /// Credentials were missing or refused. With several endpoints, when
    /// some endpoint refused them and every other one lacked the image
    /// (mirrors that do not carry a private image are the usual case).
    pub(crate) fn is_unauthorized(&self) -> bool {
        match self {
            PullError::Unauthorized { .. } => true,
            PullError::AllEndpointsFailed { attempts, .. } => {
                attempts.iter().any(PullError::is_unauthorized)
                    && attempts
                        .iter()
                        .all(|a| a.is_unauthorized() || a.is_not_found())
            }
            _ => false,
        }
    }

    /// A manifest or config was bigger than its cap. With several
    /// endpoints, only when every one of them served too much: a mirror
    /// serving garbage proves nothing about the image.
    pub(crate) fn is_too_large(&self) -> bool {
        match self {
            PullError::TooLarge { .. } => true,
            PullError::AllEndpointsFailed { attempts, .. } => {
                attempts.iter().all(PullError::is_too_large)
            }
            _ => false,
        }
    }

    /// The signature policy refused the image. With several endpoints,
    /// when some endpoint's copy was refused and every other endpoint
    /// lacked the image: a mirror without the image proves nothing, but a
    /// registry that could not be reached might have had a signed copy.
    pub(crate) fn is_refused_by_policy(&self) -> bool {
        match self {
            PullError::PolicyRejected { .. } | PullError::SignatureRefused { .. } => true,
            PullError::AllEndpointsFailed { attempts, .. } => {
                attempts.iter().any(PullError::is_refused_by_policy)
                    && attempts
                        .iter()
                        .all(|a| a.is_refused_by_policy() || a.is_not_found())
            }
            _ => false,
        }
    }

    /// Whether the failure was a stall (no data within the stall timeout).
    pub(crate) fn is_stalled(&self) -> bool {
        match self {
            PullError::Stalled { .. } => true,
            PullError::AllEndpointsFailed { attempts, .. } => {
                attempts.iter().all(PullError::is_stalled)
            }
            _ => false,
        }
    }
}

fn summarize(attempts: &[PullError]) -> String {
    attempts
        .iter()
        .enumerate()
        .map(|(i, attempt)| format!("[{}] {}", i + 1, with_causes(attempt)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `err` followed by its chain of causes, for one-line logs.
pub(super) fn with_causes(err: &dyn StdError) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// What to change in `[images.registries]` when a connection failed in
/// the TLS handshake. rustls's error reaches this point only as text: the
/// `io::Error` hyper wraps it in hides it from `source()`, so the causes
/// are matched on rustls's wording.
fn tls_hint(cause: &(dyn StdError + 'static)) -> &'static str {
    let mut next = Some(cause);
    while let Some(c) = next {
        let text = c.to_string();
        next = c.source();
        if text.contains("invalid peer certificate") {
            return " (the registry's certificate is not trusted: give its CA as ca_file under [images.registries.\"<host>\"])";
        }
        if text.contains("fatal alert: BadCertificate")
            || text.contains("fatal alert: CertificateRequired")
            || text.contains("fatal alert: UnknownCA")
        {
            return " (the registry refused the TLS connection, most likely for want of a client certificate it accepts: set client_cert_file and client_key_file under [images.registries.\"<host>\"])";
        }
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_found(endpoint: &str) -> PullError {
        PullError::NotFound {
            reference: "docker.io/library/x:1".into(),
            endpoint: endpoint.into(),
            source: Box::new(OciDistributionError::ImageManifestNotFoundError(
                "manifest unknown".into(),
            )),
        }
    }

    fn unauthorized(endpoint: &str) -> PullError {
        PullError::Unauthorized {
            reference: "docker.io/library/x:1".into(),
            endpoint: endpoint.into(),
            source: Box::new(OciDistributionError::UnauthorizedError {
                url: endpoint.into(),
            }),
        }
    }

    fn stalled(endpoint: &str) -> PullError {
        PullError::Stalled {
            reference: "docker.io/library/x:1".into(),
            endpoint: endpoint.into(),
            timeout: Duration::from_secs(30),
        }
    }

    fn refused(endpoint: &str) -> PullError {
        PullError::SignatureRefused {
            reference: "docker.io/library/x:1".into(),
            endpoint: endpoint.into(),
            rule: "docker.io".into(),
            source: Box::new(SignatureError::Unsigned {
                tag: "sha256-00.sig".into(),
            }),
        }
    }

    fn all(attempts: Vec<PullError>) -> PullError {
        PullError::AllEndpointsFailed {
            reference: "docker.io/library/x:1".into(),
            attempts,
        }
    }

    #[test]
    fn aggregate_lists_every_endpoint_and_cause() {
        let err = all(vec![not_found("http://m1/x"), stalled("https://m2/x")]);
        let text = err.to_string();
        assert!(text.contains("[1] image docker.io/library/x:1 not found at http://m1/x: "));
        assert!(text.contains("manifest unknown"), "{text}");
        assert!(text.contains(
            "[2] pull of docker.io/library/x:1 stalled: no data for 30s from https://m2/x"
        ));
    }

    #[test]
    fn tls_failures_say_which_setting_to_change() {
        let network = |cause: &str| PullError::Network {
            reference: "r.example/x:1".into(),
            endpoint: "https://r.example/x".into(),
            source: Box::new(std::io::Error::other(cause.to_owned())),
        };
        let text = network("invalid peer certificate: UnknownIssuer").to_string();
        assert!(text.contains("ca_file"), "{text}");
        let text = network("received fatal alert: BadCertificate").to_string();
        assert!(text.contains("client_cert_file"), "{text}");
        let text = network("connection refused").to_string();
        assert!(text.ends_with("network error"), "{text}");
    }

    #[test]
    fn classification_of_aggregates() {
        assert!(all(vec![not_found("a"), not_found("b")]).is_not_found());
        assert!(!all(vec![not_found("a"), stalled("b")]).is_not_found());
        assert!(all(vec![not_found("a"), unauthorized("b")]).is_unauthorized());
        assert!(!all(vec![unauthorized("a"), stalled("b")]).is_unauthorized());
        assert!(!all(vec![not_found("a"), not_found("b")]).is_unauthorized());
        assert!(all(vec![stalled("a")]).is_stalled());
        // A mirror without the image and a refused upstream copy: refused.
        assert!(all(vec![not_found("a"), refused("b")]).is_refused_by_policy());
        // An unreachable endpoint might have had a signed copy.
        assert!(!all(vec![refused("a"), stalled("b")]).is_refused_by_policy());
        assert!(!all(vec![not_found("a"), not_found("b")]).is_refused_by_policy());
        assert!(!all(vec![not_found("a"), refused("b")]).is_not_found());
    }
}
