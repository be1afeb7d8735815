//! Recognising manifests and deciding whether we can run what they describe.
//!
//! Parsing is done here rather than by oci-client so that an obsolete or
//! foreign document (Docker schema 1, a Helm chart, an encrypted layer)
//! fails with a message naming its media type instead of a serde error.

use oci_client::manifest::{
    OciDescriptor, OciImageIndex, OciImageManifest, IMAGE_CONFIG_MEDIA_TYPE,
    IMAGE_DOCKER_CONFIG_MEDIA_TYPE, IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE,
    IMAGE_DOCKER_LAYER_TAR_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE,
    IMAGE_LAYER_NONDISTRIBUTABLE_GZIP_MEDIA_TYPE, IMAGE_LAYER_NONDISTRIBUTABLE_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use serde::de::IgnoredAny;
use serde::Deserialize;
use thiserror::Error;

use crate::image::content::Digest;

/// What we ask registries for. Schema 1 is left out on purpose: a registry
/// that can convert will then send schema 2.
pub(super) const ACCEPTED: &[&str] = &[
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
];

const SCHEMA1_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Covers the signed variant (`v1+prettyjws`) too.
const SCHEMA1_MEDIA_TYPE_PREFIX: &str = "application/vnd.docker.distribution.manifest.v1+";

/// Layer formats the unpacker handles (tar, gzip, zstd). Foreign and
/// non-distributable layers are ordinary tarballs fetched from elsewhere.
const LAYER_MEDIA_TYPES: &[&str] = &[
    IMAGE_LAYER_MEDIA_TYPE,
    IMAGE_LAYER_GZIP_MEDIA_TYPE,
    "application/vnd.oci.image.layer.v1.tar+zstd",
    IMAGE_LAYER_NONDISTRIBUTABLE_MEDIA_TYPE,
    IMAGE_LAYER_NONDISTRIBUTABLE_GZIP_MEDIA_TYPE,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    IMAGE_DOCKER_LAYER_TAR_MEDIA_TYPE,
    IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

const CONFIG_MEDIA_TYPES: &[&str] = &[IMAGE_CONFIG_MEDIA_TYPE, IMAGE_DOCKER_CONFIG_MEDIA_TYPE];

#[derive(Debug, Error)]
pub(crate) enum ManifestError {
    #[error("manifest is not valid JSON")]
    Json(#[source] serde_json::Error),
    #[error(
        "unsupported {what} media type {media_type:?}{}",
        hint(what, media_type)
    )]
    Unsupported {
        what: &'static str,
        media_type: String,
    },
    #[error("{what} has invalid digest {digest:?}")]
    BadDigest { what: &'static str, digest: String },
    #[error("{what} {digest} has negative size {size}")]
    BadSize {
        what: &'static str,
        digest: String,
        size: i64,
    },
    #[error("an image index points at another index ({digest})")]
    NestedIndex { digest: String },
}

pub(super) enum Manifest {
    Image(Box<OciImageManifest>),
    Index(OciImageIndex),
}

/// Just enough structure to tell the document kinds apart; `mediaType` is
/// optional in OCI, so the presence of `manifests` or `config` decides.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<i64>,
    media_type: Option<String>,
    manifests: Option<IgnoredAny>,
    config: Option<IgnoredAny>,
}

/// Advice for the unsupported types people actually run into; derived
/// from the type so errors need not carry it.
pub(super) fn hint(what: &str, media_type: &str) -> &'static str {
    if media_type.starts_with(SCHEMA1_MEDIA_TYPE_PREFIX) {
        " (Docker schema 1 is obsolete; re-push the image with a current client)"
    } else if what == "config" {
        " (not a container image)"
    } else if media_type.is_empty() {
        " (neither an image manifest nor an index)"
    } else {
        ""
    }
}

pub(super) fn is_image_manifest(media_type: &str) -> bool {
    media_type == OCI_IMAGE_MEDIA_TYPE || media_type == IMAGE_MANIFEST_MEDIA_TYPE
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_IMAGE_INDEX_MEDIA_TYPE || media_type == IMAGE_MANIFEST_LIST_MEDIA_TYPE
}

pub(super) fn parse(body: &[u8]) -> Result<Manifest, ManifestError> {
    let probe: Probe = serde_json::from_slice(body).map_err(ManifestError::Json)?;
    if probe.schema_version == Some(1) {
        return Err(ManifestError::Unsupported {
            what: "manifest",
            media_type: probe
                .media_type
                .unwrap_or_else(|| SCHEMA1_MEDIA_TYPE.to_owned()),
        });
    }
    let index = match probe.media_type.as_deref() {
        Some(t) if is_index(t) => true,
        Some(t) if is_image_manifest(t) => false,
        Some(other) => {
            return Err(ManifestError::Unsupported {
                what: "manifest",
                media_type: other.to_owned(),
            })
        }
        None if probe.manifests.is_some() => true,
        None if probe.config.is_some() => false,
        None => {
            return Err(ManifestError::Unsupported {
                what: "manifest",
                media_type: String::new(),
            })
        }
    };
    if index {
        serde_json::from_slice(body)
            .map(Manifest::Index)
            .map_err(ManifestError::Json)
    } else {
        serde_json::from_slice(body)
            .map(|m| Manifest::Image(Box::new(m)))
            .map_err(ManifestError::Json)
    }
}

/// Checks that the image is a container image we can unpack, before any
/// blob is downloaded.
pub(super) fn check_image(manifest: &OciImageManifest) -> Result<(), ManifestError> {
    check_descriptor("config", &manifest.config)?;
    if !CONFIG_MEDIA_TYPES.contains(&manifest.config.media_type.as_str()) {
        return Err(ManifestError::Unsupported {
            what: "config",
            media_type: manifest.config.media_type.clone(),
        });
    }
    for layer in &manifest.layers {
        check_descriptor("layer", layer)?;
        if !LAYER_MEDIA_TYPES.contains(&layer.media_type.as_str()) {
            return Err(ManifestError::Unsupported {
                what: "layer",
                media_type: layer.media_type.clone(),
            });
        }
    }
    Ok(())
}

/// Index entries point at manifests; they are checked like descriptors.
pub(super) fn check_entry(digest: &str, size: i64, media_type: &str) -> Result<(), ManifestError> {
    if is_index(media_type) {
        return Err(ManifestError::NestedIndex {
            digest: digest.to_owned(),
        });
    }
    check_digest_and_size("manifest", digest, size)
}

fn check_descriptor(what: &'static str, d: &OciDescriptor) -> Result<(), ManifestError> {
    check_digest_and_size(what, &d.digest, d.size)
}

fn check_digest_and_size(what: &'static str, digest: &str, size: i64) -> Result<(), ManifestError> {
    Digest::parse(digest).map_err(|_| ManifestError::BadDigest {
        what,
        digest: digest.to_owned(),
    })?;
    if size < 0 {
        return Err(ManifestError::BadSize {
            what,
            digest: digest.to_owned(),
            size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:3143d442ef805e7869d02e185ac2e17d829915689eff68ddc389135c5e2c235c";

    fn image(config_type: &str, layer_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
               "config":{{"mediaType":"{config_type}","size":381,"digest":"{D}"}},
               "layers":[{{"mediaType":"{layer_type}","size":1652514,"digest":"{D}"}}]}}"#
        )
    }

    #[test]
    fn recognises_docker_and_oci_documents() {
        let docker = image(
            IMAGE_DOCKER_CONFIG_MEDIA_TYPE,
            IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE,
        );
        let Manifest::Image(m) = parse(docker.as_bytes()).unwrap() else {
            panic!("not an image");
        };
        check_image(&m).unwrap();

        // OCI without mediaType: the shape decides.
        let bare_index = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse(bare_index.as_bytes()),
            Ok(Manifest::Index(_))
        ));
        let bare_image = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{IMAGE_CONFIG_MEDIA_TYPE}","size":2,"digest":"{D}"}},"layers":[]}}"#
        );
        assert!(matches!(
            parse(bare_image.as_bytes()),
            Ok(Manifest::Image(_))
        ));
    }

    #[test]
    fn schema1_is_refused_with_a_hint() {
        let schema1 =
            r#"{"schemaVersion":1,"name":"library/busybox","tag":"latest","fsLayers":[]}"#;
        let err = parse(schema1.as_bytes()).err().unwrap();
        assert!(matches!(
            err,
            ManifestError::Unsupported {
                what: "manifest",
                ..
            }
        ));
        assert!(err.to_string().contains("schema 1"), "{err}");
    }

    #[test]
    fn foreign_artifacts_and_formats_are_refused() {
        let helm = image(
            "application/vnd.cncf.helm.config.v1+json",
            IMAGE_LAYER_GZIP_MEDIA_TYPE,
        );
        let Manifest::Image(m) = parse(helm.as_bytes()).unwrap() else {
            panic!()
        };
        let err = check_image(&m).unwrap_err();
        assert!(err.to_string().contains("helm"), "{err}");

        let encrypted = image(
            IMAGE_CONFIG_MEDIA_TYPE,
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
        );
        let Manifest::Image(m) = parse(encrypted.as_bytes()).unwrap() else {
            panic!()
        };
        assert!(matches!(
            check_image(&m),
            Err(ManifestError::Unsupported { what: "layer", .. })
        ));

        let odd = r#"{"schemaVersion":2,"mediaType":"application/vnd.example+json"}"#;
        assert!(matches!(
            parse(odd.as_bytes()),
            Err(ManifestError::Unsupported { .. })
        ));
        assert!(matches!(parse(b"not json"), Err(ManifestError::Json(_))));
    }

    #[test]
    fn bad_descriptors_are_refused() {
        let bad = image(IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE).replace(
            &format!(r#""size":381,"digest":"{D}""#),
            r#""size":381,"digest":"sha256:../../etc/passwd""#,
        );
        let Manifest::Image(m) = parse(bad.as_bytes()).unwrap() else {
            panic!()
        };
        assert!(matches!(
            check_image(&m),
            Err(ManifestError::BadDigest { .. })
        ));
        assert!(matches!(
            check_entry(D, -1, OCI_IMAGE_MEDIA_TYPE),
            Err(ManifestError::BadSize { .. })
        ));
        assert!(matches!(
            check_entry(D, 10, OCI_IMAGE_INDEX_MEDIA_TYPE),
            Err(ManifestError::NestedIndex { .. })
        ));
    }
}
