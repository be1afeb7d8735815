use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use tracing::{debug, info, warn, Instrument};

use super::auth::{Login, Presented};
use super::endpoint::{credential_for, helper_hosts, resolve_endpoints, Endpoint};
use super::error::with_causes;
use super::manifest::{self, Manifest, ManifestError};
use super::manifest_get::{read_capped, refusal, GetError, ManifestGet};
use super::platform::{select_manifest, Platform};
use super::redirect;
use super::settings::{Credential, RegistrySettings};
use super::{stall, Layer, PullError, PulledImage};
use crate::image::content::{ContentError, ContentStore, Digest};
use crate::image::limits::{CONFIG_MAX, ERROR_BODY_MAX, MANIFEST_MAX};
use crate::image::reference::{Reference, DEFAULT_TAG};
use crate::image::signature::{Requirement, SignaturePolicy};

mod signatures;

const USER_AGENT: &str = concat!("pvecri/", env!("CARGO_PKG_VERSION"));

/// Fetches images into the content store. Holds no connection state:
/// every pull logs in per endpoint with its own client, because two pulls
/// may carry different credentials for the same host.
pub(crate) struct Puller {
    settings: RegistrySettings,
    content: Arc<ContentStore>,
    platform: Platform,
    signatures: Arc<SignaturePolicy>,
}

impl Puller {
    pub(crate) fn new(settings: RegistrySettings, content: Arc<ContentStore>) -> Self {
        Puller {
            settings,
            content,
            platform: Platform::host(),
            signatures: Arc::default(),
        }
    }

    /// Requires the signatures `policy` asks for (none by default).
    pub(crate) fn with_signature_policy(mut self, policy: SignaturePolicy) -> Self {
        self.signatures = Arc::new(policy);
        self
    }

    /// Pulls `reference` (by digest if it has one, else by tag), trying
    /// each endpoint in turn. `auth` is the request's credential.
    ///
    /// When an endpoint may not resolve tags (a mirror without the
    /// `resolve` capability), the tag is first resolved to a digest by the
    /// endpoints that may, and the content is then pulled by that digest
    /// from the endpoints that may `pull`.
    pub(crate) async fn pull(
        &self,
        reference: &Reference,
        auth: Option<Credential>,
    ) -> Result<PulledImage, PullError> {
        let image = reference.to_string();
        let canonical = reference.canonical_name();
        if let Requirement::Reject { rule } = self.signatures.requirement(&canonical) {
            return Err(PullError::PolicyRejected {
                reference: image,
                rule: rule.to_owned(),
            });
        }
        let endpoints = resolve_endpoints(&self.settings, reference);
        let mut attempts = Vec::new();
        let mut pinned = None;
        if reference.digest.is_none() && endpoints.iter().any(|e| !e.capabilities.resolve) {
            for endpoint in endpoints.iter().filter(|e| e.capabilities.resolve) {
                let span = tracing::debug_span!("resolve", image = %image, endpoint = %endpoint);
                let result = async {
                    let credential = self.credential(reference, endpoint, auth.as_ref()).await?;
                    Session::open(self, reference, endpoint, credential, None)?
                        .resolve()
                        .await
                }
                .instrument(span)
                .await;
                match result {
                    Ok(digest) => {
                        debug!(image = %image, endpoint = %endpoint, %digest, "tag resolved");
                        pinned = Some(digest);
                        break;
                    }
                    Err(err) => {
                        let error = with_causes(&err);
                        warn!(image = %image, endpoint = %endpoint, %error, "tag resolution failed");
                        attempts.push(err);
                    }
                }
            }
            if pinned.is_none() {
                return Err(aggregate(image, attempts));
            }
        }
        for endpoint in endpoints.iter().filter(|e| e.capabilities.pull) {
            let span = tracing::debug_span!("pull", image = %image, endpoint = %endpoint);
            let result = async {
                let credential = self.credential(reference, endpoint, auth.as_ref()).await?;
                Session::open(self, reference, endpoint, credential, pinned.as_deref())?
                    .pull()
                    .await
            }
            .instrument(span)
            .await;
            match result {
                Ok(pulled) => {
                    info!(
                        image = %image,
                        endpoint = %endpoint,
                        repo_digest = %pulled.repo_digest,
                        id = %pulled.config_digest,
                        size = pulled.size,
                        "image pulled"
                    );
                    return Ok(pulled);
                }
                Err(err) => {
                    let error = with_causes(&err);
                    warn!(image = %image, endpoint = %endpoint, %error, "pull attempt failed");
                    attempts.push(err);
                }
            }
        }
        Err(aggregate(image, attempts))
    }

    /// The credential for `endpoint`: the request's or the credentials
    /// file's (see [`credential_for`]), else a credential helper's, else
    /// none. A failing `credHelpers` helper fails the attempt: pulling
    /// anonymously instead would only hide why a private image is refused.
    /// The catch-all `credsStore` gives none when it cannot answer
    /// ([`crate::image::credential_helper`]).
    async fn credential(
        &self,
        reference: &Reference,
        endpoint: &Endpoint,
        request: Option<&Credential>,
    ) -> Result<Credential, PullError> {
        if let Some(found) = credential_for(&self.settings, reference, endpoint, request) {
            return Ok(found);
        }
        if self.settings.helpers.is_empty() {
            return Ok(Credential::Anonymous);
        }
        for host in helper_hosts(reference, endpoint) {
            match self.settings.helpers.get(host).await {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                Err(source) => {
                    return Err(PullError::CredentialHelper {
                        reference: reference.to_string(),
                        endpoint: endpoint.to_string(),
                        source: Box::new(source),
                    })
                }
            }
        }
        Ok(Credential::Anonymous)
    }
}

/// The one failure, or all of them.
fn aggregate(reference: String, mut attempts: Vec<PullError>) -> PullError {
    if attempts.len() == 1 {
        attempts.remove(0)
    } else {
        PullError::AllEndpointsFailed {
            reference,
            attempts,
        }
    }
}

/// Whether a 404 means "no such image" (manifest) or "broken registry"
/// (a blob the manifest promised).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Manifest,
    Blob,
}

/// One pull attempt against one endpoint.
struct Session<'a> {
    content: &'a ContentStore,
    platform: &'a Platform,
    stall: Duration,
    concurrency: usize,
    /// Built for this endpoint's host: its CA roots, client certificate,
    /// and the redirects a registry may send ([`redirect`]).
    http: reqwest::Client,
    /// The same, following no redirect: for the token request.
    token_http: reqwest::Client,
    scheme: &'static str,
    credential: Credential,
    /// `host[:port]` and repository on this endpoint (already mapped).
    host: String,
    repository: String,
    /// The tag or digest the top-level manifest is fetched by.
    name: String,
    /// The digest the top-level manifest must have, when known.
    digest: Option<String>,
    reference: String,
    endpoint: String,
    /// The reference's canonical name, which the policy judges and a
    /// signature must name.
    canonical_name: String,
    /// What the signature policy asks of this image.
    signatures: Requirement<'a>,
}

impl<'a> Session<'a> {
    /// `pinned` is the digest a tag was resolved to elsewhere.
    fn open(
        puller: &'a Puller,
        reference: &'a Reference,
        endpoint: &Endpoint,
        credential: Credential,
        pinned: Option<&str>,
    ) -> Result<Self, PullError> {
        let client = |redirects| {
            let mut builder = reqwest::Client::builder()
                .connect_timeout(puller.settings.stall_timeout)
                .user_agent(USER_AGENT)
                .redirect(redirects);
            if let Some(tls) = puller.settings.tls.get(&endpoint.host) {
                builder = tls.apply(builder);
            }
            builder.build().map_err(|e| PullError::Registry {
                reference: reference.to_string(),
                endpoint: endpoint.to_string(),
                source: Box::new(OciDistributionError::RequestError(e)),
            })
        };
        let http = client(redirect::registry_policy(&endpoint.host))?;
        let token_http = client(reqwest::redirect::Policy::none())?;
        let digest = reference.digest.clone().or(pinned.map(str::to_owned));
        let name = match (&digest, &reference.tag) {
            (Some(digest), _) => digest.clone(),
            (None, tag) => tag.clone().unwrap_or_else(|| DEFAULT_TAG.to_owned()),
        };
        let canonical_name = reference.canonical_name();
        Ok(Session {
            content: &puller.content,
            platform: &puller.platform,
            stall: puller.settings.stall_timeout,
            concurrency: puller.settings.max_concurrent_downloads.max(1),
            http,
            token_http,
            scheme: if endpoint.insecure { "http" } else { "https" },
            credential,
            host: endpoint.host.clone(),
            repository: endpoint.repository.clone(),
            name,
            digest,
            reference: reference.to_string(),
            endpoint: endpoint.to_string(),
            signatures: puller.signatures.requirement(&canonical_name),
            canonical_name,
        })
    }

    /// The digest the tag names here. Nothing is stored: the pull by that
    /// digest fetches the manifest again, and stores it only once its
    /// signature, if the policy wants one, is checked.
    async fn resolve(&self) -> Result<String, PullError> {
        let auth = self.authorize().await?;
        let (_, digest) = self.manifest(&auth, &self.name, None).await?;
        Ok(digest)
    }

    async fn pull(&self) -> Result<PulledImage, PullError> {
        let auth = self.authorize().await?;
        let (top, repo_digest) = self
            .manifest(&auth, &self.name, self.digest.as_deref())
            .await?;
        self.check_signature(&auth, &repo_digest).await?;
        self.store(&repo_digest, None, &top).await?;

        let (image, manifest_digest) = match self.parse(&top, &repo_digest)? {
            Manifest::Image(image) => (image, repo_digest.clone()),
            Manifest::Index(index) => {
                let entry =
                    select_manifest(&index.manifests, self.platform).map_err(|available| {
                        PullError::NoMatchingPlatform {
                            reference: self.reference.clone(),
                            endpoint: self.endpoint.clone(),
                            wanted: self.platform.to_string(),
                            available,
                        }
                    })?;
                manifest::check_entry(&entry.digest, entry.size, &entry.media_type)
                    .map_err(|e| self.rejected(&repo_digest, e))?;
                // Sizes were checked non-negative by check_entry.
                if entry.size as u64 > MANIFEST_MAX {
                    return Err(self.too_large(
                        "manifest",
                        &entry.digest,
                        Some(entry.size as u64),
                        MANIFEST_MAX,
                    ));
                }
                debug!(digest = %entry.digest, platform = %self.platform, "index entry selected");
                let (body, digest) = self
                    .manifest(&auth, &entry.digest, Some(&entry.digest))
                    .await?;
                self.store(&digest, Some(entry.size as u64), &body).await?;
                match self.parse(&body, &digest)? {
                    Manifest::Image(image) => (image, digest),
                    Manifest::Index(_) => {
                        return Err(self.rejected(
                            &digest,
                            ManifestError::NestedIndex {
                                digest: digest.clone(),
                            },
                        ))
                    }
                }
            }
        };
        manifest::check_image(&image).map_err(|e| self.rejected(&manifest_digest, e))?;
        // Sizes were checked non-negative by check_image. The ingest stops
        // at the declared size, so this also caps what is downloaded.
        let config_size = image.config.size as u64;
        if config_size > CONFIG_MAX {
            return Err(self.too_large(
                "config",
                &image.config.digest,
                Some(config_size),
                CONFIG_MAX,
            ));
        }

        // The config is tiny; it simply joins the layer downloads. The
        // futures are built up front (they are lazy): mapping inside the
        // stream makes the pull future !Send (rust-lang/rust#104382).
        let progress = super::progress::Progress::new(&self.reference, image.layers.len() + 1);
        let _reporter =
            super::progress::Reporter::start(progress.clone(), super::progress::INTERVAL);
        let downloads: Vec<_> = std::iter::once(&image.config)
            .chain(&image.layers)
            .map(|blob| self.blob(blob, &auth, &progress))
            .collect();
        stream::iter(downloads)
            .buffer_unordered(self.concurrency)
            .try_collect::<Vec<()>>()
            .await?;

        let config = match self.content.read(&image.config.digest, CONFIG_MAX).await {
            Ok(config) => config,
            Err(ContentError::TooLarge { size, limit, .. }) => {
                return Err(self.too_large("config", &image.config.digest, Some(size), limit))
            }
            Err(e) => return Err(self.content_error(&image.config.digest, e)),
        };
        let layers: Vec<Layer> = image
            .layers
            .iter()
            .map(|l| Layer {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
                size: l.size as u64,
            })
            .collect();
        let size = config_size + layers.iter().map(|l| l.size).sum::<u64>();
        Ok(PulledImage {
            repo_digest,
            manifest_digest,
            config_digest: image.config.digest.clone(),
            config,
            layers,
            size,
        })
    }

    /// Logs in (see [`super::auth`]): what the manifest and blob
    /// requests present.
    async fn authorize(&self) -> Result<Presented, PullError> {
        let login = Login {
            http: self.http.clone(),
            token_http: self.token_http.clone(),
            scheme: self.scheme,
            host: self.host.clone(),
            repository: self.repository.clone(),
            credential: self.credential.clone(),
            stall: self.stall,
        };
        login
            .run()
            .await
            .map_err(|e| self.get_error(e, Stage::Manifest, "token", 0))
    }

    /// A failed GET as a pull error; `name` and `limit` describe what was
    /// being fetched, for a body over its cap.
    fn get_error(&self, err: GetError, stage: Stage, name: &str, limit: u64) -> PullError {
        match err {
            GetError::Registry(e) => self.registry_error(e, stage),
            GetError::TooLarge { declared } => self.too_large("manifest", name, declared, limit),
            GetError::Stalled => self.stalled(),
        }
    }

    /// Fetches a manifest (by tag or digest) of at most [`MANIFEST_MAX`]
    /// bytes and returns it with its sha256 digest, checked against
    /// `expected` when the caller knows it.
    async fn manifest(
        &self,
        auth: &Presented,
        name: &str,
        expected: Option<&str>,
    ) -> Result<(Bytes, String), PullError> {
        let url = format!(
            "{}://{}/v2/{}/manifests/{name}",
            self.scheme, self.host, self.repository
        );
        let get = ManifestGet {
            http: &self.http,
            url: &url,
            accept: manifest::ACCEPTED,
            auth,
            limit: MANIFEST_MAX,
            stall: self.stall,
        };
        let body = get
            .send()
            .await
            .map_err(|e| self.get_error(e, Stage::Manifest, name, MANIFEST_MAX))?;
        let digest = Digest::of(&body).to_string();
        if let Some(expected) = expected.filter(|&e| e != digest) {
            return Err(PullError::DigestMismatch {
                reference: self.reference.clone(),
                endpoint: self.endpoint.clone(),
                expected: expected.to_owned(),
                actual: digest,
            });
        }
        Ok((body, digest))
    }

    fn parse(&self, body: &[u8], digest: &str) -> Result<Manifest, PullError> {
        manifest::parse(body).map_err(|e| self.rejected(digest, e))
    }

    /// Keeps manifests next to the blobs, so the image's repo digest and
    /// manifest stay resolvable locally.
    async fn store(&self, digest: &str, size: Option<u64>, body: &Bytes) -> Result<(), PullError> {
        if self.content.has(digest) {
            return Ok(());
        }
        let once = stream::once(std::future::ready(Ok(body.clone())));
        self.content
            .ingest(digest, size, once)
            .await
            .map(drop)
            .map_err(|e| self.content_error(digest, e))
    }

    async fn blob(
        &self,
        blob: &OciDescriptor,
        auth: &Presented,
        progress: &std::sync::Arc<super::progress::Progress>,
    ) -> Result<(), PullError> {
        if self.content.has(&blob.digest) {
            debug!(digest = %blob.digest, "blob already present");
            progress.blob_done();
            return Ok(());
        }
        progress.fetching(blob.size.max(0) as u64);
        let counter = progress.clone();
        let url = format!(
            "{}://{}/v2/{}/blobs/{}",
            self.scheme, self.host, self.repository, blob.digest
        );
        // Redirects (to a storage backend) are followed by reqwest, which
        // drops the Authorization header when the host changes.
        let mut response = auth
            .send(|| self.http.get(&url))
            .await
            .map_err(|e| self.get_error(e, Stage::Blob, &blob.digest, 0))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            let body = read_capped(&mut response, ERROR_BODY_MAX, self.stall)
                .await
                .unwrap_or_default();
            return Err(self.registry_error(refusal(status, &body, &url), Stage::Blob));
        }
        let body = response.bytes_stream().map_err(std::io::Error::other);
        debug!(digest = %blob.digest, size = blob.size, "downloading blob");
        self.content
            .ingest(
                &blob.digest,
                Some(blob.size as u64),
                stall::guard(body, self.stall).inspect(move |chunk| {
                    if let Ok(bytes) = chunk {
                        counter.received(bytes.len() as u64);
                    }
                }),
            )
            .await
            .map_err(|e| self.content_error(&blob.digest, e))?;
        progress.blob_done();
        // Verified and stored: the digest check passed, so the size is exact.
        crate::metrics::global()
            .image_pull_bytes
            .inc_by(blob.size.max(0) as u64);
        Ok(())
    }

    fn stalled(&self) -> PullError {
        PullError::Stalled {
            reference: self.reference.clone(),
            endpoint: self.endpoint.clone(),
            timeout: self.stall,
        }
    }

    fn too_large(
        &self,
        what: &'static str,
        name: &str,
        size: Option<u64>,
        limit: u64,
    ) -> PullError {
        PullError::TooLarge {
            reference: self.reference.clone(),
            endpoint: self.endpoint.clone(),
            what,
            name: name.to_owned(),
            size,
            limit,
        }
    }

    fn rejected(&self, digest: &str, err: ManifestError) -> PullError {
        let (reference, endpoint) = (self.reference.clone(), self.endpoint.clone());
        match err {
            ManifestError::Unsupported { what, media_type } => PullError::Unsupported {
                reference,
                endpoint,
                what,
                media_type,
            },
            source => PullError::InvalidManifest {
                reference,
                endpoint,
                digest: digest.to_owned(),
                source: Box::new(source),
            },
        }
    }

    fn registry_error(&self, err: OciDistributionError, stage: Stage) -> PullError {
        use OciDistributionError as E;
        enum Kind {
            NotFound,
            Unauthorized,
            Network,
            Other,
        }
        let manifest = stage == Stage::Manifest;
        let kind = match &err {
            E::RegistryError { envelope, .. } => {
                let has = |codes: &[OciErrorCode]| {
                    envelope.errors.iter().any(|e| codes.contains(&e.code))
                };
                if has(&[OciErrorCode::Unauthorized, OciErrorCode::Denied]) {
                    Kind::Unauthorized
                } else if manifest
                    && has(&[
                        OciErrorCode::ManifestUnknown,
                        OciErrorCode::NameUnknown,
                        OciErrorCode::NotFound,
                    ])
                {
                    Kind::NotFound
                } else {
                    Kind::Other
                }
            }
            E::UnauthorizedError { .. }
            | E::AuthenticationFailure(_)
            | E::ServerError {
                code: 401 | 403, ..
            } => Kind::Unauthorized,
            E::ServerError { code: 404, .. } | E::ImageManifestNotFoundError(_) if manifest => {
                Kind::NotFound
            }
            E::DigestError(DigestError::VerificationError { expected, actual }) => {
                return PullError::DigestMismatch {
                    reference: self.reference.clone(),
                    endpoint: self.endpoint.clone(),
                    expected: expected.clone(),
                    actual: actual.clone(),
                }
            }
            E::UnsupportedMediaTypeError(media_type) => {
                return PullError::Unsupported {
                    reference: self.reference.clone(),
                    endpoint: self.endpoint.clone(),
                    what: "manifest",
                    media_type: media_type.clone(),
                }
            }
            E::RequestError(_) | E::IoError(_) => Kind::Network,
            _ => Kind::Other,
        };
        let (reference, endpoint) = (self.reference.clone(), self.endpoint.clone());
        match kind {
            Kind::NotFound => PullError::NotFound {
                reference,
                endpoint,
                source: Box::new(err),
            },
            Kind::Unauthorized => PullError::Unauthorized {
                reference,
                endpoint,
                source: Box::new(err),
            },
            Kind::Network => PullError::Network {
                reference,
                endpoint,
                source: Box::new(err),
            },
            Kind::Other => PullError::Registry {
                reference,
                endpoint,
                source: Box::new(err),
            },
        }
    }

    fn content_error(&self, digest: &str, err: ContentError) -> PullError {
        let (reference, endpoint) = (self.reference.clone(), self.endpoint.clone());
        match err {
            ContentError::Source { source, .. } if stall::is_stall(&source) => self.stalled(),
            ContentError::Source { source, .. } => {
                // oci-client verifies the stream itself and reports a
                // mismatch as an I/O error at its end.
                let verification = source
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<DigestError>());
                match verification {
                    Some(DigestError::VerificationError { expected, actual }) => {
                        PullError::DigestMismatch {
                            reference,
                            endpoint,
                            expected: expected.clone(),
                            actual: actual.clone(),
                        }
                    }
                    _ => PullError::Network {
                        reference,
                        endpoint,
                        source: Box::new(source),
                    },
                }
            }
            ContentError::DigestMismatch { expected, computed } => PullError::DigestMismatch {
                reference,
                endpoint,
                expected,
                actual: computed,
            },
            source => PullError::Content {
                reference,
                endpoint,
                digest: digest.to_owned(),
                source: Box::new(source),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The image service runs pulls on spawned tasks.
    #[test]
    fn pull_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let dir = tempfile::tempdir().unwrap();
        let content = Arc::new(ContentStore::new(dir.path()).unwrap());
        let puller = Puller::new(RegistrySettings::default(), content);
        let reference = Reference::parse("busybox").unwrap();
        let pull = puller.pull(&reference, None);
        assert_send(&pull);
    }
}
