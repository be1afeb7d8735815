//! What can go wrong turning a local file into an image. Every variant names
//! the input as the user typed it, since that is what they will look for in
//! `crictl` output or kubelet events.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::image::content::ContentError;
use crate::image::reference::ReferenceError;
use crate::snapshot::SnapshotError;

#[derive(Debug, Error)]
pub(crate) enum ImportError {
    #[error("invalid local image {input:?}: {reason}")]
    Invalid { input: String, reason: String },
    #[error("invalid local image {input:?}")]
    Reference {
        input: String,
        #[source]
        source: ReferenceError,
    },
    #[error("cannot read the proxmox storage config {path}")]
    StorageConfig {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{input:?} names storage {storage:?}, which has no directory in the proxmox storage config (known: {known})")]
    UnknownStorage {
        input: String,
        storage: String,
        known: String,
    },
    #[error("no template {wanted} for {input:?} in {dir} (available: {available})")]
    TemplateNotFound {
        input: String,
        wanted: String,
        dir: PathBuf,
        available: String,
    },
    #[error("importing {input:?}: {op} {path} failed")]
    Io {
        input: String,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("importing {input:?}: {what} has an invalid digest {digest:?}")]
    BadDigest {
        input: String,
        what: &'static str,
        digest: String,
        #[source]
        source: ContentError,
    },
    #[error(
        "importing {input:?}: {what} {expected} does not match its content (sha256 is {computed})"
    )]
    DigestMismatch {
        input: String,
        what: &'static str,
        expected: String,
        computed: String,
    },
    #[error(
        "importing {input:?}: {what} {digest} is {actual} bytes, its descriptor says {expected}"
    )]
    SizeMismatch {
        input: String,
        what: &'static str,
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("importing {input:?}: {what} {digest} is larger than the {limit}-byte limit")]
    TooLarge {
        input: String,
        what: &'static str,
        digest: String,
        limit: u64,
    },
    #[error("{input:?} has no blob {digest}")]
    MissingBlob { input: String, digest: String },
    #[error("importing {input:?}: {what} is not valid")]
    Json {
        input: String,
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{input:?} has no image named {wanted:?} (available: {available})")]
    NoSuchImage {
        input: String,
        wanted: String,
        available: String,
    },
    #[error("{input:?} holds several images; add :<name> to pick one (available: {available})")]
    Ambiguous { input: String, available: String },
    #[error("{input:?} has no image for {platform} (available: {available})")]
    NoPlatform {
        input: String,
        platform: String,
        available: String,
    },
    #[error("importing {input:?}: unsupported {what} media type {media_type:?}")]
    Unsupported {
        input: String,
        what: &'static str,
        media_type: String,
    },
    #[error("importing {input:?}: the config lists {diff_ids} diff ids but the manifest {layers} layers")]
    LayerCount {
        input: String,
        diff_ids: usize,
        layers: usize,
    },
    #[error("importing {input:?}: committing layer {chain_id} failed")]
    Snapshot {
        input: String,
        chain_id: String,
        // Boxed: unpack errors are large and would bloat every Result here.
        #[source]
        source: Box<SnapshotError>,
    },
}

/// The input an import works on, so error sites need not repeat it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ctx<'a>(pub &'a str);

impl Ctx<'_> {
    pub(super) fn invalid(self, reason: impl Into<String>) -> ImportError {
        ImportError::Invalid {
            input: self.0.to_owned(),
            reason: reason.into(),
        }
    }

    /// `map_err` helper for an I/O failure on `path`.
    pub(super) fn io(
        self,
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> ImportError {
        let input = self.0.to_owned();
        let path = path.into();
        move |source| ImportError::Io {
            input,
            op,
            path,
            source,
        }
    }

    pub(super) fn json(
        self,
        what: impl Into<String>,
    ) -> impl FnOnce(serde_json::Error) -> ImportError {
        let input = self.0.to_owned();
        let what = what.into();
        move |source| ImportError::Json {
            input,
            what,
            source,
        }
    }
}
