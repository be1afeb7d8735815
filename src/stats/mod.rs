//! Resource usage of containers and pods: cgroup counters (v1 and v2),
//! network interface counters of a pod's network namespace, and the CPU
//! rate sampler behind `usage_nano_cores`.

pub mod blkio;
pub mod cadvisor;
pub mod cgroup;
pub mod netdev;
pub mod psi;
pub mod sampler;

pub use cgroup::{CgroupDetail, CgroupReader, CgroupStats, MemoryStats};
pub use netdev::InterfaceStats;
pub use sampler::CpuSampler;
