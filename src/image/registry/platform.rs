//! Choosing this node's image from a multi-platform index.

use std::fmt;

use oci_client::manifest::ImageIndexEntry;

use super::manifest::is_image_manifest;

/// An OS/architecture/variant triple in Go's naming, as indexes use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this binary runs on. Only linux is meaningful for LXC.
    pub(crate) fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "x86" => ("386", None),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform {
            os: "linux".to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Whether an index entry for `os`/`architecture`/`variant` runs here.
    /// An absent variant means the architecture's baseline (`v8` for arm64,
    /// `v1` for amd64); higher amd64 levels are not assumed to be available.
    fn accepts(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        os == self.os
            && architecture == self.architecture
            && baseline(architecture, variant)
                == baseline(&self.architecture, self.variant.as_deref())
    }
}

fn baseline<'a>(architecture: &str, variant: Option<&'a str>) -> Option<&'a str> {
    match (architecture, variant) {
        ("arm64", Some("v8")) | ("amd64", Some("v1")) => None,
        (_, variant) => variant,
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// The first image manifest in `entries` that runs on `want`, or the
/// platforms the index does offer.
pub(crate) fn select_manifest<'a>(
    entries: &'a [ImageIndexEntry],
    want: &Platform,
) -> Result<&'a ImageIndexEntry, Vec<String>> {
    entries
        .iter()
        .find(|entry| {
            is_image_manifest(&entry.media_type)
                && entry.platform.as_ref().is_some_and(|p| {
                    want.accepts(
                        &p.os.to_string(),
                        &p.architecture.to_string(),
                        p.variant.as_deref(),
                    )
                })
        })
        .ok_or_else(|| {
            entries
                .iter()
                .map(|entry| match &entry.platform {
                    Some(p) => Platform {
                        os: p.os.to_string(),
                        architecture: p.architecture.to_string(),
                        variant: p.variant.clone(),
                    }
                    .to_string(),
                    None => "unspecified".to_owned(),
                })
                .collect()
        })
}

#[cfg(test)]
mod tests {
    use oci_client::manifest::OciImageIndex;

    use super::*;

    /// Shaped like Docker Hub's busybox index, with a BuildKit attestation
    /// manifest (platform unknown/unknown) as real indexes carry.
    const INDEX: &str = r#"{
      "schemaVersion": 2,
      "mediaType": "application/vnd.oci.image.index.v1+json",
      "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 610,
         "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
         "platform": {"architecture": "amd64", "os": "linux", "variant": "v3"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 610,
         "digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222",
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 610,
         "digest": "sha256:3333333333333333333333333333333333333333333333333333333333333333",
         "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 610,
         "digest": "sha256:4444444444444444444444444444444444444444444444444444444444444444",
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 610,
         "digest": "sha256:5555555555555555555555555555555555555555555555555555555555555555",
         "platform": {"architecture": "s390x", "os": "linux"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 566,
         "digest": "sha256:6666666666666666666666666666666666666666666666666666666666666666",
         "platform": {"architecture": "unknown", "os": "unknown"},
         "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}
      ]
    }"#;

    /// Docker's manifest-list flavour, Windows first and arm64 without variant.
    const DOCKER_LIST: &str = r#"{
      "schemaVersion": 2,
      "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
      "manifests": [
        {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 527,
         "digest": "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
         "platform": {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.5458"}},
        {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 527,
         "digest": "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
         "platform": {"architecture": "arm64", "os": "linux"}},
        {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 527,
         "digest": "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
         "platform": {"architecture": "amd64", "os": "linux"}}
      ]
    }"#;

    fn platform(arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
        }
    }

    fn pick(index: &str, want: &Platform) -> Result<String, Vec<String>> {
        let index: OciImageIndex = serde_json::from_str(index).unwrap();
        select_manifest(&index.manifests, want).map(|e| e.digest[7..11].to_owned())
    }

    #[test]
    fn picks_baseline_amd64_not_v3() {
        assert_eq!(pick(INDEX, &platform("amd64", None)).unwrap(), "2222");
        assert_eq!(pick(DOCKER_LIST, &platform("amd64", None)).unwrap(), "cccc");
    }

    #[test]
    fn arm64_v8_matches_with_or_without_variant() {
        let want = platform("arm64", Some("v8"));
        assert_eq!(pick(INDEX, &want).unwrap(), "4444");
        assert_eq!(pick(DOCKER_LIST, &want).unwrap(), "bbbb");
    }

    #[test]
    fn exact_variants_match() {
        assert_eq!(pick(INDEX, &platform("arm", Some("v7"))).unwrap(), "3333");
        assert!(pick(INDEX, &platform("arm", Some("v6"))).is_err());
    }

    #[test]
    fn no_match_lists_what_is_available() {
        let available = pick(DOCKER_LIST, &platform("riscv64", None)).unwrap_err();
        assert_eq!(
            available,
            vec!["windows/amd64", "linux/arm64", "linux/amd64"]
        );
        let available = pick(INDEX, &platform("ppc64le", None)).unwrap_err();
        assert!(available.contains(&"linux/arm/v7".to_owned()));
        assert!(available.contains(&"unknown/unknown".to_owned()));
    }

    #[test]
    fn host_platform_is_linux() {
        let host = Platform::host();
        assert_eq!(host.os, "linux");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(host.to_string(), "linux/amd64");
        }
        if cfg!(target_arch = "aarch64") {
            assert_eq!(host.to_string(), "linux/arm64/v8");
        }
    }
}
