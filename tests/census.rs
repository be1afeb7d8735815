//! `pvecri census` against a real daemon: it sees a running pod and
//! container (processes, cgroups, pins, veth, host port, dirs, records),
//! and once everything is removed and the daemon stopped, `--stopped`
//! finds nothing left. The daemon has a bridge and subnet of its own, and
//! the census is scoped to its state dir and the IDs it created, so other
//! daemons on the node do not disturb it.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use common::{
    census, census_count, container_config, create_container, mirror_config, require_init,
    require_registry, require_root, Daemon,
};
use pvecri::cri::v1;

const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";

/// The fixture-registry mirrors with a network of the test's own.
fn config() -> String {
    let mirrors = mirror_config();
    let mirrors = mirrors.split("[network]").next().unwrap_or_default();
    format!(
        "{mirrors}\n[network]\nbridge = \"pvt-census\"\npod_cidr = \"10.78.90.0/24\"\nmasquerade = false\negress = false\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn census_sees_a_pod_and_nothing_once_it_is_gone() {
    let test = "census_sees_a_pod_and_nothing_once_it_is_gone";
    if !(require_root(test) && require_registry(test) && require_init(test)) {
        return;
    }
    let mut d = Daemon::start(&config());
    let mut c = d.client().await;
    common::pull_image(&mut c, BUSYBOX).await;
    let logs = tempfile::tempdir().unwrap();
    let host_port = 42000 + (std::process::id() % 1000) as i32;
    let sandbox = v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: "census".into(),
            uid: format!("census-{}", std::process::id()),
            namespace: "census".into(),
            attempt: 0,
        }),
        log_directory: logs.path().display().to_string(),
        port_mappings: vec![v1::PortMapping {
            protocol: v1::Protocol::Tcp as i32,
            container_port: 80,
            host_port,
            host_ip: "127.0.0.1".into(),
        }],
        ..Default::default()
    };
    // The daemon keeps spare monitors (two by default), counted with it.
    let spares_before = wait_for_spares(&d, 2);
    let pod = common::run_pod_sandbox(&mut c, &sandbox).await.unwrap();
    let ctr = create_container(
        &mut c,
        &pod,
        &sandbox,
        container_config("work", BUSYBOX, &["sleep", "3600"]),
    )
    .await
    .unwrap();
    c.runtime
        .start_container(v1::StartContainerRequest {
            container_id: ctr.clone(),
        })
        .await
        .unwrap();

    // The container's monitor was one of them, and the pool is whole again
    // without it.
    let monitor: i32 = std::fs::read_to_string(
        d.dir
            .path()
            .join("run/containers")
            .join(&ctr)
            .join("monitor.pid"),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    assert!(
        spares_before.contains(&monitor),
        "monitor {monitor} was not one of the spares {spares_before:?}"
    );
    let spares_after = wait_for_spares(&d, 2);
    assert!(!spares_after.contains(&monitor), "{spares_after:?}");

    let (running, ok) = census(&d, &[]);
    assert!(ok, "without --stopped the census only reports");
    let seen = |kind| census_count(&running, kind);
    for (kind, at_least) in [
        ("daemon", 1),
        ("processes", 1),
        ("helpers", 1),
        ("cgroups", 2),
        ("pins", 1),
        ("mounts", 1),
        ("veths", 1),
        ("bridges", 1),
        ("nft_tables", 1),
        ("nft_elements", 1),
        ("lxc_dirs", 1),
        ("run_dirs", 1),
        ("snapshots", 1),
        ("store_records", 2),
        ("images", 1),
    ] {
        assert!(
            seen(kind) >= at_least,
            "{kind}: expected at least {at_least}: {running:#}"
        );
    }
    let (_, ok) = census(&d, &["--stopped"]);
    assert!(!ok, "--stopped fails while a daemon runs with a pod");

    c.runtime
        .stop_container(v1::StopContainerRequest {
            container_id: ctr.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
    c.runtime
        .remove_container(v1::RemoveContainerRequest {
            container_id: ctr.clone(),
        })
        .await
        .unwrap();
    common::stop_remove_pod(&mut c, &pod).await;
    drop(c);
    assert!(d.stop().success());

    let (stopped, ok) = census(&d, &["--stopped", "--id", &pod, "--id", &ctr]);
    assert!(ok, "left behind once the daemon stopped: {stopped:#}");
    for s in stopped["sections"].as_array().unwrap() {
        if s["live"] == true {
            assert_eq!(s["count"], 0, "{s:#}");
        }
    }
    assert_eq!(census_count(&stopped, "store_records"), 0);
    assert!(
        census_count(&stopped, "images") >= 1,
        "images stay: {stopped:#}"
    );
}

/// The pids of the daemon's idle spare monitors, once there are `n`.
fn wait_for_spares(d: &common::Daemon, n: usize) -> Vec<i32> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (report, _) = census(d, &[]);
        let pids: Vec<i32> = report["sections"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["kind"] == "daemon"))
            .and_then(|s| s["items"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|i| i.as_str())
            .filter(|i| i.contains("spare monitor"))
            .filter_map(|i| i.strip_prefix("pid ")?.split(' ').next()?.parse().ok())
            .collect();
        if pids.len() == n {
            return pids;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected {n} spare monitors: {report:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
