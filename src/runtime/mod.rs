//! The runtime's domain core, shared by every CRI call: configuration, the
//! state store, images and node health. The gRPC layer (`crate::cri`)
//! converts requests into calls on this and never lets prost types in.

mod child_fd;
mod containers;
mod error;
mod events;
mod exec;
mod exec_output;
mod exit_watch;
mod health;
mod names;
mod netns_spares;
pub(crate) use netns_spares::is_spare_dir as is_spare_netns_dir;
mod network;
mod pods;
mod reconcile;
mod refills;
mod rollback;
mod security;
mod spares;
mod stats;
mod stream;
mod teardown;

pub(crate) use containers::{CheckpointRequest, ContainerFilter};
pub(crate) use error::RuntimeError;
pub(crate) use events::spawn_watcher;
pub(crate) use health::Condition;
pub(crate) use pods::{PodCheckpointRequest, PodFilter};
pub(crate) use stats::{ContainerUsage, PodMetrics, PodUsage};
pub(crate) use stream::{connect_in_netns, StreamStdio};

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context;

use crate::cgroups::CgroupLayout;
use crate::config::Config;
use crate::image::content::ContentStore;
use crate::image::registry::{Puller, RegistrySettings};
use crate::image::ImageManager;
use crate::snapshot::Snapshots;
use crate::store::Store;

pub(crate) struct Runtime {
    config: Config,
    store: Arc<Store>,
    images: Arc<ImageManager>,
    names: names::Names,
    cgroup_layout: CgroupLayout,
    /// The lowest oom_score_adj this process may set (the kernel refuses
    /// lowering it without CAP_SYS_RESOURCE).
    min_oom_score_adj: i64,
    /// This binary, resolved at start-up (checkpoints re-execute it as
    /// `pvecri criu-exec`; monitors and exec helpers run `helper_exe`).
    /// Resolved once because after a package upgrade /proc/self/exe names
    /// the deleted old file, while the path holds the new one.
    self_exe: std::path::PathBuf,
    /// What monitors and exec helpers run ([`helper_binary`]).
    helper_exe: std::path::PathBuf,
    /// Monitors started ahead of need ([`spares`]).
    spares: Arc<spares::Spares>,
    /// Pod network namespaces made ahead of need.
    netns_spares: Arc<netns_spares::NetnsSpares>,
    /// Gets the kernel's cgroup-migration lock ready at the start of
    /// RunPodSandbox and CreateContainer (`crate::cgroups::warm`); `None`
    /// when turned off or this process's cgroup cannot be written.
    migration_warmer: Option<crate::cgroups::warm::Warmer>,
    /// A sealed memfd copy of pvecri-init made at start, which exec helpers
    /// reopen through `/proc` instead of copying the binary per exec
    /// (`crate::exec::sealed`); `None` when it could not be made (they
    /// copy it themselves then).
    init_copy: Option<std::fs::File>,
    /// Lifecycle events for GetContainerEvents.
    events: crate::events::EventHub,
    /// Reads container cgroups on this node's layout.
    cgroup_reader: crate::cgroups::stats::CgroupReader,
    /// Previous CPU samples, for usage_nano_cores.
    cpu_sampler: crate::stats::CpuSampler,
    /// Writable layer sizes, measured off the request path.
    layer_usage: crate::stats::UsageCache<crate::snapshot::Usage>,
    /// pidfds on the live monitors, to learn of exits as they happen.
    exit_watch: exit_watch::ExitWatch,
    /// Containers whose STOPPED event went out.
    stopped_reported: std::sync::Mutex<HashSet<String>>,
    /// Containers being checkpointed: one dump at a time per container, so
    /// one call's thaw cannot land in the middle of another's dump.
    checkpointing: Arc<std::sync::Mutex<HashSet<String>>>,
    network: crate::network::Network,
    /// Whether `hostUsers: false` pods can run here, or why not (probed
    /// once at start-up).
    userns_support: Result<(), crate::sandbox::userns::ProbeError>,
    recursive_read_only: bool,
    /// The v1 cpuset hierarchy, if the node has one
    /// (`crate::cgroups::cpuset`).
    cpuset_v1: Option<std::path::PathBuf>,
}

impl Runtime {
    /// Opens the content store and snapshot backend under the state dir.
    pub(crate) fn new(config: Config, store: Store) -> anyhow::Result<Arc<Self>> {
        let store = Arc::new(store);
        let content = Arc::new(
            ContentStore::new(config.state_dir.join("content")).with_context(|| {
                format!(
                    "cannot open the content store in {}",
                    config.state_dir.display()
                )
            })?,
        );
        let leftovers = content
            .cleanup_ingest()
            .context("cannot clean the content store's ingest directory")?;
        if leftovers > 0 {
            tracing::info!(
                leftovers,
                "removed partial downloads of an interrupted pull"
            );
        }
        let snapshots = Arc::new(
            Snapshots::open(
                &config.state_dir,
                config.images.snapshotter,
                config.images.zfs_dataset.as_deref(),
            )
            .context("cannot open the snapshot backend")?,
        );
        let settings = RegistrySettings::from_config(&config.images)
            .context("cannot set up registry access")?;
        let userns_support =
            crate::sandbox::userns::probe(&config.init_path, snapshots.layers_root());
        if let Err(why) = &userns_support {
            tracing::warn!(reason = %crate::errors::chain(why), "user namespaces (hostUsers: false) are unavailable");
        }
        let signatures =
            crate::image::signature::SignaturePolicy::load(&config.images.signature_policy)
                .context("cannot load images.signature_policy")?;
        let puller = Puller::new(settings, content.clone()).with_signature_policy(signatures);
        let images = ImageManager::new(
            store.clone(),
            content,
            snapshots,
            puller,
            config.images.pinned_images.clone(),
        );
        let ns_root = config.runtime_dir.join("ns");
        crate::sandbox::ns::prepare_ns_root(&ns_root).with_context(|| {
            format!(
                "cannot prepare the namespace pin directory {}",
                ns_root.display()
            )
        })?;
        let cgroup_mounts =
            crate::cgroups::read_mounts().context("cannot read the cgroup layout")?;
        let cgroup_layout = crate::cgroups::layout(&cgroup_mounts);
        if crate::security::apparmor::enabled() {
            if let Err(e) = crate::security::apparmor::load_default() {
                let error = anyhow::Error::from(e);
                tracing::warn!(
                    error = format!("{error:#}"),
                    "cannot load the pvecri-default AppArmor profile"
                );
            }
        }
        let cgroup_reader = crate::cgroups::stats::CgroupReader::for_layout(&cgroup_layout);
        let names = names::Names::default();
        for pod in store.list::<crate::pod::PodRecord>()? {
            let _ = names.reserve(&pod.config.name_key(), &pod.id);
        }
        for c in store.list::<crate::container::ContainerRecord>()? {
            let _ = names.reserve(&c.config.name_key(&c.pod_id), &c.id);
        }
        let network = network::start(&config, &store)?;
        let init_copy = crate::exec::sealed::sealed_copy(&config.init_path, c"pvecri-init")
            .inspect_err(|e| {
                tracing::warn!(
                    error = %crate::errors::chain(e),
                    "no shared sealed copy of pvecri-init; each exec copies it"
                )
            })
            .ok();
        let self_exe = std::env::current_exe().context("cannot find the pvecri binary")?;
        let spares = spares::Spares::new(
            helper_binary(&self_exe),
            config.lxc_path(),
            config.monitor_spares,
        );
        let migration_warmer = config
            .warm_migrations
            .then(crate::cgroups::warm::Warmer::for_self)
            .flatten();
        let netns_spares =
            netns_spares::NetnsSpares::new(ns_root.clone(), config.netns_spares, spares.activity());
        let swept = netns_spares.sweep();
        if swept > 0 {
            tracing::info!(
                swept,
                "dropped spare network namespaces an earlier daemon left"
            );
        }
        let runtime = Self {
            network,
            config,
            store,
            images,
            names,
            cgroup_layout,
            min_oom_score_adj: own_oom_score_adj(),
            spares,
            netns_spares,
            migration_warmer,
            helper_exe: helper_binary(&self_exe),
            self_exe,
            init_copy,
            events: Default::default(),
            cgroup_reader,
            cpu_sampler: Default::default(),
            layer_usage: crate::stats::UsageCache::new(stats::LAYER_USAGE_TTL),
            exit_watch: Default::default(),
            stopped_reported: Default::default(),
            checkpointing: Default::default(),
            userns_support,
            recursive_read_only: crate::sandbox::idmap::mount_setattr_available(),
            cpuset_v1: crate::cgroups::cpuset::mount_point(&cgroup_mounts),
        };
        runtime
            .reconcile()
            .context("cannot reconcile the store with the node")?;
        Ok(Arc::new(runtime))
    }

    /// Whether volumes can be recursively read-only (pvecri-init applies
    /// them with mount_setattr(2)).
    pub(crate) fn supports_recursive_read_only(&self) -> bool {
        self.recursive_read_only
    }

    /// What exec helpers get as `--init`: the daemon's sealed copy of
    /// pvecri-init as `/proc/<pid>/fd/<n>`, else the file itself.
    pub(crate) fn init_for_exec(&self) -> std::path::PathBuf {
        use std::os::fd::AsRawFd;
        match &self.init_copy {
            Some(copy) => format!("/proc/{}/fd/{}", std::process::id(), copy.as_raw_fd()).into(),
            None => self.config.init_path.clone(),
        }
    }

    pub(crate) fn cpuset_v1(&self) -> Option<&std::path::Path> {
        self.cpuset_v1.as_deref()
    }

    /// Whether this node runs `hostUsers: false` pods.
    pub(crate) fn supports_user_namespaces(&self) -> bool {
        self.userns_support.is_ok()
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Starts the spare monitors and network namespaces (at start-up; a
    /// no-op with `monitor_spares = 0` and `netns_spares = 0`).
    pub(crate) fn start_spares(&self) {
        self.spares.refill();
        self.netns_spares.refill();
    }

    /// Ends the idle spare monitors and unpins the spare network
    /// namespaces (at shutdown).
    pub(crate) async fn stop_spares(&self) {
        let spares = self.spares.clone();
        let netns_spares = self.netns_spares.clone();
        let _ = tokio::task::spawn_blocking(move || {
            spares.shutdown();
            netns_spares.shutdown();
        })
        .await;
    }

    /// Starts getting the kernel's cgroup-migration lock ready for a
    /// container start that is coming (`crate::cgroups::warm`).
    pub(crate) fn warm_migrations(&self) {
        if let Some(w) = &self.migration_warmer {
            w.warm();
        }
    }

    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub(crate) fn images(&self) -> &Arc<ImageManager> {
        &self.images
    }

    /// Snapshot layers that containers are built on, which image removal
    /// must keep.
    pub(crate) fn layers_in_use(&self) -> HashSet<String> {
        self.store
            .list::<crate::container::ContainerRecord>()
            .unwrap_or_default()
            .into_iter()
            .flat_map(|c| {
                let volumes = c
                    .config
                    .mounts
                    .into_iter()
                    .filter_map(|m| m.image.and_then(|iv| iv.top_layer));
                c.top_layer.into_iter().chain(volumes)
            })
            .collect()
    }

    /// Requested oom_score_adj, raised to what this node allows: without
    /// CAP_SYS_RESOURCE nothing can go below the daemon's own value, and a
    /// container must not fail for it (containerd's restrict_oom_score_adj).
    pub(crate) fn clamp_oom_score_adj(&self, requested: i64) -> Option<i64> {
        if requested == 0 {
            return None;
        }
        Some(requested.clamp(self.min_oom_score_adj, 1000))
    }

    /// RuntimeReady and NetworkReady, with reasons when not ready.
    pub(crate) fn conditions(&self) -> Vec<Condition> {
        vec![
            health::runtime_condition(&self.config),
            health::network_condition(self.network.readiness()),
        ]
    }
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

fn own_oom_score_adj() -> i64 {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(-1000)
}

/// Where the helper binary is installed by the Debian package.
const PACKAGED_HELPER: &str = "/usr/lib/pvecri/pvecri-helper";

/// The binary monitors and exec helpers run from: `pvecri-helper` next to
/// this binary (a build tree, `/usr/local/bin`), or the package's for the
/// package's daemon, if it is of this very build and only root can change
/// it; else this binary itself, which has the same hidden verbs. The
/// helper is a fraction of the daemon's size: it starts faster and each of
/// its processes keeps less memory of its own.
fn helper_binary(self_exe: &std::path::Path) -> std::path::PathBuf {
    let mut candidates = vec![self_exe.with_file_name("pvecri-helper")];
    if self_exe == std::path::Path::new("/usr/bin/pvecri") {
        candidates.push(PACKAGED_HELPER.into());
    }
    for candidate in candidates {
        if !candidate.exists() {
            continue;
        }
        match check_helper(&candidate) {
            Ok(()) => return candidate,
            Err(why) => {
                tracing::warn!(helper = %candidate.display(), why, "not using this pvecri-helper")
            }
        }
    }
    tracing::warn!(daemon = %self_exe.display(), "no usable pvecri-helper: monitors and exec helpers run the daemon's binary");
    self_exe.to_owned()
}

/// Whether `path` may serve as the helper: it and its directory are
/// root's and writable by nobody else, and it is of this build.
fn check_helper(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let dir = path.parent().unwrap_or(std::path::Path::new("/"));
    for p in [path, dir] {
        let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
            return Err(format!(
                "{} is not root's alone (uid {}, mode {:o})",
                p.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ));
        }
    }
    let out = std::process::Command::new(path)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run it: {e}"))?;
    let got = String::from_utf8_lossy(&out.stdout);
    let expected = format!("pvecri-helper {}", crate::version::BUILD_VERSION);
    if got.trim() != expected {
        return Err(format!(
            "it says {:?}, this daemon is {}",
            got.trim(),
            crate::version::BUILD_VERSION
        ));
    }
    Ok(())
}

#[cfg(test)]
mod helper_tests {
    use super::*;

    #[test]
    fn a_helper_anyone_may_replace_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("pvecri-helper");
        std::fs::write(&helper, "#!/bin/sh\necho pvecri-helper 0\n").unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o757)).unwrap();
        let why = check_helper(&helper).unwrap_err();
        assert!(why.contains("not root's alone"), "{why}");
        // Writable by root alone, but of another build.
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        if nix::unistd::geteuid().is_root() {
            // (A /tmp mounted noexec cannot run it at all.)
            let why = check_helper(&helper).unwrap_err();
            assert!(
                why.contains("this daemon is") || why.contains("cannot run"),
                "{why}"
            );
        }
        // Falls back to the daemon's binary.
        let daemon = dir.path().join("pvecri");
        assert_eq!(helper_binary(&daemon), daemon);
    }
}
