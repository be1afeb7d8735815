//! Daemon configuration: one TOML file, parsed once into an immutable value.
//!
//! Every key has a documented default (see `docs/configuration.md`, which
//! must list exactly the keys of [`RawConfig`]); unknown keys are rejected
//! with the key named, so a typo never silently falls back to a default.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// Where the daemon looks when `--config` is not given.
pub(crate) const DEFAULT_CONFIG_PATH: &str = "/etc/pvecri/config.toml";

/// Where the Debian package installs pvecri-init.
pub(crate) const DEFAULT_INIT_PATH: &str = "/usr/lib/pvecri/pvecri-init";

#[derive(Debug, Error)]
pub(crate) enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config value for `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// How pod cgroups are named and created, as the kubelet's `cgroupDriver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CgroupDriver {
    Cgroupfs,
    Systemd,
}

/// Log line format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// Spare monitors by default: one for the create in flight, one for the
/// next while the first is replaced.
const DEFAULT_MONITOR_SPARES: usize = 2;
/// Each idle spare holds about half a MiB; more than this buys nothing.
const MAX_MONITOR_SPARES: usize = 32;
/// Spare pod network namespaces by default (as for monitors).
const DEFAULT_NETNS_SPARES: usize = 2;
/// A spare network namespace costs kernel memory; more buys nothing.
const MAX_NETNS_SPARES: usize = 32;

/// The file as written by the operator. Every field has a default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    socket: PathBuf,
    socket_group: String,
    state_dir: PathBuf,
    runtime_dir: PathBuf,
    cgroup_driver: CgroupDriver,
    log_level: String,
    log_format: LogFormat,
    init_path: PathBuf,
    criu_path: Option<PathBuf>,
    cdi_spec_dirs: Vec<PathBuf>,
    runtime_handlers: Vec<String>,
    monitor_spares: usize,
    netns_spares: usize,
    warm_migrations: bool,
    images: ImagesConfig,
    metrics: MetricsConfig,
    network: NetworkConfig,
    streaming: StreamingConfig,
    audit: AuditConfig,
}

/// Where `[audit]` lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AuditOutput {
    Off,
    /// The systemd journal (`SYSLOG_IDENTIFIER=pvecri-audit`); the
    /// daemon's own log when no journal listens.
    Journal,
    /// Appended to `path`.
    File,
}

/// `[audit]`: one JSON line per CRI call that changes the node.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AuditConfig {
    pub output: AuditOutput,
    /// The file of `output = "file"` (mode 0600, appended to).
    pub path: PathBuf,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            output: AuditOutput::Journal,
            path: PathBuf::from("/var/log/pvecri/audit.log"),
        }
    }
}

/// `[streaming]`: the HTTP server behind CRI Exec, Attach and PortForward.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct StreamingConfig {
    /// IP address the server listens on.
    pub address: std::net::IpAddr,
    /// TCP port; 0 picks a free one at start-up.
    pub port: u16,
    /// A stream with no traffic either way for this many seconds is closed
    /// (0: never).
    pub idle_timeout_seconds: u64,
    /// A connection that has not sent a complete request head within this
    /// many seconds is closed.
    pub header_read_timeout_seconds: u64,
    /// Connections served at once, upgraded sessions included; new ones
    /// past it are closed at once.
    pub max_connections: usize,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        Self {
            address: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            port: 0,
            idle_timeout_seconds: 4 * 60 * 60,
            header_read_timeout_seconds: 10,
            max_connections: 128,
        }
    }
}

impl StreamingConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        // A day is far past any client's patience and keeps the timer sane.
        if !(1..=86_400).contains(&self.header_read_timeout_seconds) {
            return Err(ConfigError::Invalid {
                key: "streaming.header_read_timeout_seconds",
                message: "must be between 1 and 86400".to_owned(),
            });
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid {
                key: "streaming.max_connections",
                message: "must be at least 1".to_owned(),
            });
        }
        Ok(())
    }
}

/// How pods get their network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum NetworkMode {
    /// pvecri's own bridge, veth and IPAM over netlink.
    Builtin,
    /// CNI plugins from a conflist.
    Cni,
}

/// `[network]`: pod networking.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct NetworkConfig {
    pub mode: NetworkMode,
    /// Linux bridge the pods' veths join; created when missing.
    pub bridge: String,
    /// IPv4 pod subnet; the first host address is the gateway on the bridge.
    /// The kubelet's `UpdateRuntimeConfig` pod CIDR replaces it.
    pub pod_cidr: String,
    /// Optional IPv6 pod subnet for dual-stack pods.
    pub pod_cidr_v6: String,
    /// Masquerade pod traffic leaving the node (nftables).
    pub masquerade: bool,
    /// Let pod traffic be forwarded anywhere but the bridge; `false` drops
    /// it, keeping pods on the node (tests, isolated nodes).
    pub egress: bool,
    /// CNI mode: where the conflist is read from.
    pub cni_conf_dir: PathBuf,
    /// CNI mode: where plugin binaries are looked up, in order.
    pub cni_bin_dirs: Vec<PathBuf>,
    /// Built-in mode: the VLAN (1 to 4094) the pods' bridge ports are
    /// untagged members of, with it as their PVID; `bridge` must then be
    /// VLAN-aware (`vlan_filtering` on). None: the bridge's defaults.
    pub vlan: Option<u16>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            mode: NetworkMode::Builtin,
            bridge: "pvecri0".to_owned(),
            pod_cidr: "10.77.0.0/16".to_owned(),
            pod_cidr_v6: String::new(),
            masquerade: true,
            egress: true,
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            cni_bin_dirs: vec![PathBuf::from("/opt/cni/bin")],
            vlan: None,
        }
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct MetricsConfig {
    /// `host:port` to serve `/metrics` on; empty (the default) serves none.
    address: String,
}

/// `[images]`: where images come from and how they are stored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ImagesConfig {
    /// Snapshot backend: `overlay`, `dir` or `zfs`.
    pub snapshotter: crate::snapshot::BackendKind,
    /// Parent dataset of the `zfs` snapshotter (`pool/path`, created if
    /// missing); nothing outside it is touched.
    pub zfs_dataset: Option<String>,
    /// Registry host -> mirrors tried in order (`host[:port][/path-prefix]`).
    pub mirrors: std::collections::BTreeMap<String, Vec<String>>,
    /// Registries (`host[:port]`) spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Try the registry itself after every mirror failed.
    pub fallback_to_upstream: bool,
    /// Docker `config.json`-style credentials (`{"auths": {host: {"auth": ...}}}`,
    /// `credHelpers`, `credsStore`).
    pub credentials_file: Option<PathBuf>,
    /// Where `docker-credential-<name>` helpers are looked up; unset: the
    /// daemon's `PATH`.
    pub credential_helper_dir: Option<PathBuf>,
    /// Per-host (`host[:port]`) TLS settings and capability-limited mirrors.
    pub registries: std::collections::BTreeMap<String, RegistryConfig>,
    /// A pull that receives no data for this many seconds fails.
    pub stall_timeout_seconds: u64,
    /// Layers downloaded in parallel per pull.
    pub max_concurrent_downloads: usize,
    /// Images (references or IDs) reported `pinned` and never removed.
    pub pinned_images: Vec<String>,
    /// `[[images.signature_policy]]`: cosign signatures required per image
    /// name prefix (docs/configuration.md); none by default.
    pub signature_policy: Vec<crate::image::signature::PolicyRule>,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        Self {
            snapshotter: crate::snapshot::BackendKind::Overlay,
            zfs_dataset: None,
            mirrors: Default::default(),
            insecure_registries: Vec::new(),
            fallback_to_upstream: true,
            credentials_file: None,
            credential_helper_dir: None,
            registries: Default::default(),
            stall_timeout_seconds: 60,
            max_concurrent_downloads: 3,
            pinned_images: Vec::new(),
            signature_policy: Vec::new(),
        }
    }
}

/// `[images.registries."host[:port]"]`: how one registry (or mirror) host
/// is spoken to.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RegistryConfig {
    /// PEM CA bundle trusted for this host, on top of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) presented to this host.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// Accept any server certificate from this host. Never the default.
    pub skip_verify: bool,
    /// Mirrors of this registry, tried in order before it.
    pub mirrors: Vec<MirrorConfig>,
}

/// One entry of `[[images.registries."host".mirrors]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MirrorConfig {
    /// `host[:port][/path-prefix]`, as in `images.mirrors`.
    pub host: String,
    /// What the mirror may be asked: `pull` (content by digest) and/or
    /// `resolve` (tag to digest).
    #[serde(default = "MirrorCapability::all")]
    pub capabilities: Vec<MirrorCapability>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MirrorCapability {
    Pull,
    Resolve,
}

impl MirrorCapability {
    fn all() -> Vec<MirrorCapability> {
        vec![MirrorCapability::Pull, MirrorCapability::Resolve]
    }
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/pvecri/pvecri.sock"),
            socket_group: String::new(),
            state_dir: PathBuf::from("/var/lib/pvecri"),
            runtime_dir: PathBuf::from("/run/pvecri"),
            cgroup_driver: CgroupDriver::Cgroupfs,
            log_level: String::from("info"),
            log_format: LogFormat::Text,
            init_path: PathBuf::from(DEFAULT_INIT_PATH),
            criu_path: None,
            cdi_spec_dirs: vec![PathBuf::from("/etc/cdi"), PathBuf::from("/var/run/cdi")],
            runtime_handlers: Vec::new(),
            monitor_spares: DEFAULT_MONITOR_SPARES,
            netns_spares: DEFAULT_NETNS_SPARES,
            warm_migrations: true,
            images: ImagesConfig::default(),
            metrics: MetricsConfig::default(),
            network: NetworkConfig::default(),
            streaming: StreamingConfig::default(),
            audit: AuditConfig::default(),
        }
    }
}

/// The validated configuration the daemon runs with.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The CRI unix socket.
    pub socket: PathBuf,
    /// Group allowed to use the socket (mode 0660); `None` keeps it 0600 root.
    pub socket_group: Option<String>,
    /// Persistent state: the store, images, LXC container dirs.
    pub state_dir: PathBuf,
    /// Volatile state: namespace pins, monitor sockets.
    pub runtime_dir: PathBuf,
    pub cgroup_driver: CgroupDriver,
    /// A `tracing` filter directive such as `info` or `pvecri=debug`.
    pub log_level: String,
    pub log_format: LogFormat,
    /// The static pvecri-init binary bind-mounted into every container.
    pub init_path: PathBuf,
    /// The criu binary for checkpoints; `None`: found in `PATH` and the
    /// sbin directories (`crate::checkpoint::criu`).
    pub criu_path: Option<PathBuf>,
    /// Where CDI spec files are read, earliest first (a later directory's
    /// device replaces an earlier one's).
    pub cdi_spec_dirs: Vec<PathBuf>,
    /// Every runtime handler name served: `""` (no RuntimeClass), `lxc`,
    /// then the operator's `runtime_handlers`. All run the same LXC
    /// runtime; the extra names exist for RuntimeClasses written for
    /// another runtime's handler names.
    pub runtime_handlers: Vec<String>,
    /// Container monitors kept started ahead of need, so CreateContainer
    /// does not wait for a process start (`crate::runtime::spares`); 0
    /// starts every monitor on demand.
    pub monitor_spares: usize,
    /// Pod network namespaces made ahead of need, so that RunPodSandbox
    /// joins one instead of waiting for the kernel to make it
    /// (`crate::runtime::netns_spares`); 0 makes each on demand.
    pub netns_spares: usize,
    /// Whether RunPodSandbox and CreateContainer start with a move of the
    /// daemon within its own cgroup, so the kernel's grace period for the
    /// migration lock passes while they work (`crate::cgroups::warm`).
    pub warm_migrations: bool,
    pub images: ImagesConfig,
    /// Where the Prometheus endpoint listens; `None`: no endpoint.
    pub metrics_address: Option<std::net::SocketAddr>,
    pub network: NetworkConfig,
    pub streaming: StreamingConfig,
    pub audit: AuditConfig,
}

impl Config {
    /// Loads `path`, or the defaults when no path was given and the default
    /// file does not exist.
    pub(crate) fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            Some(p) => Self::from_file(p),
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                Self::from_file(Path::new(DEFAULT_CONFIG_PATH))
            }
            None => RawConfig::default().validate(),
        }
    }

    pub(crate) fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|err| match err {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    pub(crate) fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: PathBuf::new(),
            message: err.message().to_owned() + &location(text, err.span()),
        })?;
        raw.validate()
    }

    /// Where the embedded store lives.
    pub(crate) fn store_path(&self) -> PathBuf {
        self.state_dir.join("pvecri.redb")
    }

    /// pvecri's own LXC path, separate from `/var/lib/lxc` so that Proxmox's
    /// containers and hooks are never touched.
    pub(crate) fn lxc_path(&self) -> PathBuf {
        self.state_dir.join("lxc")
    }

    /// The lock file that keeps a second daemon off the same state dir.
    pub(crate) fn lock_path(&self) -> PathBuf {
        self.state_dir.join("pvecri.lock")
    }
}

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        for (key, path) in [
            ("socket", &self.socket),
            ("state_dir", &self.state_dir),
            ("runtime_dir", &self.runtime_dir),
            ("init_path", &self.init_path),
        ] {
            if !path.is_absolute() {
                return Err(ConfigError::Invalid {
                    key,
                    message: format!("{} is not an absolute path", path.display()),
                });
            }
        }
        if let Some(criu) = self.criu_path.as_ref().filter(|p| {
            !p.is_absolute() || p.to_str().is_none_or(|s| s.chars().any(char::is_control))
        }) {
            return Err(ConfigError::Invalid {
                key: "criu_path",
                message: format!("{} is not an absolute path", criu.display()),
            });
        }
        if let Some(dir) = self.cdi_spec_dirs.iter().find(|d| {
            !d.is_absolute() || d.to_str().is_none_or(|s| s.chars().any(char::is_control))
        }) {
            return Err(ConfigError::Invalid {
                key: "cdi_spec_dirs",
                message: format!("{} is not an absolute path", dir.display()),
            });
        }
        let runtime_handlers = runtime_handlers(self.runtime_handlers)?;
        if self.monitor_spares > MAX_MONITOR_SPARES {
            return Err(ConfigError::Invalid {
                key: "monitor_spares",
                message: format!("must be at most {MAX_MONITOR_SPARES}"),
            });
        }
        if self.netns_spares > MAX_NETNS_SPARES {
            return Err(ConfigError::Invalid {
                key: "netns_spares",
                message: format!("must be at most {MAX_NETNS_SPARES}"),
            });
        }
        if self.socket.file_name().is_none() {
            return Err(ConfigError::Invalid {
                key: "socket",
                message: format!("{} does not name a file", self.socket.display()),
            });
        }
        if let Err(err) = tracing_subscriber::EnvFilter::builder().parse(&self.log_level) {
            return Err(ConfigError::Invalid {
                key: "log_level",
                message: format!("{:?} is not a log filter: {err}", self.log_level),
            });
        }
        if self.images.max_concurrent_downloads == 0 {
            return Err(ConfigError::Invalid {
                key: "images.max_concurrent_downloads",
                message: "must be at least 1".to_owned(),
            });
        }
        if self.images.stall_timeout_seconds == 0 {
            return Err(ConfigError::Invalid {
                key: "images.stall_timeout_seconds",
                message: "must be at least 1".to_owned(),
            });
        }
        for (host, mirrors) in &self.images.mirrors {
            if host.is_empty() || mirrors.iter().any(|m| m.is_empty() || m.contains("://")) {
                return Err(ConfigError::Invalid {
                    key: "images.mirrors",
                    message: format!(
                        "mirrors of {host:?} must be non-empty `host[:port][/prefix]` entries without a scheme (use insecure_registries for plain HTTP)"
                    ),
                });
            }
        }
        if let Some(bad) = self.images.pinned_images.iter().find(|p| {
            crate::image::reference::Reference::parse(p).is_err()
                && !crate::image::reference::is_image_id(p)
        }) {
            return Err(ConfigError::Invalid {
                key: "images.pinned_images",
                message: format!("{bad:?} is neither an image reference nor an image ID"),
            });
        }
        for (key, path) in [
            ("images.credentials_file", &self.images.credentials_file),
            (
                "images.credential_helper_dir",
                &self.images.credential_helper_dir,
            ),
        ] {
            if let Some(path) = path.as_ref().filter(|p| !is_clean_absolute(p)) {
                return Err(ConfigError::Invalid {
                    key,
                    message: format!("{} is not an absolute path", path.display()),
                });
            }
        }
        for (host, registry) in &self.images.registries {
            registry.validate(host, &self.images)?;
        }
        match (&self.images.zfs_dataset, self.images.snapshotter) {
            (Some(ds), _) => {
                crate::zfs::check_dataset_name(ds).map_err(|e| ConfigError::Invalid {
                    key: "images.zfs_dataset",
                    message: e.to_string(),
                })?
            }
            (None, crate::snapshot::BackendKind::Zfs) => {
                return Err(ConfigError::Invalid {
                    key: "images.zfs_dataset",
                    message: "the zfs snapshotter needs its parent dataset (e.g. \"rpool/data/pvecri\"; `pvecri doctor` proposes one on a Proxmox node)".to_owned(),
                })
            }
            (None, _) => {}
        }
        if self.images.snapshotter == crate::snapshot::BackendKind::Zfs && !crate::zfs::built_in() {
            return Err(ConfigError::Invalid {
                key: "images.snapshotter",
                message: "this pvecri was built without the `zfs` feature".to_owned(),
            });
        }
        let metrics_address = match self.metrics.address.as_str() {
            "" => None,
            a => Some(a.parse().map_err(|_| ConfigError::Invalid {
                key: "metrics.address",
                message: format!("{a:?} is not an `ip:port` address"),
            })?),
        };
        self.network.validate()?;
        self.streaming.validate()?;
        if self.audit.output == AuditOutput::File && !self.audit.path.is_absolute() {
            return Err(ConfigError::Invalid {
                key: "audit.path",
                message: format!("{} is not an absolute path", self.audit.path.display()),
            });
        }
        let socket_group = if self.socket_group.is_empty() {
            None
        } else {
            Some(self.socket_group)
        };
        Ok(Config {
            socket: self.socket,
            socket_group,
            state_dir: self.state_dir,
            runtime_dir: self.runtime_dir,
            cgroup_driver: self.cgroup_driver,
            log_level: self.log_level,
            log_format: self.log_format,
            init_path: self.init_path,
            criu_path: self.criu_path,
            cdi_spec_dirs: self.cdi_spec_dirs,
            runtime_handlers,
            monitor_spares: self.monitor_spares,
            netns_spares: self.netns_spares,
            warm_migrations: self.warm_migrations,
            images: self.images,
            metrics_address,
            network: self.network,
            streaming: self.streaming,
            audit: self.audit,
        })
    }
}

/// The built-in handler names followed by the operator's extra ones, each
/// a DNS label (what a RuntimeClass's `handler` must be) and named once.
fn runtime_handlers(extra: Vec<String>) -> Result<Vec<String>, ConfigError> {
    let mut all = vec![String::new(), "lxc".to_owned()];
    for name in extra {
        let label = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !label {
            return Err(ConfigError::Invalid {
                key: "runtime_handlers",
                message: format!("{name:?} is not a DNS label (a-z, 0-9 and '-', at most 63)"),
            });
        }
        if all.contains(&name) {
            return Err(ConfigError::Invalid {
                key: "runtime_handlers",
                message: format!("{name:?} is named twice (\"lxc\" is built in)"),
            });
        }
        all.push(name);
    }
    Ok(all)
}

impl NetworkConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !crate::network::is_valid_bridge_name(&self.bridge) {
            return Err(ConfigError::Invalid {
                key: "network.bridge",
                message: format!("{:?} is not a usable interface name", self.bridge),
            });
        }
        if let Err(e) = crate::network::parse_pod_cidr(&self.pod_cidr, false) {
            return Err(ConfigError::Invalid {
                key: "network.pod_cidr",
                message: e.to_string(),
            });
        }
        if !self.pod_cidr_v6.is_empty() {
            if let Err(e) = crate::network::parse_pod_cidr(&self.pod_cidr_v6, true) {
                return Err(ConfigError::Invalid {
                    key: "network.pod_cidr_v6",
                    message: e.to_string(),
                });
            }
        }
        for (key, path) in std::iter::once(("network.cni_conf_dir", &self.cni_conf_dir)).chain(
            self.cni_bin_dirs
                .iter()
                .map(|p| ("network.cni_bin_dirs", p)),
        ) {
            if !path.is_absolute() {
                return Err(ConfigError::Invalid {
                    key,
                    message: format!("{} is not an absolute path", path.display()),
                });
            }
        }
        if let Some(vlan) = self.vlan {
            if !(1..=4094).contains(&vlan) {
                return Err(ConfigError::Invalid {
                    key: "network.vlan",
                    message: format!("{vlan} is not a VLAN ID (1 to 4094)"),
                });
            }
            if self.mode != NetworkMode::Builtin {
                return Err(ConfigError::Invalid {
                    key: "network.vlan",
                    message:
                        "applies to built-in mode only; in CNI mode the plugins' config sets VLANs"
                            .to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// An absolute path without control characters (it ends up in messages).
fn is_clean_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path
            .to_str()
            .is_some_and(|s| !s.chars().any(char::is_control))
}

/// `host[:port]` as registries and mirrors are named: DNS or IP text.
fn is_registry_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
}

impl RegistryConfig {
    fn validate(&self, host: &str, images: &ImagesConfig) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            key: "images.registries",
            message,
        };
        if !is_registry_host(host) {
            return Err(invalid(format!("{host:?} is not a `host[:port]`")));
        }
        for (name, path) in [
            ("ca_file", &self.ca_file),
            ("client_cert_file", &self.client_cert_file),
            ("client_key_file", &self.client_key_file),
        ] {
            if let Some(path) = path.as_ref().filter(|p| !is_clean_absolute(p)) {
                return Err(invalid(format!(
                    "{host}: {name} {} is not an absolute path",
                    path.display()
                )));
            }
        }
        let tls = self.ca_file.is_some() || self.client_cert_file.is_some() || self.skip_verify;
        if tls && images.insecure_registries.iter().any(|h| h == host) {
            return Err(invalid(format!(
                "{host}: TLS settings for a host in insecure_registries (plain HTTP)"
            )));
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return Err(invalid(format!(
                "{host}: client_cert_file and client_key_file go together"
            )));
        }
        if !self.mirrors.is_empty() && images.mirrors.contains_key(host) {
            return Err(invalid(format!(
                "{host}: mirrors are set both here and in images.mirrors; keep one list"
            )));
        }
        for mirror in &self.mirrors {
            let (mirror_host, prefix) = mirror.host.split_once('/').unwrap_or((&mirror.host, ""));
            let prefix_ok = prefix.is_empty()
                || prefix.split('/').all(|c| {
                    !c.is_empty()
                        && c != ".."
                        && c.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                });
            if !is_registry_host(mirror_host) || !prefix_ok {
                return Err(invalid(format!(
                    "{host}: mirror {:?} is not `host[:port][/path-prefix]` (no scheme; use insecure_registries for plain HTTP)",
                    mirror.host
                )));
            }
            if mirror.capabilities.is_empty() {
                return Err(invalid(format!(
                    "{host}: mirror {} has no capabilities (use \"pull\" and/or \"resolve\")",
                    mirror.host
                )));
            }
        }
        // Without fallback the registry itself is asked at most for tags;
        // every pull would fail, and read as if the image did not exist.
        let pullable = self
            .mirrors
            .iter()
            .any(|m| m.capabilities.contains(&MirrorCapability::Pull));
        if !self.mirrors.is_empty() && !pullable && !images.fallback_to_upstream {
            return Err(invalid(format!(
                "{host}: no mirror has the \"pull\" capability and fallback_to_upstream = false, so nothing may serve this registry's images; give a mirror \"pull\" or set fallback_to_upstream = true"
            )));
        }
        Ok(())
    }
}

/// " at line L, column C" for a byte span of the TOML text.
fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!(" (line {line}, column {column})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.socket, Path::new("/run/pvecri/pvecri.sock"));
        assert_eq!(c.state_dir, Path::new("/var/lib/pvecri"));
        assert_eq!(c.cgroup_driver, CgroupDriver::Cgroupfs);
        assert_eq!(c.socket_group, None);
        assert_eq!(c.lxc_path(), Path::new("/var/lib/pvecri/lxc"));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("socket = \"/x.sock\"\nsokcet_group = \"kube\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sokcet_group"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn wrong_type_and_bad_enum_are_refused() {
        assert!(Config::from_toml("socket = 3").is_err());
        let msg = Config::from_toml("cgroup_driver = \"cgroupv3\"")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("cgroupv3"), "{msg}");
    }

    #[test]
    fn relative_paths_are_refused() {
        let msg = Config::from_toml("state_dir = \"var/lib\"")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("state_dir"), "{msg}");
    }

    #[test]
    fn cdi_spec_dirs_default_and_are_absolute() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(
            c.cdi_spec_dirs,
            vec![PathBuf::from("/etc/cdi"), PathBuf::from("/var/run/cdi")]
        );
        let c = Config::from_toml("cdi_spec_dirs = []").unwrap();
        assert!(c.cdi_spec_dirs.is_empty());
        let msg = Config::from_toml("cdi_spec_dirs = [\"/etc/cdi\", \"cdi\"]")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("cdi_spec_dirs") && msg.contains("cdi is not"),
            "{msg}"
        );
    }

    #[test]
    fn images_section() {
        let c = Config::from_toml(
            "[images]\nsnapshotter = \"dir\"\ninsecure_registries = [\"127.0.0.1:5000\"]\n\
             [images.mirrors]\n\"registry.k8s.io\" = [\"127.0.0.1:5000/registry.k8s.io\"]\n",
        )
        .unwrap();
        assert_eq!(c.images.snapshotter, crate::snapshot::BackendKind::Dir);
        assert_eq!(
            c.images.mirrors["registry.k8s.io"],
            vec!["127.0.0.1:5000/registry.k8s.io"]
        );
        let msg = Config::from_toml("[images]\nmirror = {}")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("mirror"), "{msg}");
        let msg = Config::from_toml("[images.mirrors]\n\"docker.io\" = [\"http://x\"]")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("images.mirrors"), "{msg}");
        assert!(Config::from_toml("[images]\nmax_concurrent_downloads = 0").is_err());
    }

    #[test]
    fn registries_section() {
        let c = Config::from_toml(
            r#"
[images]
credential_helper_dir = "/usr/lib/pvecri/credential-helpers"
[images.registries."registry.example.com:5443"]
ca_file = "/etc/pvecri/certs/ca.pem"
client_cert_file = "/etc/pvecri/certs/client.pem"
client_key_file = "/etc/pvecri/certs/client.key"
[images.registries."docker.io"]
mirrors = [{ host = "cache.lan/hub", capabilities = ["pull"] }, { host = "full.lan" }]
"#,
        )
        .unwrap();
        let r = &c.images.registries["registry.example.com:5443"];
        assert!(!r.skip_verify && r.client_key_file.is_some());
        let hub = &c.images.registries["docker.io"];
        assert_eq!(hub.mirrors[0].capabilities, [MirrorCapability::Pull]);
        assert_eq!(hub.mirrors[1].capabilities, MirrorCapability::all());

        for bad in [
            "[images.registries.\"a b\"]",
            "[images.registries.h]\nca_file = \"ca.pem\"",
            "[images.registries.h]\nclient_cert_file = \"/c.pem\"",
            "[images.registries.h]\nmirrors = [{ host = \"https://m\" }]",
            "[images.registries.h]\nmirrors = [{ host = \"m/../x\" }]",
            "[images.registries.h]\nmirrors = [{ host = \"m\", capabilities = [] }]",
            "[images]\ninsecure_registries = [\"h\"]\n[images.registries.h]\nskip_verify = true",
            "[images.mirrors]\nh = [\"m\"]\n[images.registries.h]\nmirrors = [{ host = \"n\" }]",
        ] {
            let msg = Config::from_toml(bad).unwrap_err().to_string();
            assert!(msg.contains("images.registries"), "{bad}: {msg}");
        }
        // Resolve-only mirrors need the registry itself for the content.
        let resolve_only = "[images.registries.\"quay.io\"]\n\
             mirrors = [{ host = \"a.lan\", capabilities = [\"resolve\"] }, { host = \"b.lan\", capabilities = [\"resolve\"] }]";
        assert!(Config::from_toml(resolve_only).is_ok());
        let msg = Config::from_toml(&format!(
            "[images]\nfallback_to_upstream = false\n{resolve_only}"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("images.registries")
                && msg.contains("quay.io")
                && msg.contains("no mirror has the \"pull\" capability"),
            "{msg}"
        );
        let one_pulls = "[images]\nfallback_to_upstream = false\n\
             [images.registries.\"quay.io\"]\n\
             mirrors = [{ host = \"a.lan\", capabilities = [\"resolve\"] }, { host = \"b.lan\", capabilities = [\"pull\"] }]";
        assert!(Config::from_toml(one_pulls).is_ok());
        assert!(Config::from_toml(
            "[images]\nfallback_to_upstream = false\n[images.registries.\"quay.io\"]\nca_file = \"/ca.pem\""
        )
        .is_ok());

        for bad in [
            "[images.registries.h]\nmirrors = [{ host = \"m\", capabilities = [\"push\"] }]",
            "[images.registries.h]\nskip_verfy = true",
        ] {
            assert!(Config::from_toml(bad).is_err(), "{bad}");
        }
        let msg = Config::from_toml("[images]\ncredential_helper_dir = \"bin\"")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("images.credential_helper_dir"), "{msg}");
    }

    #[test]
    fn zfs_snapshotter_needs_a_valid_dataset() {
        let err = Config::from_toml("[images]\nsnapshotter = \"zfs\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("images.zfs_dataset"), "{err}");
        let err = Config::from_toml("[images]\nzfs_dataset = \"rpool/../x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a valid ZFS dataset name"), "{err}");
        let text = "[images]\nsnapshotter = \"zfs\"\nzfs_dataset = \"rpool/data/pvecri\"\n";
        match Config::from_toml(text) {
            Ok(c) => assert_eq!(c.images.zfs_dataset.as_deref(), Some("rpool/data/pvecri")),
            Err(e) => assert!(!crate::zfs::built_in(), "{e}"),
        }
    }

    #[test]
    fn network_section() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.network.mode, NetworkMode::Builtin);
        assert_eq!(c.network.bridge, "pvecri0");
        let c = Config::from_toml(
            "[network]\nbridge = \"vmbr1\"\npod_cidr = \"10.9.0.0/24\"\npod_cidr_v6 = \"fd00:9::/64\"\nmasquerade = false\n",
        )
        .unwrap();
        assert_eq!(c.network.bridge, "vmbr1");
        assert!(!c.network.masquerade);
        assert_eq!(c.network.vlan, None);
        let c = Config::from_toml("[network]\nbridge = \"vmbr1\"\nvlan = 20\n").unwrap();
        assert_eq!(c.network.vlan, Some(20));
        for bad in [
            "[network]\npod_cidr = \"10.9.0.0/31\"",
            "[network]\npod_cidr = \"fd00::/64\"",
            "[network]\npod_cidr_v6 = \"10.0.0.0/8\"",
            "[network]\nbridge = \"a-name-much-too-long\"",
            "[network]\nbridge = \"veth100i0\"",
            "[network]\nvlan = 0",
            "[network]\nvlan = 4095",
            "[network]\nmode = \"cni\"\nvlan = 20",
        ] {
            let msg = Config::from_toml(bad).unwrap_err().to_string();
            assert!(msg.contains("network."), "{bad}: {msg}");
        }
    }

    #[test]
    fn bad_log_filter_is_refused() {
        let msg = Config::from_toml("log_level = \"pvecri=[\"")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("log_level"), "{msg}");
    }

    #[test]
    fn criu_path_is_optional_and_absolute() {
        assert_eq!(Config::from_toml("").unwrap().criu_path, None);
        let c = Config::from_toml("criu_path = \"/usr/local/sbin/criu\"").unwrap();
        assert_eq!(
            c.criu_path.as_deref(),
            Some(Path::new("/usr/local/sbin/criu"))
        );
        let msg = Config::from_toml("criu_path = \"criu\"")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("criu_path"), "{msg}");
    }

    #[test]
    fn spare_pools_are_bounded() {
        let c = Config::from_toml("").unwrap();
        assert_eq!((c.monitor_spares, c.netns_spares), (2, 2));
        let c = Config::from_toml("netns_spares = 0\nmonitor_spares = 32").unwrap();
        assert_eq!((c.monitor_spares, c.netns_spares), (32, 0));
        assert!(c.warm_migrations);
        assert!(
            !Config::from_toml("warm_migrations = false")
                .unwrap()
                .warm_migrations
        );
        for (bad, key) in [
            ("monitor_spares = 33", "monitor_spares"),
            ("netns_spares = 33", "netns_spares"),
        ] {
            let msg = Config::from_toml(bad).unwrap_err().to_string();
            assert!(msg.contains(key), "{msg}");
        }
    }

    #[test]
    fn shipped_default_config_parses_to_the_defaults() {
        let shipped = include_str!("../packaging/config.toml");
        let c = Config::from_toml(shipped).unwrap();
        let d = Config::from_toml("").unwrap();
        assert_eq!(format!("{c:?}"), format!("{d:?}"));
    }

    #[test]
    fn streaming_limits_have_defaults_and_are_validated() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.streaming.header_read_timeout_seconds, 10);
        assert_eq!(c.streaming.max_connections, 128);
        let c = Config::from_toml(
            "[streaming]\nheader_read_timeout_seconds = 3\nmax_connections = 2\n",
        )
        .unwrap();
        assert_eq!(c.streaming.header_read_timeout_seconds, 3);
        assert_eq!(c.streaming.max_connections, 2);
        for (bad, key) in [
            (
                "[streaming]\nheader_read_timeout_seconds = 0",
                "streaming.header_read_timeout_seconds",
            ),
            (
                "[streaming]\nheader_read_timeout_seconds = 86401",
                "streaming.header_read_timeout_seconds",
            ),
            (
                "[streaming]\nmax_connections = 0",
                "streaming.max_connections",
            ),
        ] {
            let msg = Config::from_toml(bad).unwrap_err().to_string();
            assert!(msg.contains(key), "{bad}: {msg}");
        }
    }

    #[test]
    fn metrics_endpoint_is_off_by_default_and_validated() {
        assert_eq!(Config::from_toml("").unwrap().metrics_address, None);
        let c = Config::from_toml("[metrics]\naddress = \"127.0.0.1:9102\"\n").unwrap();
        assert_eq!(c.metrics_address, Some("127.0.0.1:9102".parse().unwrap()));
        let msg = Config::from_toml("[metrics]\naddress = \"localhost\"\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("metrics.address"), "{msg}");
    }

    #[test]
    fn runtime_handlers_extend_the_built_in_names_and_are_validated() {
        assert_eq!(Config::from_toml("").unwrap().runtime_handlers, ["", "lxc"]);
        let c = Config::from_toml("runtime_handlers = [\"runc\", \"test-handler\"]\n").unwrap();
        assert_eq!(c.runtime_handlers, ["", "lxc", "runc", "test-handler"]);
        for bad in [
            "\"\"",
            "\"Runc\"",
            "\"a/b\"",
            "\"-x\"",
            "\"lxc\"",
            "\"x\", \"x\"",
        ] {
            let msg = Config::from_toml(&format!("runtime_handlers = [{bad}]\n"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains("runtime_handlers"), "{bad}: {msg}");
        }
    }

    #[test]
    fn audit_goes_to_the_journal_by_default_and_a_file_needs_an_absolute_path() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.audit.output, AuditOutput::Journal);
        let c =
            Config::from_toml("[audit]\noutput = \"file\"\npath = \"/var/log/a.log\"\n").unwrap();
        assert_eq!(c.audit.output, AuditOutput::File);
        let msg = Config::from_toml("[audit]\noutput = \"file\"\npath = \"a.log\"\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("audit.path"), "{msg}");
        assert!(Config::from_toml("[audit]\noutput = \"syslog\"\n").is_err());
    }
}
