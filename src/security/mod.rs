//! The security context of a container, resolved by the daemon into what
//! pvecri-init enforces: capability masks, masked and read-only paths and
//! a seccomp filter (docs/security.md).

pub(crate) mod apparmor;
pub(crate) mod caps;
pub(crate) mod input;
pub(crate) mod paths;
pub(crate) mod seccomp;

use serde::{Deserialize, Serialize};

/// A seccomp or AppArmor profile choice, as CRI's `SecurityProfile`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Profile {
    /// No confinement (CRI's nil profile, and `Unconfined`).
    #[default]
    Unconfined,
    RuntimeDefault,
    /// A seccomp profile file (absolute path) or an AppArmor profile name.
    Localhost(String),
}
