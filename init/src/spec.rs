//! `spec.json`: what the daemon tells pvecri-init to execute (docs/lifecycle.md).
//!
//! Unknown fields are rejected: if a newer daemon asks for something this
//! init does not know (a seccomp profile, say), failing the start is safer
//! than silently running the workload without it.

use std::ffi::CString;
use std::fmt;

use serde::Deserialize;

/// The process to start, as written by the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
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
    pub seccomp: Option<Seccomp>,
    /// The AppArmor profile to exec the workload into.
    #[serde(default)]
    pub apparmor_profile: Option<String>,
}

/// A seccomp filter, already resolved by the daemon (RuntimeDefault and
/// Localhost profiles both arrive in this form).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seccomp {
    pub default_action: Action,
    /// Status returned when a filter rule's syscall is not known on this
    /// architecture is irrelevant: unknown names are skipped, as runc does.
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub names: Vec<String>,
    pub action: Action,
    /// All must hold (libseccomp ANDs the conditions of one rule).
    #[serde(default)]
    pub args: Vec<ArgCondition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgCondition {
    pub index: u32,
    pub op: CmpOp,
    pub value: u64,
    /// The datum compared against `arg & value` for `masked_eq`.
    #[serde(default)]
    pub value_two: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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

/// Why `spec.json` cannot be used.
#[derive(Debug)]
pub enum SpecError {
    Parse(serde_json::Error),
    EmptyArgs,
    RelativeCwd(String),
    /// A string that cannot be passed to the kernel (interior NUL).
    Nul {
        field: &'static str,
    },
    /// A relative path, or one with a NUL byte.
    BadPath {
        field: &'static str,
    },
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Parse(e) => write!(f, "invalid spec.json: {e}"),
            Self::EmptyArgs => f.write_str("spec.json has no args"),
            Self::RelativeCwd(cwd) => write!(f, "spec.json cwd {cwd:?} is not absolute"),
            Self::Nul { field } => write!(f, "spec.json {field} contains a NUL byte"),
            Self::BadPath { field } => {
                write!(f, "spec.json {field} holds a relative path or a NUL byte")
            }
        }
    }
}

impl std::error::Error for SpecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Parse(e) => Some(e),
            _ => None,
        }
    }
}

impl Spec {
    /// Parses and validates, so that everything after this only fails in the
    /// kernel.
    pub fn parse(bytes: &[u8]) -> Result<Self, SpecError> {
        let spec: Spec = serde_json::from_slice(bytes).map_err(SpecError::Parse)?;
        if spec.args.is_empty() {
            return Err(SpecError::EmptyArgs);
        }
        if !spec.cwd.starts_with('/') {
            return Err(SpecError::RelativeCwd(spec.cwd));
        }
        for (field, values) in [("args", &spec.args), ("env", &spec.env)] {
            if values.iter().any(|v| v.contains('\0')) {
                return Err(SpecError::Nul { field });
            }
        }
        if spec.cwd.contains('\0') {
            return Err(SpecError::Nul { field: "cwd" });
        }
        for (field, paths) in [
            ("masked_paths", &spec.masked_paths),
            ("readonly_paths", &spec.readonly_paths),
            ("recursive_readonly", &spec.recursive_readonly),
        ] {
            if paths
                .iter()
                .any(|p| !p.starts_with('/') || p.contains('\0'))
            {
                return Err(SpecError::BadPath { field });
            }
        }
        Ok(spec)
    }

    /// The `PATH` the workload will see: the last `PATH=` entry wins, as
    /// with `setenv` in order; the runc default when there is none.
    pub fn path_var(&self) -> &str {
        self.env
            .iter()
            .rev()
            .find_map(|kv| kv.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
    }
}

/// runc's and containerd's default when the image sets no `PATH`.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Strings as C strings; callers only pass values `Spec::parse` checked.
pub fn c_strings(values: &[String]) -> Vec<CString> {
    values
        .iter()
        .map(|v| CString::new(v.as_str()).expect("validated by Spec::parse"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"{"args": ["/bin/sh", "-c", "echo hi"], "env": ["PATH=/usr/bin:/bin", "HOME=/root"],
        "cwd": "/", "uid": 1000, "gid": 100, "additional_gids": [10, 20], "no_new_privs": true}"#;

    #[test]
    fn parses_the_contract_example() {
        let spec = Spec::parse(FULL.as_bytes()).unwrap();
        assert_eq!(spec.args, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(spec.env, ["PATH=/usr/bin:/bin", "HOME=/root"]);
        assert_eq!(spec.cwd, "/");
        assert_eq!((spec.uid, spec.gid), (1000, 100));
        assert_eq!(spec.additional_gids, [10, 20]);
        assert!(spec.no_new_privs);
    }

    #[test]
    fn optional_fields_default() {
        let spec = Spec::parse(br#"{"args": ["true"], "cwd": "/", "uid": 0, "gid": 0}"#).unwrap();
        assert!(spec.env.is_empty());
        assert!(spec.additional_gids.is_empty());
        assert!(!spec.no_new_privs);
        assert_eq!(spec.path_var(), DEFAULT_PATH);
    }

    #[test]
    fn rejects_invalid_specs() {
        for (json, want) in [
            (r#"{"args": [], "cwd": "/", "uid": 0, "gid": 0}"#, "no args"),
            (
                r#"{"args": ["x"], "cwd": "tmp", "uid": 0, "gid": 0}"#,
                "not absolute",
            ),
            (
                r#"{"args": ["x"], "uid": 0, "gid": 0}"#,
                "missing field `cwd`",
            ),
            (
                r#"{"args": ["x"], "cwd": "/", "gid": 0}"#,
                "missing field `uid`",
            ),
            (
                r#"{"args": ["x"], "cwd": "/", "uid": -1, "gid": 0}"#,
                "invalid value",
            ),
            (
                r#"{"args": ["x"], "cwd": "/", "uid": 0, "gid": 0, "apparmor": {}}"#,
                "unknown field",
            ),
            (
                r#"{"args": ["x"], "cwd": "/", "uid": 0, "gid": 0, "masked_paths": ["proc/kcore"]}"#,
                "relative path",
            ),
            (
                r#"{"args": ["a\u0000b"], "cwd": "/", "uid": 0, "gid": 0}"#,
                "args contains a NUL",
            ),
            (
                r#"{"args": ["x"], "env": ["A=\u0000"], "cwd": "/", "uid": 0, "gid": 0}"#,
                "env contains a NUL",
            ),
            ("", "invalid spec.json"),
        ] {
            let err = Spec::parse(json.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{json}: got {err:?}, want {want:?}");
        }
    }

    #[test]
    fn parses_security_fields() {
        let spec = Spec::parse(
            br#"{"args": ["x"], "cwd": "/", "uid": 0, "gid": 0, "capabilities": 5,
                "ambient_capabilities": 1, "masked_paths": ["/proc/kcore"],
                "readonly_paths": ["/proc/sys"], "readonly_rootfs": true,
                "seccomp": {"default_action": {"errno": 1}, "rules": [
                    {"names": ["clone"], "action": "allow",
                     "args": [{"index": 0, "op": "masked_eq", "value": 2114060288}]}]}}"#,
        )
        .unwrap();
        assert_eq!(spec.capabilities, Some(5));
        assert_eq!(spec.ambient_capabilities, 1);
        assert!(spec.readonly_rootfs);
        let seccomp = spec.seccomp.unwrap();
        assert_eq!(seccomp.default_action, Action::Errno(1));
        assert_eq!(seccomp.rules[0].args[0].op, CmpOp::MaskedEq);
        assert_eq!(seccomp.rules[0].args[0].value_two, 0);
    }

    #[test]
    fn last_path_entry_wins() {
        let mut spec = Spec::parse(FULL.as_bytes()).unwrap();
        assert_eq!(spec.path_var(), "/usr/bin:/bin");
        spec.env.push("PATH=/opt/bin".into());
        assert_eq!(spec.path_var(), "/opt/bin");
        spec.env = vec!["MYPATH=/nope".into()];
        assert_eq!(spec.path_var(), DEFAULT_PATH);
    }
}
