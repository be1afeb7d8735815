//! From a container's security context to what pvecri-init enforces.

use super::error::RuntimeError;
use crate::container::ContainerConfig;
use crate::security::{apparmor, caps, paths, seccomp, Profile};

/// The confinement fields of the process spec.
#[derive(Debug, Default)]
pub(crate) struct Confinement {
    pub capabilities: Option<u64>,
    pub ambient: u64,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub readonly_rootfs: bool,
    pub no_new_privs: bool,
    pub seccomp: Option<seccomp::Filter>,
    pub apparmor: Option<String>,
}

/// Resolves capabilities, paths and profiles. Privileged containers keep
/// every capability and get no masks, filter or AppArmor profile.
pub(crate) fn confinement(config: &ContainerConfig) -> Result<Confinement, RuntimeError> {
    let sc = &config.security;
    let invalid = |field: &'static str, message: String| RuntimeError::Invalid { field, message };
    // Checked even when privileged: a profile asked for on a node that
    // cannot enforce it is an error rather than a silent downgrade.
    let apparmor =
        apparmor::resolve_requested(sc.apparmor.as_ref(), apparmor::enabled(), config.privileged)
            .map_err(|m| invalid("config.linux.security_context.apparmor", m))?;
    // A Localhost profile must be loaded: the workload would otherwise
    // fail at exec, after the container was created (as containerd and
    // CRI-O, refuse it here with the profile's name).
    if let Some(name) = &apparmor {
        if apparmor::is_loaded(name) == Some(false) {
            return Err(invalid(
                "config.linux.security_context.apparmor",
                format!("AppArmor profile {name:?} is not loaded on this node (load it with apparmor_parser)"),
            ));
        }
    }
    if config.privileged {
        return Ok(Confinement {
            readonly_rootfs: sc.readonly_rootfs,
            no_new_privs: sc.no_new_privs,
            ..Default::default()
        });
    }
    let keep = caps::resolve(&sc.add_capabilities, &sc.drop_capabilities)
        .map_err(|e| invalid("config.linux.security_context.capabilities", e.to_string()))?;
    let ambient = caps::resolve(&sc.add_ambient_capabilities, &["ALL".to_owned()])
        .map_err(|e| invalid("config.linux.security_context.capabilities", e.to_string()))?;
    let or_default = |given: &[String], default: &[&str]| {
        if given.is_empty() {
            default.iter().map(|s| s.to_string()).collect()
        } else {
            given.to_vec()
        }
    };
    let filter = match &sc.seccomp {
        Profile::Unconfined => None,
        Profile::RuntimeDefault => Some(seccomp::runtime_default(keep)),
        Profile::Localhost(path) => Some(
            seccomp::load_localhost(std::path::Path::new(path), keep).map_err(|e| {
                invalid(
                    "config.linux.security_context.seccomp.localhost_ref",
                    e.to_string(),
                )
            })?,
        ),
    };
    Ok(Confinement {
        capabilities: Some(keep | ambient),
        ambient,
        masked_paths: or_default(&sc.masked_paths, paths::DEFAULT_MASKED),
        readonly_paths: or_default(&sc.readonly_paths, paths::DEFAULT_READONLY),
        readonly_rootfs: sc.readonly_rootfs,
        no_new_privs: sc.no_new_privs,
        seccomp: filter,
        apparmor,
    })
}
