//! Cosign's key-based signatures, as they sit in a registry.
//!
//! For an image whose manifest digest is `sha256:<hex>`, cosign stores its
//! signatures in the same repository under the tag `sha256-<hex>.sig`: an
//! image manifest whose layers are "simple signing" JSON payloads (media
//! type [`SIMPLE_SIGNING_MEDIA_TYPE`]), each with the base64 ECDSA
//! signature over the payload's exact bytes in the layer annotation
//! [`SIGNATURE_ANNOTATION`]. A signature counts when a trusted key verifies
//! it *and* its payload claims the digest being pulled: a valid signature
//! copied from another image's `.sig` does not vouch for this one. Unless
//! the rule waives it, the payload must also name the repository pulled
//! (`critical.identity.docker-reference`): the same bytes published under
//! another name by whoever controls a registry are not what was signed.
//!
//! Everything fetched is bounded: the manifest by the registry layer's cap,
//! each payload by [`SIGNATURE_PAYLOAD_MAX`] before it is requested, and the number
//! of layers tried by [`SIGNATURE_LAYERS_MAX`]. The cheap checks (media type,
//! annotation, base64, DER) run before any payload is fetched, and the
//! payload's JSON is parsed only once a trusted key has verified it. Text
//! from the registry that ends up in an error is cut to [`QUOTED_MAX`]
//! characters.

use std::fmt;

use base64::Engine;
use bytes::Bytes;
use p256::ecdsa::Signature;
use serde::Deserialize;

use super::keys::TrustedKey;
use super::SignatureError;
use crate::image::content::Digest;
use crate::image::limits::{SIGNATURE_LAYERS_MAX, SIGNATURE_PAYLOAD_MAX};
use crate::image::reference::Reference;

pub(crate) const SIMPLE_SIGNING_MEDIA_TYPE: &str =
    "application/vnd.dev.cosign.simplesigning.v1+json";
pub(crate) const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// `critical.type` of every cosign image signature payload.
pub(crate) const SIGNATURE_TYPE: &str = "cosign container image signature";

/// Manifest media types a `.sig` tag may hold (cosign writes either,
/// depending on version and registry).
pub(crate) const MANIFEST_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// A DER ECDSA P-256 signature is at most 72 bytes; anything much longer in
/// the annotation is not one.
const ANNOTATION_MAX: usize = 1024;

/// Characters of registry-supplied text (media types, digests, names)
/// quoted in an error: enough to recognise it, while a 4 MiB manifest of
/// 16 layers with huge fields cannot make a refusal megabytes long.
pub(crate) const QUOTED_MAX: usize = 256;

/// `text`, cut to [`QUOTED_MAX`] characters with a mark saying so.
pub(crate) fn quoted(text: &str) -> String {
    match text.char_indices().nth(QUOTED_MAX) {
        Some((end, _)) => format!("{}... ({} bytes)", &text[..end], text.len()),
        None => text.to_owned(),
    }
}

/// Where the verification gets the registry's data from: the pull's own
/// endpoint and credentials in the daemon, a table in tests.
pub(crate) trait SignatureSource {
    type Error;

    /// The manifest stored under `tag` in the image's repository; `None`
    /// when the registry has no such tag.
    fn manifest(
        &self,
        tag: &str,
    ) -> impl std::future::Future<Output = Result<Option<Bytes>, Self::Error>> + Send;

    /// The blob `digest` of the image's repository, which the caller has
    /// checked declares `size` ≤ [`SIGNATURE_PAYLOAD_MAX`] bytes; the source must not
    /// return more than `size` bytes.
    fn blob(
        &self,
        digest: &str,
        size: u64,
    ) -> impl std::future::Future<Output = Result<Bytes, Self::Error>> + Send;
}

/// Why a verification did not succeed: the registry failed us, or the
/// image is not properly signed.
#[derive(Debug)]
pub(crate) enum VerifyError<E> {
    Fetch(E),
    Refused(SignatureError),
}

/// The tag cosign keeps `digest`'s signatures under.
pub(crate) fn signature_tag(digest: &str) -> Result<String, SignatureError> {
    let parsed = Digest::parse(digest).map_err(|_| SignatureError::BadImageDigest {
        digest: digest.to_owned(),
    })?;
    Ok(format!("sha256-{}.sig", parsed.hex()))
}

/// The key that vouched for an image.
#[derive(Debug)]
pub(crate) struct Verified<'k> {
    pub key: &'k TrustedKey,
    /// `critical.identity.docker-reference` of the accepted payload, for
    /// the log (cut to [`QUOTED_MAX`]).
    pub signed_name: String,
}

/// Requires a signature by one of `keys` over `digest` (the digest the
/// image reference resolved to) among those stored for it. `repository`
/// is the canonical name ([`Reference::canonical_name`]) the payload must
/// name; `None` accepts any.
pub(crate) async fn verify<'k, S: SignatureSource>(
    source: &S,
    keys: &'k [TrustedKey],
    digest: &str,
    repository: Option<&str>,
) -> Result<Verified<'k>, VerifyError<S::Error>> {
    let tag = signature_tag(digest).map_err(VerifyError::Refused)?;
    let manifest = source
        .manifest(&tag)
        .await
        .map_err(VerifyError::Fetch)?
        .ok_or_else(|| VerifyError::Refused(SignatureError::Unsigned { tag: tag.clone() }))?;
    let layers = signature_layers(&manifest, &tag).map_err(VerifyError::Refused)?;
    let mut rejections = Vec::new();
    if layers.len() > SIGNATURE_LAYERS_MAX {
        rejections.push(Rejection::TooMany {
            ignored: layers.len() - SIGNATURE_LAYERS_MAX,
        });
    }
    for layer in layers.iter().take(SIGNATURE_LAYERS_MAX) {
        let candidate = match Candidate::from_layer(layer) {
            Ok(c) => c,
            Err(why) => {
                rejections.push(why);
                continue;
            }
        };
        let payload = source
            .blob(&candidate.digest, candidate.size)
            .await
            .map_err(VerifyError::Fetch)?;
        match candidate.check(&payload, keys, digest, repository) {
            Ok(verified) => return Ok(verified),
            Err(why) => rejections.push(why),
        }
    }
    Err(VerifyError::Refused(SignatureError::NoValidSignature {
        tag,
        rejections,
    }))
}

/// The `.sig` manifest, as far as it matters here.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignatureManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    #[serde(default)]
    layers: Vec<Layer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Layer {
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

fn signature_layers(body: &[u8], tag: &str) -> Result<Vec<Layer>, SignatureError> {
    let manifest: SignatureManifest =
        serde_json::from_slice(body).map_err(|source| SignatureError::BadManifest {
            tag: tag.to_owned(),
            source,
        })?;
    match manifest.media_type.as_deref() {
        Some(t) if !MANIFEST_MEDIA_TYPES.contains(&t) => {
            return Err(SignatureError::UnsupportedManifest {
                tag: tag.to_owned(),
                media_type: quoted(t),
            })
        }
        _ if manifest.schema_version != Some(2) => {
            return Err(SignatureError::UnsupportedManifest {
                tag: tag.to_owned(),
                media_type: format!("schemaVersion {:?}", manifest.schema_version),
            })
        }
        _ => {}
    }
    Ok(manifest.layers)
}

/// A layer that passed the checks which need no download.
struct Candidate {
    digest: String,
    size: u64,
    signature: Signature,
}

impl Candidate {
    fn from_layer(layer: &Layer) -> Result<Self, Rejection> {
        if layer.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
            return Err(Rejection::NotASignature {
                media_type: quoted(&layer.media_type),
            });
        }
        if Digest::parse(&layer.digest).is_err() || layer.size < 0 {
            return Err(Rejection::BadDescriptor {
                digest: quoted(&layer.digest),
            });
        }
        let size = layer.size as u64;
        if size > SIGNATURE_PAYLOAD_MAX {
            return Err(Rejection::PayloadTooLarge { size });
        }
        let encoded = layer
            .annotations
            .get(SIGNATURE_ANNOTATION)
            .ok_or(Rejection::NoSignatureAnnotation)?;
        if encoded.len() > ANNOTATION_MAX {
            return Err(Rejection::NotBase64);
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| Rejection::NotBase64)?;
        let signature = Signature::from_der(&der).map_err(|_| Rejection::NotDer)?;
        Ok(Candidate {
            digest: layer.digest.clone(),
            size,
            signature,
        })
    }

    /// Verifies the fetched payload and its claims: the image `expected`,
    /// in `repository` when given.
    fn check<'k>(
        &self,
        payload: &[u8],
        keys: &'k [TrustedKey],
        expected: &str,
        repository: Option<&str>,
    ) -> Result<Verified<'k>, Rejection> {
        // The source promised at most `size` bytes; the digest makes sure
        // they are the ones the manifest names.
        if payload.len() as u64 != self.size || Digest::of(payload).to_string() != self.digest {
            return Err(Rejection::PayloadMismatch {
                digest: self.digest.clone(),
            });
        }
        let key = keys
            .iter()
            .find(|k| k.verifies(payload, &self.signature))
            .ok_or(Rejection::NoTrustedKey)?;
        let claims: Payload =
            serde_json::from_slice(payload).map_err(|e| Rejection::BadPayload {
                reason: quoted(&e.to_string()),
            })?;
        let critical = claims.critical;
        if critical.kind != SIGNATURE_TYPE {
            return Err(Rejection::WrongType {
                found: quoted(&critical.kind),
            });
        }
        if critical.image.docker_manifest_digest != expected {
            return Err(Rejection::OtherImage {
                signed: quoted(&critical.image.docker_manifest_digest),
            });
        }
        let signed_name = critical.identity.docker_reference;
        if let Some(repository) = repository {
            // Parsed like a pod's reference, so any spelling of the same
            // repository (`index.docker.io/...`, a tag, `:443`) is the same
            // name; text that is no reference names no repository.
            let signed = Reference::parse(&signed_name).map(|r| r.canonical_name());
            if signed.as_deref() != Ok(repository) {
                return Err(Rejection::OtherRepository {
                    signed: quoted(&signed_name),
                });
            }
        }
        Ok(Verified {
            key,
            signed_name: quoted(&signed_name),
        })
    }
}

/// The simple signing payload; `optional` is not read.
#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    identity: Identity,
    image: ImageClaim,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Deserialize)]
struct ImageClaim {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// Why one signature layer did not vouch for the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rejection {
    NotASignature { media_type: String },
    BadDescriptor { digest: String },
    PayloadTooLarge { size: u64 },
    NoSignatureAnnotation,
    NotBase64,
    NotDer,
    PayloadMismatch { digest: String },
    NoTrustedKey,
    BadPayload { reason: String },
    WrongType { found: String },
    OtherImage { signed: String },
    OtherRepository { signed: String },
    TooMany { ignored: usize },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::NotASignature { media_type } => {
                write!(f, "layer of media type {media_type:?} is not a signature")
            }
            Rejection::BadDescriptor { digest } => {
                write!(f, "layer descriptor {digest:?} is invalid")
            }
            Rejection::PayloadTooLarge { size } => write!(
                f,
                "payload of {size} bytes is over the limit of {SIGNATURE_PAYLOAD_MAX} bytes"
            ),
            Rejection::NoSignatureAnnotation => {
                write!(f, "layer has no {SIGNATURE_ANNOTATION} annotation")
            }
            Rejection::NotBase64 => write!(f, "signature annotation is not base64"),
            Rejection::NotDer => write!(f, "signature is not a DER-encoded ECDSA P-256 signature"),
            Rejection::PayloadMismatch { digest } => {
                write!(f, "payload does not match its digest {digest}")
            }
            Rejection::NoTrustedKey => write!(f, "not signed by any trusted key"),
            Rejection::BadPayload { reason } => {
                write!(
                    f,
                    "signed payload is not a simple signing document: {reason}"
                )
            }
            Rejection::WrongType { found } => write!(
                f,
                "signed payload has type {found:?}, not {SIGNATURE_TYPE:?}"
            ),
            Rejection::OtherImage { signed } => {
                write!(f, "signature is for another image ({signed})")
            }
            Rejection::OtherRepository { signed } => {
                write!(f, "signature is for another repository ({signed:?})")
            }
            Rejection::TooMany { ignored } => write!(
                f,
                "{ignored} signature layers past the first {SIGNATURE_LAYERS_MAX} were not tried"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{SigningKey, VerifyingKey};

    use super::*;
    use crate::image::signature::keys::TrustedKey;

    const IMAGE: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const OTHER: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    /// The repository the tests' image is pulled as, canonical.
    const NAME: &str = "127.0.0.1:5000/signed/app";

    fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    fn trusted(seed: u8) -> TrustedKey {
        TrustedKey::for_tests(
            &format!("/keys/{seed}.pub"),
            VerifyingKey::from(&signing_key(seed)),
        )
    }

    fn payload(digest: &str, kind: &str) -> Vec<u8> {
        payload_for(NAME, digest, kind)
    }

    fn payload_for(name: &str, digest: &str, kind: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "critical": {
                "identity": {"docker-reference": name},
                "image": {"docker-manifest-digest": digest},
                "type": kind,
            },
            "optional": null,
        }))
        .unwrap()
    }

    fn sign(seed: u8, payload: &[u8]) -> String {
        let signature: Signature = signing_key(seed).sign(payload);
        base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
    }

    /// A registry in memory that counts blob fetches.
    #[derive(Default)]
    struct Fake {
        manifests: HashMap<String, Bytes>,
        blobs: HashMap<String, Bytes>,
        fetched: Mutex<Vec<String>>,
    }

    impl Fake {
        /// A `.sig` for IMAGE with one layer per (annotation, payload).
        fn with_layers(layers: &[(Option<String>, Vec<u8>)]) -> Fake {
            let mut fake = Fake::default();
            let mut descriptors = Vec::new();
            for (annotation, body) in layers {
                let digest = Digest::of(body).to_string();
                let mut d = serde_json::json!({
                    "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
                    "digest": digest,
                    "size": body.len(),
                });
                if let Some(a) = annotation {
                    d["annotations"] = serde_json::json!({ SIGNATURE_ANNOTATION: a });
                }
                descriptors.push(d);
                fake.blobs.insert(digest, Bytes::from(body.clone()));
            }
            fake.put_manifest(serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": OTHER, "size": 2},
                "layers": descriptors,
            }));
            fake
        }

        fn put_manifest(&mut self, manifest: serde_json::Value) {
            let tag = signature_tag(IMAGE).unwrap();
            self.manifests
                .insert(tag, Bytes::from(serde_json::to_vec(&manifest).unwrap()));
        }
    }

    impl SignatureSource for Fake {
        type Error = String;

        async fn manifest(&self, tag: &str) -> Result<Option<Bytes>, String> {
            Ok(self.manifests.get(tag).cloned())
        }

        async fn blob(&self, digest: &str, _size: u64) -> Result<Bytes, String> {
            self.fetched.lock().unwrap().push(digest.to_owned());
            self.blobs
                .get(digest)
                .cloned()
                .ok_or_else(|| format!("no blob {digest}"))
        }
    }

    async fn refusal(fake: &Fake, keys: &[TrustedKey]) -> SignatureError {
        match verify(fake, keys, IMAGE, Some(NAME)).await {
            Err(VerifyError::Refused(e)) => e,
            Err(VerifyError::Fetch(e)) => panic!("fetch error {e}"),
            Ok(v) => panic!("verified by {:?}", v.key),
        }
    }

    fn rejections(err: SignatureError) -> Vec<Rejection> {
        match err {
            SignatureError::NoValidSignature { rejections, .. } => rejections,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn the_tag_is_derived_from_the_digest() {
        assert_eq!(
            signature_tag(IMAGE).unwrap(),
            format!("sha256-{}.sig", "1".repeat(64))
        );
        for bad in ["sha256:abc", "sha512:00", "latest", "sha256:../../x"] {
            assert!(signature_tag(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_signature_by_a_trusted_key_over_the_digest_verifies() {
        let body = payload(IMAGE, SIGNATURE_TYPE);
        let fake = Fake::with_layers(&[(Some(sign(1, &body)), body)]);
        let keys = [trusted(9), trusted(1)];
        let verified = verify(&fake, &keys, IMAGE, Some(NAME)).await.unwrap();
        assert_eq!(verified.key.path.to_str(), Some("/keys/1.pub"));
        assert_eq!(verified.signed_name, "127.0.0.1:5000/signed/app");
    }

    #[tokio::test]
    async fn any_one_good_layer_among_bad_ones_is_enough() {
        let good = payload(IMAGE, SIGNATURE_TYPE);
        let other = payload(OTHER, SIGNATURE_TYPE);
        let fake = Fake::with_layers(&[
            (Some(sign(2, &good)), good.clone()),
            (Some(sign(1, &other)), other),
            (Some(sign(1, &good)), good),
        ]);
        assert!(verify(&fake, &[trusted(1)], IMAGE, Some(NAME))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn no_sig_tag_means_unsigned() {
        let err = refusal(&Fake::default(), &[trusted(1)]).await;
        assert!(matches!(err, SignatureError::Unsigned { .. }), "{err}");
        assert!(err.to_string().contains(&"1".repeat(64)), "{err}");
    }

    #[tokio::test]
    async fn wrong_key_wrong_digest_and_wrong_type_are_refused() {
        let good = payload(IMAGE, SIGNATURE_TYPE);
        let fake = Fake::with_layers(&[(Some(sign(2, &good)), good)]);
        assert_eq!(
            rejections(refusal(&fake, &[trusted(1)]).await),
            [Rejection::NoTrustedKey]
        );

        let other = payload(OTHER, SIGNATURE_TYPE);
        let fake = Fake::with_layers(&[(Some(sign(1, &other)), other)]);
        let err = refusal(&fake, &[trusted(1)]).await;
        assert!(err.to_string().contains(OTHER), "{err}");
        assert_eq!(
            rejections(err),
            [Rejection::OtherImage {
                signed: OTHER.to_owned()
            }]
        );

        let typed = payload(IMAGE, "atomic container signature");
        let fake = Fake::with_layers(&[(Some(sign(1, &typed)), typed)]);
        assert!(matches!(
            rejections(refusal(&fake, &[trusted(1)]).await)[..],
            [Rejection::WrongType { .. }]
        ));
    }

    #[tokio::test]
    async fn a_signature_for_another_repository_is_refused_unless_waived() {
        let elsewhere = payload_for("127.0.0.1:5000/signed/other", IMAGE, SIGNATURE_TYPE);
        let fake = Fake::with_layers(&[(Some(sign(1, &elsewhere)), elsewhere)]);
        let err = refusal(&fake, &[trusted(1)]).await;
        assert!(
            err.to_string()
                .contains("signature is for another repository (\"127.0.0.1:5000/signed/other\")"),
            "{err}"
        );
        let keys = [trusted(1)];
        let verified = verify(&fake, &keys, IMAGE, None).await.unwrap();
        assert_eq!(verified.signed_name, "127.0.0.1:5000/signed/other");

        for hostile in [
            "",
            "not a reference",
            "127.0.0.1:5000/SIGNED/app",
            "127.0.0.1:5000",
        ] {
            let body = payload_for(hostile, IMAGE, SIGNATURE_TYPE);
            let fake = Fake::with_layers(&[(Some(sign(1, &body)), body)]);
            assert!(
                matches!(
                    rejections(refusal(&fake, &[trusted(1)]).await)[..],
                    [Rejection::OtherRepository { .. }]
                ),
                "{hostile:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_signed_repository_is_compared_in_canonical_form() {
        let hub = "docker.io/library/busybox";
        let by_digest = format!("docker.io/library/busybox@{IMAGE}");
        for signed in [
            "index.docker.io/library/busybox",
            "registry-1.docker.io/busybox",
            "busybox",
            "docker.io/library/busybox:1.36",
            by_digest.as_str(),
        ] {
            let body = payload_for(signed, IMAGE, SIGNATURE_TYPE);
            let fake = Fake::with_layers(&[(Some(sign(1, &body)), body)]);
            assert!(
                verify(&fake, &[trusted(1)], IMAGE, Some(hub)).await.is_ok(),
                "{signed}"
            );
        }
        // One good layer among signatures for other names is enough.
        let other = payload_for("docker.io/library/busyboxes", IMAGE, SIGNATURE_TYPE);
        let good = payload_for("busybox", IMAGE, SIGNATURE_TYPE);
        let fake =
            Fake::with_layers(&[(Some(sign(1, &other)), other), (Some(sign(1, &good)), good)]);
        assert!(verify(&fake, &[trusted(1)], IMAGE, Some(hub)).await.is_ok());
    }

    #[tokio::test]
    async fn registry_text_in_refusals_is_cut_short() {
        let huge = "x".repeat(1 << 20);
        let body = payload(IMAGE, SIGNATURE_TYPE);
        let signature = sign(1, &body);
        let mut fake = Fake::default();
        fake.put_manifest(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "layers": [
                {"mediaType": huge, "digest": Digest::of(&body).to_string(), "size": 10},
                {"mediaType": SIMPLE_SIGNING_MEDIA_TYPE, "digest": format!("sha256:{huge}"),
                 "size": 10, "annotations": {SIGNATURE_ANNOTATION: signature}},
            ],
        }));
        let err = refusal(&fake, &[trusted(1)]).await;
        let text = err.to_string();
        assert!(text.len() < 2 * QUOTED_MAX + 300, "{} bytes", text.len());
        assert!(text.contains("bytes)"), "{text}");
        assert!(matches!(
            rejections(err)[..],
            [
                Rejection::NotASignature { .. },
                Rejection::BadDescriptor { .. }
            ]
        ));

        fake.put_manifest(serde_json::json!({"schemaVersion": 2, "mediaType": huge}));
        let err = refusal(&fake, &[trusted(1)]).await;
        assert!(
            matches!(err, SignatureError::UnsupportedManifest { .. }),
            "{err}"
        );
        assert!(err.to_string().len() < QUOTED_MAX + 300, "{err}");

        // The signed fields too: a trusted key may sign a careless payload
        // (one that still fits under the payload cap).
        let long = "y".repeat(16 << 10);
        let long_name = payload_for(&long, IMAGE, SIGNATURE_TYPE);
        let long_type = payload_for(NAME, IMAGE, &long);
        let long_digest = payload_for(NAME, &long, SIGNATURE_TYPE);
        let fake = Fake::with_layers(&[
            (Some(sign(1, &long_name)), long_name),
            (Some(sign(1, &long_type)), long_type),
            (Some(sign(1, &long_digest)), long_digest),
        ]);
        let text = refusal(&fake, &[trusted(1)]).await.to_string();
        assert!(text.len() < 3 * QUOTED_MAX + 500, "{} bytes", text.len());
    }

    #[test]
    fn quoting_keeps_short_text_and_cuts_on_a_character_boundary() {
        assert_eq!(quoted("application/json"), "application/json");
        let exact = "a".repeat(QUOTED_MAX);
        assert_eq!(quoted(&exact), exact);
        let long = "é".repeat(QUOTED_MAX + 1);
        let cut = quoted(&long);
        assert!(cut.starts_with(&"é".repeat(QUOTED_MAX)), "{cut}");
        assert!(
            cut.ends_with(&format!("... ({} bytes)", long.len())),
            "{cut}"
        );
    }

    #[tokio::test]
    async fn a_signed_but_malformed_payload_is_refused() {
        for body in [
            b"not json".to_vec(),
            br#"{"critical":{"image":{"docker-manifest-digest":1}}}"#.to_vec(),
            br#"{"critical":{"identity":{"docker-reference":"x"},"image":{"docker-manifest-digest":"d"},"type":"t","type":"u"}}"#.to_vec(),
        ] {
            let fake = Fake::with_layers(&[(Some(sign(1, &body)), body)]);
            assert!(matches!(
                rejections(refusal(&fake, &[trusted(1)]).await)[..],
                [Rejection::BadPayload { .. }]
            ));
        }
    }

    #[tokio::test]
    async fn broken_annotations_are_refused_without_fetching_the_payload() {
        let body = payload(IMAGE, SIGNATURE_TYPE);
        let not_der = base64::engine::general_purpose::STANDARD.encode([0x30, 0x03, 0x02, 0x01]);
        let fake = Fake::with_layers(&[
            (None, body.clone()),
            (Some("%%% not base64".into()), body.clone()),
            (Some(not_der), body.clone()),
            (Some("A".repeat(4096)), body),
        ]);
        assert_eq!(
            rejections(refusal(&fake, &[trusted(1)]).await),
            [
                Rejection::NoSignatureAnnotation,
                Rejection::NotBase64,
                Rejection::NotDer,
                Rejection::NotBase64
            ]
        );
        assert!(fake.fetched.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn hostile_descriptors_are_refused_before_any_fetch() {
        let body = payload(IMAGE, SIGNATURE_TYPE);
        let signature = sign(1, &body);
        let mut fake = Fake::default();
        fake.put_manifest(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "layers": [
                {"mediaType": SIMPLE_SIGNING_MEDIA_TYPE, "digest": Digest::of(&body).to_string(),
                 "size": SIGNATURE_PAYLOAD_MAX + 1, "annotations": {SIGNATURE_ANNOTATION: signature}},
                {"mediaType": SIMPLE_SIGNING_MEDIA_TYPE, "digest": "sha256:../../etc/passwd",
                 "size": 10, "annotations": {SIGNATURE_ANNOTATION: signature}},
                {"mediaType": SIMPLE_SIGNING_MEDIA_TYPE, "digest": Digest::of(&body).to_string(),
                 "size": -1, "annotations": {SIGNATURE_ANNOTATION: signature}},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                 "digest": Digest::of(&body).to_string(), "size": 10},
            ],
        }));
        assert!(matches!(
            rejections(refusal(&fake, &[trusted(1)]).await)[..],
            [
                Rejection::PayloadTooLarge { .. },
                Rejection::BadDescriptor { .. },
                Rejection::BadDescriptor { .. },
                Rejection::NotASignature { .. }
            ]
        ));
        assert!(fake.fetched.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_payload_that_is_not_the_named_blob_is_refused() {
        let body = payload(IMAGE, SIGNATURE_TYPE);
        let mut fake = Fake::with_layers(&[(Some(sign(1, &body)), body.clone())]);
        let digest = Digest::of(&body).to_string();
        // Same length, other bytes: a registry serving something else.
        let mut tampered = body.clone();
        tampered[0] = b' ';
        fake.blobs.insert(digest, Bytes::from(tampered));
        assert!(matches!(
            rejections(refusal(&fake, &[trusted(1)]).await)[..],
            [Rejection::PayloadMismatch { .. }]
        ));
    }

    #[tokio::test]
    async fn foreign_or_malformed_sig_manifests_are_refused() {
        let mut fake = Fake::default();
        fake.put_manifest(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [],
        }));
        let err = refusal(&fake, &[trusted(1)]).await;
        assert!(
            matches!(err, SignatureError::UnsupportedManifest { .. }),
            "{err}"
        );

        fake.put_manifest(serde_json::json!({"schemaVersion": 1, "layers": []}));
        assert!(matches!(
            refusal(&fake, &[trusted(1)]).await,
            SignatureError::UnsupportedManifest { .. }
        ));

        fake.put_manifest(serde_json::json!({"schemaVersion": 2, "layers": {"a": 1}}));
        assert!(matches!(
            refusal(&fake, &[trusted(1)]).await,
            SignatureError::BadManifest { .. }
        ));

        fake.put_manifest(serde_json::json!({"schemaVersion": 2, "layers": []}));
        assert!(rejections(refusal(&fake, &[trusted(1)]).await).is_empty());
    }

    #[tokio::test]
    async fn only_the_first_layers_are_tried() {
        let body = payload(IMAGE, SIGNATURE_TYPE);
        let bad = (Some(sign(2, &body)), body.clone());
        let mut layers = vec![bad; SIGNATURE_LAYERS_MAX];
        layers.push((Some(sign(1, &body)), body));
        let fake = Fake::with_layers(&layers);
        let found = rejections(refusal(&fake, &[trusted(1)]).await);
        assert_eq!(found[0], Rejection::TooMany { ignored: 1 });
        assert_eq!(found.len(), SIGNATURE_LAYERS_MAX + 1);
        assert_eq!(fake.fetched.lock().unwrap().len(), SIGNATURE_LAYERS_MAX);
    }

    #[tokio::test]
    async fn fetch_errors_are_passed_on_not_turned_into_refusals() {
        let body = payload(IMAGE, SIGNATURE_TYPE);
        let mut fake = Fake::with_layers(&[(Some(sign(1, &body)), body)]);
        fake.blobs.clear();
        assert!(matches!(
            verify(&fake, &[trusted(1)], IMAGE, Some(NAME)).await,
            Err(VerifyError::Fetch(_))
        ));
    }
}
