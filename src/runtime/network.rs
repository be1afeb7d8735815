//! The runtime's side of pod networking: starting the backend, attaching
//! and detaching pods, the kubelet's pod CIDR.

use std::collections::HashSet;
use std::path::Path;

use anyhow::Context;

use super::error::RuntimeError;
use super::Runtime;
use crate::config::Config;
use crate::network::{Network, NetworkError};
use crate::pod::{PodConfig, PodRecord};
use crate::store::Store;

/// Builds the network backend and sets up the node side. Runs before the
/// daemon's async runtime exists, on a short-lived one of its own.
pub(super) fn start(config: &Config, store: &std::sync::Arc<Store>) -> anyhow::Result<Network> {
    let network = Network::new(&config.network, store.clone());
    let live: HashSet<String> = store
        .list::<PodRecord>()?
        .into_iter()
        .filter(|p| p.net_ns.is_some())
        .map(|p| p.id)
        .collect();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime for network set-up")?
        .block_on(network.start(&live));
    Ok(network)
}

impl Runtime {
    /// Gives a pod with its own network namespace its addresses; returns
    /// them, IPv4 first.
    /// Refuses what the pod's network could not be given (bad bandwidth
    /// annotations) before RunPodSandbox makes anything.
    pub(super) fn check_network(&self, config: &PodConfig) -> Result<(), RuntimeError> {
        self.network
            .check(config)
            .map_err(|e| network_error(&config.name, e))
    }

    pub(super) async fn attach_network(
        &self,
        id: &str,
        netns: &Path,
        config: &PodConfig,
    ) -> Result<Vec<String>, RuntimeError> {
        self.network
            .attach(id, netns, config)
            .await
            .map_err(|e| network_error(id, e))
    }

    pub(super) async fn detach_network(&self, id: &str) -> Result<(), RuntimeError> {
        self.network
            .detach(id)
            .await
            .map_err(|e| network_error(id, e))
    }

    /// Runs what readiness needs run (CNI STATUS), before a Status answer.
    pub(crate) async fn refresh_network_readiness(&self) {
        self.network.refresh_readiness().await;
    }

    /// Verifies the pod's network (CNI CHECK); `None` when there is nothing
    /// to verify. A failure is logged and counted where it is found.
    pub(crate) async fn check_pod_network(&self, id: &str) -> Option<Result<(), String>> {
        self.network.check_pod(id).await
    }

    /// Daemon stop: drops pvecri's bridge and rules when no pod uses them.
    pub(crate) async fn shutdown_network(&self) {
        self.network.shutdown().await;
    }

    /// The kubelet's `UpdateRuntimeConfig`: the node's pod CIDR(s).
    pub(crate) async fn set_pod_cidrs(&self, cidrs: &str) -> Result<(), RuntimeError> {
        self.network
            .set_pod_cidrs(cidrs)
            .await
            .map_err(|e| network_error("node", e))
    }
}

fn network_error(id: &str, e: NetworkError) -> RuntimeError {
    match e {
        NetworkError::Invalid { field, message } => RuntimeError::Invalid { field, message },
        NetworkError::NotReady(crate::network::NotReady(message)) => RuntimeError::WrongState {
            what: "pod network",
            id: id.to_owned(),
            state: "not ready".to_owned(),
            message,
        },
        other => RuntimeError::os(
            "setting up the pod network",
            id,
            crate::errors::chain(&other),
        ),
    }
}
