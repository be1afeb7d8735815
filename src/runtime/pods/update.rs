//! UpdatePodSandboxResources: the kubelet announces a pod's new pod-level
//! resources after an in-place resize. The pod's cgroup is the kubelet's own
//! (`cgroup_parent`), which it has already written; the containers' cgroups
//! get their share through UpdateContainerResources. pvecri records what it
//! was told so status, `pvecri inspect` and stats show the pod as sized now.

use tracing::info;

use crate::pod::PodResources;
use crate::runtime::error::RuntimeError;
use crate::runtime::Runtime;

impl Runtime {
    /// Records the pod's new overhead and resources. A pod that does not
    /// exist is NotFound: the kubelet resizes only pods it runs.
    pub(crate) async fn update_pod_resources(
        &self,
        id: &str,
        resources: PodResources,
    ) -> Result<(), RuntimeError> {
        let mut pod = self.pod(id)?;
        if pod.resources.as_ref() == Some(&resources) {
            return Ok(());
        }
        pod.resources = Some(resources);
        self.store.put(&pod)?;
        info!(pod_id = %pod.id, "pod sandbox resources updated");
        Ok(())
    }
}
