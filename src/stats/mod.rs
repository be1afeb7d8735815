//! Resource usage of containers and pods beyond the cgroup counters (read
//! by `crate::cgroups::stats`): network interface counters of a pod's
//! network namespace, the CPU rate sampler behind `usage_nano_cores`, and
//! the cAdvisor-style metrics built from all of them, and the cache that
//! keeps disk usage walks off the request path.

pub(crate) mod cadvisor;
pub(crate) mod netdev;
pub(crate) mod sampler;
pub(crate) mod usage_cache;

pub(crate) use netdev::InterfaceStats;
pub(crate) use sampler::CpuSampler;
pub(crate) use usage_cache::UsageCache;
