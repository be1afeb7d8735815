//! The audit log through the real daemon: a scripted sequence of CRI
//! calls leaves one JSON line per call that changed the node, with the
//! caller's uid and pid (SO_PEERCRED), the IDs acted on, the outcome and
//! the duration, and nothing secret (registry credentials, env values).

#![allow(clippy::unwrap_used)]

mod common;

use common::{
    container_config, create_container, exec_sh, mirror_config, require_init, require_registry,
    require_root, run_pod_sandbox, stop_remove_pod, Daemon,
};
use pvecri::cri::v1;

const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";
const PASSWORD: &str = "pw-never-in-the-audit-log";
const ENV_VALUE: &str = "env-never-in-the-audit-log";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_calls_are_audited_with_the_caller_and_without_secrets() {
    let test = "mutating_calls_are_audited_with_the_caller_and_without_secrets";
    if !(require_root(test) && require_registry(test) && require_init(test)) {
        return;
    }
    let audit_dir = tempfile::tempdir().unwrap();
    let audit = audit_dir.path().join("log/audit.log");
    let d = Daemon::start(&format!(
        "{}\n[audit]\noutput = \"file\"\npath = \"{}\"\n",
        mirror_config(),
        audit.display()
    ));
    let mut c = d.client().await;
    let logs = tempfile::tempdir().unwrap();

    c.image
        .pull_image(v1::PullImageRequest {
            image: Some(v1::ImageSpec {
                image: BUSYBOX.into(),
                ..Default::default()
            }),
            auth: Some(v1::AuthConfig {
                username: "someone".into(),
                password: PASSWORD.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let sandbox = v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: "audited".into(),
            uid: "uid-audited".into(),
            namespace: "ns".into(),
            attempt: 0,
        }),
        log_directory: logs.path().display().to_string(),
        ..Default::default()
    };
    let pod = run_pod_sandbox(&mut c, &sandbox).await.unwrap();
    let config = v1::ContainerConfig {
        envs: vec![v1::KeyValue {
            key: "SECRET".into(),
            value: ENV_VALUE.into(),
        }],
        ..container_config("worker", BUSYBOX, &["sleep", "1000"])
    };
    let id = create_container(&mut c, &pod, &sandbox, config)
        .await
        .unwrap();
    c.runtime
        .start_container(v1::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    // Read-only calls are not audited.
    c.runtime
        .list_containers(v1::ListContainersRequest::default())
        .await
        .unwrap();
    let (code, out, _) = exec_sh(&mut c, &id, "echo hi", 10).await;
    assert_eq!((code, out.as_str()), (0, "hi\n"));
    let missing = c
        .runtime
        .start_container(v1::StartContainerRequest {
            container_id: "no-such-container".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    c.runtime
        .stop_container(v1::StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
    c.runtime
        .remove_container(v1::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    stop_remove_pod(&mut c, &pod).await;
    c.image
        .remove_image(v1::RemoveImageRequest {
            image: Some(v1::ImageSpec {
                image: BUSYBOX.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();

    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains(PASSWORD), "a registry password in:\n{text}");
    assert!(!text.contains(ENV_VALUE), "an env value in:\n{text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let methods: Vec<&str> = lines
        .iter()
        .map(|l| l["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        [
            "PullImage",
            "RunPodSandbox",
            "CreateContainer",
            "StartContainer",
            "ExecSync",
            "StartContainer",
            "StopContainer",
            "RemoveContainer",
            "StopPodSandbox",
            "RemovePodSandbox",
            "RemoveImage",
        ],
        "{text}"
    );
    for l in &lines {
        assert_eq!(l["uid"], 0, "{l}");
        assert_eq!(l["pid"], std::process::id(), "{l}");
        assert!(l["duration_ms"].as_f64().unwrap() >= 0.0, "{l}");
        assert!(l["time"].as_str().unwrap().ends_with('Z'), "{l}");
    }
    assert_eq!(lines[0]["image"], BUSYBOX);
    assert_eq!(lines[1]["pod"], pod.as_str());
    assert_eq!(lines[1]["name"], "ns/audited");
    assert_eq!(lines[2]["container"], id.as_str());
    assert_eq!(lines[2]["pod"], pod.as_str());
    assert_eq!(lines[2]["name"], "worker");
    assert_eq!(
        lines[4]["command"],
        serde_json::json!(["sh", "-c", "echo hi"])
    );
    assert_eq!(lines[4]["outcome"], "OK");
    assert_eq!(lines[5]["container"], "no-such-container");
    assert_eq!(lines[5]["outcome"], "NotFound");
    assert!(lines[5]["error"]
        .as_str()
        .unwrap()
        .contains("no-such-container"));
    assert_eq!(lines[6]["outcome"], "OK");
    assert_eq!(lines[9]["pod"], pod.as_str());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&audit).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}
