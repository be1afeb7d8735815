//! Making a container's cgroup without liblxc, for a container whose
//! processes CRIU restores: the directory on every hierarchy, parents as
//! liblxc would leave them, then the same `lxc.cgroup*.` settings the LXC
//! config holds — limits written to their files, and the device policy
//! as `devices.*` files on a v1 devices hierarchy or as the cgroup2 device
//! program ([`super::device_bpf`]).

use std::io;
use std::path::{Path, PathBuf};

use super::tree::Hierarchy;
use crate::container::devices::Rule;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CreateError {
    #[error("cgroup {0:?} is not a relative path inside the hierarchies")]
    BadPath(String),
    #[error("cannot create cgroup {dir}")]
    Mkdir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {value:?} to {file}")]
    Write {
        file: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("bad device rule {0:?}")]
    Rule(String),
    #[error(transparent)]
    Devices(#[from] super::device_bpf::DeviceBpfError),
}

fn components(rel: &str) -> Result<Vec<&str>, CreateError> {
    let parts: Vec<&str> = rel.trim_matches('/').split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(CreateError::BadPath(rel.to_owned()));
    }
    Ok(parts)
}

fn write(file: PathBuf, value: &str) -> Result<(), CreateError> {
    std::fs::write(&file, value).map_err(|source| CreateError::Write {
        file,
        value: value.to_owned(),
        source,
    })
}

/// Creates `rel` on every hierarchy; returns its directories. On cgroup2
/// every ancestor hands its controllers down (`cgroup.subtree_control`);
/// on a v1 cpuset hierarchy every new cgroup gets its parent's CPUs and
/// memory nodes, without which no process may enter it.
pub(crate) fn make(hierarchies: &[Hierarchy], rel: &str) -> Result<Vec<PathBuf>, CreateError> {
    let parts = components(rel)?;
    let mut dirs = Vec::new();
    for h in hierarchies {
        let mut dir = h.mount_point.clone();
        let cpuset = !h.v2 && dir.join("cpuset.cpus").exists();
        for part in &parts {
            if h.v2 {
                delegate_controllers(&dir);
            }
            let child = dir.join(part);
            match std::fs::create_dir(&child) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(source) => return Err(CreateError::Mkdir { dir: child, source }),
            }
            if cpuset {
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let current = std::fs::read_to_string(child.join(file)).unwrap_or_default();
                    if current.trim().is_empty() {
                        let above = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
                        write(child.join(file), above.trim())?;
                    }
                }
            }
            dir = child;
        }
        dirs.push(dir);
    }
    Ok(dirs)
}

/// Enables every controller `dir` has for its children. Best effort: a
/// controller the parent does not pass down, or one busy with processes
/// in `dir`, stays off (as it would under liblxc).
fn delegate_controllers(dir: &Path) {
    let Ok(available) = std::fs::read_to_string(dir.join("cgroup.controllers")) else {
        return;
    };
    let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    for c in available.split_whitespace() {
        if !enabled.split_whitespace().any(|e| e == c) {
            let _ = std::fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
        }
    }
}

/// Applies the LXC config's cgroup settings (full keys,
/// `lxc.cgroup2.memory.max` or `lxc.cgroup.memory.limit_in_bytes`) to the
/// container's cgroup `rel`; `file_dir` says where a v1 file lives.
pub(crate) fn apply(
    hierarchies: &[Hierarchy],
    rel: &str,
    settings: &[(String, String)],
    file_dir: impl Fn(&str) -> PathBuf,
) -> Result<(), CreateError> {
    let mut rules = Vec::new();
    let mut v2_devices = false;
    for (key, value) in settings {
        if let Some(file) = key.strip_prefix("lxc.cgroup2.") {
            match file {
                "devices.deny" => v2_devices = true,
                "devices.allow" => {
                    v2_devices = true;
                    rules.push(Rule::parse(value).ok_or_else(|| CreateError::Rule(value.clone()))?);
                }
                _ => write(file_dir(file).join(file), value)?,
            }
        } else if let Some(file) = key.strip_prefix("lxc.cgroup.") {
            write(file_dir(file).join(file), value)?;
        }
    }
    if v2_devices {
        let parts = components(rel)?;
        for h in hierarchies.iter().filter(|h| h.v2) {
            let dir = parts.iter().fold(h.mount_point.clone(), |d, p| d.join(p));
            super::device_bpf::attach(&dir, &rules)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_only() {
        assert!(components("k/p/c").is_ok());
        for bad in ["", "/", "a/../b", "a//b", "./a"] {
            assert!(components(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn made_on_every_hierarchy_with_v1_cpusets_filled_from_above() {
        let tmp = tempfile::tempdir().unwrap();
        let cpuset = tmp.path().join("cpuset");
        let memory = tmp.path().join("memory");
        for d in [&cpuset, &memory] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(cpuset.join("cpuset.cpus"), "0-1\n").unwrap();
        std::fs::write(cpuset.join("cpuset.mems"), "0\n").unwrap();
        let h = |p: &Path| Hierarchy {
            mount_point: p.to_owned(),
            v2: false,
            freezer: false,
        };
        let dirs = make(&[h(&cpuset), h(&memory)], "k/c1").unwrap();
        assert_eq!(dirs, [cpuset.join("k/c1"), memory.join("k/c1")]);
        // A tmpfs has no cgroup files of its own: what was written is what
        // the kernel would have been given.
        assert_eq!(
            std::fs::read_to_string(cpuset.join("k/c1/cpuset.cpus")).unwrap(),
            "0-1"
        );
        assert!(memory.join("k/c1").is_dir());
        // Idempotent.
        make(&[h(&cpuset), h(&memory)], "k/c1").unwrap();
    }

    #[test]
    fn v1_settings_are_written_to_their_files() {
        let tmp = tempfile::tempdir().unwrap();
        let settings = vec![
            (
                "lxc.cgroup.memory.limit_in_bytes".to_owned(),
                "1048576".to_owned(),
            ),
            ("lxc.cgroup.devices.deny".to_owned(), "a".to_owned()),
        ];
        apply(&[], "c1", &settings, |_| tmp.path().to_owned()).unwrap();
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("memory.limit_in_bytes")).unwrap(),
            "1048576"
        );
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("devices.deny")).unwrap(),
            "a"
        );
    }
}
