//! Size caps on what an image may make the daemon hold in memory.
//!
//! Manifests, indexes and configs are JSON documents the daemon reads whole
//! and parses, so an untrusted registry or image must not decide how big
//! they are. The caps are far above anything real (a manifest with a
//! thousand layers is about 200 KiB; the largest configs, with long build
//! histories, a few hundred KiB) and match containerd's order of
//! magnitude. docs/security.md "Limits" lists them with what happens past
//! each one.

/// Image manifests and indexes, fetched or imported.
pub(crate) const MANIFEST_MAX: u64 = 4 << 20;

/// Image config blobs.
pub(crate) const CONFIG_MAX: u64 = 8 << 20;

/// Text files of an image read by the daemon itself (`/etc/passwd`,
/// `/etc/group`).
pub(crate) const IMAGE_TEXT_FILE_MAX: u64 = 4 << 20;

/// Registry error bodies (4xx/5xx), read only to classify the failure.
pub(crate) const ERROR_BODY_MAX: u64 = 64 << 10;

/// A cosign simple signing payload (a few hundred bytes in practice);
/// a larger declared size is refused before the blob is requested.
pub(crate) const SIGNATURE_PAYLOAD_MAX: u64 = 64 << 10;

/// Signature layers of one `.sig` manifest tried (each re-signing appends
/// one); later ones are ignored.
pub(crate) const SIGNATURE_LAYERS_MAX: usize = 16;
