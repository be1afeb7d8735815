//! The diagnostic verbs (`ps`, `pods`, `images`, `inspect`, `logs`)
//! against a live daemon, and against its store once it is stopped: the
//! same answers either way, the second saying on stderr where they come
//! from; unknown IDs fail with exit code 1 and a message naming them.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::{
    container_config, create_container, mirror_config, pull_image, require_init, require_registry,
    require_root, Daemon, BIN,
};
use pvecri::cri::v1;
use serde_json::Value;

const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";

fn cli(d: &Daemon, args: &[&str]) -> Output {
    std::process::Command::new(BIN)
        .arg("--config")
        .arg(&d.config)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn json(d: &Daemon, args: &[&str]) -> (Value, String) {
    let out = cli(d, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "pvecri {args:?}: {stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

fn text(d: &Daemon, args: &[&str]) -> String {
    let out = cli(d, args);
    assert!(
        out.status.success(),
        "pvecri {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks every verb; `live` says whether the daemon answers.
fn check_verbs(d: &Daemon, pod: &str, ctr: &str, live: bool) {
    let (ps, stderr) = json(d, &["ps", "-a", "-o", "json"]);
    assert_eq!(stderr.contains("does not answer"), !live, "{stderr}");
    let row = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == ctr)
        .unwrap_or_else(|| panic!("{ctr} not in {ps}"));
    assert_eq!(row["state"], "Running");
    assert_eq!(row["pod_id"], pod);
    assert!(text(d, &["ps"]).contains(&ctr[..13]));

    let (pods, _) = json(d, &["pods", "-o", "json"]);
    let p = pods
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == pod)
        .unwrap();
    assert_eq!(p["name"], "cli-pod");
    assert!(!p["ips"].as_array().unwrap().is_empty(), "{p}");
    assert!(text(d, &["pods"]).contains("cli-pod"));

    let (images, _) = json(d, &["images", "-o", "json"]);
    assert!(images.to_string().contains(BUSYBOX), "{images}");
    assert!(text(d, &["images"]).contains(BUSYBOX));

    let (c, _) = json(d, &["inspect", &ctr[..10]]);
    assert_eq!(c["kind"], "container");
    assert_eq!(c["source"], if live { "daemon" } else { "store" });
    assert!(c["init_pid"].as_i64().unwrap() > 0, "{c}");
    assert!(c["monitor_pid"].as_i64().unwrap() > 0, "{c}");
    assert!(!c["cgroup"].as_str().unwrap().is_empty(), "{c}");
    assert!(
        std::path::Path::new(c["lxc_config"].as_str().unwrap()).is_file(),
        "{c}"
    );
    assert!(c["mounts"].to_string().contains("\"target\":\"/\""), "{c}");
    assert!(
        !c["network"]["pod_ips"].as_array().unwrap().is_empty(),
        "{c}"
    );
    assert!(c["network"]["netns"].is_string(), "{c}");
    assert_eq!(c["record"]["name"], "talker", "{c}");

    let (p, _) = json(d, &["inspect", pod]);
    assert_eq!(p["kind"], "pod");
    assert_eq!(p["containers"], serde_json::json!([ctr]));
    assert_eq!(p["record"]["name"], "cli-pod", "{p}");

    let logs = text(d, &["logs", &ctr[..12]]);
    assert!(logs.starts_with("hello from cli\n"), "{logs:?}");
    let raw = text(d, &["logs", "--raw", "--tail", "1", ctr]);
    assert!(raw.contains(" stdout F hello from cli"), "{raw:?}");

    let out = cli(d, &["inspect", "no-such-id"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no container or pod with ID \"no-such-id\""),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbs_answer_from_the_daemon_and_from_its_store() {
    let test = "verbs_answer_from_the_daemon_and_from_its_store";
    if !(require_root(test) && require_registry(test) && require_init(test)) {
        return;
    }
    let mut d = Daemon::start(&mirror_config());
    let mut c = d.client().await;
    pull_image(&mut c, BUSYBOX).await;
    let logs = tempfile::tempdir().unwrap();
    let pod = v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: "cli-pod".into(),
            uid: "cli-uid".into(),
            namespace: "cli".into(),
            attempt: 0,
        }),
        log_directory: logs.path().display().to_string(),
        ..Default::default()
    };
    let pod_id = common::run_pod_sandbox(&mut c, &pod).await.unwrap();
    let ctr = create_container(
        &mut c,
        &pod_id,
        &pod,
        container_config(
            "talker",
            BUSYBOX,
            &["sh", "-c", "echo hello from cli; exec sleep 3600"],
        ),
    )
    .await
    .unwrap();
    c.runtime
        .start_container(v1::StartContainerRequest {
            container_id: ctr.clone(),
        })
        .await
        .unwrap();
    // The first line reaches the log file.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(&d, &["logs", &ctr]).contains("hello from cli") {
        assert!(Instant::now() < deadline, "no log line");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    check_verbs(&d, &pod_id, &ctr, true);
    d.stop();
    // A failure while the daemon is down must not leak the pod: the
    // harness removes pods only through a running daemon, so restart it
    // before passing the failure on.
    let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check_verbs(&d, &pod_id, &ctr, false)
    }));
    d.restart();
    if let Err(panic) = stopped {
        std::panic::resume_unwind(panic);
    }
    let mut c = d.client().await;
    common::stop_remove_pod(&mut c, &pod_id).await;
    let (ps, _) = json(&d, &["ps", "-a", "-o", "json"]);
    assert_eq!(ps, serde_json::json!([]));
}
