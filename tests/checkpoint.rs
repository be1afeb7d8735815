//! CheckpointContainer through the real daemon, on real LXC containers.
//!
//! The dump itself needs a CRIU that works on the running kernel. Debian
//! 12's criu 3.17 fails `criu check` on kernels >= 6.13 (this machine's),
//! so here the dump test skips loudly; `scripts/node-vm.sh test
//! checkpoint` runs it on Debian 12's own kernel with
//! `PVECRI_REQUIRE_CRIU=1`, which makes that skip a failure. The refusals
//! are decided before CRIU is consulted and run everywhere.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use common::{
    container_config, create_container, exec_sh, mirror_config, pull_image,
    require_containers as ready, Daemon, BUSYBOX,
};
use pvecri::client::CriClient;
use pvecri::cri::v1;

/// A counter that leaves its state in the writable layer (`/counter`),
/// deletes an image file and prints every tick.
const COUNTER: &str = "rm -f /bin/vi; i=0; while true; do i=$((i+1)); echo $i > /counter; \
                       echo tick $i; sleep 0.2; done";

/// Whether `criu check` passes here. Without it the test skips loudly,
/// unless `PVECRI_REQUIRE_CRIU=1` (the VM stage), where that is a failure.
fn criu_works(test: &str) -> bool {
    let out = std::process::Command::new("criu").arg("check").output();
    let why = match &out {
        Ok(o) if o.status.success() => return true,
        Ok(o) => format!(
            "`criu check` fails here: {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .next()
                .unwrap_or("(no output)")
        ),
        Err(e) => format!("criu is not installed: {e}"),
    };
    assert!(
        std::env::var("PVECRI_REQUIRE_CRIU").as_deref() != Ok("1"),
        "{test}: {why}, but PVECRI_REQUIRE_CRIU=1 requires a working criu"
    );
    eprintln!("SKIP {test}: {why} (scripts/node-vm.sh test checkpoint runs it)");
    false
}

struct Env {
    c: CriClient,
    out: tempfile::TempDir,
    logs: tempfile::TempDir,
    d: Daemon,
}

async fn env() -> Env {
    let d = Daemon::start(&mirror_config());
    let mut c = d.client().await;
    pull_image(&mut c, BUSYBOX).await;
    Env {
        c,
        out: tempfile::tempdir().unwrap(),
        logs: tempfile::tempdir().unwrap(),
        d,
    }
}

fn pod_config(e: &Env, name: &str, host_network: bool) -> v1::PodSandboxConfig {
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "ckpt".into(),
            attempt: 0,
        }),
        hostname: format!("host-{name}"),
        log_directory: e.logs.path().join(name).display().to_string(),
        linux: Some(v1::LinuxPodSandboxConfig {
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(v1::NamespaceOption {
                    network: if host_network {
                        v1::NamespaceMode::Node as i32
                    } else {
                        v1::NamespaceMode::Pod as i32
                    },
                    // What the kubelet sends without shareProcessNamespace.
                    pid: v1::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A pod with one container running `cmd`, started unless `start` is
/// false: (pod, container).
async fn pod_with(
    e: &mut Env,
    name: &str,
    host_network: bool,
    cmd: &str,
    start: bool,
) -> (String, String) {
    let sandbox = pod_config(e, name, host_network);
    let pod = common::run_pod_sandbox(&mut e.c, &sandbox).await.unwrap();
    let config = v1::ContainerConfig {
        labels: HashMap::from([("c".into(), name.into())]),
        ..container_config("counter", BUSYBOX, &["sh", "-c", cmd])
    };
    let id = create_container(&mut e.c, &pod, &sandbox, config)
        .await
        .unwrap();
    if start {
        e.c.runtime
            .start_container(v1::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
    }
    (pod, id)
}

async fn checkpoint(e: &mut Env, id: &str, location: &str) -> Result<(), tonic::Status> {
    e.c.runtime
        .checkpoint_container(v1::CheckpointContainerRequest {
            container_id: id.into(),
            location: location.into(),
            timeout: 120,
        })
        .await
        .map(|_| ())
}

async fn state(e: &mut Env, id: &str) -> i32 {
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
        .state
}

async fn counter(e: &mut Env, id: &str) -> u64 {
    // The shell truncates /counter before it writes the next value: a read
    // in between finds it empty, so read again.
    for _ in 0..20 {
        let (code, out, err) = exec_sh(&mut e.c, id, "cat /counter", 10).await;
        assert_eq!(code, 0, "{err}");
        if let Ok(n) = out.trim().parse() {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("/counter stayed empty")
}

/// The entries of a tar: (path, mode, content for small files).
fn entries(path: &Path) -> Vec<(String, u32, Vec<u8>)> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mode = e.header().mode().unwrap();
            let mut body = Vec::new();
            if e.header().size().unwrap() < (4 << 20) {
                e.read_to_end(&mut body).unwrap();
            }
            (name, mode, body)
        })
        .collect()
}

fn json_of(entries: &[(String, u32, Vec<u8>)], name: &str) -> serde_json::Value {
    let (_, _, body) = entries
        .iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} in the archive"));
    serde_json::from_slice(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_counter_is_checkpointed_and_keeps_counting() {
    const T: &str = "a_running_counter_is_checkpointed_and_keeps_counting";
    if !ready(T) || !criu_works(T) {
        return;
    }
    let mut e = env().await;
    let (pod, id) = pod_with(&mut e, "counter", false, COUNTER, true).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = counter(&mut e, &id).await;
    assert!(before > 0);

    let location = e.out.path().join("counter.tar");
    let started = std::time::Instant::now();
    checkpoint(&mut e, &id, location.to_str().unwrap())
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", e.d.log()));
    eprintln!("checkpoint took {:?}", started.elapsed());
    // A copy for inspection with other tools (checkpointctl), when asked.
    if let Ok(dir) = std::env::var("PVECRI_CHECKPOINT_COPY") {
        std::fs::copy(&location, Path::new(&dir).join("counter.tar")).unwrap();
    }

    // The archive: private, root's, and only the final name in its
    // directory.
    let meta = std::fs::metadata(&location).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), 0);
    let names: Vec<String> = std::fs::read_dir(e.out.path())
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["counter.tar"]);

    let all = entries(&location);
    let names: Vec<&str> = all.iter().map(|(n, _, _)| n.as_str()).collect();
    for want in [
        "checkpoint/",
        "checkpoint/pstree.img",
        "checkpoint/descriptors.json",
        "config.dump",
        "spec.dump",
        "rootfs-diff.tar",
        "dump.log",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(
        names.iter().any(|n| n.starts_with("checkpoint/pages-")),
        "no memory pages in {names:?}"
    );
    for (name, mode, _) in &all {
        assert_eq!(mode & 0o077, 0, "{name} is readable by others: {mode:o}");
    }
    let top: Vec<&str> = names
        .iter()
        .map(|n| n.trim_end_matches('/'))
        .filter(|n| !n.contains('/'))
        .collect();
    for n in &top {
        assert!(
            [
                "checkpoint",
                "config.dump",
                "spec.dump",
                "rootfs-diff.tar",
                "deleted.files",
                "dump.log",
                "stats-dump"
            ]
            .contains(n),
            "unexpected {n} at the top of the archive"
        );
    }

    let config = json_of(&all, "config.dump");
    assert_eq!(config["id"], id.as_str());
    assert_eq!(config["name"], "counter");
    assert_eq!(config["rootfsImage"], BUSYBOX);
    assert!(config["rootfsImageRef"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(config["runtime"], "pvecri");
    assert_eq!(config["restored"], false);
    assert!(config["checkpointedTime"].as_str().unwrap().ends_with('Z'));

    let spec = json_of(&all, "spec.dump");
    let a = &spec["annotations"];
    assert_eq!(a["io.container.manager"], "cri-o");
    assert_eq!(a["io.kubernetes.pod.name"], "counter");
    assert_eq!(a["io.kubernetes.pod.namespace"], "ckpt");
    assert_eq!(a["io.kubernetes.cri-o.SandboxID"], pod.as_str());
    assert_eq!(a["org.criu.checkpoint.engine.name"], "pvecri");
    let meta: serde_json::Value =
        serde_json::from_str(a["io.kubernetes.cri-o.Metadata"].as_str().unwrap()).unwrap();
    assert_eq!(meta["name"], "counter");
    assert_eq!(spec["process"]["args"][0], "sh");
    let descriptors = json_of(&all, "checkpoint/descriptors.json");
    assert!(
        descriptors[1].as_str().unwrap().starts_with("pipe:["),
        "stdout is the monitor's pipe: {descriptors}"
    );

    // The writable layer: the counter's file, and /bin/vi as deleted.
    let (_, _, diff) = all.iter().find(|(n, _, _)| n == "rootfs-diff.tar").unwrap();
    let mut inner = tar::Archive::new(diff.as_slice());
    let mut counted = None;
    for entry in inner.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap() == Path::new("counter") {
            let mut s = String::new();
            entry.read_to_string(&mut s).unwrap();
            counted = Some(s.trim().parse::<u64>().unwrap());
        }
    }
    let counted = counted.expect("/counter in rootfs-diff.tar");
    assert!(counted >= before, "{counted} < {before}");
    let deleted = json_of(&all, "deleted.files");
    assert!(
        deleted.as_array().unwrap().iter().any(|p| p == "/bin/vi"),
        "{deleted}"
    );

    // The container kept running and counting.
    assert_eq!(
        state(&mut e, &id).await,
        v1::ContainerState::ContainerRunning as i32
    );
    let after = counter(&mut e, &id).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let later = counter(&mut e, &id).await;
    assert!(
        later > after && after >= counted,
        "{counted} then {after} then {later}"
    );
    // No work directory is left in the state dir.
    let work = e.d.dir.path().join("state/checkpoints");
    let left: Vec<_> = std::fs::read_dir(&work)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");

    common::stop_remove_pod(&mut e.c, &pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_checkpointed_is_refused_with_the_reason() {
    const T: &str = "what_cannot_be_checkpointed_is_refused_with_the_reason";
    if !ready(T) {
        return;
    }
    let mut e = env().await;
    let out = e.out.path().to_owned();
    let location = out.join("c.tar");
    let location = location.to_str().unwrap();

    // A host-network pod.
    let (host_pod, host_id) = pod_with(&mut e, "hostnet", true, "sleep 1000", true).await;
    let err = checkpoint(&mut e, &host_id, location).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("hostNetwork"), "{}", err.message());

    // A container created but not started.
    let (pod, created) = pod_with(&mut e, "created", false, "sleep 1000", false).await;
    let err = checkpoint(&mut e, &created, location).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("running"), "{}", err.message());

    // Bad locations: relative, no such directory, through a symlink, a
    // directory.
    let (pod2, running) = pod_with(&mut e, "running", false, "sleep 1000", true).await;
    std::os::unix::fs::symlink(&out, out.join("link")).unwrap();
    std::fs::create_dir(out.join("dir")).unwrap();
    for (bad, says) in [
        ("c.tar".to_owned(), "absolute"),
        (format!("{}/missing/c.tar", out.display()), "does not exist"),
        (format!("{}/link/c.tar", out.display()), "symlink"),
        (format!("{}/dir", out.display()), "not a regular file"),
        (format!("{}/../c.tar", out.display()), "normalised"),
    ] {
        let err = checkpoint(&mut e, &running, &bad).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}: {err:?}");
        assert!(err.message().contains(says), "{bad}: {}", err.message());
    }

    // Unknown containers.
    let err = checkpoint(&mut e, "no-such-container", location)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");

    // Without a working criu, a container that could be checkpointed is
    // refused naming criu, and keeps running.
    let criu_ok = std::process::Command::new("criu")
        .arg("check")
        .output()
        .is_ok_and(|o| o.status.success());
    if !criu_ok {
        let err = checkpoint(&mut e, &running, location).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("criu"), "{}", err.message());
        assert_eq!(
            state(&mut e, &running).await,
            v1::ContainerState::ContainerRunning as i32
        );
    }
    assert!(
        !Path::new(location).exists(),
        "a refused checkpoint wrote nothing"
    );

    for p in [host_pod, pod, pod2] {
        common::stop_remove_pod(&mut e.c, &p).await;
    }
}

/// Fails the test unless the counter in `/counter` goes up.
async fn still_counting(e: &mut Env, id: &str) {
    let first = counter(e, id).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = counter(e, id).await;
    assert!(second > first, "the counter stopped at {first} (frozen?)");
}

/// A stand-in for criu (`criu_path`): passes `criu check`, records where
/// and how it was run, then fails or hangs as `mode` in its directory
/// says.
const FAKE_CRIU: &str = r#"#!/bin/sh
dir=$(dirname "$0")
case "$1" in
    --version) echo "Version: 9.9.9"; exit 0 ;;
    check) echo "Looks good."; exit 0 ;;
esac
readlink /proc/self/ns/net > "$dir/netns"
echo "$@" > "$dir/argv"
echo $$ > "$dir/pid"
case "$(cat "$dir/mode")" in
    fail) echo "Error (criu/fake.c:1): fake dump failure" >&2; exit 1 ;;
    hang) exec sleep 600 ;;
esac
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_timed_out_dump_leaves_the_container_running() {
    const T: &str = "a_failed_or_timed_out_dump_leaves_the_container_running";
    if !ready(T) {
        return;
    }
    let fake = tempfile::tempdir().unwrap();
    let criu = fake.path().join("criu");
    std::fs::write(&criu, FAKE_CRIU).unwrap();
    std::fs::set_permissions(&criu, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = Daemon::start(&format!(
        "criu_path = \"{}\"\n{}",
        criu.display(),
        mirror_config()
    ));
    let mut c = d.client().await;
    pull_image(&mut c, BUSYBOX).await;
    let mut e = Env {
        c,
        out: tempfile::tempdir().unwrap(),
        logs: tempfile::tempdir().unwrap(),
        d,
    };
    let (pod, id) = pod_with(&mut e, "fake", false, COUNTER, true).await;
    let location = e.out.path().join("c.tar");
    let location = location.to_str().unwrap().to_owned();
    let nothing_left = |e: &Env| {
        let left: Vec<_> = std::fs::read_dir(e.out.path()).unwrap().flatten().collect();
        assert!(left.is_empty(), "left in the location's dir: {left:?}");
        let work = e.d.dir.path().join("state/checkpoints");
        let left: Vec<_> = std::fs::read_dir(&work)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "work dirs left: {left:?}");
    };

    // criu fails: Internal, with criu's error line.
    std::fs::write(fake.path().join("mode"), "fail").unwrap();
    let err = checkpoint(&mut e, &id, &location).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Internal, "{err:?}");
    assert!(
        err.message().contains("fake dump failure"),
        "{}",
        err.message()
    );
    still_counting(&mut e, &id).await;
    nothing_left(&e);

    // It ran in the pod's network namespace, dumping the container's
    // init and leaving it running.
    let info =
        e.c.runtime
            .pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner()
            .info;
    let detail: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    let pin = detail["netns"].as_str().unwrap();
    let pin_inode = std::fs::metadata(pin).unwrap().ino();
    let seen = std::fs::read_to_string(fake.path().join("netns")).unwrap();
    assert_eq!(seen.trim(), format!("net:[{pin_inode}]"));
    let argv = std::fs::read_to_string(fake.path().join("argv")).unwrap();
    assert!(argv.starts_with("dump --tree "), "{argv}");
    assert!(argv.contains("--leave-running"), "{argv}");
    assert!(argv.contains("--freeze-cgroup /sys/fs/cgroup/"), "{argv}");

    // criu hangs: DeadlineExceeded at the timeout, criu killed, thawed.
    std::fs::write(fake.path().join("mode"), "hang").unwrap();
    let started = std::time::Instant::now();
    let err =
        e.c.runtime
            .checkpoint_container(v1::CheckpointContainerRequest {
                container_id: id.clone(),
                location: location.clone(),
                timeout: 3,
            })
            .await
            .unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let pid: i32 = std::fs::read_to_string(fake.path().join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the hanging criu ({pid}) was not killed"
    );
    still_counting(&mut e, &id).await;
    nothing_left(&e);

    common::stop_remove_pod(&mut e.c, &pod).await;
}

/// A daemon that died in the middle of a checkpoint left the container
/// frozen and a work dir behind: the next daemon thaws the one and removes
/// the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_thaws_what_an_interrupted_checkpoint_froze() {
    const T: &str = "a_restarted_daemon_thaws_what_an_interrupted_checkpoint_froze";
    if !ready(T) {
        return;
    }
    let mut e = env().await;
    let (pod, id) = pod_with(&mut e, "interrupted", false, COUNTER, true).await;
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
    let cgroup = detail["cgroup"]
        .as_str()
        .unwrap()
        .trim_matches('/')
        .to_owned();
    let v1 = Path::new("/sys/fs/cgroup/freezer")
        .join(&cgroup)
        .join("freezer.state");
    let (file, frozen, thawed) = if v1.exists() {
        (v1, "FROZEN", "THAWED")
    } else {
        (
            Path::new("/sys/fs/cgroup")
                .join(&cgroup)
                .join("cgroup.freeze"),
            "1",
            "0",
        )
    };
    let work =
        e.d.dir
            .path()
            .join("state/checkpoints")
            .join(format!("{id}.1"));
    std::fs::create_dir_all(work.join("checkpoint")).unwrap();
    std::fs::write(&file, frozen).unwrap();

    e.d.restart();
    e.c = e.d.client().await;
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), thawed);
    assert!(!work.exists(), "the work dir is still there");
    still_counting(&mut e, &id).await;
    common::stop_remove_pod(&mut e.c, &pod).await;
}

/// CreateContainer with the archive as the image in `pod`.
async fn restore_into(
    e: &mut Env,
    pod: &str,
    sandbox: &v1::PodSandboxConfig,
    archive: &str,
) -> Result<String, tonic::Status> {
    // The command is the checkpoint's; the request's is not used.
    let config = container_config("counter", archive, &["true"]);
    create_container(&mut e.c, pod, sandbox, config).await
}

/// The tick numbers the container printed, from its CRI log.
async fn ticks(e: &mut Env, id: &str) -> Vec<u64> {
    let log =
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
            .log_path;
    std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split_once(" tick ")
                .and_then(|(_, n)| n.trim().parse().ok())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpointed_counter_is_restored_into_another_pod_and_continues() {
    const T: &str = "a_checkpointed_counter_is_restored_into_another_pod_and_continues";
    if !ready(T) || !criu_works(T) {
        return;
    }
    let mut e = env().await;
    let (pod, id) = pod_with(&mut e, "source", false, COUNTER, true).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let location = e.out.path().join("source.tar");
    checkpoint(&mut e, &id, location.to_str().unwrap())
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", e.d.log()));
    let counted = {
        let all = entries(&location);
        let (_, _, diff) = all.iter().find(|(n, _, _)| n == "rootfs-diff.tar").unwrap();
        let mut inner = tar::Archive::new(diff.as_slice());
        let mut n = 0;
        for entry in inner.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.path().unwrap() == Path::new("counter") {
                let mut s = String::new();
                entry.read_to_string(&mut s).unwrap();
                n = s.trim().parse::<u64>().unwrap();
            }
        }
        n
    };
    assert!(counted > 0);
    // The source goes first: the restored counter runs alone.
    common::stop_remove_pod(&mut e.c, &pod).await;

    let sandbox = pod_config(&e, "target", false);
    let target = common::run_pod_sandbox(&mut e.c, &sandbox).await.unwrap();
    // A request that asks for another confinement than the checkpoint's
    // (which CRIU would bring back regardless) is refused.
    let mut other_user = container_config("counter", location.to_str().unwrap(), &["true"]);
    other_user.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(v1::LinuxContainerSecurityContext {
            run_as_user: Some(v1::Int64Value { value: 1000 }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let err = create_container(&mut e.c, &target, &sandbox, other_user)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("the user or group"),
        "{}",
        err.message()
    );
    let restored = restore_into(&mut e, &target, &sandbox, location.to_str().unwrap())
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", e.d.log()));
    assert_eq!(
        state(&mut e, &restored).await,
        v1::ContainerState::ContainerCreated as i32
    );
    let started = std::time::Instant::now();
    e.c.runtime
        .start_container(v1::StartContainerRequest {
            container_id: restored.clone(),
        })
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", e.d.log()));
    eprintln!("restore took {:?}", started.elapsed());
    assert_eq!(
        state(&mut e, &restored).await,
        v1::ContainerState::ContainerRunning as i32
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // It continued where the checkpoint left it: its first tick follows
    // the checkpointed count, and it still counts.
    let seen = ticks(&mut e, &restored).await;
    assert!(
        seen.len() >= 2 && seen[0] > counted && seen.windows(2).all(|w| w[1] == w[0] + 1),
        "checkpointed at {counted}, then printed {seen:?}"
    );
    // Its writable layer and its deletions came along.
    let now = counter(&mut e, &restored).await;
    assert!(now > counted, "{now} <= {counted}");
    let (code, _, _) = exec_sh(&mut e.c, &restored, "test -e /bin/vi", 10).await;
    assert_eq!(code, 1, "/bin/vi was deleted before the checkpoint");
    let (code, out, err) = exec_sh(&mut e.c, &restored, "hostname", 10).await;
    assert_eq!((code, out.trim()), (0, "host-target"), "{err}");
    // Hostile: the device policy holds for a container pvecri (not
    // liblxc) gave its cgroup. It may make a node for the node's disk
    // (CAP_MKNOD, as in any default container) but not open it.
    let (code, out, err) = exec_sh(
        &mut e.c,
        &restored,
        "set -- $(awk '$4 ~ /^(vda|sda|nvme0n1)$/ {print $1, $2; exit}' /proc/partitions); \
         test -n \"$1\" || { echo no-disk; exit 0; }; \
         mknod /tmp/disk b $1 $2 && head -c 1 /tmp/disk > /dev/null",
        10,
    )
    .await;
    assert!(
        out.contains("no-disk") || (code != 0 && err.contains("not permitted")),
        "reading the node's disk from a restored container: {code} {out} {err}"
    );

    // It stops like any container, with its exit recorded.
    e.c.runtime
        .stop_container(v1::StopContainerRequest {
            container_id: restored.clone(),
            timeout: 2,
        })
        .await
        .unwrap();
    assert_eq!(
        state(&mut e, &restored).await,
        v1::ContainerState::ContainerExited as i32
    );
    common::stop_remove_pod(&mut e.c, &target).await;
    let left: Vec<_> = std::fs::read_dir(e.d.dir.path().join("state/restore"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_archives_and_pods_are_refused_before_anything_runs() {
    const T: &str = "bad_archives_and_pods_are_refused_before_anything_runs";
    if !ready(T) {
        return;
    }
    let mut e = env().await;
    let sandbox = pod_config(&e, "bad", false);
    let pod = common::run_pod_sandbox(&mut e.c, &sandbox).await.unwrap();
    let dir = std::fs::canonicalize(e.out.path()).unwrap();
    let not_tar = dir.join("not.tar");
    std::fs::write(&not_tar, b"just some bytes, not an archive").unwrap();
    let foreign = dir.join("foreign.tar");
    {
        let mut t = tar::Builder::new(std::fs::File::create(&foreign).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        t.append_data(&mut h, "etc/passwd", &b"x:0:"[..]).unwrap();
        t.finish().unwrap();
    }
    let link = dir.join("link.tar");
    std::os::unix::fs::symlink(&foreign, &link).unwrap();
    for (archive, want) in [
        (not_tar.display().to_string(), "not a container checkpoint"),
        (foreign.display().to_string(), "unexpected entry etc/passwd"),
        (link.display().to_string(), "symlink"),
        (
            dir.join("missing.tar").display().to_string(),
            "does not exist",
        ),
        ("/tmp/../etc/shadow".to_owned(), "not normalised"),
    ] {
        let err = restore_into(&mut e, &pod, &sandbox, &archive)
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            tonic::Code::InvalidArgument,
            "{archive}: {err:?}"
        );
        assert!(err.message().contains(want), "{archive}: {}", err.message());
    }
    // A pod on the host's network cannot hold one, whatever the archive.
    let host = pod_config(&e, "host", true);
    let host_pod = common::run_pod_sandbox(&mut e.c, &host).await.unwrap();
    let err = restore_into(&mut e, &host_pod, &host, foreign.to_str().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("host's network"),
        "{}",
        err.message()
    );
    // Nothing was made: no container, no unpacked archive.
    let listed =
        e.c.runtime
            .list_containers(v1::ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
    assert!(listed.is_empty(), "{listed:?}");
    let left: Vec<_> = std::fs::read_dir(e.d.dir.path().join("state/restore"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
    common::stop_remove_pod(&mut e.c, &pod).await;
    common::stop_remove_pod(&mut e.c, &host_pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_checkpoints_and_restores_refuse_bad_requests() {
    const T: &str = "pod_checkpoints_and_restores_refuse_bad_requests";
    if !ready(T) {
        return;
    }
    let mut e = env().await;
    let out = e.out.path().join("pod.tar").display().to_string();
    let ckpt = |pod: &str, output: &str, ids: &[&str]| v1::CheckpointPodRequest {
        pod_sandbox_id: pod.into(),
        output_path: output.into(),
        container_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
        options: HashMap::new(),
    };
    for (req, code, want) in [
        (
            ckpt("", &out, &[]),
            tonic::Code::InvalidArgument,
            "pod_sandbox_id",
        ),
        (
            ckpt("nope", "", &[]),
            tonic::Code::InvalidArgument,
            "output_path",
        ),
        (
            ckpt("nope", "rel/pod.tar", &[]),
            tonic::Code::InvalidArgument,
            "absolute",
        ),
        (ckpt("nope", &out, &[]), tonic::Code::NotFound, "nope"),
    ] {
        let err = e.c.runtime.checkpoint_pod(req).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
        assert!(err.message().contains(want), "{}", err.message());
    }
    // A pod without a running container has nothing to checkpoint.
    let (pod, created) = pod_with(&mut e, "idle", false, "sleep 60", false).await;
    let err =
        e.c.runtime
            .checkpoint_pod(ckpt(&pod, &out, &[]))
            .await
            .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    let _ = created;
    assert!(!Path::new(&out).exists());

    // RestorePod: the archive is checked before any pod is made.
    let sandbox = pod_config(&e, "restored", false);
    let container_tar = e.out.path().join("container.tar");
    std::fs::write(&container_tar, b"not a pod checkpoint").unwrap();
    for (path, want) in [
        (String::new(), "checkpoint_path"),
        ("/tmp/../x.tar".to_owned(), "not normalised"),
        (container_tar.display().to_string(), "not a pod checkpoint"),
    ] {
        let err =
            e.c.runtime
                .restore_pod(v1::RestorePodRequest {
                    checkpoint_path: path.clone(),
                    config: Some(sandbox.clone()),
                    ..Default::default()
                })
                .await
                .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{path}: {err:?}");
        assert!(err.message().contains(want), "{path}: {}", err.message());
    }
    let pods =
        e.c.runtime
            .list_pod_sandbox(v1::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
    assert_eq!(pods.len(), 1, "only the idle pod: {pods:?}");
    common::stop_remove_pod(&mut e.c, &pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_is_checkpointed_and_restored_as_a_new_pod() {
    const T: &str = "a_pod_is_checkpointed_and_restored_as_a_new_pod";
    if !ready(T) || !criu_works(T) {
        return;
    }
    let mut e = env().await;
    let (pod, id) = pod_with(&mut e, "whole", false, COUNTER, true).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let out = e.out.path().join("whole.tar");
    let started = std::time::Instant::now();
    e.c.runtime
        .checkpoint_pod(v1::CheckpointPodRequest {
            pod_sandbox_id: pod.clone(),
            output_path: out.display().to_string(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", e.d.log()));
    eprintln!("pod checkpoint took {:?}", started.elapsed());
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let names: Vec<String> = entries(&out).into_iter().map(|(n, _, _)| n).collect();
    assert!(names.contains(&"pod.json".to_owned()), "{names:?}");
    assert!(
        names.contains(&"containers/counter.tar".to_owned()),
        "{names:?}"
    );
    // The source keeps running; the copy is a new pod.
    assert_eq!(
        state(&mut e, &id).await,
        v1::ContainerState::ContainerRunning as i32
    );
    let at_checkpoint = counter(&mut e, &id).await;
    common::stop_remove_pod(&mut e.c, &pod).await;

    let sandbox = pod_config(&e, "whole-copy", false);
    let started = std::time::Instant::now();
    let restored =
        e.c.runtime
            .restore_pod(v1::RestorePodRequest {
                checkpoint_path: out.display().to_string(),
                config: Some(sandbox),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("{s:?}\n{}", e.d.log()))
            .into_inner();
    eprintln!("pod restore took {:?}", started.elapsed());
    assert_ne!(restored.pod_sandbox_id, pod);
    assert_eq!(restored.restored_containers.len(), 1);
    let c = &restored.restored_containers[0];
    assert_eq!(c.name, "counter");
    assert_eq!(
        state(&mut e, &c.container_id).await,
        v1::ContainerState::ContainerRunning as i32
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    // It went on from the checkpoint (taken before `at_checkpoint` was
    // read), not from zero: a fresh start would print tick 1 first.
    let seen = ticks(&mut e, &c.container_id).await;
    assert!(
        !seen.is_empty() && seen[0] > 1 && seen[0] <= at_checkpoint + 1,
        "read {at_checkpoint} after the checkpoint; the copy printed {seen:?}"
    );
    let (code, out, _) = exec_sh(&mut e.c, &c.container_id, "hostname", 10).await;
    assert_eq!((code, out.trim()), (0, "host-whole-copy"));
    common::stop_remove_pod(&mut e.c, &restored.pod_sandbox_id).await;
}

/// A second daemon (another node) on a bridge and subnet of its own;
/// `n` tells the tests' targets apart (they may run at the same time).
fn target_daemon(n: u8) -> common::Daemon {
    let mirrors = mirror_config();
    let mirrors = match mirrors.find("[network]") {
        Some(i) => mirrors[..i].to_owned(),
        None => mirrors,
    };
    Daemon::start(&format!(
        "{mirrors}\n[network]\nbridge = \"pvecri-tm{n}\"\npod_cidr = \"10.78.{}.0/24\"\nmasquerade = false\negress = false\n",
        90 + n
    ))
}

/// `pvecri migrate` from `e`'s daemon to `target`: its JSON report. The
/// pre-dumps are the default unless `PVECRI_MIGRATE_PRECOPY` says.
fn migrate(e: &Env, pod: &str, target: &common::Daemon) -> serde_json::Value {
    let pre_copy = std::env::var("PVECRI_MIGRATE_PRECOPY").unwrap_or_else(|_| "2".into());
    let out = std::process::Command::new(common::BIN)
        .arg("--config")
        .arg(&e.d.config)
        .args(["migrate", pod, "--json", "--pre-copy", &pre_copy, "--to"])
        .arg(&target.socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "migrate failed: {}\nsource:\n{}\ntarget:\n{}",
        String::from_utf8_lossy(&out.stderr),
        e.d.log(),
        target.log()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_migrates_to_another_daemon_and_keeps_counting() {
    const T: &str = "a_pod_migrates_to_another_daemon_and_keeps_counting";
    if !ready(T) || !criu_works(T) {
        return;
    }
    let mut e = env().await;
    let target = target_daemon(1);
    let mut there = target.client().await;
    pull_image(&mut there, BUSYBOX).await;
    let (pod, id) = pod_with(&mut e, "mover", false, COUNTER, true).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = counter(&mut e, &id).await;

    let report = migrate(&e, &pod, &target);
    eprintln!("migration of a busybox counter: {report}");
    // Two pre-dumps (the default) where the kernel tracks dirty pages.
    let soft_dirty = pvecri::testing::checkpoint::soft_dirty_available();
    assert_eq!(
        report["pre_copies"].as_u64(),
        Some(if soft_dirty { 2 } else { 0 }),
        "{report}"
    );
    assert!(report["frozen_ms"].as_u64().unwrap() > 0, "{report}");
    // Gone here, running there, counting on from where it was.
    let here =
        e.c.runtime
            .list_pod_sandbox(v1::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
    assert!(here.is_empty(), "{here:?}");
    let moved = report["containers"][0].as_str().unwrap().to_owned();
    let mut t = Env {
        c: there,
        out: tempfile::tempdir().unwrap(),
        logs: tempfile::tempdir().unwrap(),
        d: target,
    };
    assert_eq!(
        state(&mut t, &moved).await,
        v1::ContainerState::ContainerRunning as i32
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The pod's log directory is the same path on the target (here the
    // same machine): the log holds the ticks of before and after the move,
    // one sequence without a restart from 1.
    let seen = ticks(&mut t, &moved).await;
    assert!(
        seen.last().is_some_and(|last| *last > before) && seen.windows(2).all(|w| w[1] == w[0] + 1),
        "counted {before} before the move; the log has {seen:?}"
    );
    // The pod's own config came along: name, namespace, hostname.
    let status =
        t.c.runtime
            .pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: report["target_pod"].as_str().unwrap().into(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
    assert_eq!(status.metadata.unwrap().name, "mover");
    let (code, out, _) = exec_sh(&mut t.c, &moved, "hostname", 10).await;
    assert_eq!((code, out.trim()), (0, "host-mover"));
    let pod_there = report["target_pod"].as_str().unwrap().to_owned();
    common::stop_remove_pod(&mut t.c, &pod_there).await;
}

/// The container's working set once it holds at least `mib` MiB.
async fn resident(c: &mut CriClient, id: &str, mib: u64) -> u64 {
    for _ in 0..100 {
        let stats = c
            .runtime
            .container_stats(v1::ContainerStatsRequest {
                container_id: id.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap();
        let bytes = stats
            .memory
            .and_then(|m| m.working_set_bytes)
            .map_or(0, |v| v.value);
        if bytes >= mib << 20 {
            return bytes;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("container {id} never held {mib} MiB");
}

/// Moves a pod whose container holds `PVECRI_MIGRATE_MIB` (default 64)
/// MiB of resident memory and prints what the move took (docs/checkpoint.md
/// has the figures; nothing about time is asserted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_with_resident_memory_migrates() {
    const T: &str = "a_pod_with_resident_memory_migrates";
    if !ready(T) || !criu_works(T) {
        return;
    }
    let mib: u64 = std::env::var("PVECRI_MIGRATE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let mut e = env().await;
    let target = target_daemon(2);
    let mut there = target.client().await;
    pull_image(&mut there, BUSYBOX).await;
    // dd fills one block of that size from /dev/zero and then blocks
    // writing it into a pipe nobody reads: the block stays resident.
    let cmd = format!("dd if=/dev/zero bs={mib}M count=1 2>/dev/null | sleep 100000");
    let (pod, id) = pod_with(&mut e, "memory", false, &cmd, true).await;
    let held = resident(&mut e.c, &id, mib).await;
    let report = migrate(&e, &pod, &target);
    eprintln!("migration of a pod holding {} MiB: {report}", held >> 20);
    let moved = report["containers"][0].as_str().unwrap().to_owned();
    let held_there = resident(&mut there, &moved, mib).await;
    assert!(held_there >= mib << 20);
    assert!(
        report["archive_bytes"].as_u64().unwrap() >= mib << 20,
        "{report}"
    );
    let pod_there = report["target_pod"].as_str().unwrap().to_owned();
    common::stop_remove_pod(&mut there, &pod_there).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crictl_checkpoint_exports_an_archive_pvecri_restores() {
    const T: &str = "crictl_checkpoint_exports_an_archive_pvecri_restores";
    if !ready(T) || !criu_works(T) {
        return;
    }
    let mut e = env().await;
    let (pod, id) = pod_with(&mut e, "crictl", false, COUNTER, true).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let archive = e.out.path().join("crictl.tar");
    let out = std::process::Command::new("crictl")
        .arg("--runtime-endpoint")
        .arg(format!("unix://{}", e.d.socket.display()))
        .args(["--timeout", "120s", "checkpoint", "--export"])
        .arg(&archive)
        .arg(&id)
        .output()
        .expect("crictl is installed (scripts/install-cri-tools.sh)");
    assert!(
        out.status.success(),
        "crictl checkpoint: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        e.d.log()
    );
    assert_eq!(
        std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // And the archive restores, in the same pod next to the original.
    let sandbox = pod_config(&e, "crictl", false);
    let copy = common::create_container(
        &mut e.c,
        &pod,
        &sandbox,
        container_config("counter-copy", archive.to_str().unwrap(), &["true"]),
    )
    .await
    .unwrap_or_else(|s| panic!("{s:?}\n{}", e.d.log()));
    e.c.runtime
        .start_container(v1::StartContainerRequest {
            container_id: copy.clone(),
        })
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", e.d.log()));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let seen = ticks(&mut e, &copy).await;
    assert!(!seen.is_empty() && seen[0] > 1, "{seen:?}");
    common::stop_remove_pod(&mut e.c, &pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_migration_brings_the_pod_back() {
    const T: &str = "a_refused_migration_brings_the_pod_back";
    if !ready(T) || !criu_works(T) {
        return;
    }
    let mut e = env().await;
    // The target lacks the pod's image: RestorePod there fails.
    let target = target_daemon(3);
    let (pod, id) = pod_with(&mut e, "refused", false, COUNTER, true).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = counter(&mut e, &id).await;
    let out = std::process::Command::new(common::BIN)
        .arg("--config")
        .arg(&e.d.config)
        .args(["migrate", &pod, "--to"])
        .arg(&target.socket)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the move cannot succeed");
    assert!(
        stderr.contains("runs here again as pod"),
        "{stderr}\n{}",
        e.d.log()
    );
    // Back here, as a new pod of the same name, counting on.
    let pods =
        e.c.runtime
            .list_pod_sandbox(v1::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_ne!(pods[0].id, pod);
    assert_eq!(pods[0].metadata.as_ref().unwrap().name, "refused");
    let containers =
        e.c.runtime
            .list_containers(v1::ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
    let back = containers
        .iter()
        .find(|c| c.state == v1::ContainerState::ContainerRunning as i32)
        .expect("a running container");
    let now = counter(&mut e, &back.id).await;
    assert!(now >= before, "{now} < {before}");
    let target_pods = target
        .client()
        .await
        .runtime
        .list_pod_sandbox(v1::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(target_pods.is_empty(), "{target_pods:?}");
    let new_pod = pods[0].id.clone();
    common::stop_remove_pod(&mut e.c, &new_pod).await;
}
