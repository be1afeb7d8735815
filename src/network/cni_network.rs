//! CNI mode as a [`Backend`]: ADD on attach, DEL on detach, with the
//! attachment stored around each so a crash is followed by the right DEL
//! (see [`super::cni`] for the plugin runner and the stored record).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use tracing::warn;

use super::cni::{self, CniAttachment, Runner};
use super::{bandwidth, host_ports, pod_bandwidth, Backend, NetworkError, NotReady};
use crate::pod::PodConfig;
use crate::store::Store;

/// Pods networked by the plugins of the first config in `conf_dir`.
pub(super) struct CniNetwork {
    conf_dir: PathBuf,
    runner: Runner,
    store: Arc<Store>,
}

impl CniNetwork {
    pub(super) fn new(conf_dir: PathBuf, runner: Runner, store: Arc<Store>) -> Self {
        Self {
            conf_dir,
            runner,
            store,
        }
    }

    async fn add(
        &self,
        pod_id: &str,
        netns: &Path,
        pod: &PodConfig,
    ) -> Result<Vec<String>, NetworkError> {
        let conf = cni::load(&self.conf_dir)?;
        let bandwidth = pod_bandwidth(pod, bandwidth::CNI_RANGE)?;
        // The plugins map the host ports to the pod's addresses themselves;
        // these entries only carry the mappings as capability args.
        let host_ports = host_ports(
            &pod.port_mappings,
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)),
        )?;
        let mut attachment = cni::CniAttachment {
            pod_id: pod_id.to_owned(),
            netns: netns.display().to_string(),
            args: format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={pod_id};K8S_POD_UID={}",
                pod.namespace, pod.name, pod.uid
            ),
            conf,
            host_ports,
            dns: pod.dns.clone(),
            bandwidth,
            result: None,
        };
        // Stored first: a crash during ADD is followed by DEL at start.
        self.store.put(&attachment)?;
        match self.runner.add(&attachment).await {
            Ok(result) => {
                let ips = cni::result_ips(&result);
                attachment.result = Some(result);
                self.store.put(&attachment)?;
                Ok(ips)
            }
            Err(e) => {
                let undone = release(&self.store, &self.runner, pod_id).await;
                if let Some(Err(cleanup)) = undone {
                    warn!(pod_id, error = %crate::errors::chain(&cleanup), "CNI DEL after a failed ADD failed");
                }
                Err(e.into())
            }
        }
    }
}

/// Runs DEL for the pod's stored attachment, if it has one, and forgets
/// the attachment; `None` when the pod has none. The record goes even when
/// a plugin fails: plugins must treat a repeated DEL as success, so
/// retrying would change nothing.
pub(super) async fn release(
    store: &Store,
    runner: &Runner,
    pod_id: &str,
) -> Option<Result<(), NetworkError>> {
    let attachment = match store.list::<CniAttachment>() {
        Ok(list) => list.into_iter().find(|a| a.pod_id == pod_id)?,
        Err(e) => return Some(Err(e.into())),
    };
    let result = runner.del(&attachment).await;
    if let Err(e) = store.delete::<CniAttachment>(pod_id) {
        return Some(Err(e.into()));
    }
    Some(result.map_err(NetworkError::from))
}

#[async_trait::async_trait]
impl Backend for CniNetwork {
    /// Looked up each time: a config installed later counts at once.
    fn readiness(&self) -> Result<(), NotReady> {
        cni::load(&self.conf_dir)
            .map(|_| ())
            .map_err(|e| NotReady::from_error(&e))
    }

    /// Nothing of the node's to set up: the plugins do it per pod.
    async fn start(&self, _live_pods: &HashSet<String>) {}

    /// The plugins' `bandwidth` capability gets the annotations as the
    /// kubelet would pass them; pvecri shapes nothing itself.
    fn check(&self, pod: &PodConfig) -> Result<(), NetworkError> {
        pod_bandwidth(pod, bandwidth::CNI_RANGE).map(|_| ())
    }

    /// The plugins allocate addresses with their own IPAM config, so the
    /// kubelet's pod CIDR changes nothing here.
    async fn set_pod_cidrs(&self, _nets: &[IpNet]) -> Result<bool, NetworkError> {
        Ok(false)
    }

    async fn attach(
        &self,
        pod_id: &str,
        netns: &Path,
        pod: &PodConfig,
    ) -> Result<Vec<String>, NetworkError> {
        self.add(pod_id, netns, pod).await
    }

    /// A pod with a stored attachment was released by [`release`] already;
    /// one without has nothing to undo.
    async fn detach(&self, pod_id: &str) -> Result<(), NetworkError> {
        release(&self.store, &self.runner, pod_id)
            .await
            .unwrap_or(Ok(()))
    }

    async fn shutdown(&self) {}
}
