//! `pvecri inspect <id>`: everything about one container or pod that an
//! operator looks for when the kubelet reports a problem: its record, the
//! LXC config it was started from, its monitor and init PIDs, cgroup,
//! mounts (as its init sees them) and network. JSON only; `record` is the
//! configuration pvecri keeps for it (the same whether it comes from the
//! daemon or the store).

use std::process::ExitCode;

use serde_json::{json, Value};

use crate::config::Config;
use crate::container::run_dir::RunDir;
use crate::cri::v1;

use super::view::{print_json, resolve, runtime, ContainerRow, PodRow, Source};

#[derive(clap::Args)]
pub(super) struct InspectArgs {
    /// A container or pod ID, or a unique prefix of one.
    id: String,
}

pub(super) fn run(config: &Config, args: InspectArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let mut source = Source::open(config).await?;
        let containers = source.containers().await?;
        let pods = source.pods().await?;
        let ids = containers
            .iter()
            .map(|c| c.id.as_str())
            .chain(pods.iter().map(|p| p.id.as_str()));
        let id = resolve("container or pod", &args.id, ids)?;
        let view = match containers.iter().find(|c| c.id == id) {
            Some(c) => container_view(config, &mut source, c, &pods).await?,
            None => {
                let pod = pods
                    .iter()
                    .find(|p| p.id == id)
                    .expect("resolved among these IDs");
                pod_view(&mut source, pod, &containers).await?
            }
        };
        print_json(&view)?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The `info` JSON of a verbose status response.
fn verbose_info(info: &std::collections::HashMap<String, String>) -> Value {
    info.get("info")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null)
}

async fn container_view(
    config: &Config,
    source: &mut Source,
    c: &ContainerRow,
    pods: &[PodRow],
) -> anyhow::Result<Value> {
    let from = if source.is_daemon() {
        "daemon"
    } else {
        "store"
    };
    let (record, init_pid, cgroup, log_path) = match source {
        Source::Daemon(client) => {
            let r = client
                .runtime
                .container_status(v1::ContainerStatusRequest {
                    container_id: c.id.clone(),
                    verbose: true,
                })
                .await?
                .into_inner();
            let info = verbose_info(&r.info);
            (
                info["config"].clone(),
                info["pid"].as_i64().unwrap_or(0),
                info["cgroup"].as_str().unwrap_or_default().to_owned(),
                r.status.map(|s| s.log_path).unwrap_or_default(),
            )
        }
        Source::Store(s) => {
            let rec = s
                .containers
                .iter()
                .find(|r| r.id == c.id)
                .expect("rows come from these records");
            (
                serde_json::to_value(&rec.config)?,
                i64::from(rec.init_pid),
                rec.cgroup.clone(),
                rec.log_file.clone(),
            )
        }
    };
    let pod = pods.iter().find(|p| p.id == c.pod_id);
    let netns = pod_netns(source, &c.pod_id).await;
    let monitor_pid = RunDir::new(&config.runtime_dir, &c.id)
        .ok()
        .and_then(|d| std::fs::read_to_string(d.monitor_pid()).ok())
        .and_then(|s| s.trim().parse::<i64>().ok());
    Ok(json!({
        "kind": "container",
        "source": from,
        "id": c.id,
        "name": c.name,
        "pod_id": c.pod_id,
        "state": c.state,
        "image": c.image,
        "init_pid": init_pid,
        "monitor_pid": monitor_pid,
        "cgroup": cgroup,
        "lxc_config": config.lxc_path().join(&c.id).join("config"),
        "log_path": log_path,
        "mounts": mounts_of(init_pid),
        "network": {
            "pod_ips": pod.map(|p| p.ips.clone()).unwrap_or_default(),
            "netns": netns,
        },
        "record": record,
    }))
}

async fn pod_view(
    source: &mut Source,
    p: &PodRow,
    containers: &[ContainerRow],
) -> anyhow::Result<Value> {
    let from = if source.is_daemon() {
        "daemon"
    } else {
        "store"
    };
    // The pod's config, and its size as last announced by the kubelet
    // (UpdatePodSandboxResources after an in-place resize).
    let (record, resources) = match source {
        Source::Daemon(client) => {
            let r = client
                .runtime
                .pod_sandbox_status(v1::PodSandboxStatusRequest {
                    pod_sandbox_id: p.id.clone(),
                    verbose: true,
                })
                .await?
                .into_inner();
            let info = verbose_info(&r.info);
            (info["config"].clone(), info["resources"].clone())
        }
        Source::Store(s) => {
            let pod = s.pods.iter().find(|r| r.id == p.id);
            (
                serde_json::to_value(pod.map(|r| &r.config))?,
                serde_json::to_value(pod.and_then(|r| r.resources.as_ref()))?,
            )
        }
    };
    Ok(json!({
        "kind": "pod",
        "source": from,
        "id": p.id,
        "name": p.name,
        "namespace": p.namespace,
        "state": p.state,
        "ips": p.ips,
        "netns": pod_netns(source, &p.id).await,
        "containers": containers
            .iter()
            .filter(|c| c.pod_id == p.id)
            .map(|c| c.id.clone())
            .collect::<Vec<_>>(),
        "resources": resources,
        "record": record,
    }))
}

/// The pinned network namespace of a pod, if it has its own.
async fn pod_netns(source: &mut Source, pod_id: &str) -> Option<String> {
    match source {
        Source::Daemon(client) => {
            let r = client
                .runtime
                .pod_sandbox_status(v1::PodSandboxStatusRequest {
                    pod_sandbox_id: pod_id.to_owned(),
                    verbose: true,
                })
                .await
                .ok()?
                .into_inner();
            verbose_info(&r.info)["netns"].as_str().map(str::to_owned)
        }
        Source::Store(s) => s.pods.iter().find(|p| p.id == pod_id)?.net_ns.clone(),
    }
}

/// The mounts the container's init sees (`/proc/<pid>/mountinfo`): mount
/// point, filesystem type and source; empty when it does not run.
fn mounts_of(pid: i64) -> Vec<Value> {
    if pid <= 0 {
        return Vec::new();
    }
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")) else {
        return Vec::new();
    };
    text.lines().filter_map(mount_entry).collect()
}

/// One mountinfo line as `{target, fstype, source}`.
fn mount_entry(line: &str) -> Option<Value> {
    let (left, right) = line.split_once(" - ")?;
    let target = left.split(' ').nth(4)?;
    let mut rest = right.split(' ');
    let fstype = rest.next()?;
    let source = rest.next().unwrap_or_default();
    Some(json!({ "target": target, "fstype": fstype, "source": source }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_become_entries() {
        let line = "36 35 98:0 / /mnt1 rw,noatime master:1 - ext3 /dev/root rw,errors=continue";
        assert_eq!(
            mount_entry(line).unwrap(),
            json!({"target": "/mnt1", "fstype": "ext3", "source": "/dev/root"})
        );
        assert!(mount_entry("garbage").is_none());
        assert!(mounts_of(0).is_empty());
    }
}
