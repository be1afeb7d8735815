//! Daemon configuration: one TOML file, parsed once into an immutable value.
//!
//! Every key has a documented default (see `docs/configuration.md`, which
//! must list exactly the keys of [`RawConfig`]); unknown keys are rejected
//! with the key named, so a typo never silently falls back to a default.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// Where the daemon looks when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/pvecri/config.toml";

/// Where the Debian package installs pvecri-init.
pub const DEFAULT_INIT_PATH: &str = "/usr/lib/pvecri/pvecri-init";

#[derive(Debug, Error)]
pub enum ConfigError {
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
pub enum CgroupDriver {
    Cgroupfs,
    Systemd,
}

/// Log line format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

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
    images: ImagesConfig,
    streaming: StreamingConfig,
}

/// `[streaming]`: the HTTP server behind CRI Exec, Attach and PortForward.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingConfig {
    /// IP address the server listens on.
    pub address: std::net::IpAddr,
    /// TCP port; 0 picks a free one at start-up.
    pub port: u16,
    /// A stream with no traffic either way for this many seconds is closed
    /// (0: never).
    pub idle_timeout_seconds: u64,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        Self {
            address: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            port: 0,
            idle_timeout_seconds: 4 * 60 * 60,
        }
    }
}

/// `[images]`: where images come from and how they are stored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// Snapshot backend: `overlay` or `dir`.
    pub snapshotter: crate::snapshot::BackendKind,
    /// Registry host -> mirrors tried in order (`host[:port][/path-prefix]`).
    pub mirrors: std::collections::BTreeMap<String, Vec<String>>,
    /// Registries (`host[:port]`) spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Try the registry itself after every mirror failed.
    pub fallback_to_upstream: bool,
    /// Docker `config.json`-style credentials (`{"auths": {host: {"auth": ...}}}`).
    pub credentials_file: Option<PathBuf>,
    /// A pull that receives no data for this many seconds fails.
    pub stall_timeout_seconds: u64,
    /// Layers downloaded in parallel per pull.
    pub max_concurrent_downloads: usize,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        Self {
            snapshotter: crate::snapshot::BackendKind::Overlay,
            mirrors: Default::default(),
            insecure_registries: Vec::new(),
            fallback_to_upstream: true,
            credentials_file: None,
            stall_timeout_seconds: 60,
            max_concurrent_downloads: 3,
        }
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
            images: ImagesConfig::default(),
            streaming: StreamingConfig::default(),
        }
    }
}

/// The validated configuration the daemon runs with.
#[derive(Debug, Clone)]
pub struct Config {
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
    pub images: ImagesConfig,
    pub streaming: StreamingConfig,
}

impl Config {
    /// Loads `path`, or the defaults when no path was given and the default
    /// file does not exist.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            Some(p) => Self::from_file(p),
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                Self::from_file(Path::new(DEFAULT_CONFIG_PATH))
            }
            None => RawConfig::default().validate(),
        }
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
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

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: PathBuf::new(),
            message: err.message().to_owned() + &location(text, err.span()),
        })?;
        raw.validate()
    }

    /// Where the embedded store lives.
    pub fn store_path(&self) -> PathBuf {
        self.state_dir.join("pvecri.redb")
    }

    /// pvecri's own LXC path, separate from `/var/lib/lxc` so that Proxmox's
    /// containers and hooks are never touched.
    pub fn lxc_path(&self) -> PathBuf {
        self.state_dir.join("lxc")
    }

    /// The lock file that keeps a second daemon off the same state dir.
    pub fn lock_path(&self) -> PathBuf {
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
        if let Some(path) = &self.images.credentials_file {
            if !path.is_absolute() {
                return Err(ConfigError::Invalid {
                    key: "images.credentials_file",
                    message: format!("{} is not an absolute path", path.display()),
                });
            }
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
            images: self.images,
            streaming: self.streaming,
        })
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
    fn bad_log_filter_is_refused() {
        let msg = Config::from_toml("log_level = \"pvecri=[\"")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("log_level"), "{msg}");
    }

    #[test]
    fn shipped_default_config_parses_to_the_defaults() {
        let shipped = include_str!("../packaging/config.toml");
        let c = Config::from_toml(shipped).unwrap();
        let d = Config::from_toml("").unwrap();
        assert_eq!(format!("{c:?}"), format!("{d:?}"));
    }
}
