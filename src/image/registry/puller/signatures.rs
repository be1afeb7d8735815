//! The signature check of a pull attempt: the image's cosign signatures
//! are read from the endpoint the image itself comes from, with the token
//! or password the session already presents, through the same size-capped
//! GET as manifests. A registry failure while reading them is the pull
//! attempt's failure like any other (the next endpoint is tried); a
//! missing or invalid signature is a policy refusal.

use bytes::Bytes;
use tracing::info;

use super::super::auth::Presented;
use super::super::manifest_get::{GetError, ManifestGet};
use super::{Session, Stage};
use crate::image::limits::MANIFEST_MAX;
use crate::image::registry::PullError;
use crate::image::signature::cosign::{self, SignatureSource, VerifyError, MANIFEST_MEDIA_TYPES};
use crate::image::signature::{Requirement, SignedIdentity};

/// Blobs are not content-negotiated; registries ignore the header.
const ANY: &[&str] = &["*/*"];

impl Session<'_> {
    /// Requires what the policy asks of the image whose top-level manifest
    /// has `digest`. Runs before anything of the image is stored.
    pub(super) async fn check_signature(
        &self,
        auth: &Presented,
        digest: &str,
    ) -> Result<(), PullError> {
        let Requirement::Verify {
            rule,
            keys,
            identity,
        } = self.signatures
        else {
            // Reject is decided before any endpoint is contacted.
            return Ok(());
        };
        let source = Registry {
            session: self,
            auth,
        };
        // The name the pod asked for, not the mirror path it is fetched
        // from: that is the image the signer vouched for.
        let repository = match identity {
            SignedIdentity::MatchRepository => Some(self.canonical_name.as_str()),
            SignedIdentity::Any => None,
        };
        match cosign::verify(&source, keys, digest, repository).await {
            Ok(verified) => {
                info!(
                    image = %self.reference,
                    endpoint = %self.endpoint,
                    %digest,
                    rule,
                    key = %verified.key.path.display(),
                    signed_name = %verified.signed_name,
                    "image signature verified"
                );
                Ok(())
            }
            Err(VerifyError::Fetch(err)) => Err(err),
            Err(VerifyError::Refused(source)) => Err(PullError::SignatureRefused {
                reference: self.reference.clone(),
                endpoint: self.endpoint.clone(),
                rule: rule.to_owned(),
                source: Box::new(source),
            }),
        }
    }

    fn url(&self, kind: &str, name: &str) -> String {
        format!(
            "{}://{}/v2/{}/{kind}/{name}",
            self.scheme, self.host, self.repository
        )
    }
}

/// The session's endpoint as a [`SignatureSource`].
struct Registry<'s> {
    session: &'s Session<'s>,
    auth: &'s Presented,
}

impl Registry<'_> {
    async fn get(
        &self,
        url: &str,
        accept: &[&str],
        limit: u64,
        what: &'static str,
        name: &str,
        stage: Stage,
    ) -> Result<Bytes, PullError> {
        let get = ManifestGet {
            http: &self.session.http,
            url,
            accept,
            auth: self.auth,
            limit,
            stall: self.session.stall,
        };
        get.send().await.map_err(|e| match e {
            GetError::Registry(e) => self.session.registry_error(e, stage),
            GetError::TooLarge { declared } => self.session.too_large(what, name, declared, limit),
            GetError::Stalled => self.session.stalled(),
        })
    }
}

impl SignatureSource for Registry<'_> {
    type Error = PullError;

    async fn manifest(&self, tag: &str) -> Result<Option<Bytes>, PullError> {
        let url = self.session.url("manifests", tag);
        let fetched = self
            .get(
                &url,
                MANIFEST_MEDIA_TYPES,
                MANIFEST_MAX,
                "signature manifest",
                tag,
                Stage::Manifest,
            )
            .await;
        match fetched {
            Ok(body) => Ok(Some(body)),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn blob(&self, digest: &str, size: u64) -> Result<Bytes, PullError> {
        let url = self.session.url("blobs", digest);
        self.get(&url, ANY, size, "signature payload", digest, Stage::Blob)
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Duration;

    use base64::Engine;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{Signature, SigningKey};
    use p256::pkcs8::{EncodePublicKey, LineEnding};

    use super::super::super::test_http::{serve, Reply};
    use super::super::Puller;
    use crate::image::content::{ContentStore, Digest};
    use crate::image::limits::MANIFEST_MAX;
    use crate::image::reference::Reference;
    use crate::image::registry::error::with_causes;
    use crate::image::registry::settings::MirrorSpec;
    use crate::image::registry::{PullError, RegistrySettings};
    use crate::image::signature::cosign::{SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE};
    use crate::image::signature::{PolicyRule, SignaturePolicy};

    const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

    /// The registry name the tests' images are pulled as; the scripted
    /// registry serves it as a mirror, as a pod's image is often served.
    const UPSTREAM: &str = "signed.pvecri.invalid";

    struct Fixture {
        dir: tempfile::TempDir,
        content: Arc<ContentStore>,
        puller: Puller,
    }

    /// The key the fixture's policy trusts.
    fn trusted_key() -> SigningKey {
        SigningKey::from_slice(&[7; 32]).unwrap()
    }

    /// A puller whose policy wants signatures by [`trusted_key`] for every
    /// image, and which fetches [`UPSTREAM`]'s images from `mirror` only.
    fn fixture(mirror: std::net::SocketAddr) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let pem = trusted_key()
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let key_path = dir.path().join("cosign.pub");
        std::fs::write(&key_path, pem).unwrap();
        let rules: Vec<PolicyRule> = toml::from_str::<HashMap<String, Vec<PolicyRule>>>(&format!(
            "rules = [{{ prefix = \"*\", keys = [\"{}\"] }}]",
            key_path.display()
        ))
        .unwrap()
        .remove("rules")
        .unwrap();
        let content = Arc::new(ContentStore::new(dir.path().join("content")).unwrap());
        let settings = RegistrySettings {
            stall_timeout: Duration::from_millis(400),
            mirrors: HashMap::from([(
                UPSTREAM.to_owned(),
                vec![MirrorSpec::full(mirror.to_string())],
            )]),
            fallback_to_upstream: false,
            ..RegistrySettings::default()
        };
        let puller = Puller::new(settings, content.clone())
            .with_signature_policy(SignaturePolicy::load(&rules).unwrap());
        Fixture {
            dir,
            content,
            puller,
        }
    }

    fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply::Ok {
            content_type,
            body: body.into(),
        }
    }

    /// Routes for a one-layer image at `repo:v1`, and its manifest digest.
    fn image(repo: &str) -> (HashMap<String, Reply>, String) {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let layer = b"not really a tarball";
        let (config_digest, layer_digest) = (Digest::of(config), Digest::of(layer));
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
                "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{},"digest":"{config_digest}"}},
                "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":{},"digest":"{layer_digest}"}}]}}"#,
            config.len(),
            layer.len()
        );
        let digest = Digest::of(manifest.as_bytes()).to_string();
        let routes = HashMap::from([
            (
                format!("/v2/{repo}/manifests/v1"),
                ok(DOCKER_MANIFEST, manifest),
            ),
            (
                format!("/v2/{repo}/blobs/{config_digest}"),
                ok("application/octet-stream", config.to_vec()),
            ),
            (
                format!("/v2/{repo}/blobs/{layer_digest}"),
                ok("application/octet-stream", layer.to_vec()),
            ),
        ]);
        (routes, digest)
    }

    /// Adds the `.sig` of `digest` to `routes`: one layer whose payload
    /// (signed by `key` for `UPSTREAM/repo`) is served by `payload_reply`,
    /// or the right bytes.
    fn sign(
        routes: &mut HashMap<String, Reply>,
        repo: &str,
        digest: &str,
        key: &SigningKey,
        payload_reply: Option<Reply>,
    ) {
        sign_for(
            routes,
            repo,
            &format!("{UPSTREAM}/{repo}"),
            digest,
            key,
            payload_reply,
        );
    }

    /// [`sign`], with the payload naming `signed_name`.
    fn sign_for(
        routes: &mut HashMap<String, Reply>,
        repo: &str,
        signed_name: &str,
        digest: &str,
        key: &SigningKey,
        payload_reply: Option<Reply>,
    ) {
        let payload = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"{signed_name}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
        );
        let signature: Signature = key.sign(payload.as_bytes());
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes());
        let payload_digest = Digest::of(payload.as_bytes()).to_string();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": payload_digest, "size": 1},
            "layers": [{"mediaType": SIMPLE_SIGNING_MEDIA_TYPE, "digest": payload_digest,
                        "size": payload.len(),
                        "annotations": {SIGNATURE_ANNOTATION: encoded}}],
        });
        let tag = format!("sha256-{}.sig", digest.trim_start_matches("sha256:"));
        routes.insert(
            format!("/v2/{repo}/manifests/{tag}"),
            ok(OCI_MANIFEST, serde_json::to_vec(&manifest).unwrap()),
        );
        routes.insert(
            format!("/v2/{repo}/blobs/{payload_digest}"),
            payload_reply.unwrap_or_else(|| ok("application/octet-stream", payload)),
        );
    }

    fn reference(repo: &str) -> Reference {
        Reference::parse(&format!("{UPSTREAM}/{repo}:v1")).unwrap()
    }

    #[tokio::test]
    async fn a_signed_image_pulls_over_http() {
        let (mut routes, digest) = image("ok/app");
        sign(&mut routes, "ok/app", &digest, &trusted_key(), None);
        let addr = serve(routes).await;
        let f = fixture(addr);
        let pulled = f.puller.pull(&reference("ok/app"), None).await.unwrap();
        assert_eq!(pulled.repo_digest, digest);
        assert!(f.content.has(&digest));
    }

    #[tokio::test]
    async fn a_refused_image_leaves_nothing_in_the_content_store() {
        let (mut routes, digest) = image("bad/app");
        let stranger = SigningKey::from_slice(&[8; 32]).unwrap();
        sign(&mut routes, "bad/app", &digest, &stranger, None);
        let (unsigned, _) = image("none/app");
        routes.extend(unsigned);
        let addr = serve(routes).await;
        let f = fixture(addr);
        for repo in ["bad/app", "none/app"] {
            let err = f.puller.pull(&reference(repo), None).await.unwrap_err();
            assert!(err.is_refused_by_policy(), "{err}");
            assert!(!err.is_not_found(), "{err}");
        }
        assert!(f.content.list().unwrap().is_empty());
        drop(f.dir);
    }

    /// The signer vouched for a name; the same bytes under another name
    /// (the mirror path they are stored at, another repository) are not
    /// what was signed.
    #[tokio::test]
    async fn a_signature_for_another_name_is_a_refusal() {
        let (mut routes, digest) = image("renamed/app");
        sign_for(
            &mut routes,
            "renamed/app",
            "127.0.0.1:5000/renamed/app",
            &digest,
            &trusted_key(),
            None,
        );
        let addr = serve(routes).await;
        let f = fixture(addr);
        let err = f
            .puller
            .pull(&reference("renamed/app"), None)
            .await
            .unwrap_err();
        assert!(err.is_refused_by_policy(), "{err}");
        assert!(
            with_causes(&err).contains("signature is for another repository"),
            "{}",
            with_causes(&err)
        );
        assert!(f.content.list().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_payload_served_bigger_than_declared_is_cut_off() {
        let (mut routes, digest) = image("big/app");
        let huge = ok("application/octet-stream", vec![b' '; 1 << 20]);
        sign(&mut routes, "big/app", &digest, &trusted_key(), Some(huge));
        let addr = serve(routes).await;
        let f = fixture(addr);
        let err = f
            .puller
            .pull(&reference("big/app"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                PullError::TooLarge {
                    what: "signature payload",
                    ..
                }
            ),
            "{err}"
        );
        assert!(f.content.list().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_endless_signature_manifest_is_cut_off_at_the_cap() {
        let (mut routes, digest) = image("endless/app");
        let tag = format!("sha256-{}.sig", digest.trim_start_matches("sha256:"));
        routes.insert(format!("/v2/endless/app/manifests/{tag}"), Reply::Endless);
        let addr = serve(routes).await;
        let f = fixture(addr);
        let err = f
            .puller
            .pull(&reference("endless/app"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, PullError::TooLarge { what: "signature manifest", limit, .. } if *limit == MANIFEST_MAX),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_registry_failure_on_the_signature_is_not_a_refusal() {
        let (mut routes, digest) = image("flaky/app");
        sign(
            &mut routes,
            "flaky/app",
            &digest,
            &trusted_key(),
            Some(Reply::Status(500)),
        );
        let addr = serve(routes).await;
        let f = fixture(addr);
        let err = f
            .puller
            .pull(&reference("flaky/app"), None)
            .await
            .unwrap_err();
        assert!(!err.is_refused_by_policy(), "{err}");
        assert!(matches!(err, PullError::Registry { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_reject_rule_asks_no_registry() {
        let dir = tempfile::tempdir().unwrap();
        let content = Arc::new(ContentStore::new(dir.path()).unwrap());
        let rules: HashMap<String, Vec<PolicyRule>> =
            toml::from_str(r#"rules = [{ prefix = "127.0.0.1:9", action = "reject" }]"#).unwrap();
        let puller = Puller::new(RegistrySettings::default(), content)
            .with_signature_policy(SignaturePolicy::load(&rules["rules"]).unwrap());
        // Nothing listens on port 9: only a refusal without a request is quick and clean.
        let err = puller
            .pull(&Reference::parse("127.0.0.1:9/x/y:1").unwrap(), None)
            .await
            .unwrap_err();
        assert!(matches!(err, PullError::PolicyRejected { .. }), "{err}");
        assert!(err.is_refused_by_policy());
    }

    #[tokio::test]
    async fn a_reject_rule_covers_every_spelling_of_its_registry() {
        let dir = tempfile::tempdir().unwrap();
        let content = Arc::new(ContentStore::new(dir.path()).unwrap());
        let rules: HashMap<String, Vec<PolicyRule>> = toml::from_str(
            r#"rules = [{ prefix = "quay.io", action = "reject" }, { prefix = "docker.io/library/x", action = "reject" }]"#,
        )
        .unwrap();
        let puller = Puller::new(RegistrySettings::default(), content)
            .with_signature_policy(SignaturePolicy::load(&rules["rules"]).unwrap());
        // Refused before any request: none of these hosts is asked.
        for image in [
            "QUAY.IO/x/y:1",
            "quay.io:443/x/y",
            "registry-1.docker.io/library/x",
            "index.docker.io/x",
            "DOCKER.IO:443/x",
        ] {
            let err = puller
                .pull(&Reference::parse(image).unwrap(), None)
                .await
                .unwrap_err();
            assert!(
                matches!(err, PullError::PolicyRejected { .. }),
                "{image}: {err}"
            );
        }
    }
}
