//! `--density N`: N pods at once, and what the runtime's list and stats
//! calls cost with all of them running.
//!
//! 1. Starts N pods (RunPodSandbox, CreateContainer of `sleep 3600` from
//!    `--image`, StartContainer) in `--lanes` parallel lanes, each lane
//!    taking the next pod number when it is done with its last. A pod that
//!    fails to start is counted and reported; the run goes on.
//! 2. Prints `ready: ...`, and with `--sync-dir` creates `running` there and
//!    waits for `continue` (the caller samples the node meanwhile).
//! 3. Times `--list-calls` calls of each list call (no filter, a state
//!    filter, a label selector matching one pod, a pod-ID filter) and
//!    `--stats-calls` of ListContainerStats and ListPodSandboxStats.
//! 4. With `--sync-dir`: creates `listed`, waits for `teardown`.
//! 5. Stops and removes every pod (StopPodSandbox + RemovePodSandbox) in as
//!    many lanes, then sweeps whatever still carries this run's label (a
//!    RunPodSandbox that timed out may still have made its pod).
//!
//! Pods carry the labels `pvecri-bench/run` (this run) and
//! `pvecri-bench/pod` (the pod's number), and so do their containers. With
//! `--cgroup-parents` each pod has the cgroup parent
//! `/pvecri-bench-<run>/pod<uid>`, as the kubelet's cgroupfs driver would
//! give it; the bench, in the kubelet's place, removes those cgroups last.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use pvecri::client::CriClient;
use pvecri::cri::v1;

use crate::{call, ensure_image, ms, percentiles, pod_config, sleep_container, Args, Raw};

const RUN_LABEL: &str = "pvecri-bench/run";
const POD_LABEL: &str = "pvecri-bench/pod";
/// Errors printed one by one; past this only counted.
const ERRORS_SHOWN: usize = 20;

/// One density pod as far as it got.
struct Pod {
    index: usize,
    id: Option<String>,
    container: Option<String>,
    /// RunPodSandbox + CreateContainer + StartContainer.
    took: Duration,
    error: Option<String>,
}

pub(crate) async fn run(c: &CriClient, args: &Args, raw: &mut Raw) -> anyhow::Result<()> {
    let n = args.density;
    let lanes = args.lanes.clamp(1, n);
    let image = v1::ImageSpec {
        image: args.image.clone(),
        ..Default::default()
    };
    ensure_image(&mut c.clone(), args, &image).await?;
    let run = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
    );
    println!(
        "{} density: {n} pods of {} in {lanes} lanes (run {run}); times in ms",
        args.label, args.image
    );

    // 1. Start.
    let next = Cell::new(0usize);
    let shown = Cell::new(0usize);
    let t = Instant::now();
    let lane_results =
        join_all((0..lanes).map(|_| start_lane(c.clone(), args, &run, &next, &shown))).await;
    let wall = t.elapsed();
    let mut pods: Vec<Pod> = lane_results.into_iter().flatten().collect();
    pods.sort_by_key(|p| p.index);
    let mut took: Vec<Duration> = pods
        .iter()
        .filter(|p| p.error.is_none())
        .map(|p| p.took)
        .collect();
    let failed = pods.iter().filter(|p| p.error.is_some()).count();
    raw.value("density start wall", ms(wall))?;
    raw.value("density start wall per pod", ms(wall) / n as f64)?;
    raw.value("density start failed", failed as f64)?;
    raw.times("density pod start", &took)?;
    let (p50, p90) = percentiles(&mut took);
    println!(
        "  started {} of {n} pods ({failed} failed) in {:.2} s: {:.2} ms wall per pod",
        n - failed,
        wall.as_secs_f64(),
        ms(wall) / n as f64
    );
    println!(
        "  {:<30} {p50:>9.2} {p90:>9.2}",
        "pod start (3 calls, per pod)"
    );

    // 2. Every pod that could start is running: the caller samples.
    let running = running_containers(c, args).await;
    println!(
        "ready: {} pods started, {} containers running",
        n - failed,
        running.map_or_else(|e| format!("? ({e:#})"), |r| r.to_string())
    );
    std::io::stdout().flush()?;
    handshake(args, "running", "continue").await?;

    // 3. The list and stats calls, all pods running.
    lists(c, args, raw, &run, &pods).await?;
    handshake(args, "listed", "teardown").await?;

    // 5. Teardown.
    let queue: Vec<&str> = pods.iter().filter_map(|p| p.id.as_deref()).collect();
    let next = Cell::new(0usize);
    let t = Instant::now();
    let lane_results =
        join_all((0..lanes).map(|_| teardown_lane(c.clone(), args, &queue, &next, &shown))).await;
    let wall = t.elapsed();
    let mut each: Vec<Duration> = Vec::new();
    let mut teardown_failed = 0;
    for r in lane_results.into_iter().flatten() {
        match r {
            Ok(d) => each.push(d),
            Err(()) => teardown_failed += 1,
        }
    }
    raw.value("density teardown wall", ms(wall))?;
    raw.value("density teardown wall per pod", ms(wall) / n as f64)?;
    raw.value("density teardown failed", teardown_failed as f64)?;
    raw.times("density pod teardown", &each)?;
    let (p50, p90) = percentiles(&mut each);
    println!(
        "  removed {} pods ({teardown_failed} failed) in {:.2} s: {:.2} ms wall per pod",
        queue.len() - teardown_failed,
        wall.as_secs_f64(),
        ms(wall) / n as f64
    );
    println!(
        "  {:<30} {p50:>9.2} {p90:>9.2}",
        "pod teardown (2 calls, per pod)"
    );
    sweep(c, args, &run).await;
    if args.cgroup_parents {
        remove_cgroup_parents(&run);
    }
    Ok(())
}

/// The cgroup parent of density pod `uid` in run `run`.
fn cgroup_parent(run: &str, uid: &str) -> String {
    format!("/pvecri-bench-{run}/pod{uid}")
}

/// Removes `pvecri-bench-<run>` and everything below it on every cgroup
/// hierarchy (rmdir only: a cgroup still in use stays, and is reported).
fn remove_cgroup_parents(run: &str) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let (mut removed, mut left) = (0, Vec::new());
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 3 || !matches!(fields[2], "cgroup" | "cgroup2") {
            continue;
        }
        let top = Path::new(fields[1]).join(format!("pvecri-bench-{run}"));
        if top.is_dir() {
            rmdir_tree(&top, &mut removed, &mut left);
        }
    }
    println!("  cgroup parents: {removed} removed");
    for (dir, e) in left {
        println!("  cgroup parents: cannot remove {}: {e}", dir.display());
    }
}

fn rmdir_tree(
    dir: &Path,
    removed: &mut usize,
    left: &mut Vec<(std::path::PathBuf, std::io::Error)>,
) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&entry.path(), removed, left);
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => *removed += 1,
        Err(e) => left.push((dir.to_owned(), e)),
    }
}

/// Starts pods until the shared counter passes `--density`.
async fn start_lane(
    mut c: CriClient,
    args: &Args,
    run: &str,
    next: &Cell<usize>,
    shown: &Cell<usize>,
) -> Vec<Pod> {
    let mut done = Vec::new();
    loop {
        let index = next.get();
        if index >= args.density {
            return done;
        }
        next.set(index + 1);
        let pod = start_pod(&mut c, args, run, index).await;
        if let Some(e) = &pod.error {
            report(shown, &format!("pod {index}: {e}"));
        }
        done.push(pod);
    }
}

async fn start_pod(c: &mut CriClient, args: &Args, run: &str, index: usize) -> Pod {
    let mut pod = Pod {
        index,
        id: None,
        container: None,
        took: Duration::ZERO,
        error: None,
    };
    let labels: HashMap<String, String> = [
        (RUN_LABEL.to_owned(), run.to_owned()),
        (POD_LABEL.to_owned(), index.to_string()),
    ]
    .into();
    let mut config = pod_config(args, &format!("density-{index}"));
    config.labels = labels.clone();
    if args.cgroup_parents {
        let uid = config
            .metadata
            .as_ref()
            .map(|m| m.uid.clone())
            .unwrap_or_default();
        if let Some(linux) = &mut config.linux {
            linux.cgroup_parent = cgroup_parent(run, &uid);
        }
    }
    let timeout = args.call_timeout();
    let t = Instant::now();
    let result: anyhow::Result<()> = async {
        let id = call(
            timeout,
            "RunPodSandbox",
            c.runtime.run_pod_sandbox(v1::RunPodSandboxRequest {
                config: Some(config.clone()),
                ..Default::default()
            }),
        )
        .await?
        .pod_sandbox_id;
        pod.id = Some(id.clone());
        let mut container = sleep_container(args);
        container.labels = labels;
        let ctr = call(
            timeout,
            "CreateContainer",
            c.runtime.create_container(v1::CreateContainerRequest {
                pod_sandbox_id: id,
                config: Some(container),
                sandbox_config: Some(config.clone()),
            }),
        )
        .await?
        .container_id;
        pod.container = Some(ctr.clone());
        call(
            timeout,
            "StartContainer",
            c.runtime
                .start_container(v1::StartContainerRequest { container_id: ctr }),
        )
        .await?;
        Ok(())
    }
    .await;
    pod.took = t.elapsed();
    pod.error = result.err().map(|e| format!("{e:#}"));
    pod
}

/// Stops and removes pods from `queue` until it is empty; the time of
/// each pod's two calls, or `Err` for a pod either call failed on.
async fn teardown_lane(
    mut c: CriClient,
    args: &Args,
    queue: &[&str],
    next: &Cell<usize>,
    shown: &Cell<usize>,
) -> Vec<Result<Duration, ()>> {
    let mut done = Vec::new();
    loop {
        let i = next.get();
        let Some(id) = queue.get(i) else {
            return done;
        };
        next.set(i + 1);
        let t = Instant::now();
        match remove_pod(&mut c, args, id).await {
            Ok(()) => done.push(Ok(t.elapsed())),
            Err(e) => {
                report(shown, &format!("teardown of {id}: {e:#}"));
                done.push(Err(()));
            }
        }
    }
}

async fn remove_pod(c: &mut CriClient, args: &Args, id: &str) -> anyhow::Result<()> {
    let timeout = args.call_timeout();
    call(
        timeout,
        "StopPodSandbox",
        c.runtime.stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        }),
    )
    .await?;
    call(
        timeout,
        "RemovePodSandbox",
        c.runtime.remove_pod_sandbox(v1::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        }),
    )
    .await?;
    Ok(())
}

/// Removes every pod still labelled with this run (one RunPodSandbox that
/// timed out may have made one after all).
async fn sweep(c: &CriClient, args: &Args, run: &str) {
    let mut c = c.clone();
    let filter = v1::PodSandboxFilter {
        label_selector: [(RUN_LABEL.to_owned(), run.to_owned())].into(),
        ..Default::default()
    };
    let left = match call(
        args.call_timeout(),
        "ListPodSandbox",
        c.runtime.list_pod_sandbox(v1::ListPodSandboxRequest {
            filter: Some(filter),
        }),
    )
    .await
    {
        Ok(r) => r.items,
        Err(e) => {
            println!("  sweep: cannot list this run's pods: {e:#}");
            return;
        }
    };
    if left.is_empty() {
        println!("  sweep: no pod of this run left");
        return;
    }
    let mut removed = 0;
    for pod in &left {
        match remove_pod(&mut c, args, &pod.id).await {
            Ok(()) => removed += 1,
            Err(e) => println!("  sweep: {}: {e:#}", pod.id),
        }
    }
    println!(
        "  sweep: {} pods of this run were left, {removed} removed",
        left.len()
    );
}

/// The number of running containers, by a state-filtered ListContainers.
async fn running_containers(c: &CriClient, args: &Args) -> anyhow::Result<usize> {
    let filter = v1::ContainerFilter {
        state: Some(v1::ContainerStateValue {
            state: v1::ContainerState::ContainerRunning as i32,
        }),
        ..Default::default()
    };
    Ok(call(
        args.call_timeout(),
        "ListContainers",
        c.runtime
            .clone()
            .list_containers(v1::ListContainersRequest {
                filter: Some(filter),
            }),
    )
    .await?
    .containers
    .len())
}

/// With `--sync-dir`: creates `DIR/ready`, then waits for `DIR/go`.
async fn handshake(args: &Args, ready: &str, go: &str) -> anyhow::Result<()> {
    let Some(dir) = &args.sync_dir else {
        return Ok(());
    };
    std::fs::write(dir.join(ready), b"")?;
    if !wait_for(&dir.join(go), Duration::from_secs(args.sync_timeout)).await {
        println!(
            "  no {} within {}s: going on",
            dir.join(go).display(),
            args.sync_timeout
        );
    }
    Ok(())
}

async fn wait_for(path: &Path, timeout: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if path.exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    path.exists()
}

/// Prints an error unless `ERRORS_SHOWN` were printed already.
fn report(shown: &Cell<usize>, line: &str) {
    let k = shown.get() + 1;
    shown.set(k);
    if k <= ERRORS_SHOWN {
        println!("  error: {line}");
    } else if k == ERRORS_SHOWN + 1 {
        println!("  error: (further errors only counted)");
    }
}

/// Times `calls` calls of `f`; the answers' item counts by `items`.
struct Timed {
    times: Vec<Duration>,
    errors: usize,
    items: Option<usize>,
    first_error: Option<String>,
}

async fn time_calls<T, Fut>(
    calls: usize,
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Fut,
    items: impl Fn(&T) -> usize,
) -> Timed
where
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut timed = Timed {
        times: Vec::with_capacity(calls),
        errors: 0,
        items: None,
        first_error: None,
    };
    for _ in 0..calls {
        let t = Instant::now();
        match call(timeout, what, f()).await {
            Ok(answer) => {
                timed.times.push(t.elapsed());
                timed.items = Some(items(&answer));
            }
            Err(e) => {
                timed.errors += 1;
                timed.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    timed
}

/// Step 3: each list call `--list-calls` times, each stats call
/// `--stats-calls` times.
async fn lists(
    c: &CriClient,
    args: &Args,
    raw: &mut Raw,
    run: &str,
    pods: &[Pod],
) -> anyhow::Result<()> {
    let timeout = args.call_timeout();
    // The filters that select one pod pick one in the middle.
    let started: Vec<&Pod> = pods.iter().filter(|p| p.error.is_none()).collect();
    let target = started.get(started.len() / 2).copied();
    let one: HashMap<String, String> = [
        (RUN_LABEL.to_owned(), run.to_owned()),
        (
            POD_LABEL.to_owned(),
            target.map_or(usize::MAX, |p| p.index).to_string(),
        ),
    ]
    .into();
    let target_id = target.and_then(|p| p.id.clone()).unwrap_or_default();
    let (lc, sc) = (args.list_calls, args.stats_calls);
    let rt = &c.runtime;

    let pods_with = |filter: Option<v1::PodSandboxFilter>| {
        let rt = rt.clone();
        move || {
            let req = v1::ListPodSandboxRequest {
                filter: filter.clone(),
            };
            let mut rt = rt.clone();
            async move { rt.list_pod_sandbox(req).await }
        }
    };
    let containers_with = |filter: Option<v1::ContainerFilter>| {
        let rt = rt.clone();
        move || {
            let req = v1::ListContainersRequest {
                filter: filter.clone(),
            };
            let mut rt = rt.clone();
            async move { rt.list_containers(req).await }
        }
    };
    let pod_items = |r: &v1::ListPodSandboxResponse| r.items.len();
    let ctr_items = |r: &v1::ListContainersResponse| r.containers.len();

    let mut results: Vec<(&str, Timed)> = Vec::new();
    results.push((
        "ListPodSandbox",
        time_calls(lc, timeout, "ListPodSandbox", pods_with(None), pod_items).await,
    ));
    results.push((
        "ListPodSandbox state=ready",
        time_calls(
            lc,
            timeout,
            "ListPodSandbox",
            pods_with(Some(v1::PodSandboxFilter {
                state: Some(v1::PodSandboxStateValue {
                    state: v1::PodSandboxState::SandboxReady as i32,
                }),
                ..Default::default()
            })),
            pod_items,
        )
        .await,
    ));
    results.push((
        "ListPodSandbox label",
        time_calls(
            lc,
            timeout,
            "ListPodSandbox",
            pods_with(Some(v1::PodSandboxFilter {
                label_selector: one.clone(),
                ..Default::default()
            })),
            pod_items,
        )
        .await,
    ));
    results.push((
        "ListContainers",
        time_calls(
            lc,
            timeout,
            "ListContainers",
            containers_with(None),
            ctr_items,
        )
        .await,
    ));
    results.push((
        "ListContainers pod",
        time_calls(
            lc,
            timeout,
            "ListContainers",
            containers_with(Some(v1::ContainerFilter {
                pod_sandbox_id: target_id,
                ..Default::default()
            })),
            ctr_items,
        )
        .await,
    ));
    results.push((
        "ListContainers state=running",
        time_calls(
            lc,
            timeout,
            "ListContainers",
            containers_with(Some(v1::ContainerFilter {
                state: Some(v1::ContainerStateValue {
                    state: v1::ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            })),
            ctr_items,
        )
        .await,
    ));
    results.push((
        "ListContainers label",
        time_calls(
            lc,
            timeout,
            "ListContainers",
            containers_with(Some(v1::ContainerFilter {
                label_selector: one.clone(),
                ..Default::default()
            })),
            ctr_items,
        )
        .await,
    ));
    results.push((
        "ListContainerStats",
        time_calls(
            sc,
            timeout,
            "ListContainerStats",
            || {
                let mut rt = rt.clone();
                async move {
                    rt.list_container_stats(v1::ListContainerStatsRequest { filter: None })
                        .await
                }
            },
            |r: &v1::ListContainerStatsResponse| r.stats.len(),
        )
        .await,
    ));
    results.push((
        "ListPodSandboxStats",
        time_calls(
            sc,
            timeout,
            "ListPodSandboxStats",
            || {
                let mut rt = rt.clone();
                async move {
                    rt.list_pod_sandbox_stats(v1::ListPodSandboxStatsRequest { filter: None })
                        .await
                }
            },
            |r: &v1::ListPodSandboxStatsResponse| r.stats.len(),
        )
        .await,
    ));

    println!(
        "  {:<30} {:>9} {:>9}  (calls, items in the last answer)",
        "call", "p50", "p90"
    );
    for (name, mut timed) in results {
        raw.times(name, &timed.times)?;
        raw.value(&format!("{name} failed"), timed.errors as f64)?;
        if let Some(items) = timed.items {
            raw.value(&format!("{name} items"), items as f64)?;
        }
        let (p50, p90) = percentiles(&mut timed.times);
        println!(
            "  {name:<30} {p50:>9.2} {p90:>9.2}  ({} ok, {} failed, items {})",
            timed.times.len(),
            timed.errors,
            timed
                .items
                .map_or_else(|| "-".to_owned(), |i| i.to_string())
        );
        if let Some(e) = timed.first_error {
            println!("    first error: {e}");
        }
    }
    Ok(())
}
