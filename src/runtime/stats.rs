//! Resource usage of containers and pods, as the stats RPCs report it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{now_ns, ContainerFilter, PodFilter, Runtime, RuntimeError};
use crate::cgroups::stats::CgroupStats;
use crate::container::{ContainerRecord, ContainerState};
use crate::pod::{PodRecord, PodState};
use crate::snapshot::Usage;
use crate::stats::{cadvisor, InterfaceStats};

/// How old a writable layer's measured size may grow before a request
/// marks it for the background pass (`crate::stats::UsageCache`).
pub(super) const LAYER_USAGE_TTL: Duration = Duration::from_secs(10);
/// Measurements of layers nobody asked about for this long are dropped.
const LAYER_USAGE_UNUSED: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub(crate) struct ContainerUsage {
    pub container: ContainerRecord,
    pub at_ns: i64,
    pub cgroup: CgroupStats,
    pub nano_cores: Option<u64>,
    /// The writable layer and the directory whose filesystem holds it.
    pub writable_layer: Option<(Usage, PathBuf)>,
}

#[derive(Debug, Clone)]
pub(crate) struct PodUsage {
    pub pod: PodRecord,
    pub at_ns: i64,
    /// The sum of the pod's running containers.
    pub cgroup: CgroupStats,
    pub nano_cores: Option<u64>,
    /// Interfaces of the pod's network namespace (empty on the host's).
    pub interfaces: Vec<InterfaceStats>,
    pub containers: Vec<ContainerUsage>,
}

/// cAdvisor-style samples of one pod: its own (network) and its
/// containers', each with the values of [`cadvisor::BASE_LABELS`].
#[derive(Debug, Clone)]
pub(crate) struct PodMetrics {
    pub pod_id: String,
    pub at_ns: i64,
    pub pod: Vec<LabeledSample>,
    /// (container ID, its samples).
    pub containers: Vec<(String, Vec<LabeledSample>)>,
}

/// A sample with the values of the base labels.
pub(super) type LabeledSample = (Vec<String>, cadvisor::Sample);

impl Runtime {
    /// Usage of the containers `filter` selects (every state; cgroups are
    /// read only for created and running ones).
    pub(crate) async fn container_stats(
        self: &std::sync::Arc<Self>,
        filter: ContainerFilter,
    ) -> Result<Vec<ContainerUsage>, RuntimeError> {
        let rt = self.clone();
        run_blocking(move || {
            let list = rt.list_containers(&filter)?;
            Ok(list.into_iter().map(|c| rt.container_usage(c)).collect())
        })
        .await
    }

    /// Usage of one container (NotFound when there is none).
    pub(crate) async fn one_container_stats(
        self: &std::sync::Arc<Self>,
        id: String,
    ) -> Result<ContainerUsage, RuntimeError> {
        let rt = self.clone();
        run_blocking(move || Ok(rt.container_usage(rt.container(&id)?))).await
    }

    /// Usage of one pod (NotFound when there is none).
    pub(crate) async fn one_pod_stats(
        self: &std::sync::Arc<Self>,
        id: String,
    ) -> Result<PodUsage, RuntimeError> {
        let rt = self.clone();
        run_blocking(move || rt.pod_usage(rt.pod(&id)?)).await
    }

    /// Usage of the ready pods `filter` selects.
    pub(crate) async fn pod_stats(
        self: &std::sync::Arc<Self>,
        filter: PodFilter,
    ) -> Result<Vec<PodUsage>, RuntimeError> {
        let rt = self.clone();
        run_blocking(move || {
            let pods = rt.list_pods(&filter)?;
            pods.into_iter()
                .filter(|p| p.state == PodState::Ready || !filter.id.is_empty())
                .map(|p| rt.pod_usage(p))
                .collect()
        })
        .await
    }

    /// cAdvisor-style metrics of every ready pod.
    pub(crate) async fn pod_metrics(
        self: &std::sync::Arc<Self>,
    ) -> Result<Vec<PodMetrics>, RuntimeError> {
        let rt = self.clone();
        run_blocking(move || {
            let pods = rt.list_pods(&PodFilter {
                state: Some(PodState::Ready),
                ..Default::default()
            })?;
            let root = rt.images.snapshots().rootfs_root().to_owned();
            let fs = cadvisor::FsInfo::of(&root);
            let device = root.display().to_string();
            pods.into_iter()
                .map(|p| {
                    let usage = rt.pod_usage(p)?;
                    let ns = usage.pod.config.namespace.clone();
                    let pod_name = usage.pod.config.name.clone();
                    let pod_labels = vec![
                        "POD".to_owned(),
                        usage.pod.id.clone(),
                        String::new(),
                        usage.pod.id.clone(),
                        ns.clone(),
                        pod_name.clone(),
                    ];
                    let pod = cadvisor::network_samples(&usage.interfaces)
                        .into_iter()
                        .map(|s| (pod_labels.clone(), s))
                        .collect();
                    let containers = usage
                        .containers
                        .iter()
                        .filter(|c| c.container.state == ContainerState::Running)
                        .map(|c| {
                            let detail = rt.cgroup_reader.read_detail(&c.container.cgroup);
                            let inputs = cadvisor::ContainerInputs {
                                stats: &c.cgroup,
                                detail: &detail,
                                resources: &c.container.config.resources,
                                started_at_ns: c.container.started_at_ns,
                                now_ns: c.at_ns,
                                layer_bytes: c
                                    .writable_layer
                                    .as_ref()
                                    .map(|(u, _)| u.bytes)
                                    .unwrap_or(0),
                                fs,
                            };
                            let labels = vec![
                                c.container.config.name.clone(),
                                c.container.id.clone(),
                                c.container.config.image.clone(),
                                c.container.id.clone(),
                                ns.clone(),
                                pod_name.clone(),
                            ];
                            let samples = cadvisor::container_samples(&inputs, &device)
                                .into_iter()
                                .map(|s| (labels.clone(), s))
                                .collect();
                            (c.container.id.clone(), samples)
                        })
                        .collect();
                    Ok(PodMetrics {
                        pod_id: usage.pod.id.clone(),
                        at_ns: usage.at_ns,
                        pod,
                        containers,
                    })
                })
                .collect()
        })
        .await
    }

    fn container_usage(&self, c: ContainerRecord) -> ContainerUsage {
        let at_ns = now_ns();
        let live = matches!(c.state, ContainerState::Running | ContainerState::Created);
        let cgroup = if live && !c.cgroup.is_empty() {
            self.cgroup_reader.read(&c.cgroup)
        } else {
            CgroupStats::default()
        };
        let nano_cores = cgroup
            .cpu_usage_ns
            .and_then(|u| self.cpu_sampler.observe(&c.id, at_ns, u));
        let writable_layer = self.writable_layer_usage(&c.id);
        ContainerUsage {
            container: c,
            at_ns,
            cgroup,
            nano_cores,
            writable_layer,
        }
    }

    fn pod_usage(&self, pod: PodRecord) -> Result<PodUsage, RuntimeError> {
        let containers: Vec<ContainerUsage> = self
            .list_containers(&ContainerFilter {
                pod_id: pod.id.clone(),
                ..Default::default()
            })?
            .into_iter()
            .filter(|c| c.pod_id == pod.id)
            .map(|c| self.container_usage(c))
            .collect();
        let at_ns = now_ns();
        let mut cgroup = CgroupStats::default();
        for c in &containers {
            cgroup.add(&c.cgroup);
        }
        // Stall times do not add up: the pod's own cgroup has them, when
        // the kubelet gave it one (without a parent, pods share pvecri's).
        if let Some(pod_cgroup) = pod_cgroup(self.config().cgroup_driver, &pod.config.cgroup_parent)
        {
            cgroup.pressure = self.cgroup_reader.pressure(&pod_cgroup);
        }
        let nano_cores = cgroup
            .cpu_usage_ns
            .and_then(|u| self.cpu_sampler.observe(&pod.id, at_ns, u));
        let interfaces = match &pod.net_ns {
            Some(ns) if pod.state == PodState::Ready => {
                let ns = std::path::Path::new(ns);
                // Through a running container's init when there is one.
                let through_container = containers
                    .iter()
                    .filter(|c| c.container.state == ContainerState::Running)
                    .find_map(|c| {
                        let c = &c.container;
                        crate::stats::netdev::read_via_process(ns, c.init_pid, c.init_start_time)
                    });
                through_container.unwrap_or_else(|| {
                    crate::stats::netdev::read_in_netns(ns).unwrap_or_else(|e| {
                        tracing::debug!(pod_id = %pod.id, error = %crate::errors::chain(&e), "cannot read the pod's interfaces");
                        Vec::new()
                    })
                })
            }
            _ => Vec::new(),
        };
        Ok(PodUsage {
            pod,
            at_ns,
            cgroup,
            nano_cores,
            interfaces,
            containers,
        })
    }

    /// Bytes and inodes of a container's writable layer: the last
    /// measurement (renewed in the background once it is older than
    /// [`LAYER_USAGE_TTL`]), measured here only the first time.
    fn writable_layer_usage(&self, id: &str) -> Option<(Usage, PathBuf)> {
        let snapshots = self.images.snapshots();
        let root = snapshots.rootfs_root().to_owned();
        let usage = match self.layer_usage.get(id, Instant::now()) {
            Some(usage) => usage,
            None => {
                let usage = snapshots.rootfs_usage(id)?;
                self.layer_usage.put(id, Instant::now(), usage);
                usage
            }
        };
        Some((usage, root))
    }

    /// The background pass: measures again the writable layers requests
    /// found old, and forgets those nobody asks about.
    pub(super) fn renew_layer_usage(&self) {
        let snapshots = self.images.snapshots();
        for id in self.layer_usage.take_wanted() {
            match snapshots.rootfs_usage(&id) {
                Some(usage) => self.layer_usage.put(&id, Instant::now(), usage),
                None => self.layer_usage.forget(&id),
            }
        }
        self.layer_usage.prune(Instant::now(), LAYER_USAGE_UNUSED);
    }
}

/// The cgroup of a pod whose kubelet-given parent is `cgroup_parent`: the
/// parent of its containers' cgroups. `None` without a parent.
fn pod_cgroup(driver: crate::config::CgroupDriver, cgroup_parent: &str) -> Option<String> {
    if cgroup_parent.is_empty() {
        return None;
    }
    let (container, _) = crate::cgroups::paths::container_paths(driver, cgroup_parent, "x");
    container
        .rsplit_once('/')
        .map(|(pod_cgroup, _)| pod_cgroup.to_owned())
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CgroupDriver;

    #[test]
    fn pod_pressure_comes_from_the_parent_of_its_containers() {
        assert_eq!(pod_cgroup(CgroupDriver::Systemd, ""), None);
        assert_eq!(pod_cgroup(CgroupDriver::Cgroupfs, ""), None);
        assert_eq!(
            pod_cgroup(CgroupDriver::Systemd, "kubepods-burstable-pod12.slice").as_deref(),
            Some("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12.slice")
        );
        assert_eq!(
            pod_cgroup(CgroupDriver::Cgroupfs, "/kubepods/burstable/pod12/").as_deref(),
            Some("kubepods/burstable/pod12")
        );
        // Where containers of a given parent actually go.
        let (container, _) =
            crate::cgroups::paths::container_paths(CgroupDriver::Cgroupfs, "/kubepods/pod1", "abc");
        assert_eq!(
            container.rsplit_once('/').map(|(p, _)| p.to_owned()),
            pod_cgroup(CgroupDriver::Cgroupfs, "/kubepods/pod1")
        );
    }
}
