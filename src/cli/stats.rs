//! `pvecri stats`: CPU, memory and writable layer of running containers,
//! like `crictl stats`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::client::CriClient;
use crate::config::Config;
use crate::cri::v1;

#[derive(clap::Args)]
pub(super) struct StatsArgs {
    /// Only containers whose ID starts with this.
    #[arg(long, default_value = "")]
    id: String,
    /// Only containers of the pod whose ID starts with this.
    #[arg(long, default_value = "")]
    pod: String,
    /// Include created and exited containers.
    #[arg(short, long)]
    all: bool,
    /// Seconds between the two CPU samples the CPU % is computed from.
    #[arg(long, default_value_t = 1)]
    seconds: u64,
}

pub(super) fn run(config: &Config, args: StatsArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut client = CriClient::connect(&config.socket).await?;
        let running: HashMap<String, String> = client
            .runtime
            .list_containers(v1::ListContainersRequest {
                filter: Some(v1::ContainerFilter {
                    id: args.id.clone(),
                    pod_sandbox_id: args.pod.clone(),
                    state: (!args.all).then_some(v1::ContainerStateValue {
                        state: v1::ContainerState::ContainerRunning as i32,
                    }),
                    ..Default::default()
                }),
            })
            .await?
            .into_inner()
            .containers
            .into_iter()
            .map(|c| (c.id, c.metadata.map(|m| m.name).unwrap_or_default()))
            .collect();
        let first = sample(&mut client, &args).await?;
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.seconds.max(1))).await;
        let second = sample(&mut client, &args).await?;
        let window = start.elapsed().as_nanos() as f64;
        println!(
            "{:<13} {:<24} {:>7} {:>10} {:>10} {:>8}",
            "CONTAINER", "NAME", "CPU %", "MEM", "DISK", "INODES"
        );
        let mut rows: Vec<&v1::ContainerStats> = second
            .iter()
            .filter(|s| running.contains_key(&id_of(s)))
            .collect();
        rows.sort_by_key(|s| running.get(&id_of(s)).cloned());
        for s in rows {
            let id = id_of(s);
            let before = first.iter().find(|f| id_of(f) == id);
            let cpu = match (cpu_ns(s), before.and_then(cpu_ns)) {
                (Some(b), Some(a)) if b >= a => format!("{:.2}", (b - a) as f64 / window * 100.0),
                _ => "-".into(),
            };
            let mem = s
                .memory
                .as_ref()
                .and_then(|m| m.working_set_bytes.as_ref())
                .map(|v| human(v.value))
                .unwrap_or_else(|| "-".into());
            let layer = s.writable_layer.as_ref();
            let disk = layer
                .and_then(|l| l.used_bytes.as_ref())
                .map(|v| human(v.value))
                .unwrap_or_else(|| "-".into());
            let inodes = layer
                .and_then(|l| l.inodes_used.as_ref())
                .map(|v| v.value.to_string())
                .unwrap_or_else(|| "-".into());
            println!(
                "{:<13} {:<24} {:>7} {:>10} {:>10} {:>8}",
                &id[..id.len().min(13)],
                running.get(&id).map(String::as_str).unwrap_or_default(),
                cpu,
                mem,
                disk,
                inodes
            );
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

async fn sample(
    client: &mut CriClient,
    args: &StatsArgs,
) -> anyhow::Result<Vec<v1::ContainerStats>> {
    Ok(client
        .runtime
        .list_container_stats(v1::ListContainerStatsRequest {
            filter: Some(v1::ContainerStatsFilter {
                id: args.id.clone(),
                pod_sandbox_id: args.pod.clone(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .stats)
}

fn id_of(s: &v1::ContainerStats) -> String {
    s.attributes
        .as_ref()
        .map(|a| a.id.clone())
        .unwrap_or_default()
}

fn cpu_ns(s: &v1::ContainerStats) -> Option<u64> {
    s.cpu
        .as_ref()?
        .usage_core_nano_seconds
        .as_ref()
        .map(|v| v.value)
}

/// 1536 -> "1.5KiB".
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn sizes_read_like_crictl() {
        assert_eq!(human(512), "512B");
        assert_eq!(human(1536), "1.5KiB");
        assert_eq!(human(64 << 20), "64.0MiB");
    }
}
