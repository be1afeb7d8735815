//! The confinement pvecri-init applies before exec: masked and read-only
//! paths, a read-only root, the capability sets and the seccomp filter.
//! Everything arrives resolved in the spec; this module only talks to the
//! kernel (and libseccomp).

use std::ffi::CString;

use crate::spec::{Action, CmpOp, Seccomp, Spec};
use crate::sys::{self, Errno};

/// Why confinement could not be applied.
#[derive(Debug)]
pub(crate) enum SecurityError {
    Mask { path: String, errno: Errno },
    ReadOnly { path: String, errno: Errno },
    Capabilities { step: &'static str, errno: Errno },
    Seccomp { message: String },
    AppArmor { profile: String, errno: Errno },
}

impl std::fmt::Display for SecurityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Mask { path, errno } => write!(f, "mask {path}: {errno}"),
            Self::ReadOnly { path, errno } => write!(f, "make {path} read-only: {errno}"),
            Self::Capabilities { step, errno } => write!(f, "capabilities ({step}): {errno}"),
            Self::Seccomp { message } => write!(f, "seccomp: {message}"),
            Self::AppArmor { profile, errno } => write!(f, "AppArmor profile {profile}: {errno}"),
        }
    }
}

impl std::error::Error for SecurityError {}

/// Masked paths, read-only paths, recursively read-only volumes and the
/// read-only root, in that order
/// (a read-only root would not stop the others, but keeps them last to
/// touch a writable tree). Paths missing from the image are skipped.
pub(crate) fn apply_mounts(spec: &Spec) -> Result<(), SecurityError> {
    for path in &spec.masked_paths {
        let c = cstring(path);
        match sys::mask_path(&c) {
            Ok(()) | Err(Errno(libc::ENOENT)) => {}
            Err(errno) => {
                return Err(SecurityError::Mask {
                    path: path.clone(),
                    errno,
                })
            }
        }
    }
    for path in &spec.readonly_paths {
        let c = cstring(path);
        match sys::bind_readonly(&c) {
            Ok(()) | Err(Errno(libc::ENOENT)) => {}
            Err(errno) => {
                return Err(SecurityError::ReadOnly {
                    path: path.clone(),
                    errno,
                })
            }
        }
    }
    for path in &spec.recursive_readonly {
        // Not skipped when missing: liblxc made these mount points.
        sys::readonly_recursive(&cstring(path)).map_err(|errno| SecurityError::ReadOnly {
            path: path.clone(),
            errno,
        })?;
    }
    if spec.readonly_rootfs {
        sys::remount_readonly(c"/").map_err(|errno| SecurityError::ReadOnly {
            path: "/".into(),
            errno,
        })?;
    }
    Ok(())
}

/// Drops every capability outside `keep` from the bounding set; needs
/// CAP_SETPCAP, so it runs before the uid changes.
pub(crate) fn drop_bounding(keep: u64) -> Result<(), SecurityError> {
    let last = sys::last_cap();
    for cap in 0..=last {
        if keep & (1 << cap) == 0 {
            sys::drop_bounding(cap).map_err(|errno| SecurityError::Capabilities {
                step: "bounding set",
                errno,
            })?;
        }
    }
    Ok(())
}

/// Sets effective and permitted to `keep` (limited to what is still
/// permitted: this node may lack some, such as CAP_SYS_RESOURCE), and
/// inheritable to `ambient` only (an inheritable set would hand
/// capabilities to file-capability binaries; ambient ones must be in it),
/// then raises `ambient`.
pub(crate) fn set_capabilities(keep: u64, ambient: u64) -> Result<(), SecurityError> {
    let err = |step| move |errno| SecurityError::Capabilities { step, errno };
    let current = sys::capget().map_err(err("capget"))?;
    let wanted = keep & current.permitted;
    sys::capset(sys::CapSets {
        effective: wanted,
        permitted: wanted,
        inheritable: ambient & wanted,
    })
    .map_err(err("capset"))?;
    for cap in 0..=sys::last_cap() {
        if ambient & wanted & (1 << cap) != 0 {
            sys::raise_ambient(cap).map_err(err("ambient set"))?;
        }
    }
    Ok(())
}

/// Builds and loads the filter. libseccomp must not set no_new_privs on
/// its own: that is the spec's decision (the caller loads the filter
/// while still holding CAP_SYS_ADMIN when no_new_privs is off).
pub(crate) fn load_seccomp(filter: &Seccomp) -> Result<(), SecurityError> {
    use libseccomp::{
        ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterAttr, ScmpFilterContext,
        ScmpSyscall,
    };
    let fail = |what: &str, e: libseccomp::error::SeccompError| SecurityError::Seccomp {
        message: format!("{what}: {e}"),
    };
    let action = |a: Action| match a {
        Action::Allow => ScmpAction::Allow,
        Action::Errno(n) => ScmpAction::Errno(i32::from(n)),
        Action::KillProcess => ScmpAction::KillProcess,
        Action::KillThread => ScmpAction::KillThread,
        Action::Trap => ScmpAction::Trap,
        Action::Log => ScmpAction::Log,
        Action::Trace(n) => ScmpAction::Trace(n),
    };
    let mut ctx =
        ScmpFilterContext::new(action(filter.default_action)).map_err(|e| fail("new filter", e))?;
    ctx.set_filter_attr(ScmpFilterAttr::CtlNnp, 0)
        .map_err(|e| fail("disable libseccomp's no_new_privs", e))?;
    // 32-bit programs on x86_64 enter through other syscall tables; without
    // these they would hit the bad-arch action and be killed.
    if ScmpArch::native() == ScmpArch::X8664 {
        for arch in [ScmpArch::X86, ScmpArch::X32] {
            ctx.add_arch(arch)
                .map_err(|e| fail("add architecture", e))?;
        }
    }
    for rule in &filter.rules {
        let act = action(rule.action);
        if act == action(filter.default_action) {
            // libseccomp refuses rules that repeat the default action.
            continue;
        }
        let conditions: Vec<ScmpArgCompare> = rule
            .args
            .iter()
            .map(|a| {
                let op = match a.op {
                    CmpOp::Ne => ScmpCompareOp::NotEqual,
                    CmpOp::Lt => ScmpCompareOp::Less,
                    CmpOp::Le => ScmpCompareOp::LessOrEqual,
                    CmpOp::Eq => ScmpCompareOp::Equal,
                    CmpOp::Ge => ScmpCompareOp::GreaterEqual,
                    CmpOp::Gt => ScmpCompareOp::Greater,
                    // OCI's order: `value` is the mask, `value_two` the datum.
                    CmpOp::MaskedEq => ScmpCompareOp::MaskedEqual(a.value),
                };
                let datum = if a.op == CmpOp::MaskedEq {
                    a.value_two
                } else {
                    a.value
                };
                ScmpArgCompare::new(a.index, op, datum)
            })
            .collect();
        for name in &rule.names {
            // Names this kernel's tables do not know are skipped, as runc does.
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let added = if conditions.is_empty() {
                ctx.add_rule(act, syscall)
            } else {
                ctx.add_rule_conditional(act, syscall, &conditions)
            };
            added.map_err(|e| fail(&format!("rule for {name}"), e))?;
        }
    }
    ctx.load().map_err(|e| fail("load", e))
}

fn cstring(path: &str) -> CString {
    CString::new(path).expect("validated by Spec::parse")
}
