//! The signature check of a pull attempt: the image's cosign signatures
//! are read from the endpoint the image itself comes from, with the token
//! or password the session already presents, through the same size-capped
//! GET as manifests. A registry failure while reading them is the pull
//! attempt's failure like any other (the next endpoint is tried); a
//! missing or invalid signature is a policy refusal.

use bytes::Bytes;
use tracing::info;

use super::super::manifest_get::{GetError, ManifestGet, Presented};
use super::{Session, Stage};
use crate::image::limits::MANIFEST_MAX;
use crate::image::registry::PullError;
use crate::image::signature::cosign::{self, SignatureSource, VerifyError, MANIFEST_MEDIA_TYPES};
use crate::image::signature::Requirement;

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
        let Requirement::Verify { rule, keys } = self.signatures else {
            // Reject is decided before any endpoint is contacted.
            return Ok(());
        };
        let source = Registry {
            session: self,
            auth,
        };
        match cosign::verify(&source, keys, digest).await {
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
            self.scheme,
            self.target.resolve_registry(),
            self.target.repository()
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
