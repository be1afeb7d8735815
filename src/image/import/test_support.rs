//! Fixtures for import tests: template tarballs in each compression, and
//! OCI image layouts written by hand, byte for byte as the spec lays them
//! out, so the importer is tested against the format rather than against
//! another tool's output.

use std::io::Write;
use std::path::PathBuf;

use serde_json::json;

use crate::image::content::{ContentStore, Digest};
use crate::image::registry::platform::Platform;
use crate::snapshot::{BackendKind, Snapshots};

#[derive(Debug, Clone, Copy)]
pub(super) enum Codec {
    Gzip,
    Zstd,
    Xz,
}

pub(super) fn compress(data: &[u8], codec: Codec) -> Vec<u8> {
    match codec {
        Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Codec::Zstd => zstd::encode_all(data, 3).unwrap(),
        Codec::Xz => {
            let options = lzma_rust2::XzOptions::with_preset(1);
            let mut w = lzma_rust2::XzWriter::new(Vec::new(), options).unwrap();
            w.write_all(data).unwrap();
            w.finish().unwrap()
        }
    }
}

/// A tiny root filesystem shaped like a PVE template (`./`-prefixed).
pub(super) fn template_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, data: Option<&[u8]>| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match data {
            Some(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, data).unwrap();
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, path, &[][..]).unwrap();
            }
        }
    };
    add("./", 0o755, None);
    add("./etc/", 0o755, None);
    add(
        "./etc/os-release",
        0o644,
        Some(b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n"),
    );
    add("./sbin/", 0o755, None);
    add(
        "./sbin/init",
        0o755,
        Some(b"#!/bin/sh\nexec sleep infinity\n"),
    );
    b.into_inner().unwrap()
}

/// A content store and a dir-backend snapshotter (no mounts needed) in a
/// fresh temp dir.
pub(super) fn stores() -> (tempfile::TempDir, ContentStore, Snapshots) {
    let dir = tempfile::tempdir().unwrap();
    let content = ContentStore::new(dir.path().join("content")).unwrap();
    let snapshots = Snapshots::open(dir.path(), BackendKind::Dir, None).unwrap();
    (dir, content, snapshots)
}

/// Digests of an image written into a layout.
#[derive(Debug, Clone)]
pub(super) struct BuiltImage {
    pub config: String,
    pub manifest: String,
    pub manifest_size: usize,
    pub layer: String,
    pub diff_id: String,
}

pub(super) struct OciLayoutBuilder {
    dir: PathBuf,
    entries: Vec<serde_json::Value>,
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

impl OciLayoutBuilder {
    pub(super) fn new(dir: PathBuf) -> Self {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        OciLayoutBuilder {
            dir,
            entries: Vec::new(),
        }
    }

    fn blob(&self, data: &[u8]) -> String {
        let digest = Digest::of(data);
        std::fs::write(self.dir.join("blobs/sha256").join(digest.hex()), data).unwrap();
        digest.to_string()
    }

    /// Writes the blobs of a one-layer (gzip) image for `arch`, unlisted.
    pub(super) fn image(&mut self, tar: &[u8], arch: &str) -> BuiltImage {
        let layer_bytes = super::test_support::compress(tar, Codec::Gzip);
        let layer = self.blob(&layer_bytes);
        let diff_id = Digest::of(tar).to_string();
        let config_bytes = serde_json::to_vec(&json!({
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/sbin/init"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }))
        .unwrap();
        let config = self.blob(&config_bytes);
        let manifest_bytes = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config,
                "size": config_bytes.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer,
                "size": layer_bytes.len(),
            }],
        }))
        .unwrap();
        let manifest = self.blob(&manifest_bytes);
        BuiltImage {
            config,
            manifest,
            manifest_size: manifest_bytes.len(),
            layer,
            diff_id,
        }
    }

    fn list(&mut self, media_type: &str, digest: &str, size: usize, ref_name: Option<&str>) {
        let mut entry = json!({"mediaType": media_type, "digest": digest, "size": size});
        if let Some(name) = ref_name {
            entry["annotations"] = json!({"org.opencontainers.image.ref.name": name});
        }
        self.entries.push(entry);
    }

    /// An image for this host, listed in index.json.
    pub(super) fn add_image(&mut self, tar: &[u8], ref_name: Option<&str>) -> BuiltImage {
        let image = self.image(tar, &Platform::host().architecture);
        self.list(OCI_MANIFEST, &image.manifest, image.manifest_size, ref_name);
        image
    }

    /// A multi-platform image: a nested index over `(arch, image)` pairs.
    pub(super) fn add_platforms(&mut self, images: &[(&str, &BuiltImage)], ref_name: Option<&str>) {
        let manifests: Vec<_> = images
            .iter()
            .map(|(arch, image)| {
                json!({
                    "mediaType": OCI_MANIFEST,
                    "digest": image.manifest,
                    "size": image.manifest_size,
                    "platform": {"architecture": arch, "os": "linux"},
                })
            })
            .collect();
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        }))
        .unwrap();
        let digest = self.blob(&index);
        self.list(OCI_INDEX, &digest, index.len(), ref_name);
    }

    pub(super) fn finish(self) {
        std::fs::write(
            self.dir.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": self.entries,
        });
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }
}
