//! The daemon process: start-up, config handling, locking, socket, shutdown.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use common::{pvecri, require_init, require_root, write_config, Daemon};
use pvecri::cri::v1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_names_pvecri() {
    if !require_root("version_names_pvecri") {
        return;
    }
    let d = Daemon::start("");
    let v = d
        .client()
        .await
        .runtime
        .version(v1::VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "pvecri");
    assert_eq!(v.runtime_api_version, "v1");
    assert_eq!(v.version, "0.1.0");
    assert!(
        v.runtime_version.starts_with(env!("CARGO_PKG_VERSION")),
        "{}",
        v.runtime_version
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_both_conditions() {
    if !require_root("status_reports_both_conditions")
        || !common::require_init("status_reports_both_conditions")
    {
        return;
    }
    let d = Daemon::start("");
    let resp = d
        .client()
        .await
        .runtime
        .status(v1::StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let conditions = resp.status.unwrap().conditions;
    let runtime = conditions
        .iter()
        .find(|c| c.r#type == "RuntimeReady")
        .unwrap();
    assert!(runtime.status, "runtime not ready: {runtime:?}");
    let network = conditions
        .iter()
        .find(|c| c.r#type == "NetworkReady")
        .unwrap();
    assert!(network.status, "network not ready: {network:?}");
    let config: serde_json::Value = serde_json::from_str(&resp.info["config"]).unwrap();
    assert_eq!(config["cgroupDriver"], "cgroupfs");
    // CNI mode has no config to run yet: not ready, with the reason.
    let cni = Daemon::start("[network]\nmode = \"cni\"\ncni_conf_dir = \"/nonexistent/cni\"");
    let conditions = cni
        .client()
        .await
        .runtime
        .status(v1::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .conditions;
    let network = conditions
        .iter()
        .find(|c| c.r#type == "NetworkReady")
        .unwrap();
    assert!(!network.status);
    assert!(!network.reason.is_empty() && !network.message.is_empty());
    drop(cni);
    // Without pvecri-init the runtime is not ready, and says why.
    let d2 = Daemon::start("init_path = \"/nonexistent/pvecri-init\"");
    let resp2 = d2
        .client()
        .await
        .runtime
        .status(v1::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let rr = resp2
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "RuntimeReady")
        .unwrap();
    assert!(!rr.status);
    assert_eq!(rr.reason, "InitMissing");
    assert!(config["stateDir"]
        .as_str()
        .unwrap()
        .starts_with(d.dir.path().to_str().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_config_reports_the_configured_cgroup_driver() {
    if !require_root("runtime_config_reports_the_configured_cgroup_driver") {
        return;
    }
    let d = Daemon::start("cgroup_driver = \"systemd\"");
    let resp = d
        .client()
        .await
        .runtime
        .runtime_config(v1::RuntimeConfigRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.linux.unwrap().cgroup_driver,
        v1::CgroupDriver::Systemd as i32
    );
}

/// In-place pod resize: the kubelet announces the pod's new size; pvecri
/// checks it like any resources, records it and shows it in the verbose
/// status. Bad requests change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_pod_sandbox_resources_records_the_pod_size() {
    let test = "update_pod_sandbox_resources_records_the_pod_size";
    if !(require_root(test) && common::require_init(test)) {
        return;
    }
    let d = Daemon::start(&common::mirror_config());
    let mut c = d.client().await;
    let update =
        |id: &str, memory: i64, unified: &[(&str, &str)]| v1::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: id.to_owned(),
            overhead: Some(v1::LinuxContainerResources {
                memory_limit_in_bytes: 1 << 20,
                ..Default::default()
            }),
            resources: Some(v1::LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 50_000,
                memory_limit_in_bytes: memory,
                unified: unified
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }),
        };
    let err = c
        .runtime
        .update_pod_sandbox_resources(update("", 1 << 27, &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    let err = c
        .runtime
        .update_pod_sandbox_resources(update("0123456789abcdef", 1 << 27, &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");

    let config = v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: "resized".into(),
            uid: "uid-resized".into(),
            namespace: "daemon".into(),
            attempt: 0,
        }),
        ..Default::default()
    };
    let id = common::run_pod_sandbox(&mut c, &config).await.unwrap();
    let recorded = |c: &mut pvecri::client::CriClient| {
        let mut c = c.clone();
        let id = id.clone();
        async move {
            let status = c
                .runtime
                .pod_sandbox_status(v1::PodSandboxStatusRequest {
                    pod_sandbox_id: id,
                    verbose: true,
                })
                .await
                .unwrap()
                .into_inner();
            let info: serde_json::Value = serde_json::from_str(&status.info["info"]).unwrap();
            info["resources"].clone()
        }
    };
    assert!(recorded(&mut c).await.is_null(), "no size before a resize");

    // A unified key outside the resource controllers is refused, by name.
    let err = c
        .runtime
        .update_pod_sandbox_resources(update(&id, 1 << 27, &[("devices.allow", "a")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("resources.unified"), "{err}");
    assert!(
        recorded(&mut c).await.is_null(),
        "a refused update records nothing"
    );

    c.runtime
        .update_pod_sandbox_resources(update(&id, 1 << 27, &[("memory.high", "100000000")]))
        .await
        .unwrap();
    let size = recorded(&mut c).await;
    assert_eq!(
        size["resources"]["memory_limit_in_bytes"],
        1 << 27,
        "{size}"
    );
    assert_eq!(size["resources"]["cpu_quota"], 50_000, "{size}");
    assert_eq!(size["overhead"]["memory_limit_in_bytes"], 1 << 20, "{size}");

    c.runtime
        .stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    c.runtime
        .remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: id })
        .await
        .unwrap();
}

#[test]
fn socket_is_private_to_root() {
    if !require_root("socket_is_private_to_root") {
        return;
    }
    let d = Daemon::start("");
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), 0);
}

#[test]
fn socket_group_widens_the_mode() {
    if !require_root("socket_group_widens_the_mode") {
        return;
    }
    let d = Daemon::start("socket_group = \"root\"");
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), 0);
}

#[test]
fn malformed_config_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "cgroup_drivr = \"systemd\"");
    let out = pvecri(&["daemon", "--config", config.to_str().unwrap()]);
    if !require_root("malformed_config_is_refused_naming_the_key") {
        return;
    }
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cgroup_drivr"), "{stderr}");
    assert!(stderr.contains("config.toml"), "{stderr}");
    assert!(!dir.path().join("run/pvecri.sock").exists());
}

#[test]
fn missing_config_file_is_an_error() {
    if !require_root("missing_config_file_is_an_error") {
        return;
    }
    let out = pvecri(&["daemon", "--config", "/nonexistent/pvecri.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/pvecri.toml"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_daemon_on_the_same_state_is_refused() {
    if !require_root("second_daemon_on_the_same_state_is_refused") {
        return;
    }
    let d = Daemon::start("");
    let out = d.spawn_again().wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let log = std::fs::read_to_string(d.dir.path().join("daemon2.log")).unwrap();
    assert!(log.contains("already uses this state directory"), "{log}");
    assert!(log.contains(&format!("pid {}", d.pid())), "{log}");
    // The first daemon is untouched and still serving.
    let v = d
        .client()
        .await
        .runtime
        .version(v1::VersionRequest::default())
        .await
        .unwrap();
    assert_eq!(v.into_inner().runtime_name, "pvecri");
}

#[test]
fn sigterm_stops_cleanly_and_removes_the_socket() {
    if !require_root("sigterm_stops_cleanly_and_removes_the_socket") {
        return;
    }
    let mut d = Daemon::start("");
    let status = d.stop();
    assert!(status.success(), "{status}: {}", d.log());
    assert!(!d.socket.exists());
    assert!(d.log().contains("shutting down"));
}

#[test]
fn restart_reuses_the_state_store() {
    if !require_root("restart_reuses_the_state_store") {
        return;
    }
    let mut d = Daemon::start("");
    d.stop();
    let again = d.spawn_again();
    let log = d.dir.path().join("daemon2.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !d.socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(again.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = again.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(d.dir.path().join("state/pvecri.redb").exists());
}

#[test]
fn non_root_users_are_refused() {
    if !require_root("non_root_users_are_refused") {
        return;
    }
    let out = Command::new(common::BIN)
        .arg("version")
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("must be run as root"), "{stderr}");
}

/// Doctor lines that depend on the machine rather than on pvecri and the
/// kernel: free disk space (other builds fill the disk), and a kubelet
/// another test or cluster runs, which never points at this test's
/// daemon. A failure of one of these is reported, not a test failure.
const MACHINE_DEPENDENT: [&str; 4] = ["nodefs", "imagefs", "kubelet cgroups", "kubelet endpoint"];

#[test]
fn doctor_passes_on_this_node() {
    if !require_root("doctor_passes_on_this_node") || !require_init("doctor_passes_on_this_node") {
        return;
    }
    // A bridge and subnet of its own (tests/network.rs): daemons of
    // parallel tests remove the default bridge when they stop.
    let d = Daemon::start(
        "[network]\nbridge = \"pvt-doctor\"\npod_cidr = \"10.78.91.0/24\"\nmasquerade = false\negress = false\n",
    );
    let config = d.config.to_str().unwrap();
    let out = pvecri(&["doctor", "--config", config]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    // The table: level, name, detail; a `fix:` line under every line
    // that is not ok.
    let lines: Vec<&str> = stdout.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("warn") || line.starts_with("FAIL") {
            assert!(
                lines
                    .get(i + 1)
                    .is_some_and(|l| l.trim_start().starts_with("fix: ")),
                "no fix under {line:?}:\n{stdout}"
            );
        }
    }
    let level_of = |name: &str| {
        let line = lines
            .iter()
            .find(|l| l.split("  ").map(str::trim).any(|w| w == name))
            .unwrap_or_else(|| panic!("no {name} line:\n{stdout}"));
        line.split_whitespace().next().unwrap().to_owned()
    };
    // What pvecri needs and this machine has, including what the running
    // daemon made: its socket, bridge and ready conditions.
    for name in [
        "liblxc",
        "lxc features",
        "namespaces",
        "seccomp",
        "pvecri-init",
        "devices",
        "devpts",
        "/dev/shm",
        "nftables",
        "bridge",
        "socket",
        "RuntimeReady",
        "NetworkReady",
        "kubelet",
        "proxmox",
    ] {
        assert_eq!(level_of(name), "ok", "{name}:\n{stdout}");
    }
    // What this machine lacks (AppArmor, ZFS) and pvecri does without.
    for name in ["cgroups", "overlayfs", "apparmor", "zfs", "criu"] {
        assert_ne!(level_of(name), "FAIL", "{name}:\n{stdout}");
    }
    // Present whatever their level: the disk checks.
    // Present whatever their level: the kernel's shaping features, which
    // depend on how the kernel was built and what it tells about it.
    for name in ["nodefs", "imagefs", "bandwidth"] {
        level_of(name);
    }
    let failed: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FAIL")).collect();
    for line in &failed {
        let name = MACHINE_DEPENDENT
            .iter()
            .find(|n| line.split("  ").map(str::trim).any(|w| w == **n));
        assert!(name.is_some(), "{line}:\n{stdout}");
        eprintln!("note: doctor fails on this machine, not on pvecri: {line}");
    }
    assert_eq!(out.status.success(), failed.is_empty(), "{stdout}");
    assert!(
        lines
            .last()
            .unwrap()
            .ends_with(&format!("{} fail", failed.len())),
        "{stdout}"
    );

    // The same checks as JSON, with the same exit code.
    let json = pvecri(&["doctor", "--config", config, "-o", "json"]);
    let checks: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        checks.len(),
        lines.iter().filter(|l| !l.starts_with(' ')).count() - 1
    );
    for c in &checks {
        let level = c["level"].as_str().unwrap();
        assert!(["ok", "warn", "fail"].contains(&level), "{c}");
        assert_eq!(c.get("fix").is_some(), level != "ok", "{c}");
    }
    let socket = checks.iter().find(|c| c["name"] == "socket").unwrap();
    assert_eq!(socket["level"], "ok", "{socket}");
    assert_eq!(
        json.status.success(),
        !checks.iter().any(|c| c["level"] == "fail")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_not_held_up_by_an_idle_client_connection() {
    if !require_root("sigterm_is_not_held_up_by_an_idle_client_connection") {
        return;
    }
    let mut d = Daemon::start("");
    // Like the kubelet: one connection, kept open after a call.
    let mut client = d.client().await;
    client
        .runtime
        .version(v1::VersionRequest::default())
        .await
        .unwrap();
    let status = tokio::task::block_in_place(|| d.stop());
    assert!(status.success(), "{status}: {}", d.log());
    drop(client);
}
