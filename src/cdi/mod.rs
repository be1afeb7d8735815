//! CDI (Container Device Interface) devices: the kubelet names devices as
//! `vendor/class=device` (CRI `ContainerConfig.CDI_devices`), the node's
//! spec files say what each means, and CreateContainer applies that.
//!
//! - `name`: fully-qualified names, checked where a request enters.
//! - `spec`: the spec file format.
//! - `registry`: the spec files of `cdi_spec_dirs` that root alone could
//!   have written, later directories overriding earlier ones.
//! - `edits`: a device's edits (and its spec's, once per spec) turned into
//!   pvecri's container config, so that they take the same paths as CRI
//!   devices, mounts and environment.
//!
//! Only the kubelet's field counts: the `cdi.k8s.io/*` annotations are
//! set by pod authors and are not read (docs/security.md).

mod edits;
mod name;
mod registry;
mod spec;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::path::PathBuf;

pub(crate) use edits::{EditError, Edits};
pub(crate) use name::{parse as parse_name, NameError};
use registry::Registry;

/// Why the requested CDI devices cannot be given.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CdiError {
    #[error("CDI device name")]
    BadName(#[source] NameError),
    #[error("CDI device {device} is not defined by any usable spec file in {dirs}")]
    UnknownDevice { device: String, dirs: String },
    #[error("CDI device {device} (spec {}): pvecri does not apply {edit} edits", spec.display())]
    Unsupported {
        device: String,
        spec: PathBuf,
        edit: &'static str,
    },
    #[error("CDI device {device} (spec {})", spec.display())]
    Edit {
        device: String,
        spec: PathBuf,
        #[source]
        source: Box<EditError>,
    },
}

/// Resolves `names` against the spec files of `dirs` (read now) and
/// merges their edits: each spec's own edits once, before its first
/// device's, then each device's in the order asked; a name asked twice
/// counts once.
pub(crate) fn resolve(
    dirs: &[PathBuf],
    names: &[String],
    privileged: bool,
) -> Result<Edits, CdiError> {
    if names.is_empty() {
        return Ok(Edits::default());
    }
    resolve_in(&Registry::load(dirs), dirs, names, privileged)
}

fn resolve_in(
    registry: &Registry,
    dirs: &[PathBuf],
    names: &[String],
    privileged: bool,
) -> Result<Edits, CdiError> {
    let mut out = Edits::default();
    let mut asked = BTreeSet::new();
    let mut specs_applied = BTreeSet::new();
    for raw in names {
        let name = parse_name(raw).map_err(CdiError::BadName)?;
        if !asked.insert(name.clone()) {
            continue;
        }
        let (at, loaded, device) =
            registry
                .device(&name)
                .ok_or_else(|| CdiError::UnknownDevice {
                    device: name.to_string(),
                    dirs: dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
        let mut parts = Vec::with_capacity(2);
        if specs_applied.insert(at.spec) {
            parts.push(&loaded.spec.container_edits);
        }
        parts.push(&device.container_edits);
        for edits in parts {
            if let Some(edit) = edits.unsupported().into_iter().next() {
                return Err(CdiError::Unsupported {
                    device: name.to_string(),
                    spec: loaded.path.clone(),
                    edit,
                });
            }
            out.add(edits, privileged)
                .map_err(|source| CdiError::Edit {
                    device: name.to_string(),
                    spec: loaded.path.clone(),
                    source: Box::new(source),
                })?;
        }
    }
    Ok(out)
}
