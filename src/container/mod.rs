//! CRI containers as LXC containers: the record, the LXC config, cgroups
//! and the process spec handed to pvecri-init.

pub mod devices;
pub mod image_file;
pub mod lxc_config;
pub mod mountpoints;
pub mod process;
pub mod record;
pub mod staging;

pub use record::{
    ContainerConfig, ContainerRecord, ContainerState, DeviceSpec, ImageVolume, MountSpec,
    SecurityConfig,
};
