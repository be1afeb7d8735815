//! Resource usage of containers and pods, as the stats RPCs report it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{now_ns, ContainerFilter, PodFilter, Runtime, RuntimeError};
use crate::cgroups::stats::CgroupStats;
use crate::container::{ContainerRecord, ContainerState};
use crate::pod::{PodRecord, PodState};
use crate::snapshot::Usage;
use crate::stats::{cadvisor, InterfaceStats};

/// How long a writable layer's measured size is reused: walking a layer is
/// the costliest part of a stats call, and the kubelet asks every 10 s.
const LAYER_USAGE_TTL: Duration = Duration::from_secs(10);

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

/// Recently measured writable layers.
#[derive(Default)]
pub(crate) struct LayerUsageCache {
    entries: Mutex<HashMap<String, (Instant, Usage)>>,
}

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
            Some(ns) if pod.state == PodState::Ready => crate::stats::netdev::read_in_netns(
                std::path::Path::new(ns),
            )
            .unwrap_or_else(|e| {
                tracing::debug!(pod_id = %pod.id, error = %crate::errors::chain(&e), "cannot read the pod's interfaces");
                Vec::new()
            }),
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

    /// Bytes and inodes of a container's writable layer, measured at most
    /// every [`LAYER_USAGE_TTL`].
    fn writable_layer_usage(&self, id: &str) -> Option<(Usage, PathBuf)> {
        let snapshots = self.images.snapshots();
        let root = snapshots.rootfs_root().to_owned();
        if !root.join(id).exists() {
            return None;
        }
        let usage = self.layer_usage.get_or_measure(id, Instant::now(), || {
            snapshots.rootfs_usage(id).unwrap_or_default()
        });
        Some((usage, root))
    }
}

impl LayerUsageCache {
    /// The usage of `id` measured less than [`LAYER_USAGE_TTL`] before
    /// `now`, else `measure()`'s, kept from `now` on. Older entries of
    /// every container are dropped on the way.
    fn get_or_measure(&self, id: &str, now: Instant, measure: impl FnOnce() -> Usage) -> Usage {
        let mut cache = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|_, (at, _)| now.saturating_duration_since(*at) < LAYER_USAGE_TTL);
        cache
            .entry(id.to_owned())
            .or_insert_with(|| (now, measure()))
            .1
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

    fn usage(bytes: u64) -> Usage {
        Usage { bytes, inodes: 1 }
    }

    #[test]
    fn a_layer_is_measured_once_per_window() {
        let cache = LayerUsageCache::default();
        let t0 = Instant::now();
        assert_eq!(cache.get_or_measure("c1", t0, || usage(1)), usage(1));
        let just_before = t0 + LAYER_USAGE_TTL - Duration::from_millis(1);
        let cached = cache.get_or_measure("c1", just_before, || panic!("measured again"));
        assert_eq!(cached, usage(1));
        // Each container has its own measurement.
        assert_eq!(
            cache.get_or_measure("c2", just_before, || usage(2)),
            usage(2)
        );
        // Once the window is over, the layer is walked again.
        let expired = t0 + LAYER_USAGE_TTL;
        assert_eq!(cache.get_or_measure("c1", expired, || usage(3)), usage(3));
        assert_eq!(cache.get_or_measure("c1", expired, || usage(4)), usage(3));
    }

    #[test]
    fn expired_measurements_of_gone_containers_are_dropped() {
        let cache = LayerUsageCache::default();
        let t0 = Instant::now();
        for id in ["a", "b", "c"] {
            cache.get_or_measure(id, t0, || usage(1));
        }
        cache.get_or_measure("d", t0 + LAYER_USAGE_TTL, || usage(1));
        let entries = cache.entries.lock().unwrap();
        assert_eq!(entries.keys().collect::<Vec<_>>(), ["d"]);
    }

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
