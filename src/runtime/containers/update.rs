//! UpdateContainerResources: the live cgroup first, then the record.

use crate::cgroups::limits;
use crate::container::ContainerState;
use crate::runtime::error::RuntimeError;
use crate::runtime::Runtime;

impl Runtime {
    /// Applies new resources to the live cgroup and records them.
    pub(crate) async fn update_container_resources(
        &self,
        id: &str,
        resources: limits::Resources,
    ) -> Result<(), RuntimeError> {
        let c = self.container(id)?;
        if c.state == ContainerState::Running || c.state == ContainerState::Created {
            limits::apply_live(&self.cgroup_layout, &c.cgroup, &resources)
                .map_err(|e| RuntimeError::os("updating cgroup resources", &c.id, e))?;
        }
        // Only the resources change: an exit recorded meanwhile stays.
        self.store
            .update::<crate::container::ContainerRecord>(&c.id, |r| {
                r.config.resources = resources;
                true
            })?
            .ok_or_else(|| RuntimeError::NotFound {
                what: "container",
                id: c.id.clone(),
            })?;
        Ok(())
    }
}
