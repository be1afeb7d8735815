//! pvecri: a Kubernetes CRI v1 runtime that runs pod containers as LXC
//! containers through liblxc. See `docs/architecture.md` for the design.
//!
//! The public API is small: the binaries' entry points ([`cli::main`],
//! [`cli::helper_main`]), the CRI client ([`client::CriClient`]) and the
//! generated CRI types ([`cri::v1`]). Everything else is `pub(crate)`, so the compiler finds
//! code nobody calls; the integration tests reach the few internals they
//! need through [`testing`].

pub(crate) mod audit;
pub(crate) mod busy;
pub(crate) mod cdi;
pub(crate) mod cgroups;
pub(crate) mod checkpoint;
pub mod cli;
pub mod client;
pub(crate) mod config;
pub(crate) mod container;
pub mod cri;
pub(crate) mod daemon;
pub(crate) mod errors;
pub(crate) mod events;
pub(crate) mod exec;
pub(crate) mod failpoint;
pub(crate) mod image;
pub(crate) mod lxc;
pub(crate) mod memory;
pub(crate) mod metrics;
pub(crate) mod monitor;
pub(crate) mod network;
pub(crate) mod node;
pub(crate) mod pod;
pub(crate) mod runtime;
pub(crate) mod sandbox;
pub(crate) mod security;
pub(crate) mod snapshot;
pub(crate) mod stats;
pub(crate) mod store;
pub(crate) mod streaming;
pub(crate) mod version;
pub(crate) mod zfs;

/// Internals that the integration tests under `tests/` and `pvecri-bench`
/// drive directly (the monitor, the snapshotters, the store, the SPDY codec,
/// cgroup helpers). This is not an API: nothing here is stable, and it is
/// hidden from the docs. Each item is listed by name so that the rest of
/// the crate stays `pub(crate)` and its dead code stays visible.
#[doc(hidden)]
pub mod testing {
    /// Cgroup layout detection and the tree the monitor and the daemon
    /// create under the parent cgroup.
    pub mod cgroups {
        pub use crate::cgroups::{detect, read_mounts, tree, CgroupLayout};

        /// Where a container's cgroup limit files live.
        pub mod limits {
            pub use crate::cgroups::limits::file_dir;
        }

        /// The cpuset controller's mount point (cgroup v1).
        pub mod cpuset {
            pub use crate::cgroups::cpuset::mount_point;
        }
    }

    /// The per-container run directory shared by the daemon and monitor.
    pub mod container {
        pub use crate::container::record::ContainerRecord;
        pub use crate::container::run_dir::RunDir;
    }

    /// Whether the kernel tracks soft-dirty pages (pre-copy checkpoints).
    pub mod checkpoint {
        pub use crate::checkpoint::dump::soft_dirty_available;
    }

    /// The exec helper's command line, to run it as the daemon does.
    pub mod exec {
        pub use crate::exec::ExecHelperArgs;
    }

    /// Names of the failure points `PVECRI_FAILPOINTS` accepts.
    pub mod failpoint {
        pub use crate::failpoint::POINTS;
    }

    /// The per-container monitor process, driven without the daemon.
    pub mod monitor {
        pub use crate::monitor::control::request_reopen;
        pub use crate::monitor::exit::{ExitReason, ExitRecord};
        pub use crate::monitor::ready::Readiness;
        pub use crate::monitor::spare::socket_pair as spare_socket_pair;
        pub use crate::monitor::{Assignment, MonitorArgs, SpareArgs, DEFAULT_MAX_LINE};
    }

    /// Host-side names the tests look for.
    pub mod network {
        pub use crate::network::{host_veth_name, ifb_name};
    }

    /// Pod records, to delete one behind the daemon's back.
    pub mod pod {
        pub use crate::pod::record::PodRecord;
    }

    /// User namespaces for the idmapped-mount snapshot tests.
    pub mod sandbox {
        pub use crate::sandbox::userns::{Holder, IdMapping, UserNamespace};
    }

    /// The snapshotters, driven without the daemon.
    pub mod snapshot {
        pub use crate::snapshot::{BackendKind, Idmap, Snapshots};
    }

    /// The metadata store, to simulate state lost in a crash.
    pub mod store {
        pub use crate::store::Store;
    }

    /// The SPDY/3.1 codec, to speak to the streaming server as a client
    /// that misbehaves.
    pub mod spdy {
        pub use crate::streaming::spdy::headers::{Compressor, Decompressor};
        pub use crate::streaming::spdy::session::MAX_STREAMS;

        /// SPDY frames on the wire.
        pub mod frame {
            pub use crate::streaming::spdy::frame::{
                decode, encode, Frame, FrameHead, RST_REFUSED_STREAM,
            };
        }
    }
}
