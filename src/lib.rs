//! pvecri: a Kubernetes CRI v1 runtime that runs pod containers as LXC
//! containers through liblxc. See `docs/architecture.md` for the design.

pub mod cli;
pub mod client;
pub mod config;
pub mod cri;
pub mod daemon;
pub mod image;
pub mod lxc;
pub mod node;
pub mod runtime;
pub mod snapshot;
pub mod store;
pub mod version;
