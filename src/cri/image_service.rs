//! `runtime.v1.ImageService`: request validation and proto conversion over
//! [`crate::image::ImageManager`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use tonic::{Request, Response, Status};

use super::list_stream::{chunked, ResponseStream};
use super::status::{from_image_error, invalid};
use super::{filters, v1};
use crate::audit::AuditLog;
use crate::image::registry::Credential;
use crate::image::{ImageManager, ImageRecord};
use crate::runtime::Runtime;

pub(crate) struct ImageService {
    runtime: Arc<Runtime>,
    audit: Arc<AuditLog>,
}

impl ImageService {
    pub(crate) fn new(runtime: Arc<Runtime>) -> Self {
        Self {
            runtime,
            audit: AuditLog::disabled(),
        }
    }

    /// Records pulls and removals in `audit`.
    pub(crate) fn with_audit(mut self, audit: Arc<AuditLog>) -> Self {
        self.audit = audit;
        self
    }

    pub(crate) fn into_server(self) -> v1::image_service_server::ImageServiceServer<Self> {
        v1::image_service_server::ImageServiceServer::new(self)
    }

    fn images(&self) -> &Arc<ImageManager> {
        self.runtime.images()
    }

    /// What ListImages and StreamImages both return, before conversion.
    fn list(&self, filter: Option<&v1::ImageFilter>) -> Result<Vec<ImageRecord>, Status> {
        self.images()
            .list(filters::image(filter))
            .map_err(|e| from_image_error(&e))
    }
}

fn image_name(spec: Option<&v1::ImageSpec>) -> Result<&str, Status> {
    match spec.map(|s| s.image.trim()) {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(invalid("image.image", "an image name is required")),
    }
}

/// The image a request names, as sent (for the audit log).
fn requested_image(spec: Option<&v1::ImageSpec>) -> String {
    spec.map(|s| s.image.clone()).unwrap_or_default()
}

/// The request's registry credentials, if it carries any. An
/// `identity_token` (an OAuth2 refresh token, what `docker login` keeps for
/// registries with token authentication) is traded for a bearer token at
/// the registry's token endpoint when the pull logs in.
fn credential(auth: Option<&v1::AuthConfig>) -> Result<Option<Credential>, Status> {
    let Some(auth) = auth else {
        return Ok(None);
    };
    if !auth.registry_token.is_empty() {
        return Ok(Some(Credential::Bearer(auth.registry_token.clone())));
    }
    if !auth.username.is_empty() {
        return Ok(Some(Credential::Basic {
            username: auth.username.clone(),
            password: auth.password.clone(),
        }));
    }
    if !auth.auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.auth.trim())
            .map_err(|e| invalid("auth.auth", format!("not base64: {e}")))?;
        let text = String::from_utf8(decoded).map_err(|_| invalid("auth.auth", "not UTF-8"))?;
        let (username, password) = text
            .split_once(':')
            .ok_or_else(|| invalid("auth.auth", "expected base64 of `username:password`"))?;
        return Ok(Some(Credential::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        }));
    }
    if !auth.identity_token.is_empty() {
        if auth.identity_token.chars().any(char::is_control) {
            return Err(invalid("auth.identity_token", "has control characters"));
        }
        return Ok(Some(Credential::IdentityToken(auth.identity_token.clone())));
    }
    Ok(None)
}

fn to_proto(record: &ImageRecord) -> v1::Image {
    let (uid, username) = crate::image::spec::image_user(record.run_config.user.as_deref());
    v1::Image {
        id: record.id.clone(),
        repo_tags: record.repo_tags.clone(),
        repo_digests: record.repo_digests.clone(),
        size: record.size,
        uid: uid.map(|value| v1::Int64Value { value }),
        username,
        spec: Some(v1::ImageSpec {
            image: record.id.clone(),
            ..Default::default()
        }),
        pinned: record.pinned,
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

#[tonic::async_trait]
impl v1::image_service_server::ImageService for ImageService {
    async fn list_images(
        &self,
        request: Request<v1::ListImagesRequest>,
    ) -> Result<Response<v1::ListImagesResponse>, Status> {
        let images = self.list(request.get_ref().filter.as_ref())?;
        Ok(Response::new(v1::ListImagesResponse {
            images: images.iter().map(to_proto).collect(),
        }))
    }

    async fn image_status(
        &self,
        request: Request<v1::ImageStatusRequest>,
    ) -> Result<Response<v1::ImageStatusResponse>, Status> {
        let req = request.get_ref();
        let name = image_name(req.image.as_ref())?;
        let found = self
            .images()
            .status(name)
            .map_err(|e| from_image_error(&e))?;
        let mut info = HashMap::new();
        if let (true, Some(record)) = (req.verbose, &found) {
            let detail = serde_json::json!({
                "manifestDigest": record.manifest_digest,
                "chainIDs": record.chain_ids,
                "layers": record.layers.iter().map(|l| &l.digest).collect::<Vec<_>>(),
                "config": record.run_config,
                "source": record.source,
            });
            info.insert("info".to_owned(), detail.to_string());
        }
        Ok(Response::new(v1::ImageStatusResponse {
            image: found.as_ref().map(to_proto),
            info,
        }))
    }

    async fn pull_image(
        &self,
        request: Request<v1::PullImageRequest>,
    ) -> Result<Response<v1::PullImageResponse>, Status> {
        let scope = self
            .audit
            .scope("PullImage", &request)
            .image(&requested_image(request.get_ref().image.as_ref()));
        let result: Result<Response<v1::PullImageResponse>, Status> = async move {
            let req = request.get_ref();
            let name = image_name(req.image.as_ref())?;
            let auth = credential(req.auth.as_ref())?;
            let id = self
                .images()
                .pull(name, auth)
                .await
                .map_err(|e| from_image_error(&e))?;
            Ok(Response::new(v1::PullImageResponse { image_ref: id }))
        }
        .await;
        scope.finish(result)
    }

    async fn remove_image(
        &self,
        request: Request<v1::RemoveImageRequest>,
    ) -> Result<Response<v1::RemoveImageResponse>, Status> {
        let scope = self
            .audit
            .scope("RemoveImage", &request)
            .image(&requested_image(request.get_ref().image.as_ref()));
        let result: Result<Response<v1::RemoveImageResponse>, Status> = async move {
            let name = image_name(request.get_ref().image.as_ref())?;
            let in_use = self.runtime.layers_in_use();
            self.images()
                .remove(name, &in_use)
                .await
                .map_err(|e| from_image_error(&e))?;
            Ok(Response::new(v1::RemoveImageResponse {}))
        }
        .await;
        scope.finish(result)
    }

    async fn image_fs_info(
        &self,
        _request: Request<v1::ImageFsInfoRequest>,
    ) -> Result<Response<v1::ImageFsInfoResponse>, Status> {
        let usage = self.images().fs_usage().await;
        let ts = now_ns();
        let fs = |mountpoint: &std::path::Path, u: crate::snapshot::Usage| v1::FilesystemUsage {
            timestamp: ts,
            fs_id: Some(v1::FilesystemIdentifier {
                mountpoint: mountpoint.display().to_string(),
            }),
            used_bytes: Some(v1::UInt64Value { value: u.bytes }),
            inodes_used: Some(v1::UInt64Value { value: u.inodes }),
        };
        Ok(Response::new(v1::ImageFsInfoResponse {
            image_filesystems: vec![fs(&usage.images_mountpoint, usage.images)],
            container_filesystems: vec![fs(&usage.containers_mountpoint, usage.containers)],
        }))
    }

    type StreamImagesStream = ResponseStream<v1::StreamImagesResponse>;

    async fn stream_images(
        &self,
        request: Request<v1::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        let images = self.list(request.get_ref().filter.as_ref())?;
        Ok(Response::new(chunked(images, to_proto, |images| {
            v1::StreamImagesResponse { images }
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_from_auth_config() {
        assert!(credential(None).unwrap().is_none());
        let basic = v1::AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("u:p:w"),
            ..Default::default()
        };
        match credential(Some(&basic)).unwrap() {
            Some(Credential::Basic { username, password }) => {
                assert_eq!((username.as_str(), password.as_str()), ("u", "p:w"))
            }
            _ => panic!("expected basic credentials"),
        }
        let bad = v1::AuthConfig {
            auth: "!!!".into(),
            ..Default::default()
        };
        assert_eq!(
            credential(Some(&bad)).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let token = v1::AuthConfig {
            registry_token: "t".into(),
            username: "ignored".into(),
            ..Default::default()
        };
        assert!(
            matches!(credential(Some(&token)).unwrap(), Some(Credential::Bearer(t)) if t == "t")
        );
        let identity = v1::AuthConfig {
            identity_token: "r3fresh".into(),
            ..Default::default()
        };
        assert_eq!(
            credential(Some(&identity)).unwrap(),
            Some(Credential::IdentityToken("r3fresh".into()))
        );
        let hostile = v1::AuthConfig {
            identity_token: "a\r\nb".into(),
            ..Default::default()
        };
        let err = credential(Some(&hostile)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("auth.identity_token"));
    }

    #[test]
    fn empty_image_name_is_invalid() {
        assert_eq!(
            image_name(None).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let spec = v1::ImageSpec {
            image: "  ".into(),
            ..Default::default()
        };
        assert!(image_name(Some(&spec))
            .unwrap_err()
            .message()
            .contains("image.image"));
    }
}
