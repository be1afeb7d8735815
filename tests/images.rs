//! ImageService against the real daemon and the real local registry.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use common::{
    image_spec as spec, image_status as status, mirror_config, require_registry, require_root,
    AuthRegistry, Daemon,
};
use pvecri::cri::v1;

const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";

fn ready(test: &str) -> bool {
    require_root(test) && require_registry(test)
}

async fn pull(d: &Daemon, image: &str) -> Result<String, tonic::Status> {
    common::try_pull(d, image, None).await
}

async fn list(d: &Daemon) -> Vec<v1::Image> {
    d.client()
        .await
        .image
        .list_images(v1::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images
}

async fn remove(d: &Daemon, image: &str) {
    d.client()
        .await
        .image
        .remove_image(v1::RemoveImageRequest { image: spec(image) })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_by_tag_and_digest_then_remove() {
    if !ready("pull_by_tag_and_digest_then_remove") {
        return;
    }
    let d = Daemon::start(&mirror_config());
    let id = pull(&d, BUSYBOX).await.unwrap();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let img = status(&d, BUSYBOX)
        .await
        .expect("pulled image has a status");
    assert_eq!(img.id, id);
    assert_eq!(img.repo_tags, vec![BUSYBOX.to_owned()]);
    assert_eq!(img.repo_digests.len(), 1);
    assert!(img.size > 0);
    // Every name resolves to the same image.
    let by_digest = img.repo_digests[0].clone();
    assert_eq!(status(&d, &by_digest).await.unwrap().id, id);
    assert_eq!(status(&d, &id).await.unwrap().id, id);
    assert_eq!(status(&d, &id[7..19]).await.unwrap().id, id);
    // Pull by digest gives the same image and adds no tag.
    assert_eq!(pull(&d, &by_digest).await.unwrap(), id);
    assert_eq!(
        status(&d, &id).await.unwrap().repo_tags,
        vec![BUSYBOX.to_owned()]
    );

    let fs = d
        .client()
        .await
        .image
        .image_fs_info(v1::ImageFsInfoRequest::default())
        .await
        .unwrap()
        .into_inner();
    let images_fs = &fs.image_filesystems[0];
    assert!(images_fs.used_bytes.unwrap().value > 0);
    assert!(images_fs
        .fs_id
        .as_ref()
        .unwrap()
        .mountpoint
        .starts_with(d.dir.path().to_str().unwrap()));

    remove(&d, BUSYBOX).await;
    assert!(status(&d, &id).await.is_none());
    assert!(list(&d).await.is_empty());
    // Removal is idempotent.
    remove(&d, BUSYBOX).await;
    remove(
        &d,
        "sha256:0000000000000000000000000000000000000000000000000000000000000000",
    )
    .await;
    // Layers and blobs went with the image.
    let layers = d.dir.path().join("state/snapshots/overlay/layers");
    assert_eq!(std::fs::read_dir(layers).unwrap().count(), 0);
    let blobs = d.dir.path().join("state/content/blobs/sha256");
    assert_eq!(std::fs::read_dir(blobs).map(|r| r.count()).unwrap_or(0), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_references_get_clear_errors_and_change_nothing() {
    if !ready("bad_references_get_clear_errors_and_change_nothing") {
        return;
    }
    let d = Daemon::start(&mirror_config());
    pull(&d, BUSYBOX).await.unwrap();
    let before = list(&d).await;

    let err = pull(&d, "").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("image"), "{}", err.message());

    let err = pull(&d, "UPPER/case:tag").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("UPPER/case:tag"),
        "{}",
        err.message()
    );

    let err = pull(&d, "registry.k8s.io/e2e-test-images/busybox:no-such-tag")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{}", err.message());
    assert!(err.message().contains("no-such-tag"), "{}", err.message());

    let err = pull(&d, "registry.k8s.io/e2e-test-images/busybox@sha256:zz")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    assert_eq!(list(&d).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_of_one_image_download_it_once() {
    if !ready("concurrent_pulls_of_one_image_download_it_once") {
        return;
    }
    let d = Daemon::start(&mirror_config());
    let image = "registry.k8s.io/e2e-test-images/nginx:1.14-2";
    let pulls = (0..6).map(|_| pull(&d, image));
    let ids = futures_util::future::join_all(pulls).await;
    let first = ids[0].as_ref().unwrap().clone();
    for id in &ids {
        assert_eq!(id.as_ref().unwrap(), &first);
    }
    let downloads = d
        .log()
        .lines()
        .filter(|l| {
            l.contains("pvecri::image::registry")
                && l.contains("image pulled")
                && l.contains("nginx")
        })
        .count();
    assert_eq!(downloads, 1, "{}", d.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_survive_a_daemon_restart() {
    if !ready("images_survive_a_daemon_restart") {
        return;
    }
    let mut d = Daemon::start(&mirror_config());
    let id = pull(&d, BUSYBOX).await.unwrap();
    d.restart();
    let img = status(&d, BUSYBOX)
        .await
        .expect("image still known after restart");
    assert_eq!(img.id, id);
}

/// A second registry that requires basic auth (`common::AuthRegistry`),
/// holding a copy of busybox as `private/busybox:1`.
fn start_auth_registry() -> Option<AuthRegistry> {
    let reg = AuthRegistry::start()?;
    let copy = Command::new("crane")
        .args([
            "copy",
            "--insecure",
            &format!("127.0.0.1:5000/{BUSYBOX}"),
            &format!("{}/private/busybox:1", reg.addr),
        ])
        .env("DOCKER_CONFIG", reg.dir.path())
        .output()
        .expect("crane (scripts/install-cri-tools.sh)");
    assert!(
        copy.status.success(),
        "crane copy: {:?} {}",
        copy.status.signal(),
        String::from_utf8_lossy(&copy.stderr)
    );
    Some(reg)
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_from_the_request() {
    if !ready("basic_auth_from_the_request") {
        return;
    }
    let Some(reg) = start_auth_registry() else {
        return;
    };
    let d = Daemon::start(&format!(
        "[images]\ninsecure_registries = [\"{}\"]\n",
        reg.addr
    ));
    let image = format!("{}/private/busybox:1", reg.addr);
    let err = pull(&d, &image).await.unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::Unauthenticated,
        "{}",
        err.message()
    );

    let mut client = d.client().await;
    let wrong = client
        .image
        .pull_image(v1::PullImageRequest {
            image: spec(&image),
            auth: Some(v1::AuthConfig {
                username: "alice".into(),
                password: "wrong".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        wrong.code(),
        tonic::Code::Unauthenticated,
        "{}",
        wrong.message()
    );

    let id = client
        .image
        .pull_image(v1::PullImageRequest {
            image: spec(&image),
            auth: Some(v1::AuthConfig {
                auth: base64_encode("alice:s3cret"),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    assert_eq!(status(&d, &image).await.unwrap().id, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_file_is_used_when_the_request_has_none() {
    if !ready("credentials_file_is_used_when_the_request_has_none") {
        return;
    }
    let Some(reg) = start_auth_registry() else {
        return;
    };
    let creds = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        creds.path(),
        format!(
            "{{\"auths\":{{\"{}\":{{\"username\":\"alice\",\"password\":\"s3cret\"}}}}}}",
            reg.addr
        ),
    )
    .unwrap();
    let d = Daemon::start(&format!(
        "[images]\ninsecure_registries = [\"{}\"]\ncredentials_file = \"{}\"\n",
        reg.addr,
        creds.path().display()
    ));
    pull(&d, &format!("{}/private/busybox:1", reg.addr))
        .await
        .unwrap();
}
