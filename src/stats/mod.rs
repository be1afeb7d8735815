//! Resource usage of containers and pods beyond the cgroup counters (read
//! by `crate::cgroups::stats`): network interface counters of a pod's
//! network namespace, the CPU rate sampler behind `usage_nano_cores`, and
//! the cAdvisor-style metrics built from all of them.

pub mod cadvisor;
pub mod netdev;
pub mod sampler;

pub use netdev::InterfaceStats;
pub use sampler::CpuSampler;
