//! pvecri-bench: the pod lifecycle against any CRI endpoint, timed per call.
//!
//! `pvecri-bench --endpoint /run/pvecri/pvecri.sock --image busybox --iterations 20`
//! runs RunPodSandbox -> CreateContainer -> StartContainer -> ExecSync ->
//! StopContainer -> RemoveContainer -> StopPodSandbox -> RemovePodSandbox
//! and prints the median and p90 of each call, so pvecri and containerd can
//! be compared in one run with the same client. `--pulls N` adds N
//! PullImage -> RemoveImage cycles of `--pull-image` (scripts/soak.sh runs
//! both in batches and watches the daemon in between). `--density N` starts
//! N pods at once in `--lanes` parallel lanes, times the list and stats
//! calls with all of them running, then tears them down (density.rs;
//! scripts/bench-compare.sh runs it against pvecri and containerd).
//!
//! Every CRI call has a deadline (`--call-timeout`). `--raw FILE` appends
//! every sample as a `measure<TAB>value` line, so a caller can pool the
//! samples of several runs before taking percentiles.

mod density;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use pvecri::client::CriClient;
use pvecri::cri::v1;

#[derive(Parser)]
pub(crate) struct Args {
    /// CRI unix socket (a `unix://` prefix is accepted).
    #[arg(long)]
    endpoint: String,
    /// Image to run; pulled first if missing.
    #[arg(long, default_value = "registry.k8s.io/e2e-test-images/busybox:1.29-2")]
    image: String,
    #[arg(long, default_value_t = 20)]
    iterations: usize,
    /// Label for the output table.
    #[arg(long, default_value = "runtime")]
    label: String,
    /// Pods in the node's network namespace, to compare against pod
    /// networking (the difference is the network's share of pod start).
    #[arg(long)]
    host_network: bool,
    /// Pod log directory.
    #[arg(long, default_value = "/tmp/pvecri-bench-logs")]
    log_dir: PathBuf,
    /// PullImage -> RemoveImage cycles after the pod lifecycles.
    #[arg(long, default_value_t = 0)]
    pulls: usize,
    /// Image pulled and removed by `--pulls` (not the one pods run: it is
    /// removed after each pull).
    #[arg(long, default_value = "registry.k8s.io/pause:3.10")]
    pull_image: String,
    /// Seconds any one CRI call may take before it counts as failed.
    #[arg(long, default_value_t = 60)]
    call_timeout: u64,
    /// Append every sample to this file, one `measure<TAB>value` line each
    /// (milliseconds for times, a count for `... failed`).
    #[arg(long, value_name = "FILE")]
    raw: Option<PathBuf>,
    /// Pods started for the density run (0: none), each with one
    /// `sleep 3600` container of `--image`; after the lifecycles and pulls.
    #[arg(long, default_value_t = 0)]
    density: usize,
    /// Parallel lanes starting and removing the density pods.
    #[arg(long, default_value_t = 4)]
    lanes: usize,
    /// Calls of each list call timed with the density pods running.
    #[arg(long, default_value_t = 30)]
    list_calls: usize,
    /// Calls of each stats call timed with the density pods running.
    #[arg(long, default_value_t = 10)]
    stats_calls: usize,
    /// With every density pod started, create `DIR/running` and wait for
    /// `DIR/continue` before the list calls (so a caller can sample the
    /// node); likewise `DIR/listed` / `DIR/teardown` before the teardown.
    #[arg(long, value_name = "DIR")]
    sync_dir: Option<PathBuf>,
    /// Seconds to wait for a file of `--sync-dir` before going on anyway.
    #[arg(long, default_value_t = 900)]
    sync_timeout: u64,
    /// Give every density pod a cgroup parent as the kubelet's cgroupfs
    /// driver does (`/pvecri-bench-<run>/pod<uid>`; a runtime may need one
    /// for pod stats), and remove those cgroups after the teardown.
    #[arg(long)]
    cgroup_parents: bool,
}

impl Args {
    pub(crate) fn call_timeout(&self) -> Duration {
        Duration::from_secs(self.call_timeout)
    }
}

const STEPS: [&str; 8] = [
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "ExecSync",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
];

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let socket = PathBuf::from(args.endpoint.trim_start_matches("unix://"));
    let mut c = tokio::time::timeout(args.call_timeout(), CriClient::connect(&socket))
        .await
        .with_context(|| format!("no connection to {} in time", socket.display()))?
        .with_context(|| format!("connecting to {}", socket.display()))?;
    let mut raw = Raw::open(args.raw.as_ref())?;
    if args.iterations > 0 {
        lifecycles(&mut c, &args, &mut raw).await?;
    }
    if args.pulls > 0 {
        pulls(&mut c, &args, &mut raw).await?;
    }
    if args.density > 0 {
        density::run(&c, &args, &mut raw).await?;
    }
    Ok(())
}

/// Awaits one CRI call with the call timeout; an error names the call.
pub(crate) async fn call<T>(
    timeout: Duration,
    what: &str,
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => anyhow::bail!("{what}: no answer within {}s", timeout.as_secs()),
        Ok(Err(status)) => anyhow::bail!("{what}: {:?}: {}", status.code(), status.message()),
        Ok(Ok(response)) => Ok(response.into_inner()),
    }
}

/// [`call`], and how long it took.
pub(crate) async fn timed<T>(
    timeout: Duration,
    what: &str,
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> anyhow::Result<(T, Duration)> {
    let t = Instant::now();
    let answer = call(timeout, what, fut).await?;
    Ok((answer, t.elapsed()))
}

/// The `--raw` sink: `measure<TAB>value` lines, or nothing.
pub(crate) struct Raw(Option<std::fs::File>);

impl Raw {
    fn open(path: Option<&PathBuf>) -> anyhow::Result<Self> {
        let file = path
            .map(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("opening {}", p.display()))
            })
            .transpose()?;
        Ok(Self(file))
    }

    pub(crate) fn value(&mut self, measure: &str, value: f64) -> anyhow::Result<()> {
        if let Some(f) = &mut self.0 {
            writeln!(f, "{measure}\t{value:.3}")?;
        }
        Ok(())
    }

    pub(crate) fn times(&mut self, measure: &str, times: &[Duration]) -> anyhow::Result<()> {
        for t in times {
            self.value(measure, ms(*t))?;
        }
        Ok(())
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Pulls `image` unless the runtime has it.
pub(crate) async fn ensure_image(
    c: &mut CriClient,
    args: &Args,
    image: &v1::ImageSpec,
) -> anyhow::Result<()> {
    let have = call(
        args.call_timeout(),
        "ImageStatus",
        c.image.image_status(v1::ImageStatusRequest {
            image: Some(image.clone()),
            verbose: false,
        }),
    )
    .await?
    .image
    .is_some();
    if !have {
        call(
            args.call_timeout(),
            "PullImage",
            c.image.pull_image(v1::PullImageRequest {
                image: Some(image.clone()),
                ..Default::default()
            }),
        )
        .await?;
    }
    Ok(())
}

/// `--pulls` PullImage -> RemoveImage cycles, timed.
async fn pulls(c: &mut CriClient, args: &Args, raw: &mut Raw) -> anyhow::Result<()> {
    let image = v1::ImageSpec {
        image: args.pull_image.clone(),
        ..Default::default()
    };
    let timeout = args.call_timeout();
    let (mut pull, mut remove) = (Vec::new(), Vec::new());
    for _ in 0..args.pulls {
        let (pulled, took) = timed(
            timeout,
            "PullImage",
            c.image.pull_image(v1::PullImageRequest {
                image: Some(image.clone()),
                ..Default::default()
            }),
        )
        .await?;
        pull.push(took);
        let (_, took) = timed(
            timeout,
            "RemoveImage",
            c.image.remove_image(v1::RemoveImageRequest {
                image: Some(v1::ImageSpec {
                    image: pulled.image_ref,
                    ..Default::default()
                }),
            }),
        )
        .await?;
        remove.push(took);
    }
    raw.times("PullImage", &pull)?;
    raw.times("RemoveImage", &remove)?;
    println!(
        "{} ({} pulls of {}): median / p90 in ms",
        args.label, args.pulls, args.pull_image
    );
    for (step, v) in [("PullImage", &mut pull), ("RemoveImage", &mut remove)] {
        let (p50, p90) = percentiles(v);
        println!("  {step:<18} {p50:>8.2} {p90:>8.2}");
    }
    Ok(())
}

/// The pod config of pod `name` as the kubelet would send it (no labels).
pub(crate) fn pod_config(args: &Args, name: &str) -> v1::PodSandboxConfig {
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.to_owned(),
            uid: format!("{name}-uid-{}", std::process::id()),
            namespace: "bench".into(),
            attempt: 0,
        }),
        hostname: name.to_owned(),
        log_directory: args.log_dir.join(name).display().to_string(),
        // As the kubelet sends it for a pod without
        // shareProcessNamespace: one PID namespace per container.
        linux: Some(v1::LinuxPodSandboxConfig {
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(kubelet_namespaces(args.host_network)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The config of a container `c` running `sleep 3600` from `--image`.
pub(crate) fn sleep_container(args: &Args) -> v1::ContainerConfig {
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: "c".into(),
            attempt: 0,
        }),
        image: Some(v1::ImageSpec {
            image: args.image.clone(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "3600".into()],
        log_path: "c.log".into(),
        linux: Some(v1::LinuxContainerConfig {
            security_context: Some(v1::LinuxContainerSecurityContext {
                namespace_options: Some(kubelet_namespaces(args.host_network)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `--iterations` pod lifecycles, timed per call.
async fn lifecycles(c: &mut CriClient, args: &Args, raw: &mut Raw) -> anyhow::Result<()> {
    let image = v1::ImageSpec {
        image: args.image.clone(),
        ..Default::default()
    };
    ensure_image(c, args, &image).await?;
    let timeout = args.call_timeout();
    let mut times: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    let mut pod_start = Vec::new();
    for i in 0..args.iterations {
        let pod_config = pod_config(args, &format!("bench-{i}"));
        let (pod, run) = timed(
            timeout,
            "RunPodSandbox",
            c.runtime.run_pod_sandbox(v1::RunPodSandboxRequest {
                config: Some(pod_config.clone()),
                ..Default::default()
            }),
        )
        .await?;
        let pod = pod.pod_sandbox_id;
        let (ctr, create) = timed(
            timeout,
            "CreateContainer",
            c.runtime.create_container(v1::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(sleep_container(args)),
                sandbox_config: Some(pod_config.clone()),
            }),
        )
        .await?;
        let ctr = ctr.container_id;
        let (_, start) = timed(
            timeout,
            "StartContainer",
            c.runtime.start_container(v1::StartContainerRequest {
                container_id: ctr.clone(),
            }),
        )
        .await?;
        let (out, exec) = timed(
            timeout,
            "ExecSync",
            c.runtime.exec_sync(v1::ExecSyncRequest {
                container_id: ctr.clone(),
                cmd: vec!["true".into()],
                timeout: 10,
            }),
        )
        .await?;
        anyhow::ensure!(out.exit_code == 0, "exec exited {}", out.exit_code);
        let (_, stop) = timed(
            timeout,
            "StopContainer",
            c.runtime.stop_container(v1::StopContainerRequest {
                container_id: ctr.clone(),
                timeout: 0,
            }),
        )
        .await?;
        let (_, remove) = timed(
            timeout,
            "RemoveContainer",
            c.runtime
                .remove_container(v1::RemoveContainerRequest { container_id: ctr }),
        )
        .await?;
        let (_, stop_pod) = timed(
            timeout,
            "StopPodSandbox",
            c.runtime.stop_pod_sandbox(v1::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            }),
        )
        .await?;
        let (_, remove_pod) = timed(
            timeout,
            "RemovePodSandbox",
            c.runtime.remove_pod_sandbox(v1::RemovePodSandboxRequest {
                pod_sandbox_id: pod,
            }),
        )
        .await?;
        for (step, d) in STEPS
            .iter()
            .zip([run, create, start, exec, stop, remove, stop_pod, remove_pod])
        {
            times.entry(step).or_default().push(d);
        }
        pod_start.push(run + create + start);
    }
    for step in STEPS {
        raw.times(step, &times[step])?;
    }
    raw.times("pod start", &pod_start)?;
    println!(
        "{} ({} iterations): median / p90 in ms",
        args.label, args.iterations
    );
    for step in STEPS {
        let (p50, p90) = percentiles(times.get_mut(step).expect("every step timed"));
        println!("  {step:<18} {p50:>8.2} {p90:>8.2}");
    }
    let (p50, p90) = percentiles(&mut pod_start);
    println!("  {:<18} {p50:>8.2} {p90:>8.2}", "pod start (3 calls)");
    Ok(())
}

/// The median and p90 in milliseconds (nearest rank); zeros when empty.
pub(crate) fn percentiles(v: &mut [Duration]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.sort();
    let at = |q: f64| {
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        ms(v[i])
    };
    (at(0.5), at(0.9))
}

/// The kubelet's namespace options for an ordinary (or host-network) pod.
fn kubelet_namespaces(host_network: bool) -> v1::NamespaceOption {
    v1::NamespaceOption {
        network: if host_network {
            v1::NamespaceMode::Node as i32
        } else {
            v1::NamespaceMode::Pod as i32
        },
        pid: v1::NamespaceMode::Container as i32,
        ipc: v1::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}
