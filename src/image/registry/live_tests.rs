//! Pulls from the real registry on 127.0.0.1:5000 (scripts/registry.sh).
//! Each test skips, loudly, when that registry is not running.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::platform::Platform;
use super::settings::MirrorSpec;
use super::test_http::{local_registry_up, request, LOCAL_REGISTRY};
use super::{PullError, PulledImage, Puller, RegistrySettings};
use crate::image::content::{ContentStore, Digest};
use crate::image::reference::Reference;

const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

macro_rules! require_registry {
    ($name:literal) => {
        if !local_registry_up().await {
            eprintln!(concat!(
                "skipping ",
                $name,
                ": no registry on 127.0.0.1:5000"
            ));
            return;
        }
    };
}

struct Fixture {
    _dir: tempfile::TempDir,
    content: Arc<ContentStore>,
    puller: Puller,
}

fn fixture(mirrors: &[(&str, &[&str])], fallback_to_upstream: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let content = Arc::new(ContentStore::new(dir.path()).unwrap());
    let settings = RegistrySettings {
        mirrors: mirrors
            .iter()
            .map(|(host, list)| {
                (
                    host.to_string(),
                    list.iter().map(|m| MirrorSpec::full(*m)).collect(),
                )
            })
            .collect(),
        fallback_to_upstream,
        stall_timeout: Duration::from_secs(20),
        ..RegistrySettings::default()
    };
    let puller = Puller::new(settings, content.clone());
    Fixture {
        _dir: dir,
        content,
        puller,
    }
}

fn k8s_mirror() -> Fixture {
    fixture(
        &[("registry.k8s.io", &["127.0.0.1:5000/registry.k8s.io"])],
        false,
    )
}

/// The manifest as the registry serves it, fetched without the code under
/// test: (digest, size, body).
async fn registry_manifest(repo: &str, tag: &str) -> (String, usize, Vec<u8>) {
    let path = format!("/v2/{repo}/manifests/{tag}");
    let resp = request(
        LOCAL_REGISTRY,
        "GET",
        &path,
        &[("Accept", MANIFEST_TYPES)],
        &[],
    )
    .await
    .expect("registry answers");
    assert_eq!(resp.status, 200, "GET {path}");
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&resp.body)));
    assert_eq!(resp.headers.get("docker-content-digest"), Some(&digest));
    (digest, resp.body.len(), resp.body)
}

/// Every blob the image names is in the store and hashes to its name.
fn assert_verified(content: &ContentStore, pulled: &PulledImage) {
    let blobs =
        std::iter::once(&pulled.config_digest).chain(pulled.layers.iter().map(|l| &l.digest));
    for digest in blobs {
        let data = std::fs::read(content.path(digest).unwrap()).expect("blob stored");
        assert_eq!(&Digest::of(&data).to_string(), digest);
    }
    for layer in &pulled.layers {
        let len = std::fs::metadata(content.path(&layer.digest).unwrap())
            .unwrap()
            .len();
        assert_eq!(len, layer.size);
    }
    assert_eq!(Digest::of(&pulled.config).to_string(), pulled.config_digest);
    let config_len = pulled.config.len() as u64;
    assert_eq!(
        pulled.size,
        config_len + pulled.layers.iter().map(|l| l.size).sum::<u64>()
    );
}

#[tokio::test]
async fn pulls_through_mirror_with_verified_blobs() {
    require_registry!("pulls_through_mirror_with_verified_blobs");
    let f = k8s_mirror();
    let reference = Reference::parse(BUSYBOX).unwrap();
    let pulled = f.puller.pull(&reference, None).await.unwrap();

    let (digest, _, body) =
        registry_manifest("registry.k8s.io/e2e-test-images/busybox", "1.29-2").await;
    assert_eq!(pulled.repo_digest, digest);
    assert_eq!(pulled.manifest_digest, digest, "single-platform image");
    let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(manifest["config"]["digest"], pulled.config_digest.as_str());
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        pulled.layers.len()
    );
    assert!(!pulled.layers.is_empty());
    assert_verified(&f.content, &pulled);
    assert_eq!(
        f.content
            .read(&digest, crate::image::limits::MANIFEST_MAX)
            .await
            .unwrap(),
        body,
        "manifest kept"
    );
    assert!(std::fs::read_dir(f.content.root().join("ingest"))
        .unwrap()
        .next()
        .is_none());

    // A second pull finds every blob present and gives the same answer.
    let again = f.puller.pull(&reference, None).await.unwrap();
    assert_eq!(again, pulled);
}

#[tokio::test]
async fn pulls_by_digest() {
    require_registry!("pulls_by_digest");
    let (digest, _, _) =
        registry_manifest("registry.k8s.io/e2e-test-images/busybox", "1.29-2").await;
    let f = k8s_mirror();
    let by_digest =
        Reference::parse(&format!("registry.k8s.io/e2e-test-images/busybox@{digest}")).unwrap();
    let pulled = f.puller.pull(&by_digest, None).await.unwrap();
    assert_eq!(pulled.repo_digest, digest);
    assert_verified(&f.content, &pulled);

    // Tag and digest together: the digest decides.
    let both = Reference::parse(&format!("{BUSYBOX}@{digest}")).unwrap();
    assert_eq!(
        f.puller.pull(&both, None).await.unwrap().repo_digest,
        digest
    );

    let absent = Digest::of(b"no such manifest");
    let missing =
        Reference::parse(&format!("registry.k8s.io/e2e-test-images/busybox@{absent}")).unwrap();
    let err = f.puller.pull(&missing, None).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn missing_tag_and_repository_are_not_found() {
    require_registry!("missing_tag_and_repository_are_not_found");
    let f = fixture(&[], true);
    for image in [
        "127.0.0.1:5000/pvecri-test/busybox:no-such-tag",
        "127.0.0.1:5000/pvecri-test/no-such-repo:latest",
    ] {
        let err = f
            .puller
            .pull(&Reference::parse(image).unwrap(), None)
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{image}: {err:?}");
        assert!(matches!(err, PullError::NotFound { .. }));
        assert!(err.to_string().contains(image), "{err}");
    }
}

#[tokio::test]
async fn dead_mirror_is_skipped() {
    require_registry!("dead_mirror_is_skipped");
    // Port 1 on loopback refuses connections.
    let f = fixture(
        &[(
            "registry.k8s.io",
            &[
                "127.0.0.1:1/registry.k8s.io",
                "127.0.0.1:5000/registry.k8s.io",
            ],
        )],
        false,
    );
    let pulled = f
        .puller
        .pull(&Reference::parse(BUSYBOX).unwrap(), None)
        .await
        .unwrap();
    assert_verified(&f.content, &pulled);
}

#[tokio::test]
async fn error_lists_every_endpoint_tried() {
    require_registry!("error_lists_every_endpoint_tried");
    // Upstream here is the local registry itself, so fallback stays offline.
    let f = fixture(&[("127.0.0.1:5000", &["127.0.0.1:1/cache"])], true);
    let reference = Reference::parse("127.0.0.1:5000/pvecri-test/busybox:no-such-tag").unwrap();
    let err = f.puller.pull(&reference, None).await.unwrap_err();
    let PullError::AllEndpointsFailed { attempts, .. } = &err else {
        panic!("unexpected {err:?}");
    };
    assert!(
        matches!(attempts[0], PullError::Network { .. }),
        "{:?}",
        attempts[0]
    );
    assert!(
        matches!(attempts[1], PullError::NotFound { .. }),
        "{:?}",
        attempts[1]
    );
    let text = err.to_string();
    assert!(
        text.contains("http://127.0.0.1:1/cache/pvecri-test/busybox"),
        "{text}"
    );
    assert!(
        text.contains("http://127.0.0.1:5000/pvecri-test/busybox"),
        "{text}"
    );
    // One endpoint lacks the image, the other was unreachable: not proof
    // that the image does not exist.
    assert!(!err.is_not_found());
}

/// Pushes an OCI index (tag `tag` in pvecri-test/busybox) whose entries
/// all point at that repository's `latest` manifest; returns the index
/// digest and the child manifest digest.
async fn push_index(tag: &str, platforms: &[Platform]) -> (String, String) {
    let repo = "pvecri-test/busybox";
    let (child, size, _) = registry_manifest(repo, "latest").await;
    let entries: Vec<serde_json::Value> = platforms
        .iter()
        .map(|p| {
            let mut platform = serde_json::json!({"os": p.os, "architecture": p.architecture});
            if let Some(v) = &p.variant {
                platform["variant"] = v.clone().into();
            }
            serde_json::json!({
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "digest": child, "size": size, "platform": platform,
            })
        })
        .collect();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .unwrap();
    let path = format!("/v2/{repo}/manifests/{tag}");
    let content_type = [("Content-Type", "application/vnd.oci.image.index.v1+json")];
    let resp = request(LOCAL_REGISTRY, "PUT", &path, &content_type, &index)
        .await
        .expect("registry answers");
    assert_eq!(
        resp.status,
        201,
        "PUT {path}: {}",
        String::from_utf8_lossy(&resp.body)
    );
    (Digest::of(&index).to_string(), child)
}

#[tokio::test]
async fn index_resolves_to_this_node_platform() {
    require_registry!("index_resolves_to_this_node_platform");
    let foreign = Platform {
        os: "linux".into(),
        architecture: "s390x".into(),
        variant: None,
    };
    let (index, child) =
        push_index("pvecri-puller-index", &[foreign.clone(), Platform::host()]).await;
    let f = fixture(&[], true);
    let pulled = f
        .puller
        .pull(
            &Reference::parse("127.0.0.1:5000/pvecri-test/busybox:pvecri-puller-index").unwrap(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(pulled.repo_digest, index);
    assert_eq!(pulled.manifest_digest, child);
    assert_ne!(pulled.repo_digest, pulled.manifest_digest);
    assert!(f.content.has(&index) && f.content.has(&child));
    assert_verified(&f.content, &pulled);

    push_index("pvecri-puller-foreign", &[foreign]).await;
    let err = f
        .puller
        .pull(
            &Reference::parse("127.0.0.1:5000/pvecri-test/busybox:pvecri-puller-foreign").unwrap(),
            None,
        )
        .await
        .unwrap_err();
    let PullError::NoMatchingPlatform {
        available, wanted, ..
    } = &err
    else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(available, &vec!["linux/s390x".to_owned()]);
    assert_eq!(wanted, &Platform::host().to_string());
    assert!(err.to_string().contains("available: linux/s390x"), "{err}");
}

#[tokio::test]
async fn docker_hub_short_name_through_mirror() {
    require_registry!("docker_hub_short_name_through_mirror");
    let dir = tempfile::tempdir().unwrap();
    let content = Arc::new(ContentStore::new(dir.path()).unwrap());
    let settings = RegistrySettings {
        mirrors: HashMap::from([(
            "docker.io".to_owned(),
            vec![MirrorSpec::full("127.0.0.1:5000/docker.io")],
        )]),
        fallback_to_upstream: false,
        max_concurrent_downloads: 1,
        ..RegistrySettings::default()
    };
    let puller = Puller::new(settings, content.clone());
    let pulled = puller
        .pull(&Reference::parse("busybox:1.36").unwrap(), None)
        .await
        .unwrap();
    assert_verified(&content, &pulled);
}
