//! `spec.json`: what the daemon tells pvecri-init to execute
//! (docs/lifecycle.md). One definition for both sides: the daemon writes
//! it, the static init reads it.
//!
//! Unknown fields are rejected: if a newer daemon asks for something an
//! older init does not know (a seccomp profile, say), failing the start is
//! safer than silently running the workload without it.

use serde::{Deserialize, Serialize};

/// runc's and containerd's `PATH` when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    /// argv; `args[0]` is searched in the spec's `PATH` when it has no `/`.
    pub args: Vec<String>,
    /// The complete environment (`KEY=VALUE`), nothing is inherited.
    #[serde(default)]
    pub env: Vec<String>,
    /// Absolute working directory, entered after dropping privileges.
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups; empty clears the inherited ones.
    #[serde(default)]
    pub additional_gids: Vec<u32>,
    #[serde(default)]
    pub no_new_privs: bool,
    /// Capabilities the workload keeps (bounding, permitted, effective and
    /// inheritable sets), as a bit mask of capability numbers; `None` keeps
    /// every capability (privileged containers).
    #[serde(default)]
    pub capabilities: Option<u64>,
    /// Capabilities also raised in the ambient set (kept across exec by a
    /// non-root workload).
    #[serde(default)]
    pub ambient_capabilities: u64,
    /// Paths hidden from the workload: files get /dev/null bound over
    /// them, directories an empty read-only tmpfs.
    #[serde(default)]
    pub masked_paths: Vec<String>,
    /// Paths re-mounted read-only.
    #[serde(default)]
    pub readonly_paths: Vec<String>,
    /// Volume mount points made read-only with every mount beneath them
    /// (CRI `recursive_read_only`).
    #[serde(default)]
    pub recursive_readonly: Vec<String>,
    #[serde(default)]
    pub readonly_rootfs: bool,
    /// The seccomp filter to load; `None` runs unconfined.
    #[serde(default)]
    pub seccomp: Option<Filter>,
    /// The AppArmor profile to exec the workload into; `None`: unconfined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apparmor_profile: Option<String>,
}

/// A seccomp filter, already resolved by the daemon (RuntimeDefault and
/// Localhost profiles both arrive in this form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub default_action: Action,
    /// Rules naming syscalls this architecture does not know are skipped,
    /// as runc does.
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    Allow,
    Errno(u16),
    KillProcess,
    KillThread,
    Trap,
    Log,
    Trace(u16),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub names: Vec<String>,
    pub action: Action,
    /// All must hold (libseccomp ANDs the conditions of one rule).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<ArgCondition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgCondition {
    pub index: u32,
    pub op: CmpOp,
    pub value: u64,
    /// The datum compared against `arg & value` for `masked_eq`.
    #[serde(default)]
    pub value_two: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CmpOp {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    MaskedEq,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_unknown_fields() {
        let spec = ProcessSpec {
            args: vec!["sh".into()],
            env: vec!["A=1".into()],
            cwd: "/".into(),
            uid: 1,
            gid: 2,
            additional_gids: vec![3],
            no_new_privs: true,
            capabilities: Some(0b101),
            ambient_capabilities: 0,
            masked_paths: vec!["/proc/kcore".into()],
            readonly_paths: vec![],
            recursive_readonly: vec!["/data".into()],
            readonly_rootfs: false,
            seccomp: Some(Filter {
                default_action: Action::Errno(1),
                rules: vec![Rule {
                    names: vec!["clone".into()],
                    action: Action::Allow,
                    args: vec![ArgCondition {
                        index: 0,
                        op: CmpOp::MaskedEq,
                        value: 0x7E02_0000,
                        value_two: 0,
                    }],
                }],
            }),
            apparmor_profile: None,
        };
        let text = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<ProcessSpec>(&text).unwrap(), spec);
        let newer = text.replacen('{', r#"{"selinux":"x","#, 1);
        assert!(serde_json::from_str::<ProcessSpec>(&newer).is_err());
    }
}
