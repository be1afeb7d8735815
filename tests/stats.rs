//! Stats, events and metrics of real containers, through the real daemon.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{
    container_config, create_container, mirror_config, pull_image, require_init, require_registry,
    require_root, stop_remove_pod, Daemon,
};
use pvecri::client::CriClient;
use pvecri::cri::v1;

const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";
/// How long a condition may take before the test gives up (a hang guard,
/// not a performance assertion).
const PATIENCE: Duration = Duration::from_secs(60);

fn ready(test: &str) -> bool {
    require_root(test) && require_registry(test) && require_init(test)
}

async fn pull(c: &mut CriClient) {
    pull_image(c, BUSYBOX).await;
}

fn pod_config(name: &str) -> v1::PodSandboxConfig {
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "stats".into(),
            attempt: 0,
        }),
        labels: HashMap::from([("app".into(), name.into())]),
        ..Default::default()
    }
}

async fn run_pod(c: &mut CriClient, name: &str) -> String {
    common::run_pod_sandbox(c, &pod_config(name)).await.unwrap()
}

async fn list_stats(
    c: &mut CriClient,
    filter: Option<v1::ContainerStatsFilter>,
) -> Vec<v1::ContainerStats> {
    c.runtime
        .list_container_stats(v1::ListContainerStatsRequest { filter })
        .await
        .unwrap()
        .into_inner()
        .stats
}

async fn create(c: &mut CriClient, pod: &str, pod_name: &str, name: &str, cmd: &[&str]) -> String {
    let config = v1::ContainerConfig {
        labels: HashMap::from([("c".into(), name.into())]),
        log_path: String::new(),
        ..container_config(name, BUSYBOX, cmd)
    };
    create_container(c, pod, &pod_config(pod_name), config)
        .await
        .unwrap()
}

async fn start(c: &mut CriClient, id: &str) {
    c.runtime
        .start_container(v1::StartContainerRequest {
            container_id: id.into(),
        })
        .await
        .unwrap();
}

async fn container_stats(c: &mut CriClient, id: &str) -> v1::ContainerStats {
    c.runtime
        .container_stats(v1::ContainerStatsRequest {
            container_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap()
}

fn cpu_ns(s: &v1::ContainerStats) -> u64 {
    s.cpu
        .as_ref()
        .and_then(|c| c.usage_core_nano_seconds.as_ref())
        .map(|v| v.value)
        .unwrap_or(0)
}

fn working_set(s: &v1::ContainerStats) -> u64 {
    s.memory
        .as_ref()
        .and_then(|m| m.working_set_bytes.as_ref())
        .map(|v| v.value)
        .unwrap_or(0)
}

fn lo_bytes(s: &v1::PodSandboxStats) -> Option<(u64, u64)> {
    let net = s.linux.as_ref()?.network.as_ref()?;
    let lo = net.interfaces.iter().find(|i| i.name == "lo")?;
    Some((lo.rx_bytes.as_ref()?.value, lo.tx_bytes.as_ref()?.value))
}

async fn pod_stats(c: &mut CriClient, pod: &str) -> v1::PodSandboxStats {
    c.runtime
        .pod_sandbox_stats(v1::PodSandboxStatsRequest {
            pod_sandbox_id: pod.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_memory_processes_and_network_follow_the_workload() {
    if !ready("cpu_memory_processes_and_network_follow_the_workload") {
        return;
    }
    let d = Daemon::start(&mirror_config());
    let mut c = d.client().await;
    pull(&mut c).await;
    let pod = run_pod(&mut c, "load").await;
    let burner = create(
        &mut c,
        &pod,
        "load",
        "burner",
        &["sh", "-c", "while :; do :; done"],
    )
    .await;
    // Holds a 32 MiB shell variable (used after the sleep, so the shell
    // forks sleep instead of exec'ing it and freeing the variable).
    let hog = create(
        &mut c,
        &pod,
        "load",
        "hog",
        &[
            "sh",
            "-c",
            "x=$(head -c 33554432 /dev/zero | tr '\\0' a); sleep 3600; echo ${#x}",
        ],
    )
    .await;
    let idle = create(&mut c, &pod, "load", "idle", &["sleep", "3600"]).await;

    // A created container is listed, with timestamps, before it starts.
    let all = list_stats(&mut c, None).await;
    assert_eq!(all.len(), 3, "{all:?}");
    for s in &all {
        assert!(s.cpu.as_ref().unwrap().timestamp > 0);
        assert!(s.memory.as_ref().unwrap().timestamp > 0);
        let layer = s.writable_layer.as_ref().expect("writable layer usage");
        assert!(!layer.fs_id.as_ref().unwrap().mountpoint.is_empty());
        assert!(layer.inodes_used.as_ref().unwrap().value > 0);
    }
    for id in [&burner, &hog, &idle] {
        start(&mut c, id).await;
    }

    // Filters: by ID, by pod, by label.
    let by_label = list_stats(
        &mut c,
        Some(v1::ContainerStatsFilter {
            label_selector: HashMap::from([("c".into(), "hog".into())]),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(by_label.len(), 1);
    assert_eq!(by_label[0].attributes.as_ref().unwrap().id, hog);
    let by_pod = list_stats(
        &mut c,
        Some(v1::ContainerStatsFilter {
            pod_sandbox_id: pod.clone(),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(by_pod.len(), 3);
    let missing = c
        .runtime
        .container_stats(v1::ContainerStatsRequest {
            container_id: "nosuchcontainer".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let empty = c
        .runtime
        .container_stats(v1::ContainerStatsRequest {
            container_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), tonic::Code::InvalidArgument);
    assert!(empty.message().contains("container_id"), "{empty:?}");

    // Pressure stall information where the node's cgroup2 hierarchy has
    // it (the unified mount, or the hybrid layout's cgroup2 beside v1).
    let psi_here = [
        "/sys/fs/cgroup/cpu.pressure",
        "/sys/fs/cgroup/unified/cpu.pressure",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists());
    if psi_here {
        let s = container_stats(&mut c, &burner).await;
        let cpu_psi = s.cpu.as_ref().unwrap().psi.as_ref().expect("cpu psi");
        assert!(cpu_psi.some.is_some(), "{s:?}");
        assert!(s.memory.as_ref().unwrap().psi.is_some(), "{s:?}");
        assert!(
            s.io.as_ref().and_then(|io| io.psi.as_ref()).is_some(),
            "{s:?}"
        );
    } else {
        eprintln!("skipping the PSI checks: this kernel has no cgroup pressure files");
    }

    // The burner's CPU time rises and its rate is plausible: more than
    // nothing (a busy loop gets some CPU even on a loaded node; the CI VM's
    // two cores are shared with builds) and at most every core of the node.
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    let first = container_stats(&mut c, &burner).await;
    let deadline = Instant::now() + PATIENCE;
    let rate = loop {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let s = container_stats(&mut c, &burner).await;
        let rate = s
            .cpu
            .as_ref()
            .unwrap()
            .usage_nano_cores
            .as_ref()
            .map(|v| v.value);
        if let (true, Some(rate)) = (cpu_ns(&s) > cpu_ns(&first), rate) {
            break rate;
        }
        assert!(Instant::now() < deadline, "CPU usage never rose: {s:?}");
    };
    assert!(
        rate >= 10_000_000 && rate <= cores * 1_100_000_000,
        "implausible usage_nano_cores {rate} on {cores} cores"
    );

    // The hog's working set holds its 32 MiB; the idle one's does not.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let s = container_stats(&mut c, &hog).await;
        if working_set(&s) >= 32 << 20 {
            break;
        }
        assert!(Instant::now() < deadline, "working set never grew: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let idle_stats = container_stats(&mut c, &idle).await;
    assert!(working_set(&idle_stats) < 16 << 20, "{idle_stats:?}");
    let mem = idle_stats.memory.as_ref().unwrap();
    assert!(mem.usage_bytes.is_some() && mem.rss_bytes.is_some() && mem.page_faults.is_some());

    // The pod: its containers, a process count and its interfaces. Its
    // working set is the sum of its containers', read afresh: the kernel
    // may account the hog's pages a little later or earlier than in the
    // container's own read above, so it gets the same patience.
    let deadline = Instant::now() + PATIENCE;
    let before = loop {
        let s = pod_stats(&mut c, &pod).await;
        if working_set_of_pod(&s) >= 32 << 20 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the pod's working set never reached the hog's: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let linux = before.linux.as_ref().unwrap();
    assert_eq!(linux.containers.len(), 3);
    let procs = linux
        .process
        .as_ref()
        .unwrap()
        .process_count
        .as_ref()
        .unwrap()
        .value;
    assert!(procs >= 3, "process count {procs}");
    assert!(linux
        .cpu
        .as_ref()
        .unwrap()
        .usage_core_nano_seconds
        .is_some());
    let (rx0, tx0) = lo_bytes(&before).expect("loopback counters of the pod's netns");
    let ping = c
        .runtime
        .exec_sync(v1::ExecSyncRequest {
            container_id: idle.clone(),
            cmd: vec!["ping".into(), "-c".into(), "3".into(), "127.0.0.1".into()],
            timeout: 30,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ping.exit_code,
        0,
        "{}",
        String::from_utf8_lossy(&ping.stderr)
    );
    let after = pod_stats(&mut c, &pod).await;
    let (rx1, tx1) = lo_bytes(&after).unwrap();
    assert!(rx1 > rx0 && tx1 > tx0, "lo {rx0}/{tx0} -> {rx1}/{tx1}");
    let listed = c
        .runtime
        .list_pod_sandbox_stats(v1::ListPodSandboxStatsRequest {
            filter: Some(v1::PodSandboxStatsFilter {
                label_selector: HashMap::from([("app".into(), "load".into())]),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(listed.len(), 1);

    // The cAdvisor-style metrics agree: the hog's working set, every
    // descriptor's label count.
    let descriptors = c
        .runtime
        .list_metric_descriptors(v1::ListMetricDescriptorsRequest {})
        .await
        .unwrap()
        .into_inner()
        .descriptors;
    let metrics = c
        .runtime
        .list_pod_sandbox_metrics(v1::ListPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pod_metrics;
    let mine = metrics
        .iter()
        .find(|m| m.pod_sandbox_id == pod)
        .expect("the pod's metrics");
    let hog_metrics = mine
        .container_metrics
        .iter()
        .find(|m| m.container_id == hog)
        .expect("the hog's metrics");
    let ws = hog_metrics
        .metrics
        .iter()
        .find(|m| m.name == "container_memory_working_set_bytes")
        .unwrap();
    assert!(ws.value.as_ref().unwrap().value >= 32 << 20);
    for m in mine.metrics.iter().chain(hog_metrics.metrics.iter()) {
        let d = descriptors
            .iter()
            .find(|d| d.name == m.name)
            .expect("described");
        assert_eq!(d.label_keys.len(), m.label_values.len(), "{}", m.name);
    }

    stop_remove_pod(&mut c, &pod).await;
}

fn working_set_of_pod(s: &v1::PodSandboxStats) -> u64 {
    s.linux
        .as_ref()
        .and_then(|l| l.memory.as_ref())
        .and_then(|m| m.working_set_bytes.as_ref())
        .map(|v| v.value)
        .unwrap_or(0)
}

async fn next_event(
    stream: &mut tonic::Streaming<v1::ContainerEventResponse>,
) -> v1::ContainerEventResponse {
    tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("an event")
        .unwrap()
        .expect("the stream is open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_in_order_for_a_full_lifecycle() {
    if !ready("events_arrive_in_order_for_a_full_lifecycle") {
        return;
    }
    use v1::ContainerEventType::*;
    let d = Daemon::start(&mirror_config());
    let mut c = d.client().await;
    pull(&mut c).await;
    let mut events = c
        .runtime
        .get_container_events(v1::GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    // A second subscriber that never reads must not hold anything up.
    let _idle_subscriber = d
        .client()
        .await
        .runtime
        .get_container_events(v1::GetEventsRequest {})
        .await
        .unwrap();

    let pod = run_pod(&mut c, "events").await;
    for kind in [ContainerCreatedEvent, ContainerStartedEvent] {
        let e = next_event(&mut events).await;
        assert_eq!(
            (e.container_id.as_str(), e.container_event_type),
            (pod.as_str(), kind as i32)
        );
        let status = e.pod_sandbox_status.expect("the pod's status");
        assert_eq!(status.id, pod);
        assert_eq!(status.state, v1::PodSandboxState::SandboxReady as i32);
    }
    // Exits on its own: STOPPED comes from the exit watcher.
    let ctr = create(&mut c, &pod, "events", "short", &["sh", "-c", "exit 3"]).await;
    let e = next_event(&mut events).await;
    assert_eq!(
        (e.container_id.as_str(), e.container_event_type),
        (ctr.as_str(), ContainerCreatedEvent as i32)
    );
    assert_eq!(e.containers_statuses.len(), 1);
    assert_eq!(
        e.containers_statuses[0].state,
        v1::ContainerState::ContainerCreated as i32
    );
    // PodSandboxStatus carries what the evented PLEG needs without verbose.
    let status = c
        .runtime
        .pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(status.timestamp > 0);
    assert_eq!(status.containers_statuses.len(), 1);
    assert_eq!(status.containers_statuses[0].id, ctr);
    start(&mut c, &ctr).await;
    let e = next_event(&mut events).await;
    assert_eq!(
        (e.container_id.as_str(), e.container_event_type),
        (ctr.as_str(), ContainerStartedEvent as i32)
    );
    let e = next_event(&mut events).await;
    assert_eq!(
        (e.container_id.as_str(), e.container_event_type),
        (ctr.as_str(), ContainerStoppedEvent as i32)
    );
    let status = &e.containers_statuses[0];
    assert_eq!(status.state, v1::ContainerState::ContainerExited as i32);
    assert_eq!(status.exit_code, 3);
    assert!(e.created_at > 0);

    stop_remove_pod(&mut c, &pod).await;
    let rest: Vec<(String, i32)> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let e = next_event(&mut events).await;
            v.push((e.container_id, e.container_event_type));
        }
        v
    };
    assert_eq!(
        rest,
        vec![
            (pod.clone(), ContainerStoppedEvent as i32),
            (ctr.clone(), ContainerDeletedEvent as i32),
            (pod.clone(), ContainerDeletedEvent as i32),
        ]
    );

    // Shutdown ends open event streams instead of waiting out the grace
    // period for them.
    let mut d = d;
    let status = tokio::task::block_in_place(|| d.stop());
    assert!(status.success(), "{status:?}");
    assert!(!matches!(events.message().await, Ok(Some(_))));
    let log = d.log();
    assert!(!log.contains("still in flight"), "{log}");
}

fn scrape(port: u16) -> prometheus_parse::Scrape {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("valid exposition text")
}

fn counter(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_endpoint_counts_rpcs() {
    if !require_root("prometheus_endpoint_counts_rpcs") {
        return;
    }
    let port = common::free_port();
    let d = Daemon::start(&format!(
        "{}\n[metrics]\naddress = \"127.0.0.1:{port}\"\n",
        mirror_config()
    ));
    let mut c = d.client().await;
    let before = scrape(port);
    if require_registry("prometheus_endpoint_counts_rpcs (pull bytes)") {
        // A fresh state dir: every blob of the image is downloaded.
        pull(&mut c).await;
        let bytes = counter(&scrape(port), "pvecri_image_pull_bytes_total", &[]);
        assert!(bytes > 500_000.0, "pulled {bytes} bytes of busybox");
    }
    let versions = counter(
        &before,
        "pvecri_cri_requests_total",
        &[("method", "Version")],
    );
    for _ in 0..3 {
        c.runtime
            .version(v1::VersionRequest::default())
            .await
            .unwrap();
    }
    let err = c
        .runtime
        .container_status(v1::ContainerStatusRequest {
            container_id: "nosuchcontainer".into(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let after = scrape(port);
    assert_eq!(
        counter(
            &after,
            "pvecri_cri_requests_total",
            &[("method", "Version")]
        ),
        versions + 3.0
    );
    assert_eq!(
        counter(
            &after,
            "pvecri_cri_request_errors_total",
            &[("method", "ContainerStatus"), ("code", "NotFound")]
        ),
        1.0
    );
    let histogram = after
        .samples
        .iter()
        .find(|s| {
            s.metric == "pvecri_cri_request_duration_seconds"
                && s.labels.get("method") == Some("Version")
        })
        .expect("a latency histogram for Version");
    match &histogram.value {
        prometheus_parse::Value::Histogram(buckets) => {
            assert!(buckets.iter().any(|b| b.count >= 3.0), "{buckets:?}")
        }
        other => panic!("not a histogram: {other:?}"),
    }
    for name in [
        "pvecri_containers",
        "pvecri_pod_sandboxes",
        "pvecri_monitor_processes",
        "pvecri_runtime_condition",
        "process_resident_memory_bytes",
    ] {
        assert!(
            after.samples.iter().any(|s| s.metric == name),
            "{name} missing"
        );
    }
    // Every pvecri metric the shipped dashboard and alert rules use exists.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/monitoring");
    for file in ["grafana-dashboard.json", "alerts.yml"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for (at, _) in text.match_indices("pvecri_") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                after.samples.iter().any(|s| s.metric == family),
                "{file} uses {name}, which /metrics does not serve"
            );
        }
    }
    // Anything but /metrics is a 404.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
}

/// ListContainerStats latency with many running containers
/// (`PVECRI_STATS_SCALE=100 cargo test --test stats -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run by hand"]
async fn list_container_stats_latency_at_scale() {
    if !ready("list_container_stats_latency_at_scale") {
        return;
    }
    let n: usize = std::env::var("PVECRI_STATS_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let d = Daemon::start(&mirror_config());
    let mut c = d.client().await;
    pull(&mut c).await;
    let pod = run_pod(&mut c, "scale").await;
    for i in 0..n {
        let id = create(&mut c, &pod, "scale", &format!("c{i}"), &["sleep", "3600"]).await;
        start(&mut c, &id).await;
    }
    let mut times = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let stats = c
            .runtime
            .list_container_stats(v1::ListContainerStatsRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .stats;
        times.push(t.elapsed());
        assert_eq!(stats.len(), n);
    }
    // The first call measures every writable layer; later ones reuse
    // those sizes for LAYER_USAGE_TTL.
    let cold = times[0];
    times.sort();
    eprintln!(
        "ListContainerStats with {n} running containers: cold {cold:?}, min {:?}, median {:?}, max {:?}",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
    stop_remove_pod(&mut c, &pod).await;
}
