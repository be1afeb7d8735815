//! The two node conditions the kubelet gates on.

use crate::config::Config;
use crate::lxc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConditionKind {
    RuntimeReady,
    NetworkReady,
}

impl ConditionKind {
    /// The condition type string the kubelet matches on.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ConditionKind::RuntimeReady => "RuntimeReady",
            ConditionKind::NetworkReady => "NetworkReady",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Condition {
    pub kind: ConditionKind,
    pub ready: bool,
    /// CamelCase machine-readable reason, empty when ready.
    pub reason: String,
    pub message: String,
}

impl Condition {
    fn ready(kind: ConditionKind) -> Self {
        Self {
            kind,
            ready: true,
            reason: String::new(),
            message: String::new(),
        }
    }

    fn not_ready(kind: ConditionKind, reason: &str, message: String) -> Self {
        Self {
            kind,
            ready: false,
            reason: reason.to_owned(),
            message,
        }
    }
}

/// The runtime is ready when liblxc is new enough and pvecri's lxc path exists.
pub(super) fn runtime_condition(config: &Config) -> Condition {
    let version = lxc::version();
    match lxc::parse_version(&version) {
        Some((major, _)) if major >= 5 => {}
        _ => {
            return Condition::not_ready(
                ConditionKind::RuntimeReady,
                "LxcTooOld",
                format!("liblxc {version} is older than the 5.0 pvecri needs"),
            )
        }
    }
    let lxc_path = config.lxc_path();
    if !lxc_path.is_dir() {
        return Condition::not_ready(
            ConditionKind::RuntimeReady,
            "LxcPathMissing",
            format!("lxc path {} does not exist", lxc_path.display()),
        );
    }
    if !config.init_path.is_file() {
        return Condition::not_ready(
            ConditionKind::RuntimeReady,
            "InitMissing",
            format!(
                "pvecri-init is not at {} (init_path); build it with scripts/build-init.sh",
                config.init_path.display()
            ),
        );
    }
    Condition::ready(ConditionKind::RuntimeReady)
}

/// Ready once the network backend has set up the node side; else its reason.
pub(super) fn network_condition(readiness: Result<(), crate::network::NotReady>) -> Condition {
    match readiness {
        Ok(()) => Condition::ready(ConditionKind::NetworkReady),
        Err(crate::network::NotReady(message)) => Condition::not_ready(
            ConditionKind::NetworkReady,
            "NetworkPluginNotReady",
            message,
        ),
    }
}
