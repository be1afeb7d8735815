//! CDI devices (CRI `CDI_devices`) against the real daemon and real LXC
//! containers: a spec file in a temporary directory configured as
//! `cdi_spec_dirs` gives a container a device node, an environment
//! variable and a read-only mount; unknown devices, specs with hooks,
//! specs others could have written and hostile paths fail
//! CreateContainer, and nothing of them reaches the node or a container.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{
    container_config, create_container, mirror_config, pull_image, require_containers as ready,
    Daemon, BUSYBOX,
};
use pvecri::client::CriClient;
use pvecri::cri::v1;

const KIND: &str = "test.pvecri.dev/dev";

/// Fields drop in order: the daemon (and with it the pod) first, then
/// the directories its containers had mounted.
struct Env {
    d: Daemon,
    c: CriClient,
    /// The spec directory (root's, 0755).
    specs: tempfile::TempDir,
    /// What the spec mounts read-only into the container.
    shared: tempfile::TempDir,
    /// Where a hook would leave its trace if it ran.
    marker: PathBuf,
    _logs: tempfile::TempDir,
    pod: String,
    pod_config: v1::PodSandboxConfig,
}

fn tempdir(mode: u32) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("pvecri-cdi-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(d.path(), PermissionsExt::from_mode(mode)).unwrap();
    d
}

fn write(dir: &Path, name: &str, text: &str, mode: u32) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, PermissionsExt::from_mode(mode)).unwrap();
}

/// The spec the tests use: `cdi0` gives host /dev/null as
/// /dev/pvecri-cdi0, /dev/loop-control (outside the default device
/// allow-list) as /dev/pvecri-ctl, an environment variable and `shared`
/// read-only at /opt/pvecri-cdi; the spec itself adds one more variable.
/// `hooked` would run a host binary; `escape` mounts over a path that
/// climbs out of the container's root.
fn spec(shared: &Path, marker: &Path) -> String {
    format!(
        r#"
cdiVersion: 0.6.0
kind: {KIND}
containerEdits:
  env: [PVECRI_CDI_SPEC=yes]
devices:
  - name: cdi0
    containerEdits:
      env: ["PVECRI_CDI=cdi0 with spaces"]
      deviceNodes:
        - {{path: /dev/pvecri-cdi0, hostPath: /dev/null, type: c, major: 1, minor: 3, permissions: rw}}
        - {{path: /dev/pvecri-ctl, hostPath: /dev/loop-control, permissions: rw}}
      mounts:
        - hostPath: {shared}
          containerPath: /opt/pvecri-cdi
          type: bind
          options: [ro, nosuid, nodev, rbind]
  - name: hooked
    containerEdits:
      hooks:
        - {{hookName: createContainer, path: /usr/bin/touch, args: [touch, {marker}]}}
  - name: escape
    containerEdits:
      mounts:
        - {{hostPath: {shared}, containerPath: /../../../tmp/pvecri-cdi-escape, options: [rbind]}}
  - name: relative
    containerEdits:
      deviceNodes:
        - {{path: dev/pvecri-rel, hostPath: /dev/null}}
  - name: not-a-device
    containerEdits:
      deviceNodes:
        - {{path: /dev/pvecri-passwd, hostPath: /etc/passwd}}
"#,
        shared = shared.display(),
        marker = marker.display(),
    )
}

async fn env(name: &str) -> Env {
    let specs = tempdir(0o755);
    let shared = tempdir(0o755);
    write(shared.path(), "marker", "from-the-node\n", 0o644);
    let marker = std::env::temp_dir().join(format!("pvecri-cdi-hook-ran-{name}"));
    let _ = std::fs::remove_file(&marker);
    write(
        specs.path(),
        "test.yaml",
        &spec(shared.path(), &marker),
        0o644,
    );
    // Anyone could have written this one: it must not count.
    write(
        specs.path(),
        "open.json",
        r#"{"cdiVersion": "0.6.0", "kind": "test.pvecri.dev/open",
            "devices": [{"name": "x", "containerEdits": {"deviceNodes": [{"path": "/dev/pvecri-open", "hostPath": "/dev/loop-control"}]}}]}"#,
        0o666,
    );
    let d = Daemon::start(&format!(
        "cdi_spec_dirs = [\"{}\"]\n{}",
        specs.path().display(),
        mirror_config()
    ));
    let mut c = d.client().await;
    pull_image(&mut c, BUSYBOX).await;
    let logs = tempfile::tempdir().unwrap();
    let pod_config = v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "cdi".into(),
            attempt: 0,
        }),
        log_directory: logs.path().display().to_string(),
        ..Default::default()
    };
    let pod = common::run_pod_sandbox(&mut c, &pod_config).await.unwrap();
    Env {
        d,
        c,
        specs,
        shared,
        marker,
        _logs: logs,
        pod,
        pod_config,
    }
}

/// A busybox `sleep` config asking for the CDI devices `names`.
fn with_cdi(name: &str, names: &[&str]) -> v1::ContainerConfig {
    v1::ContainerConfig {
        cdi_devices: names
            .iter()
            .map(|n| v1::CdiDevice {
                name: n.to_string(),
            })
            .collect(),
        ..container_config(name, BUSYBOX, &["sleep", "3600"])
    }
}

async fn create(e: &mut Env, config: v1::ContainerConfig) -> Result<String, tonic::Status> {
    create_container(&mut e.c, &e.pod, &e.pod_config, config).await
}

async fn running(e: &mut Env, config: v1::ContainerConfig) -> String {
    let id = create(e, config).await.unwrap();
    e.c.runtime
        .start_container(v1::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    id
}

/// A refused CreateContainer: its code, and words its message has.
fn refused(code: tonic::Code, result: Result<String, tonic::Status>, words: &[&str]) {
    let err = result.expect_err("CreateContainer was refused");
    assert_eq!(err.code(), code, "{err:?}");
    for w in words {
        assert!(err.message().contains(w), "{w:?} not in {}", err.message());
    }
}

async fn sh(e: &mut Env, id: &str, script: &str) -> (i32, String, String) {
    common::exec_sh(&mut e.c, id, script, 20).await
}

#[tokio::test]
async fn cdi_devices_give_their_node_env_and_mount() {
    if !ready("cdi_devices_give_their_node_env_and_mount") {
        return;
    }
    let mut e = env("cdi-give").await;
    let id = running(&mut e, with_cdi("gpu", &[&format!("{KIND}=cdi0")])).await;

    let (code, out, err) = sh(&mut e, &id, "echo \"$PVECRI_CDI|$PVECRI_CDI_SPEC\"").await;
    assert_eq!((code, out.trim()), (0, "cdi0 with spaces|yes"), "{err}");

    // The node is there, is /dev/null, and takes writes.
    let (code, out, err) = sh(
        &mut e,
        &id,
        "test -c /dev/pvecri-cdi0 && echo data > /dev/pvecri-cdi0 && stat -c '%t:%T' /dev/pvecri-cdi0",
    )
    .await;
    assert_eq!((code, out.trim()), (0, "1:3"), "{err}");
    // A device outside the default allow-list opens: its cgroup rule was
    // written (v1 devices controller or the cgroup2 device program).
    let (code, _, err) = sh(&mut e, &id, "dd if=/dev/pvecri-ctl of=/dev/null count=0").await;
    assert_eq!(code, 0, "the CDI device opens: {err}");

    // The mount: the node's file, read-only, nosuid and nodev.
    let (code, out, err) = sh(&mut e, &id, "cat /opt/pvecri-cdi/marker").await;
    assert_eq!((code, out.as_str()), (0, "from-the-node\n"), "{err}");
    let (code, _, err) = sh(&mut e, &id, "touch /opt/pvecri-cdi/new").await;
    assert_ne!(code, 0, "the mount is writable");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(!e.shared.path().join("new").exists());
    let (code, out, _) = sh(&mut e, &id, "grep ' /opt/pvecri-cdi ' /proc/mounts").await;
    assert_eq!(code, 0);
    let options: Vec<&str> = out.split_whitespace().nth(3).unwrap().split(',').collect();
    for want in ["ro", "nosuid", "nodev"] {
        assert!(options.contains(&want), "{want} missing in {out}");
    }

    // Status reports the request's mounts, not what a spec added.
    let status =
        e.c.runtime
            .container_status(v1::ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
    assert!(status.mounts.is_empty(), "{:?}", status.mounts);

    // The annotations a pod author sets are no way to ask for a device.
    let annotated = v1::ContainerConfig {
        annotations: [
            ("cdi.k8s.io/gpu".to_owned(), format!("{KIND}=cdi0")),
            (
                "cdi.k8s.io/open".to_owned(),
                "test.pvecri.dev/open=x".to_owned(),
            ),
        ]
        .into(),
        ..with_cdi("annotated", &[])
    };
    let plain = running(&mut e, annotated).await;
    let (code, out, _) = sh(
        &mut e,
        &plain,
        "ls /dev/pvecri-cdi0 /dev/pvecri-open /opt/pvecri-cdi 2>&1; echo \"[$PVECRI_CDI]\"",
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.contains("[]") && !out.contains("marker"), "{out}");
    let (code, _, _) = sh(&mut e, &plain, "test -e /dev/pvecri-cdi0").await;
    assert_ne!(code, 0, "the annotation gave the device");
}

#[tokio::test]
async fn unknown_unsupported_and_untrusted_cdi_devices_fail_create() {
    if !ready("unknown_unsupported_and_untrusted_cdi_devices_fail_create") {
        return;
    }
    let mut e = env("cdi-refuse").await;

    let r = create(&mut e, with_cdi("unknown", &[&format!("{KIND}=cdi9")])).await;
    refused(tonic::Code::NotFound, r, &["test.pvecri.dev/dev=cdi9"]);

    // A known device next to an unknown one: nothing is created.
    let r = create(
        &mut e,
        with_cdi("half", &[&format!("{KIND}=cdi0"), "other.vendor/x=y"]),
    )
    .await;
    refused(tonic::Code::NotFound, r, &["other.vendor/x=y"]);

    let r = create(&mut e, with_cdi("hooked", &[&format!("{KIND}=hooked")])).await;
    refused(
        tonic::Code::FailedPrecondition,
        r,
        &["test.pvecri.dev/dev=hooked", "hooks"],
    );
    assert!(!e.marker.exists(), "a CDI hook ran on the node");

    // A spec file others could write is not read: its device is unknown.
    let r = create(&mut e, with_cdi("open", &["test.pvecri.dev/open=x"])).await;
    refused(tonic::Code::NotFound, r, &["test.pvecri.dev/open=x"]);
    let log = e.d.log();
    assert!(
        log.lines().any(|l| l.contains("ignoring CDI spec file")
            && l.contains("open.json")
            && l.contains("0666")),
        "the operator is not told why:\n{log}"
    );

    // Hostile paths in a spec are refused before anything is mounted.
    let r = create(&mut e, with_cdi("escape", &[&format!("{KIND}=escape")])).await;
    refused(
        tonic::Code::FailedPrecondition,
        r,
        &["test.pvecri.dev/dev=escape", "\"..\""],
    );
    assert!(!Path::new("/tmp/pvecri-cdi-escape").exists());
    let r = create(&mut e, with_cdi("relative", &[&format!("{KIND}=relative")])).await;
    refused(
        tonic::Code::FailedPrecondition,
        r,
        &["dev/pvecri-rel", "not an absolute path"],
    );
    let r = create(
        &mut e,
        with_cdi("not-a-device", &[&format!("{KIND}=not-a-device")]),
    )
    .await;
    refused(
        tonic::Code::FailedPrecondition,
        r,
        &["/etc/passwd", "not a character or block device"],
    );

    // A malformed name is the request's fault.
    let r = create(&mut e, with_cdi("bad-name", &["../../etc/cdi=x"])).await;
    refused(
        tonic::Code::InvalidArgument,
        r,
        &["config.CDI_devices[0].name", "../../etc/cdi=x"],
    );

    // None of the refused creates left a container behind.
    let listed =
        e.c.runtime
            .list_containers(v1::ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
    assert!(listed.is_empty(), "{listed:?}");

    // Once the spec file is root's alone, the device is there.
    std::fs::set_permissions(
        e.specs.path().join("open.json"),
        PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let id = running(&mut e, with_cdi("open-now", &["test.pvecri.dev/open=x"])).await;
    let (code, _, err) = sh(&mut e, &id, "dd if=/dev/pvecri-open of=/dev/null count=0").await;
    assert_eq!(code, 0, "{err}");
}
