//! `images.signature_policy` against the real daemon and the fixture
//! registry: cosign-format signatures made by
//! scripts/build-signed-fixtures.sh with the key pairs it keeps in
//! `/var/lib/pvecri-test/cosign`.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    image_spec as spec, require_registry, require_root, skip, try_pull as pull_with, AuthRegistry,
    Daemon,
};
use pvecri::cri::v1;

const KEY_DIR: &str = "/var/lib/pvecri-test/cosign";
const REPO: &str = "127.0.0.1:5000/pvecri-test/signed";
/// Served by the fixture registry through a mirror: the signature must be
/// read where the image is, and name this name, not the mirror's (the
/// fixture script signs each image for both).
const MIRRORED: &str = "signed.pvecri.invalid/pvecri-test/signed";
const OUTSIDE: &str = "127.0.0.1:5000/pvecri-test/busybox:latest";
const REJECTED: &str = "127.0.0.1:5000/pvecri-test/staging:busybox-rootfs";

fn ready(test: &str) -> bool {
    if !(require_root(test) && require_registry(test)) {
        return false;
    }
    let key = Path::new(KEY_DIR).join("trusted.pub");
    // The fixture the script made last: the others are there too.
    let signed = Command::new("crane")
        .args(["digest", "--insecure", &format!("{REPO}/other-name:latest")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (key.exists() && signed)
        || skip(
            test,
            "no signed fixtures (run scripts/build-fixture-images.sh, which runs scripts/build-signed-fixtures.sh)",
        )
}

fn policy_config(extra_rules: &str) -> String {
    format!(
        "[images]\nfallback_to_upstream = false\n\
         [images.mirrors]\n\"signed.pvecri.invalid\" = [\"127.0.0.1:5000\"]\n\
         [[images.signature_policy]]\nprefix = \"{REPO}/\"\nkeys = [\"{KEY_DIR}/trusted.pub\"]\n\
         [[images.signature_policy]]\nprefix = \"{MIRRORED}\"\nkeys = [\"{KEY_DIR}/other.pub\", \"{KEY_DIR}/trusted.pub\"]\n\
         [[images.signature_policy]]\nprefix = \"127.0.0.1:5000/pvecri-test/staging\"\naction = \"reject\"\n\
         {extra_rules}"
    )
}

async fn pull(d: &Daemon, image: &str) -> Result<String, tonic::Status> {
    pull_with(d, image, None).await
}

async fn listed_names(d: &Daemon) -> Vec<String> {
    let images = d
        .client()
        .await
        .image
        .list_images(v1::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    images
        .into_iter()
        .flat_map(|i| i.repo_tags.into_iter().chain(i.repo_digests))
        .collect()
}

/// The refusal of `image`: FailedPrecondition naming the image, the rule
/// and `why`. Returns the message.
async fn refused(d: &Daemon, image: &str, rule: &str, why: &str) -> String {
    let err = pull(d, image).await.unwrap_err();
    let message = err.message().to_owned();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{message}");
    assert!(message.contains(image), "{message}");
    assert!(message.contains(&format!("rule {rule:?}")), "{message}");
    assert!(message.contains(why), "{message}");
    message
}

/// Every file name in the daemon's content store.
fn stored_blobs(d: &Daemon) -> Vec<String> {
    let dir = d.dir.path().join("state/content/blobs/sha256");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// The manifest digest (hex) a refusal message names through its `.sig` tag.
fn signed_hex(message: &str) -> String {
    let start = message.find("sha256-").expect("a .sig tag in the message") + 7;
    message[start..start + 64].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_properly_signed_images_covered_by_a_rule_are_pulled() {
    if !ready("only_properly_signed_images_covered_by_a_rule_are_pulled") {
        return;
    }
    let d = Daemon::start(&policy_config(""));
    let rule = REPO;

    let good = format!("{REPO}/good:latest");
    let id = pull(&d, &good).await.unwrap();
    assert!(id.starts_with("sha256:"), "{id}");

    // Images outside every rule need no signature.
    pull(&d, OUTSIDE).await.unwrap();

    // A multi-platform image is signed by the index digest it resolves to.
    pull(&d, &format!("{REPO}/index:latest")).await.unwrap();

    let mut refused_digests = Vec::new();
    let unsigned = format!("{REPO}/unsigned:latest");
    let message = refused(&d, &unsigned, rule, "no signature").await;
    refused_digests.push(signed_hex(&message));

    let wrong_key = format!("{REPO}/wrong-key:latest");
    let message = refused(&d, &wrong_key, rule, "not signed by any trusted key").await;
    refused_digests.push(signed_hex(&message));

    // A valid signature by the trusted key, but over signed/good's digest.
    let good_digest = d
        .client()
        .await
        .image
        .image_status(v1::ImageStatusRequest {
            image: spec(&good),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap()
        .repo_digests[0]
        .split_once('@')
        .unwrap()
        .1
        .to_owned();
    let other_digest = format!("{REPO}/other-digest:latest");
    let message = refused(
        &d,
        &other_digest,
        rule,
        &format!("signature is for another image ({good_digest})"),
    )
    .await;
    refused_digests.push(signed_hex(&message));

    // Reject rules refuse before any registry is asked.
    refused(
        &d,
        REJECTED,
        "127.0.0.1:5000/pvecri-test/staging",
        "rejects every image",
    )
    .await;

    // Nothing of a refused image is recorded or stored; the others are.
    let names = listed_names(&d).await;
    assert!(names.contains(&good), "{names:?}");
    assert!(names.contains(&OUTSIDE.to_owned()), "{names:?}");
    for image in [&unsigned, &wrong_key, &other_digest, &REJECTED.to_owned()] {
        let repo = image.rsplit_once(':').unwrap().0;
        assert!(
            !names.iter().any(|n| n.starts_with(repo)),
            "{image} listed: {names:?}"
        );
    }
    let blobs = stored_blobs(&d);
    assert!(!blobs.is_empty());
    for hex in &refused_digests {
        assert!(
            !blobs.contains(hex),
            "manifest {hex} of a refused image stored"
        );
    }
    // Each refused image has a config of its own (its own label); the
    // layers are busybox's, shared with the signed image.
    let config_hex = |image: &str| {
        let manifest: serde_json::Value =
            serde_json::from_str(&crane(&["manifest", image], None)).unwrap();
        let config = manifest["config"]["digest"].as_str().unwrap().to_owned();
        config.trim_start_matches("sha256:").to_owned()
    };
    assert!(blobs.contains(&config_hex(&good)), "{blobs:?}");
    for image in [&unsigned, &wrong_key, &other_digest] {
        let hex = config_hex(image);
        assert!(
            !blobs.contains(&hex),
            "config {hex} of refused {image} stored"
        );
        let status = common::image_status(&d, image).await;
        assert!(status.is_none(), "{image}: {status:?}");
    }

    // Pulling a present image again checks its signature again.
    pull(&d, &good).await.unwrap();
    let verified = d.log().matches("image signature verified").count();
    assert_eq!(verified, 3, "{}", d.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_read_from_the_mirror_the_image_comes_from() {
    if !ready("signatures_are_read_from_the_mirror_the_image_comes_from") {
        return;
    }
    let d = Daemon::start(&policy_config(""));
    pull(&d, &format!("{MIRRORED}/good:latest")).await.unwrap();
    // The mirror rule trusts other.pub too.
    pull(&d, &format!("{MIRRORED}/wrong-key:latest"))
        .await
        .unwrap();
    let message = refused(
        &d,
        &format!("{MIRRORED}/unsigned:latest"),
        MIRRORED,
        "no signature",
    )
    .await;
    assert!(
        message.contains("http://127.0.0.1:5000/pvecri-test/signed/unsigned"),
        "{message}"
    );
}

/// signed/good published again as signed/other-name: its digest is signed
/// by the trusted key, but for signed/good. Whoever can push to a registry
/// can do that with any signed image; the name is what the pod asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_naming_another_repository_is_refused() {
    if !ready("a_signature_naming_another_repository_is_refused") {
        return;
    }
    let d = Daemon::start(&policy_config(""));
    for (image, rule) in [
        (format!("{REPO}/other-name:latest"), REPO),
        (format!("{MIRRORED}/other-name:latest"), MIRRORED),
    ] {
        let message = refused(&d, &image, rule, "signature is for another repository").await;
        assert!(message.contains("pvecri-test/signed/good"), "{message}");
    }
    let names = listed_names(&d).await;
    assert!(names.is_empty(), "{names:?}");
    let blobs = stored_blobs(&d);
    assert!(blobs.is_empty(), "{blobs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrower_rules_let_an_unsigned_or_renamed_image_through() {
    if !ready("narrower_rules_let_an_unsigned_or_renamed_image_through") {
        return;
    }
    let d = Daemon::start(&policy_config(&format!(
        "[[images.signature_policy]]\nprefix = \"{REPO}/unsigned\"\naction = \"accept\"\n\
         [[images.signature_policy]]\nprefix = \"{REPO}/other-name\"\nkeys = [\"{KEY_DIR}/trusted.pub\"]\nsigned_identity = \"any\"\n"
    )));
    pull(&d, &format!("{REPO}/unsigned:latest")).await.unwrap();
    // Signed for signed/good, which this rule does not insist on.
    pull(&d, &format!("{REPO}/other-name:latest"))
        .await
        .unwrap();
    refused(
        &d,
        &format!("{REPO}/wrong-key:latest"),
        REPO,
        "not signed by any trusted key",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_behind_registry_credentials_are_read_with_them() {
    if !ready("signatures_behind_registry_credentials_are_read_with_them") {
        return;
    }
    let Some(reg) = AuthRegistry::start() else {
        return;
    };
    // The image and its .sig copied byte for byte: same digests.
    let digest = crane(&["digest", &format!("{REPO}/good:latest")], None);
    let sig_tag = format!("sha256-{}.sig", digest.trim().trim_start_matches("sha256:"));
    for tag in ["latest", sig_tag.as_str()] {
        crane(
            &[
                "copy",
                &format!("{REPO}/good:{tag}"),
                &format!("{}/private/good:{tag}", reg.addr),
            ],
            Some(reg.dir.path()),
        );
    }
    crane(
        &[
            "copy",
            &format!("{REPO}/unsigned:latest"),
            &format!("{}/private/unsigned:latest", reg.addr),
        ],
        Some(reg.dir.path()),
    );
    // The copies' signatures name the fixture registry's repository, not
    // this one's: the rule takes any name.
    let d = Daemon::start(&format!(
        "[images]\ninsecure_registries = [\"{addr}\"]\n\
         [[images.signature_policy]]\nprefix = \"{addr}/private\"\nkeys = [\"{KEY_DIR}/trusted.pub\"]\nsigned_identity = \"any\"\n",
        addr = reg.addr
    ));
    let auth = || {
        Some(v1::AuthConfig {
            username: "alice".into(),
            password: "s3cret".into(),
            ..Default::default()
        })
    };
    pull_with(&d, &format!("{}/private/good:latest", reg.addr), auth())
        .await
        .unwrap();
    let err = pull_with(&d, &format!("{}/private/unsigned:latest", reg.addr), auth())
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::FailedPrecondition,
        "{}",
        err.message()
    );
}

#[test]
fn a_policy_key_that_cannot_be_loaded_stops_the_daemon() {
    if !require_root("a_policy_key_that_cannot_be_loaded_stops_the_daemon") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cosign.pub");
    std::fs::write(
        &key,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let config = common::write_config(
        dir.path(),
        &format!(
            "[[images.signature_policy]]\nprefix = \"{REPO}\"\nkeys = [\"{}\"]\n",
            key.display()
        ),
    );
    let mut child = Command::new(common::BIN)
        .args(["daemon", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon started with an unusable key");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(text.contains(&key.display().to_string()), "{text}");
    assert!(text.contains("signature_policy"), "{text}");
}

/// crane against the test registries; DOCKER_CONFIG holds credentials.
fn crane(args: &[&str], docker_config: Option<&Path>) -> String {
    let mut cmd = Command::new("crane");
    cmd.arg("--insecure").args(args);
    if let Some(dir) = docker_config {
        cmd.env("DOCKER_CONFIG", dir);
    }
    let out = cmd.output().expect("crane (scripts/install-cri-tools.sh)");
    assert!(
        out.status.success(),
        "crane {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
