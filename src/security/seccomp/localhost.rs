//! Localhost seccomp profiles: the OCI / Docker JSON format, validated and
//! turned into the same [`Filter`] form as RuntimeDefault. Every error
//! names the file and the field, so that a pod author can fix the profile
//! from the CRI error alone.

use std::path::Path;

use serde::Deserialize;

use super::{Action, ArgCondition, CmpOp, Filter, Rule, EPERM};
use crate::security::caps::has;

/// Why a Localhost profile cannot be used; the message names the file and
/// the field.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProfileError {
    #[error("seccomp profile {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("seccomp profile {path}: invalid JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("seccomp profile {path}: {field}: {message}")]
    Field {
        path: String,
        field: String,
        message: String,
    },
}

/// The OCI / Docker seccomp profile format (fields pvecri understands;
/// others, such as `flags` and `listenerPath`, are ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciProfile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u16>,
    #[serde(default)]
    syscalls: Vec<OciSyscall>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciSyscall {
    #[serde(default)]
    names: Vec<String>,
    /// The single-name form of old Docker profiles.
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u16>,
    #[serde(default)]
    args: Vec<OciArg>,
    #[serde(default)]
    includes: Option<OciFilter>,
    #[serde(default)]
    excludes: Option<OciFilter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciArg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

/// Docker's conditional entries: only by capability here (arches and
/// kernel versions are not filtered on).
#[derive(Debug, Deserialize)]
struct OciFilter {
    #[serde(default)]
    caps: Vec<String>,
}

/// Reads and validates a Localhost profile for a container holding `caps`.
pub(crate) fn load_localhost(path: &Path, caps: u64) -> Result<Filter, ProfileError> {
    let p = path.display().to_string();
    let text = std::fs::read(path).map_err(|source| ProfileError::Read {
        path: p.clone(),
        source,
    })?;
    parse_oci(&p, &text, caps)
}

fn parse_oci(path: &str, text: &[u8], caps: u64) -> Result<Filter, ProfileError> {
    let profile: OciProfile =
        serde_json::from_slice(text).map_err(|source| ProfileError::Json {
            path: path.to_owned(),
            source,
        })?;
    let field_err = |field: String, message: String| ProfileError::Field {
        path: path.to_owned(),
        field,
        message,
    };
    let default_action = action(&profile.default_action, profile.default_errno_ret)
        .map_err(|e| field_err("defaultAction".into(), e.to_string()))?;
    let holds = |names: &[String]| {
        names
            .iter()
            .all(|n| crate::security::caps::parse(n).is_ok_and(|c| has(caps, c)))
    };
    let mut rules = Vec::new();
    for (i, s) in profile.syscalls.iter().enumerate() {
        let at = |f: &str| format!("syscalls[{i}].{f}");
        if s.includes.as_ref().is_some_and(|f| !holds(&f.caps)) {
            continue;
        }
        if s.excludes
            .as_ref()
            .is_some_and(|f| !f.caps.is_empty() && holds(&f.caps))
        {
            continue;
        }
        let mut names = s.names.clone();
        names.extend(s.name.clone());
        if names.is_empty() || names.iter().any(|n| n.is_empty()) {
            return Err(field_err(
                at("names"),
                "needs at least one syscall name".into(),
            ));
        }
        let act =
            action(&s.action, s.errno_ret).map_err(|e| field_err(at("action"), e.to_string()))?;
        let mut args = Vec::new();
        for (j, a) in s.args.iter().enumerate() {
            if a.index > 5 {
                return Err(field_err(
                    format!("syscalls[{i}].args[{j}].index"),
                    format!("{} is not a syscall argument index (0 to 5)", a.index),
                ));
            }
            let op = cmp_op(&a.op).ok_or_else(|| {
                field_err(
                    format!("syscalls[{i}].args[{j}].op"),
                    format!("unknown operator {:?}", a.op),
                )
            })?;
            args.push(ArgCondition {
                index: a.index,
                op,
                value: a.value,
                value_two: a.value_two,
            });
        }
        rules.push(Rule {
            names,
            action: act,
            args,
        });
    }
    Ok(Filter {
        default_action,
        rules,
    })
}

/// An action name a profile may not use.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum ActionError {
    #[error("SCMP_ACT_NOTIFY is not supported")]
    Notify,
    #[error("unknown action {0:?}")]
    Unknown(String),
}

fn action(name: &str, errno: Option<u16>) -> Result<Action, ActionError> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => Action::Allow,
        // Without errnoRet, EPERM (as runc and crun).
        "SCMP_ACT_ERRNO" => Action::Errno(errno.unwrap_or(EPERM)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_TRACE" => Action::Trace(errno.unwrap_or(EPERM)),
        "SCMP_ACT_NOTIFY" => return Err(ActionError::Notify),
        other => return Err(ActionError::Unknown(other.to_owned())),
    })
}

fn cmp_op(name: &str) -> Option<CmpOp> {
    Some(match name {
        "SCMP_CMP_NE" => CmpOp::Ne,
        "SCMP_CMP_LT" => CmpOp::Lt,
        "SCMP_CMP_LE" => CmpOp::Le,
        "SCMP_CMP_EQ" => CmpOp::Eq,
        "SCMP_CMP_GE" => CmpOp::Ge,
        "SCMP_CMP_GT" => CmpOp::Gt,
        "SCMP_CMP_MASKED_EQ" => CmpOp::MaskedEq,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::caps;

    #[test]
    fn localhost_profiles() {
        let f = parse_oci(
            "/p.json",
            br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO"},
                {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}}]}"#,
            caps::resolve(&[], &[]).unwrap(),
        )
        .unwrap();
        assert_eq!(f.default_action, Action::Allow);
        assert_eq!(f.rules[0].action, Action::Errno(1));
        assert_eq!(f.rules[1].names, ["mkdir"]);
        assert_eq!(f.rules[1].action, Action::Errno(13));
        assert_eq!(f.rules[2].args[0].value, 2114060288);
        // The mount rule needs CAP_SYS_ADMIN, which the default set lacks.
        assert_eq!(f.rules.len(), 3);
    }

    #[test]
    fn bad_profiles_name_file_and_field() {
        for (json, want) in [
            (
                r#"{"defaultAction": "SCMP_ACT_NOPE"}"#,
                "/p.json: defaultAction: unknown action",
            ),
            (r#"{"syscalls": []}"#, "/p.json: invalid JSON"),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 7, "value": 0, "op": "SCMP_CMP_EQ"}]}]}"#,
                "syscalls[0].args[0].index",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_LIKE"}]}]}"#,
                "syscalls[0].args[0].op: unknown operator",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}"#,
                "syscalls[0].names",
            ),
        ] {
            let err = parse_oci("/p.json", json.as_bytes(), 0)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
    }
}
