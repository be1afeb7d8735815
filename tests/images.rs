//! ImageService against the real daemon and the real local registry.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use common::{mirror_config, require_registry, require_root, Daemon};
use pvecri::cri::v1;

const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";

fn spec(image: &str) -> Option<v1::ImageSpec> {
    Some(v1::ImageSpec {
        image: image.to_owned(),
        ..Default::default()
    })
}

fn ready(test: &str) -> bool {
    require_root(test) && require_registry(test)
}

async fn pull(d: &Daemon, image: &str) -> Result<String, tonic::Status> {
    d.client()
        .await
        .image
        .pull_image(v1::PullImageRequest {
            image: spec(image),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

async fn status(d: &Daemon, image: &str) -> Option<v1::Image> {
    d.client()
        .await
        .image
        .image_status(v1::ImageStatusRequest {
            image: spec(image),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
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

/// A second registry that requires basic auth, run by the test itself.
struct AuthRegistry {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    addr: String,
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

fn start_auth_registry() -> Option<AuthRegistry> {
    let bin = std::path::Path::new("/usr/bin/docker-registry");
    if !bin.exists() {
        common::skip(
            "the authenticated registry test",
            "/usr/bin/docker-registry is not installed",
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let htpasswd = Command::new("htpasswd")
        .args(["-Bbn", "alice", "s3cret"])
        .output()
        .unwrap();
    assert!(htpasswd.status.success());
    std::fs::write(dir.path().join("htpasswd"), htpasswd.stdout).unwrap();
    let config = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\nhttp:\n  addr: {addr}\nauth:\n  htpasswd:\n    realm: pvecri-test\n    path: {d}/htpasswd\n",
        d = dir.path().display()
    );
    std::fs::write(dir.path().join("config.yml"), config).unwrap();
    let child = Command::new(bin)
        .arg("serve")
        .arg(dir.path().join("config.yml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // crane reads credentials from a docker config in DOCKER_CONFIG.
    let auth = base64_encode("alice:s3cret");
    std::fs::write(
        dir.path().join("config.json"),
        format!("{{\"auths\":{{\"{addr}\":{{\"auth\":\"{auth}\"}}}}}}"),
    )
    .unwrap();
    let copy = Command::new("crane")
        .args([
            "copy",
            "--insecure",
            &format!("127.0.0.1:5000/{BUSYBOX}"),
            &format!("{addr}/private/busybox:1"),
        ])
        .env("DOCKER_CONFIG", dir.path())
        .output()
        .expect("crane (scripts/install-cri-tools.sh)");
    assert!(
        copy.status.success(),
        "crane copy: {:?} {}",
        copy.status.signal(),
        String::from_utf8_lossy(&copy.stderr)
    );
    Some(AuthRegistry {
        child,
        _dir: dir,
        addr,
    })
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
