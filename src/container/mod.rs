//! CRI containers as LXC containers: the record, the LXC config, cgroups,
//! the process spec handed to pvecri-init and the run dir layout shared
//! with the monitor and the helpers.

pub mod devices;
pub mod image_file;
pub mod lxc_config;
pub mod mountpoints;
pub mod process;
pub mod record;
pub mod run_dir;
pub mod staging;

pub use record::{
    ContainerConfig, ContainerRecord, ContainerState, DeviceSpec, ImageVolume, MountSpec,
    Propagation, SecurityConfig,
};
