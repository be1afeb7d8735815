//! The `zfs` snapshotter on a real pool, through the real daemon: layers
//! become datasets with an `@layer` snapshot, a container's root is a
//! clone of its top layer mounted by pvecri (`mountpoint=legacy`), usage
//! comes from the datasets, removals destroy what they made, what a crash
//! leaves is destroyed at start-up, and nothing outside the configured
//! parent dataset changes.
//!
//! This machine has no ZFS module, so here the tests skip loudly; the VM
//! stage (`scripts/node-vm.sh test zfs`) loads Debian's ZFS modules, makes
//! a pool on a file and sets PVECRI_ZFS_DATASET to a dataset in it (under
//! which each test makes its own), with PVECRI_REQUIRE_ZFS=1 so that a
//! missing pool fails instead.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    container_config, create_container, mirror_config, pull_image, require_init, require_registry,
    require_root, Daemon,
};
use pvecri::client::CriClient;
use pvecri::cri::v1;

const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";

/// The dataset this test may use (`$PVECRI_ZFS_DATASET/<name>`), or None
/// with a loud skip line.
fn dataset(test: &str) -> Option<String> {
    if !(require_root(test) && require_registry(test) && require_init(test)) {
        return None;
    }
    match std::env::var("PVECRI_ZFS_DATASET") {
        Ok(base) if std::path::Path::new("/dev/zfs").exists() => {
            let ds = format!("{base}/{test}");
            let _ = zfs(&["destroy", "-r", &ds]);
            Some(ds)
        }
        _ => {
            assert!(
                std::env::var("PVECRI_REQUIRE_ZFS").as_deref() != Ok("1"),
                "{test}: no ZFS pool (PVECRI_ZFS_DATASET, /dev/zfs), but the VM stage requires one"
            );
            eprintln!(
                "SKIP {test}: no ZFS pool here (scripts/node-vm.sh test zfs runs it on a real one)"
            );
            None
        }
    }
}

/// Runs the `zfs` command; its stdout lines, or Err(stderr).
fn zfs(args: &[&str]) -> Result<Vec<String>, String> {
    let out = Command::new("zfs").args(args).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn get(prop: &str, ds: &str) -> String {
    zfs(&["get", "-H", "-p", "-o", "value", prop, ds]).unwrap()[0].clone()
}

/// Every dataset and snapshot of the pool outside the tests' base dataset
/// (the tests run in parallel, each in its own dataset under it).
fn outside(ds: &str) -> Vec<String> {
    let ds = ds.rsplit_once('/').map_or(ds, |(base, _)| base);
    let pool = ds.split('/').next().unwrap();
    zfs(&["list", "-H", "-o", "name", "-t", "all", "-r", pool])
        .unwrap()
        .into_iter()
        .filter(|n| {
            n != ds && !n.starts_with(&format!("{ds}/")) && !n.starts_with(&format!("{ds}@"))
        })
        .collect()
}

fn config(ds: &str) -> String {
    mirror_config().replacen(
        "[images]\n",
        &format!("[images]\nsnapshotter = \"zfs\"\nzfs_dataset = \"{ds}\"\n"),
        1,
    )
}

struct Pod {
    pod_id: String,
    pod: v1::PodSandboxConfig,
    _logs: tempfile::TempDir,
}

async fn pod(c: &mut CriClient, name: &str) -> Pod {
    let logs = tempfile::tempdir().unwrap();
    let pod = v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "zfs".into(),
            attempt: 0,
        }),
        log_directory: logs.path().display().to_string(),
        ..Default::default()
    };
    let pod_id = common::run_pod_sandbox(c, &pod).await.unwrap();
    Pod {
        pod_id,
        pod,
        _logs: logs,
    }
}

async fn sleeper(c: &mut CriClient, p: &Pod, name: &str) -> String {
    let id = create_container(
        c,
        &p.pod_id,
        &p.pod,
        container_config(name, BUSYBOX, &["sleep", "3600"]),
    )
    .await
    .unwrap();
    c.runtime
        .start_container(v1::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    id
}

/// Layer datasets (not the `layers` dataset itself).
fn layer_datasets(ds: &str) -> Vec<String> {
    zfs(&["list", "-H", "-o", "name", "-r", &format!("{ds}/layers")])
        .unwrap()
        .into_iter()
        .filter(|n| n != &format!("{ds}/layers"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_snapshots_clones_usage_and_removal() {
    let Some(ds) = dataset("zfs_lifecycle") else {
        return;
    };
    let before = outside(&ds);
    let d = Daemon::start(&config(&ds));
    let mut c = d.client().await;
    pull_image(&mut c, BUSYBOX).await;

    // Each layer: a legacy-mounted dataset with its @layer snapshot; the
    // upper one a clone of the lower one's.
    let layers = layer_datasets(&ds);
    assert!(!layers.is_empty(), "no layer datasets under {ds}");
    for layer in &layers {
        assert_eq!(get("mountpoint", layer), "legacy", "{layer}");
        assert!(
            zfs(&["list", &format!("{layer}@layer")]).is_ok(),
            "{layer}@layer"
        );
        let origin = get("origin", layer);
        assert!(
            origin == "-" || origin.ends_with("@layer"),
            "{layer} origin {origin}"
        );
    }

    let p = pod(&mut c, "zfs-pod").await;
    let id = sleeper(&mut c, &p, "writer").await;
    let clone = format!("{ds}/containers/{id}");
    let origin = get("origin", &clone);
    assert!(
        layers.iter().any(|l| origin == format!("{l}@layer")),
        "{clone} is a clone of {origin}, not of a layer"
    );
    assert_eq!(get("mountpoint", &clone), "legacy");
    let rootfs = d
        .dir
        .path()
        .join(format!("state/snapshots/zfs/containers/{id}/rootfs"));
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mountinfo
            .lines()
            .any(|l| l.contains(&format!(" {} ", rootfs.display())) && l.contains(" - zfs ")),
        "the clone is not mounted on {}",
        rootfs.display()
    );

    // 8 MiB written in the container: the clone's `used`, the container's
    // writable layer and the runtime's container filesystem show it.
    let (code, _, err) = common::exec_sh(
        &mut c,
        &id,
        "dd if=/dev/urandom of=/big bs=1M count=8 2>/dev/null && sync",
        60,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let eight = 8u64 << 20;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let stats = c
            .runtime
            .container_stats(v1::ContainerStatsRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap();
        let used = stats
            .writable_layer
            .and_then(|w| w.used_bytes)
            .map_or(0, |u| u.value);
        if used >= eight {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writable layer reports {used} bytes, zfs says {}",
            get("used", &clone)
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let fs = c
        .image
        .image_fs_info(v1::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let image_used = fs.image_filesystems[0]
        .used_bytes
        .as_ref()
        .map_or(0, |u| u.value);
    assert!(image_used > 0, "ImageFsInfo reports no image bytes");
    let containers_used = fs.container_filesystems[0]
        .used_bytes
        .as_ref()
        .map_or(0, |u| u.value);
    assert!(containers_used >= eight, "containers use {containers_used}");

    // Removal destroys the clone; removing the image, its layers.
    common::stop_remove_pod(&mut c, &p.pod_id).await;
    assert!(
        zfs(&["list", &clone]).is_err(),
        "{clone} outlived its container"
    );
    c.image
        .remove_image(v1::RemoveImageRequest {
            image: Some(v1::ImageSpec {
                image: BUSYBOX.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    assert_eq!(layer_datasets(&ds), Vec::<String>::new());
    assert_eq!(outside(&ds), before, "datasets outside the tests' changed");
    drop(d);
    zfs(&["destroy", "-r", &ds]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_leaves_nothing_half_made_and_running_containers_keep_their_roots() {
    let Some(ds) = dataset("zfs_crash") else {
        return;
    };
    let mut d = Daemon::start(&config(&ds));
    let mut c = d.client().await;
    pull_image(&mut c, BUSYBOX).await;
    let p = pod(&mut c, "zfs-crash").await;
    let id = sleeper(&mut c, &p, "survivor").await;
    let (code, _, _) = common::exec_sh(&mut c, &id, "echo kept > /kept", 20).await;
    assert_eq!(code, 0);

    // Killed; meanwhile a layer was being unpacked and a container clone
    // was made whose record never was.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let partial = format!("{ds}/layers/tmp-{}-1-1", "e".repeat(64));
    zfs(&["create", "-o", "mountpoint=legacy", &partial]).unwrap();
    zfs(&["snapshot", &format!("{partial}@layer")]).unwrap();
    let orphan = format!("{ds}/containers/{}", "f".repeat(64));
    zfs(&["create", "-o", "mountpoint=legacy", &orphan]).unwrap();
    d.restart();
    let mut c = d.client().await;

    assert!(
        zfs(&["list", &partial]).is_err(),
        "{partial} survived the restart"
    );
    assert!(
        zfs(&["list", &orphan]).is_err(),
        "{orphan} survived the restart"
    );
    let (code, out, _) = common::exec_sh(&mut c, &id, "cat /kept", 20).await;
    assert_eq!((code, out.trim()), (0, "kept"));
    common::stop_remove_pod(&mut c, &p.pod_id).await;
    assert_eq!(
        zfs(&[
            "list",
            "-H",
            "-o",
            "name",
            "-r",
            &format!("{ds}/containers")
        ])
        .unwrap(),
        [format!("{ds}/containers")]
    );
    drop(d);
    zfs(&["destroy", "-r", &ds]).unwrap();
}
