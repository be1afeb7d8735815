//! `pvecri events`: the daemon's container event stream, one line per
//! event, until interrupted.

use std::process::ExitCode;

use crate::client::CriClient;
use crate::config::Config;
use crate::cri::v1;

pub(super) fn run(config: &Config) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut client = CriClient::connect(&config.socket).await?;
        let mut stream = client
            .runtime
            .get_container_events(v1::GetEventsRequest {})
            .await?
            .into_inner();
        println!(
            "{:<30} {:<8} {:<13} {:<13} NAME",
            "TIME", "EVENT", "ID", "POD"
        );
        loop {
            let event = tokio::select! {
                e = stream.message() => e?,
                _ = tokio::signal::ctrl_c() => None,
            };
            let Some(e) = event else { break };
            println!("{}", line(&e));
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

fn line(e: &v1::ContainerEventResponse) -> String {
    let kind = match v1::ContainerEventType::try_from(e.container_event_type) {
        Ok(v1::ContainerEventType::ContainerCreatedEvent) => "CREATED",
        Ok(v1::ContainerEventType::ContainerStartedEvent) => "STARTED",
        Ok(v1::ContainerEventType::ContainerStoppedEvent) => "STOPPED",
        Ok(v1::ContainerEventType::ContainerDeletedEvent) => "DELETED",
        Err(_) => "UNKNOWN",
    };
    let pod = e.pod_sandbox_status.as_ref();
    let pod_id = pod.map(|p| p.id.as_str()).unwrap_or_default();
    // The container's name, or the pod's for the sandbox's own events (a
    // deleted container is no longer among the statuses: no name).
    let name = if e.container_id == pod_id {
        pod.and_then(|p| p.metadata.as_ref().map(|m| m.name.clone()))
    } else {
        e.containers_statuses
            .iter()
            .find(|c| c.id == e.container_id)
            .and_then(|c| c.metadata.as_ref().map(|m| m.name.clone()))
    }
    .unwrap_or_default();
    format!(
        "{:<30} {:<8} {:<13} {:<13} {}",
        timestamp(e.created_at),
        kind,
        &e.container_id[..e.container_id.len().min(13)],
        &pod_id[..pod_id.len().min(13)],
        name
    )
}

/// Nanoseconds since the epoch as `seconds.nanoseconds` UTC.
fn timestamp(ns: i64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}
