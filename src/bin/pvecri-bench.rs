//! pvecri-bench: the pod lifecycle against any CRI endpoint, timed per call.
//!
//! `pvecri-bench --endpoint /run/pvecri/pvecri.sock --image busybox --iterations 20`
//! runs RunPodSandbox -> CreateContainer -> StartContainer -> ExecSync ->
//! StopContainer -> RemoveContainer -> StopPodSandbox -> RemovePodSandbox
//! and prints the median and p90 of each call, so pvecri and containerd can
//! be compared in one run with the same client. `--pulls N` adds N
//! PullImage -> RemoveImage cycles of `--pull-image` (scripts/soak.sh runs
//! both in batches and watches the daemon in between).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use pvecri::client::CriClient;
use pvecri::cri::v1;

#[derive(Parser)]
struct Args {
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
    let mut c = CriClient::connect(&socket).await?;
    if args.iterations > 0 {
        lifecycles(&mut c, &args).await?;
    }
    if args.pulls > 0 {
        pulls(&mut c, &args).await?;
    }
    Ok(())
}

/// `--pulls` PullImage -> RemoveImage cycles, timed.
async fn pulls(c: &mut CriClient, args: &Args) -> anyhow::Result<()> {
    let image = v1::ImageSpec {
        image: args.pull_image.clone(),
        ..Default::default()
    };
    let (mut pull, mut remove) = (Vec::new(), Vec::new());
    for _ in 0..args.pulls {
        let t = Instant::now();
        let image_ref = c
            .image
            .pull_image(v1::PullImageRequest {
                image: Some(image.clone()),
                ..Default::default()
            })
            .await?
            .into_inner()
            .image_ref;
        pull.push(t.elapsed());
        let t = Instant::now();
        c.image
            .remove_image(v1::RemoveImageRequest {
                image: Some(v1::ImageSpec {
                    image: image_ref,
                    ..Default::default()
                }),
            })
            .await?;
        remove.push(t.elapsed());
    }
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

/// `--iterations` pod lifecycles, timed per call.
async fn lifecycles(c: &mut CriClient, args: &Args) -> anyhow::Result<()> {
    let image = v1::ImageSpec {
        image: args.image.clone(),
        ..Default::default()
    };
    let have = c
        .image
        .image_status(v1::ImageStatusRequest {
            image: Some(image.clone()),
            verbose: false,
        })
        .await?
        .into_inner()
        .image
        .is_some();
    if !have {
        c.image
            .pull_image(v1::PullImageRequest {
                image: Some(image.clone()),
                ..Default::default()
            })
            .await?;
    }
    let mut times: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    let mut pod_start = Vec::new();
    for i in 0..args.iterations {
        let pod_config = v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata {
                name: format!("bench-{i}"),
                uid: format!("bench-uid-{i}-{}", std::process::id()),
                namespace: "bench".into(),
                attempt: 0,
            }),
            hostname: format!("bench-{i}"),
            log_directory: args.log_dir.join(format!("pod-{i}")).display().to_string(),
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
        };
        let t = Instant::now();
        let pod = c
            .runtime
            .run_pod_sandbox(v1::RunPodSandboxRequest {
                config: Some(pod_config.clone()),
                ..Default::default()
            })
            .await?
            .into_inner()
            .pod_sandbox_id;
        let run = t.elapsed();
        let t = Instant::now();
        let ctr = c
            .runtime
            .create_container(v1::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(v1::ContainerConfig {
                    metadata: Some(v1::ContainerMetadata {
                        name: "c".into(),
                        attempt: 0,
                    }),
                    image: Some(image.clone()),
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
                }),
                sandbox_config: Some(pod_config.clone()),
            })
            .await?
            .into_inner()
            .container_id;
        let create = t.elapsed();
        let t = Instant::now();
        c.runtime
            .start_container(v1::StartContainerRequest {
                container_id: ctr.clone(),
            })
            .await?;
        let start = t.elapsed();
        let t = Instant::now();
        let out = c
            .runtime
            .exec_sync(v1::ExecSyncRequest {
                container_id: ctr.clone(),
                cmd: vec!["true".into()],
                timeout: 10,
            })
            .await?
            .into_inner();
        anyhow::ensure!(out.exit_code == 0, "exec exited {}", out.exit_code);
        let exec = t.elapsed();
        let t = Instant::now();
        c.runtime
            .stop_container(v1::StopContainerRequest {
                container_id: ctr.clone(),
                timeout: 0,
            })
            .await?;
        let stop = t.elapsed();
        let t = Instant::now();
        c.runtime
            .remove_container(v1::RemoveContainerRequest { container_id: ctr })
            .await?;
        let remove = t.elapsed();
        let t = Instant::now();
        c.runtime
            .stop_pod_sandbox(v1::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await?;
        let stop_pod = t.elapsed();
        let t = Instant::now();
        c.runtime
            .remove_pod_sandbox(v1::RemovePodSandboxRequest {
                pod_sandbox_id: pod,
            })
            .await?;
        let remove_pod = t.elapsed();
        for (step, d) in STEPS
            .iter()
            .zip([run, create, start, exec, stop, remove, stop_pod, remove_pod])
        {
            times.entry(step).or_default().push(d);
        }
        pod_start.push(run + create + start);
    }
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

fn percentiles(v: &mut [Duration]) -> (f64, f64) {
    v.sort();
    let at = |q: f64| {
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v[i].as_secs_f64() * 1000.0
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
