//! Pods and containers on real LXC containers, through the real daemon.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{
    busybox_env as env, container_config, create_container, pull_image,
    require_containers as ready, BusyboxEnv as Env, Daemon, BUSYBOX,
};
use pvecri::cri::v1;

fn pod_config(e: &Env, name: &str) -> v1::PodSandboxConfig {
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "test".into(),
            attempt: 0,
        }),
        hostname: format!("host-{name}"),
        log_directory: e.logs.path().join(name).display().to_string(),
        dns_config: Some(v1::DnsConfig {
            servers: vec!["10.0.0.10".into()],
            searches: vec!["test.svc".into()],
            options: vec!["ndots:5".into()],
        }),
        labels: HashMap::from([("app".into(), name.into())]),
        ..Default::default()
    }
}

async fn run_pod(e: &mut Env, name: &str) -> String {
    let config = pod_config(e, name);
    common::run_pod_sandbox(&mut e.c, &config).await.unwrap()
}

async fn create(e: &mut Env, pod: &str, name: &str, cmd: &[&str]) -> Result<String, tonic::Status> {
    let pod_name = match pod_name_of(e, pod).await {
        Some(n) => n,
        None => "unknown".to_owned(),
    };
    let pod_cfg = pod_config(e, &pod_name);
    let config = v1::ContainerConfig {
        labels: HashMap::from([("c".into(), name.into())]),
        ..container_config(name, BUSYBOX, cmd)
    };
    create_container(&mut e.c, pod, &pod_cfg, config).await
}

async fn pod_name_of(e: &mut Env, pod: &str) -> Option<String> {
    let status =
        e.c.runtime
            .pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: pod.into(),
                verbose: false,
            })
            .await
            .ok()?;
    Some(status.into_inner().status?.metadata?.name)
}

async fn start(e: &mut Env, id: &str) {
    e.c.runtime
        .start_container(v1::StartContainerRequest {
            container_id: id.into(),
        })
        .await
        .unwrap();
}

async fn status(e: &mut Env, id: &str) -> v1::ContainerStatus {
    e.c.runtime
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

async fn wait_exited(e: &mut Env, id: &str) -> v1::ContainerStatus {
    common::wait_exited(&mut e.c, id).await
}

async fn exec(
    e: &mut Env,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<v1::ExecSyncResponse, tonic::Status> {
    e.c.runtime
        .exec_sync(v1::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        })
        .await
        .map(|r| r.into_inner())
}

async fn stop_remove_pod(e: &mut Env, pod: &str) {
    common::stop_remove_pod(&mut e.c, pod).await;
}

fn count_entries(path: std::path::PathBuf) -> usize {
    std::fs::read_dir(path).map(|r| r.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_logs_and_no_leaks() {
    if !ready("exit_codes_logs_and_no_leaks") {
        return;
    }
    let mut e = env().await;
    let pod = run_pod(&mut e, "exits").await;

    let ok = create(
        &mut e,
        &pod,
        "ok",
        &["sh", "-c", "echo out; echo err >&2; exit 0"],
    )
    .await
    .unwrap();
    let three = create(&mut e, &pod, "three", &["sh", "-c", "exit 3"])
        .await
        .unwrap();
    let created = status(&mut e, &ok).await;
    assert_eq!(created.state, v1::ContainerState::ContainerCreated as i32);
    assert!(created.created_at > 0 && created.started_at == 0);
    start(&mut e, &ok).await;
    start(&mut e, &three).await;
    let s = wait_exited(&mut e, &ok).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"));
    assert!(s.started_at > 0 && s.finished_at >= s.started_at);
    let s = wait_exited(&mut e, &three).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (3, "Error"));

    let log = std::fs::read_to_string(e.logs.path().join("exits/ok.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.iter().any(|l| l.ends_with(" stdout F out")), "{log}");
    assert!(lines.iter().any(|l| l.ends_with(" stderr F err")), "{log}");
    assert_eq!(
        s.log_path,
        e.logs.path().join("exits/three.log").display().to_string()
    );

    let missing = create(&mut e, &pod, "missing", &["/no/such/binary"])
        .await
        .unwrap();
    start(&mut e, &missing).await;
    let s = wait_exited(&mut e, &missing).await;
    assert_eq!(s.exit_code, 127);
    assert_eq!(s.reason, "StartError");
    assert!(s.message.contains("/no/such/binary"), "{}", s.message);

    let ctrs =
        e.c.runtime
            .list_containers(v1::ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
    assert_eq!(ctrs.len(), 3);

    stop_remove_pod(&mut e, &pod).await;
    let root = e.d.dir.path();
    assert_eq!(count_entries(root.join("run/containers")), 0);
    assert_eq!(count_entries(root.join("state/lxc")), 0);
    assert_eq!(
        count_entries(root.join("state/snapshots/overlay/containers")),
        0
    );
    assert_eq!(common::pod_ns_dirs(&root.join("run/ns")), 0);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    // The private bind mount of run/ns itself and the daemon's spare
    // network namespaces stay while the daemon runs.
    let ns_root = format!("{} ", root.join("run/ns").display());
    let spares = format!("{}/.spare-net-", root.join("run/ns").display());
    let leaked: Vec<&str> = mounts
        .lines()
        .filter(|l| {
            l.contains(root.to_str().unwrap()) && !l.contains(&ns_root) && !l.contains(&spares)
        })
        .collect();
    assert!(leaked.is_empty(), "mounts leaked:\n{}", leaked.join("\n"));
    // Stop and remove of what is gone are no-ops.
    stop_remove_pod(&mut e, &pod).await;
    e.c.runtime
        .remove_container(v1::RemoveContainerRequest { container_id: ok })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_output_exit_code_and_timeout() {
    if !ready("exec_sync_output_exit_code_and_timeout") {
        return;
    }
    let mut e = env().await;
    let pod = run_pod(&mut e, "exec").await;
    let id = create(&mut e, &pod, "sleeper", &["sleep", "1000"])
        .await
        .unwrap();
    start(&mut e, &id).await;
    let r = exec(
        &mut e,
        &id,
        &["sh", "-c", "echo hi; echo oops >&2; exit 7"],
        10,
    )
    .await
    .unwrap();
    assert_eq!(r.stdout, b"hi\n");
    assert_eq!(r.stderr, b"oops\n");
    assert_eq!(r.exit_code, 7);
    let r = exec(&mut e, &id, &["hostname"], 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "host-exec");
    // The runc umask, not the daemon's private one: files a container
    // writes are readable by the pod's other users.
    let r = exec(
        &mut e,
        &id,
        &["sh", "-c", "umask; grep Umask /proc/1/status"],
        10,
    )
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(out.starts_with("0022\n"), "{out}");
    assert!(out.contains("Umask:\t0022"), "{out}");
    let r = exec(&mut e, &id, &["cat", "/etc/resolv.conf"], 10)
        .await
        .unwrap();
    let resolv = String::from_utf8_lossy(&r.stdout);
    assert!(
        resolv.contains("nameserver 10.0.0.10") && resolv.contains("search test.svc"),
        "{resolv}"
    );

    let started = Instant::now();
    let err = exec(&mut e, &id, &["sleep", "30"], 1).await.unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::DeadlineExceeded,
        "{}",
        err.message()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let r = exec(
        &mut e,
        &id,
        &["sh", "-c", "ps | grep 'sleep 30' | grep -v grep || true"],
        10,
    )
    .await
    .unwrap();
    assert!(
        r.stdout.is_empty(),
        "timed-out exec still runs: {}",
        String::from_utf8_lossy(&r.stdout)
    );

    // Stop escalates to SIGKILL: sleep as PID 1 ignores SIGTERM.
    e.c.runtime
        .stop_container(v1::StopContainerRequest {
            container_id: id.clone(),
            timeout: 1,
        })
        .await
        .unwrap();
    let s = status(&mut e, &id).await;
    assert_eq!(s.exit_code, 137);
    let err = exec(&mut e, &id, &["true"], 10).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    stop_remove_pod(&mut e, &pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_unique_and_bad_requests_are_refused() {
    if !ready("names_are_unique_and_bad_requests_are_refused") {
        return;
    }
    let mut e = env().await;
    let pod = run_pod(&mut e, "names").await;
    let config = pod_config(&e, "names");
    let err =
        e.c.runtime
            .run_pod_sandbox(v1::RunPodSandboxRequest {
                config: Some(config),
                ..Default::default()
            })
            .await
            .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);

    create(&mut e, &pod, "one", &["true"]).await.unwrap();
    let err = create(&mut e, &pod, "one", &["true"]).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);

    let err = create(&mut e, "no-such-pod", "x", &["true"])
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    let err =
        e.c.runtime
            .start_container(v1::StartContainerRequest {
                container_id: "nope".into(),
            })
            .await
            .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    let err =
        e.c.runtime
            .container_status(v1::ContainerStatusRequest {
                container_id: String::new(),
                verbose: false,
            })
            .await
            .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let pods =
        e.c.runtime
            .list_pod_sandbox(v1::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
    assert_eq!(pods.len(), 1);
    stop_remove_pod(&mut e, &pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_survive_a_daemon_kill() {
    if !ready("containers_survive_a_daemon_kill") {
        return;
    }
    let mut e = env().await;
    let pod = run_pod(&mut e, "survive").await;
    let id = create(
        &mut e,
        &pod,
        "long",
        &["sh", "-c", "sleep 2; echo done; exit 4"],
    )
    .await
    .unwrap();
    start(&mut e, &id).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(e.d.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    e.d.restart();
    e.c = e.d.client().await;
    let s = status(&mut e, &id).await;
    assert_ne!(s.state, v1::ContainerState::ContainerUnknown as i32);
    let s = wait_exited(&mut e, &id).await;
    assert_eq!(s.exit_code, 4, "{s:?}");
    let log = std::fs::read_to_string(e.logs.path().join("survive/long.log")).unwrap();
    assert!(log.contains("stdout F done"), "{log}");
    stop_remove_pod(&mut e, &pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_right_after_start_reaches_the_workload() {
    if !ready("stop_right_after_start_reaches_the_workload") {
        return;
    }
    let mut e = env().await;
    let pod = run_pod(&mut e, "early-stop").await;
    for i in 0..3 {
        let id = create(
            &mut e,
            &pod,
            &format!("trap{i}"),
            &[
                "sh",
                "-c",
                "trap 'exit 0' TERM; echo trapped; while true; do sleep 0.05; done",
            ],
        )
        .await
        .unwrap();
        start(&mut e, &id).await;
        // As PID 1 the shell ignores SIGTERM until its trap is installed
        // (true with any runtime): stop once it says so.
        let log = e.logs.path().join(format!("early-stop/trap{i}.log"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("trapped")
        {
            assert!(Instant::now() < deadline, "the trap was never installed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t = Instant::now();
        e.c.runtime
            .stop_container(v1::StopContainerRequest {
                container_id: id.clone(),
                timeout: 30,
            })
            .await
            .unwrap();
        // SIGTERM reached the workload's handler: no wait for the SIGKILL.
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "stop took {:?}",
            t.elapsed()
        );
        assert_eq!(status(&mut e, &id).await.exit_code, 0);
    }
    stop_remove_pod(&mut e, &pod).await;
}

/// The container's cgroup directory for a controller file, from the
/// status' verbose info.
fn cgroup_file(cgroup: &str, file: &str) -> std::path::PathBuf {
    let layout = pvecri::testing::cgroups::detect().unwrap();
    pvecri::testing::cgroups::limits::file_dir(&layout, cgroup, file).join(file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_container_resources_reaches_the_live_cgroup() {
    if !ready("update_container_resources_reaches_the_live_cgroup") {
        return;
    }
    let mut e = env().await;
    let pod = run_pod(&mut e, "resources").await;
    let id = create(&mut e, &pod, "r", &["sleep", "1000"]).await.unwrap();
    start(&mut e, &id).await;
    let info =
        e.c.runtime
            .container_status(v1::ContainerStatusRequest {
                container_id: id.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner()
            .info;
    let detail: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    let cgroup = detail["cgroup"].as_str().unwrap().to_owned();
    let v2 = matches!(
        pvecri::testing::cgroups::detect().unwrap(),
        pvecri::testing::cgroups::CgroupLayout::Unified
    );
    let (file, expected) = if v2 {
        ("cpu.weight", "20")
    } else {
        ("cpu.shares", "512")
    };
    e.c.runtime
        .update_container_resources(v1::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(v1::LinuxContainerResources {
                cpu_shares: 512,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let value = std::fs::read_to_string(cgroup_file(&cgroup, file)).unwrap();
    assert_eq!(value.trim(), expected, "{file} of {cgroup}");
    let s = status(&mut e, &id).await;
    assert_eq!(s.resources.unwrap().linux.unwrap().cpu_shares, 512);
    stop_remove_pod(&mut e, &pod).await;
}

/// A workload reads its own limits where runtimes put them: its cgroup at
/// /sys/fs/cgroup (read-only, of its cgroup namespace), as the JVM and Go's
/// automaxprocs do; it cannot raise them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_reads_its_limits_in_sys_fs_cgroup() {
    if !ready("a_container_reads_its_limits_in_sys_fs_cgroup") {
        return;
    }
    let mut e = env().await;
    let pod = run_pod(&mut e, "cgroupfs").await;
    let pod_cfg = pod_config(&e, "cgroupfs");
    let config = v1::ContainerConfig {
        linux: Some(v1::LinuxContainerConfig {
            resources: Some(v1::LinuxContainerResources {
                memory_limit_in_bytes: 48 << 20,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..container_config("limits", BUSYBOX, &["sleep", "1000"])
    };
    let id = create_container(&mut e.c, &pod, &pod_cfg, config)
        .await
        .unwrap();
    start(&mut e, &id).await;
    let v2 = matches!(
        pvecri::testing::cgroups::detect().unwrap(),
        pvecri::testing::cgroups::CgroupLayout::Unified
    );
    let file = if v2 {
        "/sys/fs/cgroup/memory.max"
    } else {
        "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    };
    let r = exec(&mut e, &id, &["cat", file], 10).await.unwrap();
    assert_eq!(r.exit_code, 0, "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).trim(),
        (48u64 << 20).to_string()
    );
    let r = exec(
        &mut e,
        &id,
        &["sh", "-c", &format!("echo max > {file}")],
        10,
    )
    .await
    .unwrap();
    assert_ne!(r.exit_code, 0, "the limit is not the workload's to change");
    let r = exec(&mut e, &id, &["cat", file], 10).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).trim(),
        (48u64 << 20).to_string()
    );
    // Its own cgroup is the root it sees: nothing of the node's tree (an
    // exec'd process sits in liblxc's `.lxc` leaf on cgroup2).
    let r = exec(&mut e, &id, &["cat", "/proc/self/cgroup"], 10)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&r.stdout).into_owned();
    assert!(
        text.lines()
            .all(|l| l.ends_with(":/") || l.ends_with(":/.lxc")),
        "the container's cgroup paths: {text}"
    );
    stop_remove_pod(&mut e, &pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_is_reported_as_oomkilled() {
    if !ready("an_oom_kill_is_reported_as_oomkilled") {
        return;
    }
    let mut e = env().await;
    let pod = run_pod(&mut e, "oom").await;
    let pod_cfg = pod_config(&e, "oom");
    let config = v1::ContainerConfig {
        linux: Some(v1::LinuxContainerConfig {
            resources: Some(v1::LinuxContainerResources {
                memory_limit_in_bytes: 32 << 20,
                ..Default::default()
            }),
            ..Default::default()
        }),
        log_path: String::new(),
        ..container_config(
            "hog",
            BUSYBOX,
            &[
                "sh",
                "-c",
                "x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo survived",
            ],
        )
    };
    let id = create_container(&mut e.c, &pod, &pod_cfg, config)
        .await
        .unwrap();
    start(&mut e, &id).await;
    // Filling 32 MiB through a pipe takes seconds under the VM stage's
    // software emulation on a busy host: a wider bound than the others.
    let s = common::wait_exited_within(&mut e.c, &id, Duration::from_secs(90)).await;
    assert_eq!(s.reason, "OOMKilled", "{s:?}");
    assert_eq!(s.exit_code, 137);
    stop_remove_pod(&mut e, &pod).await;
}

/// Kills the daemon with SIGKILL, as a crash would.
fn crash(d: &mut Daemon) {
    let pid = nix::unistd::Pid::from_raw(d.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    // Reaped by restart's stop (it is already dead).
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reconciles_half_made_and_lost_state() {
    if !ready("restart_reconciles_half_made_and_lost_state") {
        return;
    }
    use pvecri::testing::container::ContainerRecord;
    use pvecri::testing::pod::PodRecord;
    let mut e = env().await;
    let state = e.d.dir.path().join("state");
    let run = e.d.dir.path().join("run");

    // A running container whose record a crash never wrote.
    let pod = run_pod(&mut e, "reconcile").await;
    let orphan = create(&mut e, &pod, "orphan", &["sleep", "3600"])
        .await
        .unwrap();
    start(&mut e, &orphan).await;
    let orphan_pid = status_pid(&mut e, &orphan).await;
    // A container whose monitor and process die while the daemon is down.
    let lost = create(&mut e, &pod, "lost", &["sleep", "3600"])
        .await
        .unwrap();
    start(&mut e, &lost).await;
    let lost_pid = status_pid(&mut e, &lost).await;
    let lost_monitor: i32 =
        std::fs::read_to_string(run.join("containers").join(&lost).join("monitor.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    // A pod whose record a crash never wrote.
    let half_pod = run_pod(&mut e, "half-pod").await;

    crash(&mut e.d);
    {
        // The killed daemon's lock on the store goes with its fds.
        let deadline = Instant::now() + Duration::from_secs(10);
        let store = loop {
            match pvecri::testing::store::Store::open(&state.join("pvecri.redb")) {
                Ok(s) => break s,
                Err(err) if Instant::now() < deadline => {
                    let _ = err;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(err) => panic!("cannot open the store: {err}"),
            }
        };
        assert!(store.delete::<ContainerRecord>(&orphan).unwrap());
        // A new pod's record is synced just after RunPodSandbox answers
        // (`put_soon`): a crash this soon may have lost it already, which
        // is the very case made here.
        store.delete::<PodRecord>(&half_pod).unwrap();
    }
    for pid in [lost_monitor, lost_pid] {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    e.d.restart();
    e.c = e.d.client().await;

    // The orphan's process (at most a zombie awaiting its reaper),
    // directories and root filesystem mount are gone.
    let state_of =
        std::fs::read_to_string(format!("/proc/{orphan_pid}/status")).unwrap_or_default();
    assert!(
        state_of.is_empty()
            || state_of
                .lines()
                .any(|l| l.starts_with("State:") && l.contains('Z')),
        "{state_of}"
    );
    assert!(!state.join("lxc").join(&orphan).exists());
    let orphan_run = run.join("containers").join(&orphan);
    assert!(
        !orphan_run.exists(),
        "the orphan's run dir is left: {:?}\ndaemon log:\n{}",
        std::fs::read_dir(&orphan_run)
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>()),
        e.d.log()
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&orphan),
        "the orphan's rootfs is still mounted"
    );
    // The half-made pod's namespaces are released.
    assert!(!run.join("ns").join(&half_pod).exists());
    // The lost container is reported exited, not running forever.
    let s = status(&mut e, &lost).await;
    assert_eq!(s.state, v1::ContainerState::ContainerExited as i32, "{s:?}");
    assert_eq!(s.exit_code, 255);
    assert!(s.message.contains("lost"), "{s:?}");
    assert!(e.d.log().contains("reconciled the store with the node"));
    stop_remove_pod(&mut e, &pod).await;
}

async fn status_pid(e: &mut Env, id: &str) -> i32 {
    let info =
        e.c.runtime
            .container_status(v1::ContainerStatusRequest {
                container_id: id.into(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner()
            .info;
    let v: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    v["pid"].as_i64().unwrap() as i32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_volumes_are_read_only_and_cleaned_up() {
    if !ready("image_volumes_are_read_only_and_cleaned_up") {
        return;
    }
    let mut e = env().await;
    let pod = run_pod(&mut e, "imagevol").await;
    let pod_cfg = pod_config(&e, "imagevol");
    let request = |readonly: bool, sub_path: &str| v1::CreateContainerRequest {
        pod_sandbox_id: pod.clone(),
        config: Some(v1::ContainerConfig {
            metadata: Some(v1::ContainerMetadata {
                name: format!("iv-{readonly}-{}", sub_path.replace('/', "_")),
                attempt: 0,
            }),
            image: Some(v1::ImageSpec {
                image: BUSYBOX.into(),
                ..Default::default()
            }),
            command: vec!["sleep".into(), "3600".into()],
            mounts: vec![v1::Mount {
                container_path: "/iv".into(),
                readonly,
                image: Some(v1::ImageSpec {
                    image: BUSYBOX.into(),
                    ..Default::default()
                }),
                image_sub_path: sub_path.into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        sandbox_config: Some(pod_cfg.clone()),
    };
    for (readonly, sub, field) in [
        (false, "", "config.mounts[0].readonly"),
        (true, "../etc", "config.mounts[0].image_sub_path"),
        (true, "no/such/dir", "image_sub_path"),
    ] {
        let err =
            e.c.runtime
                .create_container(request(readonly, sub))
                .await
                .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
    let id =
        e.c.runtime
            .create_container(request(true, "bin"))
            .await
            .unwrap()
            .into_inner()
            .container_id;
    start(&mut e, &id).await;
    let out = exec(&mut e, &id, &["/iv/sh", "-c", "echo from the volume"], 10)
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from the volume\n");
    let out = exec(&mut e, &id, &["touch", "/iv/x"], 10).await.unwrap();
    assert_ne!(out.exit_code, 0, "an image volume is read-only");
    let s = status(&mut e, &id).await;
    let m = s.mounts.iter().find(|m| m.container_path == "/iv").unwrap();
    assert!(
        m.image.as_ref().unwrap().image_ref.starts_with("sha256:"),
        "{m:?}"
    );
    stop_remove_pod(&mut e, &pod).await;
    let snapshots = e.d.dir.path().join("state/snapshots/overlay/containers");
    assert_eq!(
        count_entries(snapshots),
        0,
        "image volume snapshots are removed"
    );
}

/// The kubelet makes `kubepods/<qos>/pod<uid>` itself on cgroup v1, with
/// cpus and mems filled in but `clone_children` off; a container cgroup
/// created beneath must still get cpus, or nothing can enter it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_start_under_kubelet_made_cpuset_cgroups() {
    if !ready("containers_start_under_kubelet_made_cpuset_cgroups") {
        return;
    }
    let mounts = pvecri::testing::cgroups::read_mounts().unwrap();
    let Some(cpuset) = pvecri::testing::cgroups::cpuset::mount_point(&mounts) else {
        eprintln!("skipping containers_start_under_kubelet_made_cpuset_cgroups: no cgroup v1 cpuset hierarchy on this node");
        return;
    };
    let top = format!("pvecri-it-kubepods-{}", std::process::id());
    let _tree = common::CgroupTreeGuard(top.clone());
    let pod_dir = cpuset.join(&top).join("podx");
    std::fs::create_dir_all(&pod_dir).unwrap();
    for dir in [cpuset.join(&top), pod_dir.clone()] {
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let value = std::fs::read_to_string(cpuset.join(file)).unwrap();
            std::fs::write(dir.join(file), value.trim()).unwrap();
        }
        std::fs::write(dir.join("cgroup.clone_children"), "0").unwrap();
    }

    let mut e = env().await;
    let mut config = pod_config(&e, "kubecg");
    config.linux = Some(v1::LinuxPodSandboxConfig {
        cgroup_parent: format!("{top}/podx"),
        ..Default::default()
    });
    let pod = common::run_pod_sandbox(&mut e.c, &config).await.unwrap();
    let created = create_container(
        &mut e.c,
        &pod,
        &config,
        container_config("c", BUSYBOX, &["sleep", "1000"]),
    )
    .await;
    let result = match created {
        Ok(id) => {
            start(&mut e, &id).await;
            let r = exec(&mut e, &id, &["true"], 10).await.unwrap();
            // The container's cpuset cgroup, as the host sees it.
            let leaf = pod_dir.join(&id);
            Ok((
                r.exit_code,
                std::fs::read_to_string(leaf.join("cpuset.cpus")),
            ))
        }
        Err(status) => Err(status),
    };
    stop_remove_pod(&mut e, &pod).await;
    let (code, cpus) = result.expect("CreateContainer under a kubelet-made cgroup");
    assert_eq!(code, 0);
    assert!(!cpus.unwrap().trim().is_empty());
}

/// The kubelet creates containers by image ID; their status (which it
/// copies into the pod's) names the image as the user wrote it, or by its
/// tag, and keeps the ID in image_ref/image_id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_the_image_the_user_asked_for() {
    if !ready("status_names_the_image_the_user_asked_for") {
        return;
    }
    let mut e = env().await;
    let image_id =
        e.c.image
            .image_status(v1::ImageStatusRequest {
                image: Some(v1::ImageSpec {
                    image: BUSYBOX.into(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .image
            .unwrap()
            .id;
    let pod = run_pod(&mut e, "imgname").await;
    let pod_cfg = pod_config(&e, "imgname");
    let mut seen = Vec::new();
    for (name, user_specified) in [("by-id", ""), ("by-id-named", "busybox-as-typed")] {
        let config = v1::ContainerConfig {
            image: Some(v1::ImageSpec {
                image: image_id.clone(),
                user_specified_image: user_specified.into(),
                ..Default::default()
            }),
            ..container_config(name, "", &["true"])
        };
        let id = create_container(&mut e.c, &pod, &pod_cfg, config)
            .await
            .unwrap();
        let s = status(&mut e, &id).await;
        assert_eq!(s.image_id, image_id);
        seen.push(s.image.unwrap());
    }
    assert_eq!(seen[0].image, BUSYBOX);
    assert_eq!(seen[1].image, "busybox-as-typed");
    assert_eq!(seen[1].user_specified_image, "busybox-as-typed");
    stop_remove_pod(&mut e, &pod).await;
}

/// A CreateContainer that fails after the container's log file was opened
/// leaves no log file: the kubelet counts restarts from the files it finds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_create_leaves_no_log_file() {
    if !ready("a_failed_create_leaves_no_log_file") {
        return;
    }
    let mut e = env().await;
    let pod = run_pod(&mut e, "failedcreate").await;
    let pod_cfg = pod_config(&e, "failedcreate");
    // A dangling symlink exists (pvecri does not create it as a missing
    // source), and liblxc fails to bind what it points at.
    let dangling = e.logs.path().join("dangling");
    std::os::unix::fs::symlink("/nonexistent/pvecri-test-source", &dangling).unwrap();
    let config = v1::ContainerConfig {
        log_path: "broken/0.log".into(),
        mounts: vec![v1::Mount {
            container_path: "/data".into(),
            host_path: dangling.to_str().unwrap().into(),
            ..Default::default()
        }],
        ..container_config("broken", BUSYBOX, &["true"])
    };
    let err = create_container(&mut e.c, &pod, &pod_cfg, config)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Internal, "{err:?}");
    let log = e.logs.path().join("failedcreate/broken/0.log");
    assert!(!log.exists(), "{} was left behind", log.display());
    stop_remove_pod(&mut e, &pod).await;
}

/// A host path volume whose source is missing gets it as an empty
/// directory (mode 0755, parents too), as containerd and CRI-O do, and
/// the container writes into it; the host sees the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_host_path_source_is_created_as_a_directory() {
    if !ready("a_missing_host_path_source_is_created_as_a_directory") {
        return;
    }
    let mut e = env().await;
    let pod = run_pod(&mut e, "mkhostpath").await;
    let pod_cfg = pod_config(&e, "mkhostpath");
    let source = e.logs.path().join("volumes/a/b");
    let config = v1::ContainerConfig {
        mounts: vec![v1::Mount {
            container_path: "/data".into(),
            host_path: source.to_str().unwrap().into(),
            ..Default::default()
        }],
        ..container_config("writer", BUSYBOX, &["sh", "-c", "echo hi > /data/f"])
    };
    let id = create_container(&mut e.c, &pod, &pod_cfg, config)
        .await
        .unwrap();
    start(&mut e, &id).await;
    assert_eq!(wait_exited(&mut e, &id).await.exit_code, 0);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&source).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o755);
    assert_eq!(std::fs::read_to_string(source.join("f")).unwrap(), "hi\n");
    stop_remove_pod(&mut e, &pod).await;
}

/// A command writing far more than ExecSync keeps is read to its end: the
/// call returns promptly with the kept head (stdout and stderr together fit
/// in one kubelet response), with and without a timeout. A command still
/// writing at its timeout times out, and a process left in the background
/// holding the output open does not hold the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_output_past_the_cap_is_truncated_not_blocking() {
    if !ready("exec_sync_output_past_the_cap_is_truncated_not_blocking") {
        return;
    }
    // 16 MiB (the kubelet's gRPC receive limit) less 4 KiB for framing.
    const KEPT: usize = (16 << 20) - (4 << 10);
    let mut e = env().await;
    let pod = run_pod(&mut e, "bigexec").await;
    let id = create(&mut e, &pod, "sleeper", &["sleep", "1000"])
        .await
        .unwrap();
    start(&mut e, &id).await;
    for timeout in [0, 60] {
        let started = Instant::now();
        let r = exec(
            &mut e,
            &id,
            &["head", "-c", "41943040", "/dev/zero"],
            timeout,
        )
        .await
        .unwrap();
        assert_eq!(r.exit_code, 0, "timeout {timeout}");
        assert_eq!(r.stdout.len(), KEPT, "timeout {timeout}");
        assert!(r.stderr.is_empty(), "timeout {timeout}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timeout {timeout}: took {:?}",
            started.elapsed()
        );
    }
    let r = exec(
        &mut e,
        &id,
        &[
            "sh",
            "-c",
            "head -c 20971520 /dev/zero; head -c 20971520 /dev/zero >&2",
        ],
        60,
    )
    .await
    .unwrap();
    assert_eq!(r.exit_code, 0);
    assert_eq!((r.stdout.len(), r.stderr.len()), (KEPT / 2, KEPT / 2));

    let started = Instant::now();
    let err = exec(
        &mut e,
        &id,
        &["sh", "-c", "head -c 41943040 /dev/zero; sleep 30"],
        2,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::DeadlineExceeded,
        "{}",
        err.message()
    );
    assert!(started.elapsed() < Duration::from_secs(15));

    let started = Instant::now();
    let r = exec(&mut e, &id, &["sh", "-c", "sleep 30 & echo done"], 0)
        .await
        .unwrap();
    assert_eq!(r.stdout, b"done\n");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a background process held the call for {:?}",
        started.elapsed()
    );
}

/// Every message of a server stream, failing the test on an error.
async fn stream_messages<T>(
    call: Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>,
) -> Vec<T> {
    let mut stream = call.unwrap().into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        out.push(m);
    }
    out
}

/// The items of a stream's messages in order, after checking that no
/// message is empty or over the chunk size.
fn flatten<M, T>(messages: Vec<M>, items: impl Fn(M) -> Vec<T>) -> Vec<T> {
    let chunks: Vec<Vec<T>> = messages.into_iter().map(items).collect();
    for chunk in &chunks {
        assert!(
            (1..=100).contains(&chunk.len()),
            "a message with {} items",
            chunk.len()
        );
    }
    chunks.into_iter().flatten().collect()
}

fn set<'a>(ids: impl IntoIterator<Item = &'a String>) -> std::collections::BTreeSet<String> {
    ids.into_iter().cloned().collect()
}

fn labels(key: &str, value: &str) -> HashMap<String, String> {
    HashMap::from([(key.to_owned(), value.to_owned())])
}

/// A metric without its value and timestamp, which move between calls.
fn metric_shape(m: &v1::Metric) -> (String, i32, Vec<String>) {
    (m.name.clone(), m.metric_type, m.label_values.clone())
}

/// The Stream* RPCs give what their List calls give, with the same
/// filters: same items in the same order, in non-empty messages of at most
/// 100 items; a filter that selects nothing is a stream with no message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_rpcs_return_what_list_rpcs_return() {
    if !ready("stream_rpcs_return_what_list_rpcs_return") {
        return;
    }
    let mut e = env().await;
    pull_image(&mut e.c, "registry.k8s.io/pause:3.9").await;
    let web = run_pod(&mut e, "web").await;
    let db = run_pod(&mut e, "db").await;
    let gone = run_pod(&mut e, "gone").await;
    let running = create(&mut e, &web, "running", &["sleep", "3600"])
        .await
        .unwrap();
    start(&mut e, &running).await;
    let exited = create(&mut e, &web, "exited", &["true"]).await.unwrap();
    start(&mut e, &exited).await;
    wait_exited(&mut e, &exited).await;
    let created = create(&mut e, &db, "created", &["sleep", "3600"])
        .await
        .unwrap();
    e.c.runtime
        .stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: gone.clone(),
        })
        .await
        .unwrap();

    // Pods: (filter, the pods it must select).
    let pod_state = |s: v1::PodSandboxState| Some(v1::PodSandboxStateValue { state: s as i32 });
    let pod_cases = [
        (None, vec![&web, &db, &gone]),
        (
            Some(v1::PodSandboxFilter {
                id: web.clone(),
                ..Default::default()
            }),
            vec![&web],
        ),
        (
            Some(v1::PodSandboxFilter {
                id: db[..12].to_owned(),
                ..Default::default()
            }),
            vec![&db],
        ),
        (
            Some(v1::PodSandboxFilter {
                state: pod_state(v1::PodSandboxState::SandboxNotready),
                ..Default::default()
            }),
            vec![&gone],
        ),
        (
            Some(v1::PodSandboxFilter {
                state: pod_state(v1::PodSandboxState::SandboxReady),
                label_selector: labels("app", "db"),
                ..Default::default()
            }),
            vec![&db],
        ),
        (
            Some(v1::PodSandboxFilter {
                label_selector: labels("app", "nothing"),
                ..Default::default()
            }),
            vec![],
        ),
    ];
    for (filter, expected) in pod_cases {
        let listed =
            e.c.runtime
                .list_pod_sandbox(v1::ListPodSandboxRequest {
                    filter: filter.clone(),
                })
                .await
                .unwrap()
                .into_inner()
                .items;
        let streamed = flatten(
            stream_messages(
                e.c.runtime
                    .stream_pod_sandboxes(v1::StreamPodSandboxesRequest {
                        filter: filter.clone(),
                    })
                    .await,
            )
            .await,
            |m| m.pod_sandboxes,
        );
        assert_eq!(
            set(listed.iter().map(|p| &p.id)),
            set(expected),
            "{filter:?}"
        );
        assert_eq!(streamed, listed, "{filter:?}");
    }

    // Containers.
    let ctr_state = |s: v1::ContainerState| Some(v1::ContainerStateValue { state: s as i32 });
    let container_cases = [
        (None, vec![&running, &exited, &created]),
        (
            Some(v1::ContainerFilter {
                id: exited.clone(),
                ..Default::default()
            }),
            vec![&exited],
        ),
        (
            Some(v1::ContainerFilter {
                pod_sandbox_id: web.clone(),
                ..Default::default()
            }),
            vec![&running, &exited],
        ),
        (
            Some(v1::ContainerFilter {
                state: ctr_state(v1::ContainerState::ContainerRunning),
                ..Default::default()
            }),
            vec![&running],
        ),
        (
            Some(v1::ContainerFilter {
                pod_sandbox_id: web.clone(),
                state: ctr_state(v1::ContainerState::ContainerExited),
                ..Default::default()
            }),
            vec![&exited],
        ),
        (
            Some(v1::ContainerFilter {
                label_selector: labels("c", "created"),
                ..Default::default()
            }),
            vec![&created],
        ),
        (
            Some(v1::ContainerFilter {
                pod_sandbox_id: db.clone(),
                state: ctr_state(v1::ContainerState::ContainerRunning),
                ..Default::default()
            }),
            vec![],
        ),
    ];
    for (filter, expected) in container_cases {
        let listed =
            e.c.runtime
                .list_containers(v1::ListContainersRequest {
                    filter: filter.clone(),
                })
                .await
                .unwrap()
                .into_inner()
                .containers;
        let streamed = flatten(
            stream_messages(
                e.c.runtime
                    .stream_containers(v1::StreamContainersRequest {
                        filter: filter.clone(),
                    })
                    .await,
            )
            .await,
            |m| m.containers,
        );
        assert_eq!(
            set(listed.iter().map(|c| &c.id)),
            set(expected),
            "{filter:?}"
        );
        assert_eq!(streamed, listed, "{filter:?}");
    }

    // Container stats: usage moves between two calls, the attributes
    // (ID, metadata, labels, annotations) do not.
    let stats_cases = [
        (None, vec![&running, &exited, &created]),
        (
            Some(v1::ContainerStatsFilter {
                pod_sandbox_id: web.clone(),
                ..Default::default()
            }),
            vec![&running, &exited],
        ),
        (
            Some(v1::ContainerStatsFilter {
                id: created.clone(),
                ..Default::default()
            }),
            vec![&created],
        ),
        (
            Some(v1::ContainerStatsFilter {
                label_selector: labels("c", "running"),
                ..Default::default()
            }),
            vec![&running],
        ),
        (
            Some(v1::ContainerStatsFilter {
                label_selector: labels("c", "nothing"),
                ..Default::default()
            }),
            vec![],
        ),
    ];
    for (filter, expected) in stats_cases {
        let listed: Vec<_> =
            e.c.runtime
                .list_container_stats(v1::ListContainerStatsRequest {
                    filter: filter.clone(),
                })
                .await
                .unwrap()
                .into_inner()
                .stats
                .into_iter()
                .map(|s| s.attributes.unwrap())
                .collect();
        let streamed: Vec<_> = flatten(
            stream_messages(
                e.c.runtime
                    .stream_container_stats(v1::StreamContainerStatsRequest {
                        filter: filter.clone(),
                    })
                    .await,
            )
            .await,
            |m| m.container_stats,
        )
        .into_iter()
        .map(|s| s.attributes.unwrap())
        .collect();
        assert_eq!(
            set(listed.iter().map(|a| &a.id)),
            set(expected),
            "{filter:?}"
        );
        assert_eq!(streamed, listed, "{filter:?}");
    }

    // Pod stats: ready pods, or the one an ID names.
    let pod_stats_cases = [
        (None, vec![&web, &db]),
        (
            Some(v1::PodSandboxStatsFilter {
                id: db.clone(),
                ..Default::default()
            }),
            vec![&db],
        ),
        (
            Some(v1::PodSandboxStatsFilter {
                label_selector: labels("app", "web"),
                ..Default::default()
            }),
            vec![&web],
        ),
        (
            Some(v1::PodSandboxStatsFilter {
                label_selector: labels("app", "gone"),
                ..Default::default()
            }),
            vec![],
        ),
    ];
    for (filter, expected) in pod_stats_cases {
        let listed: Vec<_> =
            e.c.runtime
                .list_pod_sandbox_stats(v1::ListPodSandboxStatsRequest {
                    filter: filter.clone(),
                })
                .await
                .unwrap()
                .into_inner()
                .stats
                .into_iter()
                .map(|s| s.attributes.unwrap())
                .collect();
        let streamed: Vec<_> = flatten(
            stream_messages(
                e.c.runtime
                    .stream_pod_sandbox_stats(v1::StreamPodSandboxStatsRequest {
                        filter: filter.clone(),
                    })
                    .await,
            )
            .await,
            |m| m.pod_sandbox_stats,
        )
        .into_iter()
        .map(|s| s.attributes.unwrap())
        .collect();
        assert_eq!(
            set(listed.iter().map(|a| &a.id)),
            set(expected),
            "{filter:?}"
        );
        assert_eq!(streamed, listed, "{filter:?}");
    }

    // Pod metrics (no filter: the ready pods): the same pods, containers
    // and metrics, values aside.
    type Shape = (
        String,
        Vec<(String, i32, Vec<String>)>,
        Vec<(String, Vec<(String, i32, Vec<String>)>)>,
    );
    let shape = |m: &v1::PodSandboxMetrics| -> Shape {
        (
            m.pod_sandbox_id.clone(),
            m.metrics.iter().map(metric_shape).collect(),
            m.container_metrics
                .iter()
                .map(|c| {
                    (
                        c.container_id.clone(),
                        c.metrics.iter().map(metric_shape).collect(),
                    )
                })
                .collect(),
        )
    };
    let listed: Vec<Shape> =
        e.c.runtime
            .list_pod_sandbox_metrics(v1::ListPodSandboxMetricsRequest {})
            .await
            .unwrap()
            .into_inner()
            .pod_metrics
            .iter()
            .map(shape)
            .collect();
    let streamed: Vec<Shape> = flatten(
        stream_messages(
            e.c.runtime
                .stream_pod_sandbox_metrics(v1::StreamPodSandboxMetricsRequest {})
                .await,
        )
        .await,
        |m| m.pod_sandbox_metrics,
    )
    .iter()
    .map(shape)
    .collect();
    assert_eq!(set(listed.iter().map(|m| &m.0)), set([&web, &db]));
    assert!(
        listed
            .iter()
            .any(|m| m.2.iter().any(|c| c.0 == running && !c.1.is_empty())),
        "no metrics of the running container: {listed:?}"
    );
    assert_eq!(streamed, listed);

    // Images: all, one by tag, one by ID, none.
    let all =
        e.c.image
            .list_images(v1::ListImagesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .images;
    let busybox = all
        .iter()
        .find(|i| i.repo_tags.iter().any(|t| t == BUSYBOX))
        .unwrap()
        .id
        .clone();
    let image_filter = |image: &str| {
        Some(v1::ImageFilter {
            image: Some(v1::ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
        })
    };
    let image_cases = [
        (None, all.len()),
        (image_filter(BUSYBOX), 1),
        (image_filter(&busybox), 1),
        (image_filter("registry.k8s.io/pause:3.9"), 1),
        (image_filter("registry.k8s.io/no-such-image:1"), 0),
    ];
    assert!(all.len() >= 2, "{all:?}");
    for (filter, count) in image_cases {
        let listed =
            e.c.image
                .list_images(v1::ListImagesRequest {
                    filter: filter.clone(),
                })
                .await
                .unwrap()
                .into_inner()
                .images;
        let streamed = flatten(
            stream_messages(
                e.c.image
                    .stream_images(v1::StreamImagesRequest {
                        filter: filter.clone(),
                    })
                    .await,
            )
            .await,
            |m| m.images,
        );
        assert_eq!(listed.len(), count, "{filter:?}: {listed:?}");
        assert_eq!(streamed, listed, "{filter:?}");
    }

    for pod in [&web, &db, &gone] {
        stop_remove_pod(&mut e, pod).await;
    }
    let left = stream_messages(
        e.c.runtime
            .stream_pod_sandboxes(v1::StreamPodSandboxesRequest::default())
            .await,
    )
    .await;
    assert!(left.is_empty(), "{left:?}");
}
