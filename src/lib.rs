//! pvecri: a Kubernetes CRI v1 runtime that runs pod containers as LXC
//! containers through liblxc. See `docs/architecture.md` for the design.

pub mod cgroups;
pub mod cli;
pub mod client;
pub mod config;
pub mod container;
pub mod cri;
pub mod daemon;
pub mod errors;
pub mod events;
pub mod exec;
pub mod failpoint;
pub mod image;
pub mod lxc;
pub mod metrics;
pub mod monitor;
pub mod network;
pub mod node;
pub mod pod;
pub mod runtime;
pub mod sandbox;
pub mod security;
pub mod snapshot;
pub mod stats;
pub mod store;
pub mod streaming;
pub mod version;
