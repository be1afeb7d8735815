//! Nothing leaks and nothing is lost: processes a container's init leaves
//! behind, a monitor killed with SIGKILL, and a failure or a daemon crash
//! at every failure point of the CRI operations (`pvecri::testing::failpoint`),
//! each followed by a census of what the daemon's pods and containers left
//! on the node.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    container_config, create_container, mirror_config, require_init, require_registry,
    require_root, Daemon,
};
use pvecri::client::CriClient;
use pvecri::cri::v1;
use pvecri::testing::cgroups::tree;

const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";

fn ready(test: &str) -> bool {
    require_root(test) && require_registry(test) && require_init(test)
}

fn pod_config(name: &str, logs: &Path, pid: v1::NamespaceMode) -> v1::PodSandboxConfig {
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "reliability".into(),
            attempt: 0,
        }),
        log_directory: logs.join(name).display().to_string(),
        linux: Some(v1::LinuxPodSandboxConfig {
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(v1::NamespaceOption {
                    pid: pid as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn with_pid_mode(mut config: v1::ContainerConfig, pid: v1::NamespaceMode) -> v1::ContainerConfig {
    config.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(v1::LinuxContainerSecurityContext {
            namespace_options: Some(v1::NamespaceOption {
                pid: pid as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    config
}

async fn start(c: &mut CriClient, id: &str) -> Result<(), tonic::Status> {
    c.runtime
        .start_container(v1::StartContainerRequest {
            container_id: id.into(),
        })
        .await
        .map(|_| ())
}

async fn status(c: &mut CriClient, id: &str) -> v1::ContainerStatus {
    c.runtime
        .container_status(v1::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
}

/// Live processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(marker) && !tree::is_zombie(*pid)
        })
        .collect()
}

/// What of the pods and containers `ids` (and of the daemon in `d`) is
/// still on the node, by `pvecri census` of the daemon's state dir: what
/// the running daemon itself keeps (its lock, bridge and nftables table,
/// shared with the other test daemons) aside. Empty means clean.
fn census(d: &Daemon, ids: &HashSet<String>) -> Vec<String> {
    common::census_leftovers(d, ids, &["daemon", "bridges", "nft_tables", "nft_elements"])
}

/// Ids of the pods and containers the daemon knows or left dirs for.
async fn known_ids(d: &Daemon, c: Option<&mut CriClient>) -> HashSet<String> {
    let mut ids = HashSet::new();
    for sub in ["state/lxc", "run/containers", "run/ns", "state/sandboxes"] {
        for e in std::fs::read_dir(d.dir.path().join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            // The daemon's spare network namespaces are no pod's.
            if !name.starts_with(".spare-net-") {
                ids.insert(name);
            }
        }
    }
    if let Some(c) = c {
        if let Ok(r) = c
            .runtime
            .list_containers(v1::ListContainersRequest::default())
            .await
        {
            ids.extend(r.into_inner().containers.into_iter().map(|c| c.id));
        }
        if let Ok(r) = c
            .runtime
            .list_pod_sandbox(v1::ListPodSandboxRequest::default())
            .await
        {
            ids.extend(r.into_inner().items.into_iter().map(|p| p.id));
        }
    }
    ids
}

/// Stops and removes every pod (and with them every container).
async fn remove_all(c: &mut CriClient) {
    let pods = c
        .runtime
        .list_pod_sandbox(v1::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    for p in pods {
        common::stop_remove_pod(c, &p.id).await;
    }
    let left = c
        .runtime
        .list_containers(v1::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(left.is_empty(), "containers outlived their pods: {left:?}");
}

/// Waits until `f` holds, up to `timeout`.
async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

/// A container whose init forks a background child and is stopped (or
/// exits by itself) leaves no process behind, whether it runs in the
/// host's PID namespace or in its pod's shared one.
#[tokio::test(flavor = "multi_thread")]
async fn children_of_init_die_with_the_container() {
    if !ready("children_of_init_die_with_the_container") {
        return;
    }
    let d = Daemon::start(&mirror_config());
    let mut c = d.client().await;
    common::pull_image(&mut c, BUSYBOX).await;
    let logs = tempfile::tempdir().unwrap();
    let tag = std::process::id();
    for (n, mode) in [v1::NamespaceMode::Node, v1::NamespaceMode::Pod]
        .into_iter()
        .enumerate()
    {
        let sandbox = pod_config(&format!("leftovers-{n}"), logs.path(), mode);
        let pod = common::run_pod_sandbox(&mut c, &sandbox).await.unwrap();
        // Stopped: init gets SIGTERM and dies, its child would not.
        let stopped = format!("{}", 3_000_000 + tag * 10 + n as u32 * 2);
        let script = format!("sleep {stopped} & exec sleep 3600");
        let config = with_pid_mode(
            container_config("stopped", BUSYBOX, &["sh", "-c", &script]),
            mode,
        );
        let id = create_container(&mut c, &pod, &sandbox, config)
            .await
            .unwrap();
        start(&mut c, &id).await.unwrap();
        assert!(
            eventually(Duration::from_secs(10), || processes_with(&format!(
                "sleep {stopped}"
            ))
            .len()
                == 1)
            .await,
            "{mode:?}: the background child runs"
        );
        c.runtime
            .stop_container(v1::StopContainerRequest {
                container_id: id.clone(),
                timeout: 10,
            })
            .await
            .unwrap();
        assert_eq!(
            status(&mut c, &id).await.state,
            v1::ContainerState::ContainerExited as i32
        );
        assert_eq!(
            processes_with(&format!("sleep {stopped}")),
            Vec::<i32>::new(),
            "{mode:?}: StopContainer left init's child running"
        );
        // Exits by itself: the child goes with it.
        let exited = format!("{}", 3_000_000 + tag * 10 + n as u32 * 2 + 1);
        let script = format!("sleep {exited} & sleep 1; exit 3");
        let config = with_pid_mode(
            container_config("exits", BUSYBOX, &["sh", "-c", &script]),
            mode,
        );
        let id2 = create_container(&mut c, &pod, &sandbox, config)
            .await
            .unwrap();
        start(&mut c, &id2).await.unwrap();
        let mut last = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let s = status(&mut c, &id2).await;
            if s.state == v1::ContainerState::ContainerExited as i32 {
                last = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let s = last.expect("the container exits");
        assert_eq!(s.exit_code, 3, "{mode:?}");
        assert_eq!(
            processes_with(&format!("sleep {exited}")),
            Vec::<i32>::new(),
            "{mode:?}: init's child outlived the container's exit"
        );
        let ids: HashSet<String> = [pod.clone(), id.clone(), id2.clone()].into_iter().collect();
        common::stop_remove_pod(&mut c, &pod).await;
        let left = census(&d, &ids);
        assert!(left.is_empty(), "{mode:?}: left behind: {left:#?}");
    }
}

/// A monitor killed with SIGKILL leaves its container in a state the
/// kubelet can act on: reported exited (with why), stoppable and
/// removable, with nothing left behind.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_monitor_ends_its_container_cleanly() {
    if !ready("a_killed_monitor_ends_its_container_cleanly") {
        return;
    }
    let d = Daemon::start(&mirror_config());
    let mut c = d.client().await;
    common::pull_image(&mut c, BUSYBOX).await;
    let logs = tempfile::tempdir().unwrap();
    let sandbox = pod_config("monitor", logs.path(), v1::NamespaceMode::Container);
    let pod = common::run_pod_sandbox(&mut c, &sandbox).await.unwrap();
    let marker = format!("{}", 4_000_000 + std::process::id());
    let config = container_config("victim", BUSYBOX, &["sleep", &marker]);
    let id = create_container(&mut c, &pod, &sandbox, config)
        .await
        .unwrap();
    start(&mut c, &id).await.unwrap();
    let pid_file = d
        .dir
        .path()
        .join("run/containers")
        .join(&id)
        .join("monitor.pid");
    let monitor: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Nobody asks about the container: the daemon notices the monitor end
    // by itself (a pidfd per monitor), so a list, which reads no files,
    // shows it exited.
    let mut listed_exited = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && !listed_exited {
        let exited = c
            .runtime
            .list_containers(v1::ListContainersRequest {
                filter: Some(v1::ContainerFilter {
                    state: Some(v1::ContainerStateValue {
                        state: v1::ContainerState::ContainerExited as i32,
                    }),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
        listed_exited = exited.iter().any(|x| x.id == id);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(listed_exited, "ListContainers shows the container exited");
    let mut exited = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let s = status(&mut c, &id).await;
        if s.state == v1::ContainerState::ContainerExited as i32 {
            exited = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = exited.expect("a container without a monitor is reported exited");
    assert_eq!(s.reason, "Error");
    assert!(s.message.contains("monitor"), "{}", s.message);
    assert!(
        eventually(Duration::from_secs(10), || processes_with(&format!(
            "sleep {marker}"
        ))
        .is_empty())
        .await,
        "the workload of a lost monitor is killed"
    );
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
    let ids: HashSet<String> = [pod.clone(), id].into_iter().collect();
    common::stop_remove_pod(&mut c, &pod).await;
    let left = census(&d, &ids);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// Every CRI step in order: pull, pod, create, start, stop, remove.
async fn lifecycle(c: &mut CriClient, logs: &Path, name: &str) -> Result<(), tonic::Status> {
    c.image
        .pull_image(v1::PullImageRequest {
            image: Some(v1::ImageSpec {
                image: BUSYBOX.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    let sandbox = pod_config(name, logs, v1::NamespaceMode::Pod);
    let pod = common::run_pod_sandbox(c, &sandbox).await?;
    let config = container_config(
        "work",
        BUSYBOX,
        &["sh", "-c", "sleep 3600 & exec sleep 3600"],
    );
    let id = create_container(c, &pod, &sandbox, config).await?;
    start(c, &id).await?;
    c.runtime
        .stop_container(v1::StopContainerRequest {
            container_id: id.clone(),
            timeout: 2,
        })
        .await?;
    c.runtime
        .remove_container(v1::RemoveContainerRequest { container_id: id })
        .await?;
    c.runtime
        .stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await?;
    c.runtime
        .remove_pod_sandbox(v1::RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await?;
    Ok(())
}

/// Every container the daemon reports running really runs: ExecSync works.
async fn running_ones_run(c: &mut CriClient) -> Result<(), String> {
    let list = c
        .runtime
        .list_containers(v1::ListContainersRequest::default())
        .await
        .map_err(|e| e.to_string())?
        .into_inner()
        .containers;
    for k in list
        .iter()
        .filter(|k| k.state == v1::ContainerState::ContainerRunning as i32)
    {
        let r = c
            .runtime
            .exec_sync(v1::ExecSyncRequest {
                container_id: k.id.clone(),
                cmd: vec!["true".into()],
                timeout: 10,
            })
            .await
            .map_err(|e| format!("{} reported running, exec fails: {e}", k.id))?
            .into_inner();
        if r.exit_code != 0 {
            return Err(format!(
                "{} reported running, exec exits {}",
                k.id, r.exit_code
            ));
        }
    }
    Ok(())
}

/// At every failure point: the step failing leaves nothing once the pods
/// are removed; the daemon dying there (SIGKILL) loses nothing it
/// reported and leaves nothing once restarted and the pods removed.
#[tokio::test(flavor = "multi_thread")]
async fn every_failure_point_fails_or_crashes_cleanly() {
    if !ready("every_failure_point_fails_or_crashes_cleanly") {
        return;
    }
    let logs = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (n, point) in pvecri::testing::failpoint::POINTS.iter().enumerate() {
        // The step fails.
        let mut d = Daemon::start(&mirror_config());
        d.failpoints = Some(format!("{point}=error"));
        d.restart();
        let mut c = d.client().await;
        let result = lifecycle(&mut c, logs.path(), &format!("fe{n}")).await;
        match &result {
            Err(status) if status.message().contains(point) => {}
            other => failures.push(format!("{point}=error: the lifecycle gave {other:?}")),
        }
        let mut ids = known_ids(&d, Some(&mut c)).await;
        remove_all(&mut c).await;
        ids.extend(known_ids(&d, None).await);
        let left = census(&d, &ids);
        if !left.is_empty() {
            failures.push(format!("{point}=error left {left:#?}"));
        }
        drop(c);
        drop(d);

        // The daemon dies at the step.
        let mut d = Daemon::start(&mirror_config());
        d.failpoints = Some(format!("{point}=crash"));
        d.restart();
        let mut c = d.client().await;
        let result = lifecycle(&mut c, logs.path(), &format!("fc{n}")).await;
        if result.is_ok() || d.wait_exit(Duration::from_secs(10)).is_none() {
            failures.push(format!(
                "{point}=crash: the daemon did not die there ({result:?})"
            ));
        }
        let mut ids = known_ids(&d, None).await;
        d.failpoints = None;
        d.restart();
        let mut c = d.client().await;
        if let Err(e) = running_ones_run(&mut c).await {
            failures.push(format!("{point}=crash: {e}"));
        }
        ids.extend(known_ids(&d, Some(&mut c)).await);
        remove_all(&mut c).await;
        let left = census(&d, &ids);
        if !left.is_empty() {
            failures.push(format!("{point}=crash left {left:#?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
