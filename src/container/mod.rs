//! CRI containers as LXC containers: the record, the LXC config, cgroups,
//! the process spec handed to pvecri-init and the run dir layout shared
//! with the monitor and the helpers.

pub(crate) mod checks;
pub(crate) mod devices;
pub(crate) mod image_file;
pub(crate) mod lxc_config;
pub(crate) mod mountpoints;
pub(crate) mod process;
pub(crate) mod record;
pub(crate) mod run_dir;
pub(crate) mod staging;

pub(crate) use record::{
    ContainerConfig, ContainerRecord, ContainerState, DeviceSpec, ImageVolume, MountFlags,
    MountSpec, Propagation, SecurityConfig,
};
