//! Device access of a container: the device cgroup policy, and the host
//! device nodes it is given.
//!
//! Non-privileged containers get a default-deny policy with the short
//! allow-list every OCI runtime gives (the pseudo devices, terminals, fuse
//! and tun), plus whatever CRI `devices` the kubelet asks for. Creating any
//! node stays allowed (`m`), as with runc: a node a container makes with
//! CAP_MKNOD is useless unless the policy lets it open it. Privileged
//! containers keep the node's devices: no policy, and every host device
//! node bound into their `/dev`.
//!
//! liblxc applies the rules as `lxc.cgroup.devices.*` on a v1 devices
//! controller and turns `lxc.cgroup2.devices.*` into the container's device
//! program on cgroup2; with no rule at all it attaches nothing, which is why
//! the policy is always written in full.

use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::cgroups::CgroupLayout;
use crate::container::DeviceSpec;

/// Character or block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Char,
    Block,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::Char => 'c',
            Kind::Block => 'b',
        }
    }
}

/// One allow rule: `c 1:3 rwm`; `None` for a wildcard (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub kind: Kind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// A subset of `rwm`.
    pub access: String,
}

impl Rule {
    /// Reads a rule back from its text (`c 1:3 rwm`, `b *:* m`).
    pub(crate) fn parse(text: &str) -> Option<Rule> {
        let mut words = text.split_whitespace();
        let kind = match words.next()? {
            "c" => Kind::Char,
            "b" => Kind::Block,
            _ => return None,
        };
        let (major, minor) = words.next()?.split_once(':')?;
        let num = |n: &str| -> Option<Option<u32>> {
            if n == "*" {
                Some(None)
            } else {
                n.parse().ok().map(Some)
            }
        };
        let access = words.next()?;
        if words.next().is_some() || access.is_empty() || !access.chars().all(|c| "rwm".contains(c))
        {
            return None;
        }
        Some(rule(kind, num(major)?, num(minor)?, access))
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let num = |n: Option<u32>| n.map_or("*".to_owned(), |n| n.to_string());
        write!(
            f,
            "{} {}:{} {}",
            self.kind.letter(),
            num(self.major),
            num(self.minor),
            self.access
        )
    }
}

fn rule(kind: Kind, major: Option<u32>, minor: Option<u32>, access: &str) -> Rule {
    Rule {
        kind,
        major,
        minor,
        access: access.to_owned(),
    }
}

/// The allow-list of a non-privileged container before its CRI devices.
pub(crate) fn default_rules() -> Vec<Rule> {
    use Kind::{Block, Char};
    let rw = |major, minor| rule(Char, Some(major), Some(minor), "rwm");
    vec![
        // Creating nodes is harmless while opening them is refused.
        rule(Char, None, None, "m"),
        rule(Block, None, None, "m"),
        rw(1, 3),                           // null
        rw(1, 5),                           // zero
        rw(1, 7),                           // full
        rw(1, 8),                           // random
        rw(1, 9),                           // urandom
        rw(5, 0),                           // tty
        rw(5, 1),                           // console
        rw(5, 2),                           // ptmx
        rule(Char, Some(136), None, "rwm"), // pts/*
        rw(10, 200),                        // net/tun
        rw(10, 229),                        // fuse
    ]
}

/// `lxc.cgroup[2].devices.*` settings: deny everything, then allow `rules`.
pub(crate) fn cgroup_settings(layout: &CgroupLayout, rules: &[Rule]) -> Vec<(String, String)> {
    let prefix = match layout {
        CgroupLayout::Unified => "lxc.cgroup2.devices",
        _ => "lxc.cgroup.devices",
    };
    std::iter::once((format!("{prefix}.deny"), "a".to_owned()))
        .chain(
            rules
                .iter()
                .map(|r| (format!("{prefix}.allow"), r.to_string())),
        )
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DeviceError {
    #[error("device {path} does not exist on the node")]
    Missing { path: String },
    #[error("{path} is not a device node or a directory of device nodes")]
    NotADevice { path: String },
    #[error("cannot read device {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A host device node the container gets, and the rule that opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostDevice {
    pub host_path: PathBuf,
    /// Absolute path inside the container (under /dev).
    pub container_path: String,
    pub rule: Rule,
}

/// The kind and numbers of a device node; `None` for anything else.
pub(crate) fn node_of(meta: &std::fs::Metadata) -> Option<(Kind, u32, u32)> {
    let kind = if meta.file_type().is_char_device() {
        Kind::Char
    } else if meta.file_type().is_block_device() {
        Kind::Block
    } else {
        return None;
    };
    let rdev = meta.rdev();
    Some((kind, libc::major(rdev), libc::minor(rdev)))
}

/// The nodes a CRI `Device` names: one device node, or every device node
/// under a directory (as containerd does, for `/dev/snd` and the like).
pub(crate) fn lookup(spec: &DeviceSpec) -> Result<Vec<HostDevice>, DeviceError> {
    let host = Path::new(&spec.host_path);
    let meta = std::fs::metadata(host).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => DeviceError::Missing {
            path: spec.host_path.clone(),
        },
        _ => DeviceError::Io {
            path: spec.host_path.clone(),
            source,
        },
    })?;
    if let Some((kind, major, minor)) = node_of(&meta) {
        return Ok(vec![HostDevice {
            host_path: host.to_owned(),
            container_path: spec.container_path.clone(),
            rule: rule(kind, Some(major), Some(minor), &spec.permissions),
        }]);
    }
    if !meta.is_dir() {
        return Err(DeviceError::NotADevice {
            path: spec.host_path.clone(),
        });
    }
    let mut out = Vec::new();
    walk_nodes(host, &mut |path, kind, major, minor| {
        let rel = path.strip_prefix(host).expect("walked under host");
        out.push(HostDevice {
            host_path: path.to_owned(),
            container_path: format!(
                "{}/{}",
                spec.container_path.trim_end_matches('/'),
                rel.display()
            ),
            rule: rule(kind, Some(major), Some(minor), &spec.permissions),
        });
    })
    .map_err(|source| DeviceError::Io {
        path: spec.host_path.clone(),
        source,
    })?;
    Ok(out)
}

/// Directories of the node's /dev a privileged container does not take:
/// its own devpts, shm and mqueue, and liblxc's links.
const SKIPPED_DIRS: &[&str] = &[
    "pts",
    "shm",
    "mqueue",
    "fd",
    "hugepages",
    ".lxc",
    ".lxd-mounts",
];

/// Nodes liblxc's autodev creates itself, or sets up from the container's
/// own devpts and console.
const AUTODEV_NODES: &[&str] = &[
    "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx",
];

/// Every device node under `dev` (the node's /dev) for a privileged
/// container, with the path it gets inside.
pub(crate) fn host_nodes(dev: &Path) -> Vec<HostDevice> {
    let mut out = Vec::new();
    let _ = walk_nodes(dev, &mut |path, kind, major, minor| {
        let rel = path.strip_prefix(dev).expect("walked under dev");
        let top = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        let is_control = rel.to_string_lossy().chars().any(char::is_control);
        if SKIPPED_DIRS.contains(&top.as_str())
            || (rel.components().count() == 1 && AUTODEV_NODES.contains(&top.as_str()))
            || is_control
        {
            return;
        }
        out.push(HostDevice {
            host_path: path.to_owned(),
            container_path: format!("/dev/{}", rel.display()),
            rule: rule(kind, Some(major), Some(minor), "rwm"),
        });
    });
    out
}

/// Calls `found` for each device node below `dir` (not following
/// symlinks, at most 8 levels deep).
fn walk_nodes(
    dir: &Path,
    found: &mut dyn FnMut(&Path, Kind, u32, u32),
) -> Result<(), std::io::Error> {
    fn inner(
        dir: &Path,
        depth: usize,
        found: &mut dyn FnMut(&Path, Kind, u32, u32),
    ) -> Result<(), std::io::Error> {
        if depth > 8 {
            return Ok(());
        }
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                let name = entry.file_name();
                if depth == 0 && SKIPPED_DIRS.iter().any(|s| name == *s) {
                    continue;
                }
                // An unreadable subdirectory is not worth failing for.
                let _ = inner(&path, depth + 1, found);
            } else if let Some((kind, major, minor)) = node_of(&meta) {
                found(&path, kind, major, minor);
            }
        }
        Ok(())
    }
    inner(dir, 0, found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_back_from_their_text() {
        for r in default_rules() {
            assert_eq!(Rule::parse(&r.to_string()), Some(r.clone()), "{r}");
        }
        for bad in [
            "",
            "a",
            "x 1:3 rwm",
            "c 1 rwm",
            "c 1:3 rwx",
            "c 1:3",
            "c 1:3 r w",
        ] {
            assert_eq!(Rule::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rules_render_as_the_kernel_reads_them() {
        let r = default_rules();
        assert_eq!(r[0].to_string(), "c *:* m");
        assert_eq!(r[1].to_string(), "b *:* m");
        assert!(r.iter().any(|r| r.to_string() == "c 1:3 rwm"));
        assert!(r.iter().any(|r| r.to_string() == "c 136:* rwm"));
        // No block device is ever readable or writable by default.
        assert!(r.iter().all(|r| r.kind == Kind::Char || r.access == "m"));
    }

    #[test]
    fn settings_deny_first_on_both_hierarchies() {
        let rules = vec![rule(Kind::Char, Some(1), Some(3), "rwm")];
        let v1 = cgroup_settings(&CgroupLayout::Legacy, &rules);
        assert_eq!(
            v1,
            vec![
                ("lxc.cgroup.devices.deny".to_owned(), "a".to_owned()),
                (
                    "lxc.cgroup.devices.allow".to_owned(),
                    "c 1:3 rwm".to_owned()
                ),
            ]
        );
        let v2 = cgroup_settings(&CgroupLayout::Unified, &rules);
        assert_eq!(v2[0].0, "lxc.cgroup2.devices.deny");
        assert_eq!(v2[1].0, "lxc.cgroup2.devices.allow");
        let hybrid = cgroup_settings(
            &CgroupLayout::Hybrid {
                unified_at: "/sys/fs/cgroup/unified".into(),
            },
            &rules,
        );
        assert_eq!(hybrid[0].0, "lxc.cgroup.devices.deny");
    }

    #[test]
    fn cri_devices_are_looked_up_on_the_node() {
        let spec = |host: &str| DeviceSpec {
            host_path: host.to_owned(),
            container_path: "/dev/xnull".to_owned(),
            permissions: "rw".to_owned(),
        };
        let found = lookup(&spec("/dev/null")).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].rule.to_string(), "c 1:3 rw");
        assert_eq!(found[0].container_path, "/dev/xnull");
        assert!(matches!(
            lookup(&spec("/dev/pvecri-no-such-device")),
            Err(DeviceError::Missing { .. })
        ));
        assert!(matches!(
            lookup(&spec("/etc/hostname")),
            Err(DeviceError::NotADevice { .. })
        ));
    }

    #[test]
    fn privileged_nodes_skip_what_the_container_has_of_its_own() {
        let nodes = host_nodes(Path::new("/dev"));
        assert!(!nodes.iter().any(|n| n.container_path == "/dev/null"));
        assert!(!nodes
            .iter()
            .any(|n| n.container_path.starts_with("/dev/pts/")));
        if Path::new("/dev/loop-control").exists() {
            assert!(nodes
                .iter()
                .any(|n| n.container_path == "/dev/loop-control"));
        }
    }
}
