//! Image signature policy: cosign signatures required before an image is
//! used (`images.signature_policy`).
//!
//! [`policy`] decides per image name what a pull must satisfy; [`cosign`]
//! checks the signatures stored next to the image in its registry, fetched
//! by the puller from the same endpoint and with the same credentials as
//! the image itself ([`cosign::SignatureSource`]). The check runs right
//! after the image's top-level manifest is fetched and before anything of
//! the image is stored, so a refused image leaves no blob, layer or record
//! behind. Only key-based signatures are understood: no Rekor transparency
//! log, bundles, certificates or keyless (Fulcio) identities.

pub(crate) mod cosign;
pub(crate) mod keys;
pub(crate) mod policy;

use std::path::PathBuf;

use thiserror::Error;

pub(crate) use policy::{PolicyRule, Requirement, SignaturePolicy, SignedIdentity};

/// Why a policy could not be loaded, or why an image's signatures do not
/// satisfy it.
#[derive(Debug, Error)]
pub(crate) enum SignatureError {
    #[error("cannot read public key {path}")]
    KeyUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("public key {path}: {reason}")]
    KeyInvalid { path: PathBuf, reason: String },
    #[error("two signature policy rules have the prefix {prefix:?}")]
    DuplicateRule { prefix: String },
    #[error("the image digest {digest:?} cannot have a cosign signature tag")]
    BadImageDigest { digest: String },
    #[error("no signature: the repository has no {tag} tag")]
    Unsigned { tag: String },
    #[error("signature manifest {tag} is not valid JSON")]
    BadManifest {
        tag: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("signature manifest {tag} has unsupported type {media_type:?}")]
    UnsupportedManifest { tag: String, media_type: String },
    #[error("no valid signature in {tag}{}", rejections_text(rejections))]
    NoValidSignature {
        tag: String,
        rejections: Vec<cosign::Rejection>,
    },
}

fn rejections_text(rejections: &[cosign::Rejection]) -> String {
    if rejections.is_empty() {
        return " (it holds no signature layers)".to_owned();
    }
    let listed: Vec<String> = rejections
        .iter()
        .enumerate()
        .map(|(i, r)| format!("[{}] {r}", i + 1))
        .collect();
    format!(": {}", listed.join("; "))
}
