use thiserror::Error;

use super::reference::ReferenceError;
use super::registry::PullError;
use crate::snapshot::SnapshotError;
use crate::store::StoreError;

#[derive(Debug, Error)]
pub(crate) enum ImageError {
    #[error("image {image} ({id}) is pinned (images.pinned_images): it is never removed")]
    Pinned { image: String, id: String },
    #[error("invalid image reference {image:?}")]
    InvalidReference {
        image: String,
        #[source]
        source: ReferenceError,
    },
    #[error("pulling image {image} failed")]
    Pull {
        image: String,
        #[source]
        source: Box<PullError>,
    },
    #[error("image {image} has an unreadable config")]
    BadConfig {
        image: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("image {image} lists {diff_ids} diff IDs but {layers} layers")]
    LayerCount {
        image: String,
        diff_ids: usize,
        layers: usize,
    },
    #[error("image {image}: content store: {message}")]
    Content { image: String, message: String },
    #[error("unpacking image {image} failed")]
    Snapshot {
        image: String,
        #[source]
        source: SnapshotError,
    },
    #[error("image import from {source_path} failed: {message}")]
    Import {
        source_path: String,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what} task failed: {message}")]
    Task { what: &'static str, message: String },
}
