//! Pulling images from OCI/Docker registries into the content store.
//!
//! Requests are made with reqwest, one client per endpoint built with that
//! host's TLS settings ([`tls`]: CA roots, client certificate) and a
//! redirect policy that keeps registries off the node's own addresses
//! ([`redirect`]); oci-client supplies the types and errors. The 401 → `WWW-Authenticate` → token
//! dance is [`auth`]'s, manifests are fetched by [`manifest_get`] so their
//! size can be capped while they arrive. On top of it this module decides
//! *where* to pull from (mirrors in order, then the registry itself, see
//! [`endpoint`]; a mirror may be limited to content by digest), *what* to
//! pull (this node's platform out of an
//! index, see [`platform`]), and refuses anything it cannot verify or run.
//! Every byte lands in the [`ContentStore`](crate::image::content::ContentStore)
//! through a size- and digest-checked ingest, so a pull that returns `Ok`
//! has all its blobs verified on disk. A pull fails over to the next
//! endpoint on any error; blobs already fetched are kept and not fetched
//! again. Stall detection bounds each wait, not the whole pull; manifests
//! and configs have size caps ([`crate::image::limits`]).

mod auth;
pub(crate) mod endpoint;
mod error;
mod manifest;
mod manifest_get;
pub(crate) mod platform;
mod progress;
mod puller;
mod redirect;
mod settings;
mod stall;
pub(crate) mod tls;

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod live_tests;
#[cfg(test)]
mod test_http;

pub(crate) use error::PullError;
pub(crate) use puller::Puller;
pub(crate) use settings::{Credential, RegistrySettings};

/// A pulled image whose blobs are all verified in the content store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PulledImage {
    /// Digest of the top-level manifest or index the tag pointed to (what
    /// containerd records as repo digest).
    pub repo_digest: String,
    /// The platform image manifest actually used.
    pub manifest_digest: String,
    /// The image ID.
    pub config_digest: String,
    /// Raw config JSON (already in the content store too).
    pub config: Vec<u8>,
    /// In order, lowest first.
    pub layers: Vec<Layer>,
    /// Sum of config and (compressed) layer sizes.
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layer {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}
