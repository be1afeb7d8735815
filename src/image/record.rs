//! The image record kept in the state store.

use serde::{Deserialize, Serialize};

use super::spec::RunConfig;
use crate::store::Record;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LayerRecord {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}

/// One image, keyed by its ID (the config digest). Names (tags and
/// digests) point at exactly one image each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// Compressed size: config plus layers, as containerd reports it.
    pub size: u64,
    pub layers: Vec<LayerRecord>,
    /// Snapshot chain IDs, lowest layer first.
    pub chain_ids: Vec<String>,
    pub run_config: RunConfig,
    /// Digest of the platform manifest that was unpacked.
    pub manifest_digest: String,
    #[serde(default)]
    pub pinned: bool,
    /// Where the image came from when not from a registry (`pve-template:...`).
    #[serde(default)]
    pub source: Option<String>,
}

impl Record for ImageRecord {
    const TABLE: &'static str = "images";
    fn key(&self) -> String {
        self.id.clone()
    }
}

impl ImageRecord {
    /// The top layer a container root is built on.
    pub(crate) fn top_layer(&self) -> Option<&str> {
        self.chain_ids.last().map(String::as_str)
    }
}
