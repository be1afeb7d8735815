//! The CDI devices of the node: every spec file in the configured
//! directories, read again for each CreateContainer that asks for a CDI
//! device (a driver installer may have written one since).
//!
//! A spec file says which host paths a container gets, so only root may
//! have written it: a file that is a symlink, not a regular file, not
//! owned by root or writable by its group or others is ignored with a
//! warning, as is a whole directory that is not root's or is writable by
//! others. An invalid file is ignored with a warning too; the devices of
//! the other files stay usable.
//!
//! Files are read in name order. A device defined in a later directory
//! replaces one of an earlier directory; a device defined twice in one
//! directory is ambiguous and is not offered at all.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use super::name::{self, QualifiedName};
use super::spec::{Device, Spec, KNOWN_VERSIONS};

/// The biggest spec file read (a GPU driver's spec with every library
/// it mounts is tens of KiB).
const MAX_SPEC_BYTES: u64 = 4 << 20;

/// Why a spec file or directory is ignored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpecFileError {
    #[error("it is a symlink")]
    Symlink,
    #[error("it is not a regular file")]
    NotRegular,
    #[error("it is not a directory")]
    NotADirectory,
    #[error("it is owned by uid {uid}, not root")]
    NotRoot { uid: u32 },
    #[error("its mode {mode:04o} lets others than its owner write it")]
    Writable { mode: u32 },
    #[error("it is larger than {MAX_SPEC_BYTES} bytes")]
    TooLarge,
    #[error("cannot read it")]
    Io(#[source] std::io::Error),
    #[error("it is not a valid CDI spec: {0}")]
    Parse(String),
    #[error("it is not a valid CDI spec: {0}")]
    Invalid(String),
}

/// A spec file that was read and checked.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub path: PathBuf,
    pub spec: Spec,
}

/// Where a device is defined: a spec and the device's index in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeviceRef {
    pub spec: usize,
    pub device: usize,
}

/// The devices found in the spec directories.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    specs: Vec<Loaded>,
    devices: BTreeMap<QualifiedName, DeviceRef>,
}

impl Registry {
    /// Reads the spec files of `dirs` (earliest first) that root owns.
    pub(crate) fn load(dirs: &[PathBuf]) -> Self {
        Self::load_owned_by(dirs, 0)
    }

    /// [`Registry::load`] trusting files of `owner` (tests run as anyone).
    pub(crate) fn load_owned_by(dirs: &[PathBuf], owner: u32) -> Self {
        let mut registry = Registry::default();
        for dir in dirs {
            registry.add_dir(dir, owner);
        }
        registry
    }

    /// The device named `name`, and its spec.
    pub(crate) fn device(&self, name: &QualifiedName) -> Option<(DeviceRef, &Loaded, &Device)> {
        let at = *self.devices.get(name)?;
        let loaded = &self.specs[at.spec];
        Some((at, loaded, &loaded.spec.devices[at.device]))
    }

    fn add_dir(&mut self, dir: &Path, owner: u32) {
        let entries = match trusted_dir(dir, owner) {
            Ok(Some(entries)) => entries,
            Ok(None) => {
                debug!(dir = %dir.display(), "no CDI spec directory");
                return;
            }
            Err(e) => {
                warn!(dir = %dir.display(), error = %crate::errors::chain(&e), "ignoring CDI spec directory");
                return;
            }
        };
        // name -> every definition in this directory
        let mut here: BTreeMap<QualifiedName, Vec<DeviceRef>> = BTreeMap::new();
        for file in entries {
            let path = dir.join(&file);
            let spec = match read_spec(&path, owner) {
                Ok(spec) => spec,
                Err(e) => {
                    warn!(path = %path.display(), error = %crate::errors::chain(&e), "ignoring CDI spec file");
                    continue;
                }
            };
            let index = self.specs.len();
            for (i, device) in spec.devices.iter().enumerate() {
                let name = name::qualify(&spec.kind, &device.name).expect("checked by read_spec");
                here.entry(name).or_default().push(DeviceRef {
                    spec: index,
                    device: i,
                });
            }
            self.specs.push(Loaded { path, spec });
        }
        for (name, defs) in here {
            match defs.as_slice() {
                [one] => {
                    self.devices.insert(name, *one);
                }
                _ => {
                    let paths: Vec<String> = defs
                        .iter()
                        .map(|d| self.specs[d.spec].path.display().to_string())
                        .collect();
                    warn!(device = %name, specs = ?paths, "CDI device defined by more than one spec file of a directory; not offering it");
                    self.devices.remove(&name);
                }
            }
        }
    }
}

/// The candidate file names of a spec directory, in name order, once the
/// directory is known to be root's alone; `None` when it does not exist.
fn trusted_dir(dir: &Path, owner: u32) -> Result<Option<Vec<String>>, SpecFileError> {
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SpecFileError::Io(e)),
    };
    if !meta.is_dir() {
        return Err(SpecFileError::NotADirectory);
    }
    check_owner(&meta, owner)?;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(SpecFileError::Io)? {
        let entry = entry.map_err(SpecFileError::Io)?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let is_spec = Path::new(&name)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "json" | "yaml" | "yml"));
        if is_spec && !entry.file_type().is_ok_and(|t| t.is_dir()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(Some(names))
}

/// Owned by `owner` and writable by nobody else.
fn check_owner(meta: &std::fs::Metadata, owner: u32) -> Result<(), SpecFileError> {
    if meta.uid() != owner {
        return Err(SpecFileError::NotRoot { uid: meta.uid() });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(SpecFileError::Writable { mode });
    }
    Ok(())
}

/// Reads and checks one spec file: never through a symlink, never a FIFO
/// or device, capped in size.
fn read_spec(path: &Path, owner: u32) -> Result<Spec, SpecFileError> {
    if std::fs::symlink_metadata(path)
        .map_err(SpecFileError::Io)?
        .file_type()
        .is_symlink()
    {
        return Err(SpecFileError::Symlink);
    }
    // O_NOFOLLOW: a file swapped for a link since is refused (ELOOP);
    // O_NONBLOCK: a FIFO does not hang the open.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => SpecFileError::Symlink,
            _ => SpecFileError::Io(e),
        })?;
    let meta = file.metadata().map_err(SpecFileError::Io)?;
    if !meta.is_file() {
        return Err(SpecFileError::NotRegular);
    }
    check_owner(&meta, owner)?;
    if meta.len() > MAX_SPEC_BYTES {
        return Err(SpecFileError::TooLarge);
    }
    let mut text = String::new();
    file.take(MAX_SPEC_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(SpecFileError::Io)?;
    if text.len() as u64 > MAX_SPEC_BYTES {
        return Err(SpecFileError::TooLarge);
    }
    let is_json = path.extension().is_some_and(|e| e == "json");
    let spec = parse(&text, is_json)?;
    check(&spec)?;
    Ok(spec)
}

/// A spec from JSON or YAML text.
pub(crate) fn parse(text: &str, json: bool) -> Result<Spec, SpecFileError> {
    if json {
        serde_json::from_str(text).map_err(|e| SpecFileError::Parse(e.to_string()))
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| SpecFileError::Parse(e.to_string()))
    }
}

/// What makes a parsed spec usable: a known version, a valid kind, at
/// least one device, valid and distinct device names. Edits are checked
/// when a device is used, so that the error reaches the request.
pub(crate) fn check(spec: &Spec) -> Result<(), SpecFileError> {
    let invalid = |m: String| SpecFileError::Invalid(m);
    let version = spec.cdi_version.trim_start_matches('v');
    if !KNOWN_VERSIONS.contains(&version) {
        return Err(invalid(format!(
            "unknown cdiVersion {:?} (pvecri knows {})",
            spec.cdi_version,
            KNOWN_VERSIONS.join(", ")
        )));
    }
    name::check_kind(&spec.kind).map_err(|e| invalid(e.to_string()))?;
    if spec.devices.is_empty() {
        return Err(invalid("it defines no device".to_owned()));
    }
    let mut seen = BTreeSet::new();
    for d in &spec.devices {
        name::qualify(&spec.kind, &d.name).map_err(|e| invalid(e.to_string()))?;
        if !seen.insert(d.name.as_str()) {
            return Err(invalid(format!("device {:?} is defined twice", d.name)));
        }
    }
    Ok(())
}
