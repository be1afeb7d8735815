//! A CDI spec's container edits, turned into pvecri's own container
//! config: device nodes become CRI-style devices, mounts become bind
//! mounts, environment entries and additional GIDs join the request's.
//! From there they take the paths every device and mount takes
//! (`runtime/containers/mounts.rs`): target placement without following
//! symlinks, the device cgroup rules on v1 and v2, the LXC config writer.
//!
//! Everything is checked here, with the device and the spec file named
//! in the error: target paths as strictly as a request's, host paths as
//! absolute paths that exist (a device node must be a character or block
//! device itself, not a link to one). pvecri binds the node's own device
//! node instead of making one, so a spec's type, numbers, mode or owner
//! must describe that node. Hooks (host binaries run as root), Intel RDT
//! and network devices are refused, never skipped.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::container::checks;
use crate::container::devices::{node_of, Kind};
use crate::container::{ContainerConfig, DeviceSpec, MountFlags, MountSpec, Propagation};
use crate::security::input::{check_env_name, check_no_nul, InputError};
use crate::security::paths::{check_absolute, check_mount_target};

use super::spec::{ContainerEdits, DeviceNode, Mount};

/// Why one edit cannot be applied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EditError {
    #[error("environment entry {0:?} is not NAME=value")]
    EnvShape(String),
    #[error("environment entry {entry:?}")]
    Env {
        entry: String,
        #[source]
        source: InputError,
    },
    #[error("device node {path:?}")]
    NodePath {
        path: String,
        #[source]
        source: InputError,
    },
    #[error("device node {path}: host path {host} does not exist on the node")]
    NodeMissing { path: String, host: String },
    #[error("device node {path}: host path {host} is not a character or block device")]
    NotADevice { path: String, host: String },
    #[error("device node {path}: type {kind:?} is not supported (pvecri gives c, u or b devices)")]
    NodeType { path: String, kind: String },
    #[error("device node {path}: the spec's {field} {spec} is not the node's ({host}); pvecri binds the node's own device node")]
    NodeMismatch {
        path: String,
        field: &'static str,
        spec: String,
        host: String,
    },
    #[error("device node {path}: permissions")]
    Permissions {
        path: String,
        #[source]
        source: InputError,
    },
    #[error("mount {target:?}")]
    MountTarget {
        target: String,
        #[source]
        source: InputError,
    },
    #[error("mount {target}: host path {host:?}")]
    MountHost {
        target: String,
        host: String,
        #[source]
        source: InputError,
    },
    #[error("mount {target}: host path {host} does not exist on the node")]
    MountMissing { target: String, host: String },
    #[error("mount {target}: host path {host} is a symlink")]
    MountSymlink { target: String, host: String },
    #[error("mount {target}: type {kind:?} is not a bind mount, the only kind pvecri makes")]
    MountType { target: String, kind: String },
    #[error("mount {target}: option {option:?} is not supported")]
    MountOption { target: String, option: String },
    #[error("cannot inspect {path} on the node")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The edits of the requested CDI devices, in pvecri's terms.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Edits {
    pub env: Vec<(String, String)>,
    pub devices: Vec<DeviceSpec>,
    pub mounts: Vec<MountSpec>,
    pub groups: Vec<u32>,
}

impl Edits {
    /// Converts and appends one `containerEdits` (the caller has refused
    /// the unsupported kinds).
    pub(crate) fn add(
        &mut self,
        edits: &ContainerEdits,
        privileged: bool,
    ) -> Result<(), EditError> {
        for entry in &edits.env {
            self.env.push(env(entry)?);
        }
        for node in &edits.device_nodes {
            self.devices.push(device(node)?);
        }
        for mount in &edits.mounts {
            self.mounts.push(bind_mount(mount, privileged)?);
        }
        // The spec: "Values of 0 are ignored."
        self.groups
            .extend(edits.additional_gids.iter().filter(|g| **g != 0));
        Ok(())
    }

    /// `config` with the edits applied: environment entries after the
    /// request's (a name set twice takes the later value), devices and
    /// mounts replacing any of the request's at the same container path
    /// (in place: image volumes are known by their index), groups added.
    pub(crate) fn applied_to(&self, config: &ContainerConfig) -> ContainerConfig {
        let mut out = config.clone();
        out.envs.extend(self.env.iter().cloned());
        for d in &self.devices {
            match out
                .devices
                .iter_mut()
                .find(|x| x.container_path == d.container_path)
            {
                Some(slot) => *slot = d.clone(),
                None => out.devices.push(d.clone()),
            }
        }
        for m in &self.mounts {
            match out
                .mounts
                .iter_mut()
                .find(|x| x.container_path == m.container_path)
            {
                Some(slot) => *slot = m.clone(),
                None => out.mounts.push(m.clone()),
            }
        }
        out.supplemental_groups
            .extend(self.groups.iter().map(|g| i64::from(*g)));
        out
    }
}

fn env(entry: &str) -> Result<(String, String), EditError> {
    let (name, value) = entry
        .split_once('=')
        .ok_or_else(|| EditError::EnvShape(entry.to_owned()))?;
    check_env_name(name)
        .and_then(|()| check_no_nul(value))
        .map_err(|source| EditError::Env {
            entry: entry.to_owned(),
            source,
        })?;
    Ok((name.to_owned(), value.to_owned()))
}

fn device(node: &DeviceNode) -> Result<DeviceSpec, EditError> {
    let path = &node.path;
    let host = node.host_path.as_deref().unwrap_or(path);
    checks::device_target(path)
        .and_then(|()| check_absolute(host))
        .map_err(|source| EditError::NodePath {
            path: path.clone(),
            source,
        })?;
    let meta = std::fs::symlink_metadata(host).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => EditError::NodeMissing {
            path: path.clone(),
            host: host.to_owned(),
        },
        _ => EditError::Io {
            path: host.to_owned(),
            source,
        },
    })?;
    let Some((kind, major, minor)) = node_of(&meta) else {
        return Err(EditError::NotADevice {
            path: path.clone(),
            host: host.to_owned(),
        });
    };
    let wanted = match node.kind.as_deref().unwrap_or("") {
        "" => None,
        "c" | "u" => Some(Kind::Char),
        "b" => Some(Kind::Block),
        other => {
            return Err(EditError::NodeType {
                path: path.clone(),
                kind: other.to_owned(),
            })
        }
    };
    let mismatch = |field, spec: String, host: String| EditError::NodeMismatch {
        path: path.clone(),
        field,
        spec,
        host,
    };
    let letter = |k: Kind| if k == Kind::Char { "c" } else { "b" };
    if let Some(w) = wanted.filter(|w| *w != kind) {
        return Err(mismatch("type", letter(w).into(), letter(kind).into()));
    }
    for (field, spec, actual) in [
        ("major", node.major, i64::from(major)),
        ("minor", node.minor, i64::from(minor)),
        ("uid", node.uid.map(i64::from), i64::from(meta.uid())),
        ("gid", node.gid.map(i64::from), i64::from(meta.gid())),
    ] {
        if let Some(spec) = spec.filter(|s| *s != actual) {
            return Err(mismatch(field, spec.to_string(), actual.to_string()));
        }
    }
    // Only the permission bits: Go's os.FileMode puts the type elsewhere.
    if let Some(mode) = node.file_mode.map(|m| m & 0o777) {
        let actual = meta.mode() & 0o777;
        if mode != actual {
            return Err(mismatch(
                "fileMode",
                format!("{mode:04o}"),
                format!("{actual:04o}"),
            ));
        }
    }
    let permissions = match node.permissions.as_deref().unwrap_or("") {
        "none" => String::new(),
        p => checks::device_permissions(p).map_err(|source| EditError::Permissions {
            path: path.clone(),
            source,
        })?,
    };
    Ok(DeviceSpec {
        host_path: host.to_owned(),
        container_path: path.clone(),
        permissions,
    })
}

fn bind_mount(mount: &Mount, privileged: bool) -> Result<MountSpec, EditError> {
    let target = &mount.container_path;
    check_mount_target(target, privileged).map_err(|source| EditError::MountTarget {
        target: target.clone(),
        source,
    })?;
    let host = &mount.host_path;
    check_absolute(host).map_err(|source| EditError::MountHost {
        target: target.clone(),
        host: host.clone(),
        source,
    })?;
    match std::fs::symlink_metadata(Path::new(host)) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(EditError::MountSymlink {
                target: target.clone(),
                host: host.clone(),
            })
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(EditError::MountMissing {
                target: target.clone(),
                host: host.clone(),
            })
        }
        Err(source) => {
            return Err(EditError::Io {
                path: host.clone(),
                source,
            })
        }
    }
    let options = MountOptions::parse(target, &mount.options)?;
    let kind = mount.kind.as_deref().unwrap_or("");
    let is_bind = kind == "bind" || (matches!(kind, "" | "none") && options.bind);
    if !is_bind {
        return Err(EditError::MountType {
            target: target.clone(),
            kind: kind.to_owned(),
        });
    }
    Ok(MountSpec {
        container_path: target.clone(),
        host_path: host.clone(),
        readonly: options.readonly,
        propagation: options.propagation,
        selinux_relabel: false,
        recursive_read_only: false,
        image: None,
        flags: options.flags,
    })
}

/// The mount options pvecri can honour on a bind mount.
#[derive(Debug, Default)]
struct MountOptions {
    /// `bind` or `rbind` was given. pvecri's binds are always recursive.
    bind: bool,
    readonly: bool,
    flags: MountFlags,
    propagation: Propagation,
}

impl MountOptions {
    fn parse(target: &str, options: &[String]) -> Result<Self, EditError> {
        let mut out = MountOptions::default();
        for option in options {
            match option.as_str() {
                "bind" | "rbind" => out.bind = true,
                "ro" => out.readonly = true,
                "rw" => out.readonly = false,
                "nosuid" => out.flags.nosuid = true,
                "suid" => out.flags.nosuid = false,
                "nodev" => out.flags.nodev = true,
                "dev" => out.flags.nodev = false,
                "noexec" => out.flags.noexec = true,
                "exec" => out.flags.noexec = false,
                "private" | "rprivate" => out.propagation = Propagation::Private,
                "slave" | "rslave" => out.propagation = Propagation::Slave,
                "shared" | "rshared" => out.propagation = Propagation::Shared,
                other => {
                    return Err(EditError::MountOption {
                        target: target.to_owned(),
                        option: other.to_owned(),
                    })
                }
            }
        }
        Ok(out)
    }
}
