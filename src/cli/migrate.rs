//! `pvecri migrate`: moves a running pod to another pvecri daemon with
//! the CRI calls a controller would make (docs/checkpoint.md "Migration"):
//!
//! 1. CheckpointPod here with `leave-running=false`: every container is
//!    frozen, saved and ended (from the freeze on, the pod runs nowhere);
//! 2. RestorePod there from the archive, with the pod's own config;
//! 3. the pod here is stopped and removed.
//!
//! Should the restore fail, the pod is restored here again from the same
//! archive, so a failed move does not lose it. The archive must be
//! readable by both daemons (`--dir`: the same machine, or a directory
//! both nodes mount).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::checkpoint::pod_archive::{self, PodDump};
use crate::client::CriClient;
use crate::config::Config;
use crate::cri::v1;

#[derive(Debug, clap::Args)]
pub(super) struct MigrateArgs {
    /// The pod to move (its ID).
    pod: String,
    /// The CRI socket of the pvecri daemon to move it to.
    #[arg(long, value_name = "SOCKET")]
    to: PathBuf,
    /// Where the archive is written for the target to read (default: the
    /// state dir's `migrate/`); removed once the move is done.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Memory pre-dumps per container while it still runs, so that the
    /// final dump freezes it only to save what changed since (where the
    /// kernel tracks dirty pages; elsewhere one full dump).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pre_copy: u32,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

/// What a move took.
#[derive(Debug, serde::Serialize)]
struct Report {
    source_pod: String,
    target_pod: String,
    containers: Vec<String>,
    archive_bytes: u64,
    /// The longest any container was frozen for its final dump.
    frozen_ms: u64,
    /// Pre-dumps made (per container; 0 where the kernel has no dirty
    /// tracking).
    pre_copies: u32,
    /// CheckpointPod: from the call to the archive in place (the
    /// containers stop at their freeze in it).
    checkpoint_ms: u128,
    /// RestorePod on the target, until every container runs again.
    restore_ms: u128,
    /// From the first container's final freeze to the pod running on the
    /// target (the containers end with their final dump): how long the
    /// workload ran nowhere. Wall clocks of both daemons' machine(s).
    down_ms: u128,
    /// The whole move, the source pod's removal included.
    total_ms: u128,
}

pub(super) fn run(config: &Config, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(migrate(config, &args))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "pod {} moved to {} as {}: {} container(s), archive {} MiB, {} pre-dump(s); frozen {} ms, checkpoint {} ms, restore {} ms, down {} ms, total {} ms",
            report.source_pod,
            args.to.display(),
            report.target_pod,
            report.containers.len(),
            report.archive_bytes >> 20,
            report.pre_copies,
            report.frozen_ms,
            report.checkpoint_ms,
            report.restore_ms,
            report.down_ms,
            report.total_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn migrate(config: &Config, args: &MigrateArgs) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut here = CriClient::connect(&config.socket)
        .await
        .with_context(|| format!("cannot reach the daemon at {}", config.socket.display()))?;
    let mut there = CriClient::connect(&args.to)
        .await
        .with_context(|| format!("cannot reach the target daemon at {}", args.to.display()))?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| config.state_dir.join("migrate"));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let dir = std::fs::canonicalize(&dir)?;
    let archive = dir.join(format!("{}.{}.tar", args.pod, crate::runtime::now_ns()));
    let archive_path = archive.display().to_string();

    here.runtime
        .checkpoint_pod(v1::CheckpointPodRequest {
            pod_sandbox_id: args.pod.clone(),
            output_path: archive_path.clone(),
            container_ids: Vec::new(),
            options: [
                ("leave-running".to_owned(), "false".to_owned()),
                ("pre-copy".to_owned(), args.pre_copy.to_string()),
            ]
            .into(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("checkpointing pod {}: {}", args.pod, s.message()))?;
    let checkpointed = started.elapsed();
    let archive_bytes = std::fs::metadata(&archive).map(|m| m.len()).unwrap_or(0);
    let dump = pod_dump(&archive).unwrap_or(None);
    let (frozen_ms, pre_copies, stopped_at_ns) = dump
        .map(|d| {
            (
                d.containers.iter().map(|c| c.frozen_ms).max().unwrap_or(0),
                d.containers.iter().map(|c| c.pre_copies).min().unwrap_or(0),
                d.containers
                    .iter()
                    .map(|c| c.frozen_at_ns)
                    .filter(|t| *t > 0)
                    .min(),
            )
        })
        .unwrap_or_default();
    let restore = v1::RestorePodRequest {
        checkpoint_path: archive_path.clone(),
        ..Default::default()
    };
    let restored = match there.runtime.restore_pod(restore.clone()).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            // The pod's containers ended with the dump: bring it back here,
            // once the stopped pod has freed its name.
            let _ = here
                .runtime
                .stop_pod_sandbox(v1::StopPodSandboxRequest {
                    pod_sandbox_id: args.pod.clone(),
                })
                .await;
            let _ = here
                .runtime
                .remove_pod_sandbox(v1::RemovePodSandboxRequest {
                    pod_sandbox_id: args.pod.clone(),
                })
                .await;
            let back = here.runtime.restore_pod(restore).await;
            if back.is_ok() {
                let _ = std::fs::remove_file(&archive);
            }
            return Err(match back {
                Ok(r) => anyhow::anyhow!(
                    "the target refused the pod ({}); it runs here again as pod {}",
                    status.message(),
                    r.into_inner().pod_sandbox_id
                ),
                Err(again) => anyhow::anyhow!(
                    "the target refused the pod ({}) and restoring it here failed too ({}); the pod is in the archive {} (RestorePod restores it)",
                    status.message(),
                    again.message(),
                    archive_path
                ),
            });
        }
    };
    let running_there = started.elapsed();
    // Down from the first final freeze; without that record, from the
    // checkpoint call (an upper bound).
    let down = match stopped_at_ns {
        Some(t) => Duration::from_nanos((crate::runtime::now_ns() - t).max(0) as u64),
        None => running_there,
    };
    let _ = std::fs::remove_file(&archive);
    here.runtime
        .stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: args.pod.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("stopping the moved pod here: {}", s.message()))?;
    here.runtime
        .remove_pod_sandbox(v1::RemovePodSandboxRequest {
            pod_sandbox_id: args.pod.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("removing the moved pod here: {}", s.message()))?;
    let ms = |d: Duration| d.as_millis();
    Ok(Report {
        source_pod: args.pod.clone(),
        target_pod: restored.pod_sandbox_id,
        containers: restored
            .restored_containers
            .into_iter()
            .map(|c| c.container_id)
            .collect(),
        archive_bytes,
        frozen_ms,
        pre_copies,
        checkpoint_ms: ms(checkpointed),
        restore_ms: ms(running_there - checkpointed),
        down_ms: ms(down),
        total_ms: ms(started.elapsed()),
    })
}

/// `pod.json` of a pod archive this daemon wrote.
fn pod_dump(archive: &std::path::Path) -> anyhow::Result<Option<PodDump>> {
    let mut tar = tar::Archive::new(std::fs::File::open(archive)?);
    for entry in tar.entries()? {
        let entry = entry?;
        if entry.path()?.as_ref() == std::path::Path::new(pod_archive::POD_JSON) {
            return Ok(Some(serde_json::from_reader(entry)?));
        }
    }
    Ok(None)
}
