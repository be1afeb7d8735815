//! Reading `spec.json` (the types are the `pvecri-spec` crate's, shared
//! with the daemon) and checking what serde cannot: argv, cwd and paths.

use std::ffi::CString;
use std::fmt;

pub(crate) use pvecri_spec::{Action, CmpOp, Filter as Seccomp, ProcessSpec as Spec};

/// Why `spec.json` cannot be used.
#[derive(Debug)]
pub(crate) enum SpecError {
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

/// Parses and validates, so that everything after this only fails in the
/// kernel.
pub(crate) fn parse(bytes: &[u8]) -> Result<Spec, SpecError> {
    {
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
}

/// The `PATH` the workload will see: the last `PATH=` entry wins, as with
/// `setenv` in order; the runc default when there is none.
pub(crate) fn path_var(spec: &Spec) -> &str {
    spec.env
        .iter()
        .rev()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
}

pub(crate) use pvecri_spec::DEFAULT_PATH;

/// Strings as C strings; callers only pass values `Spec::parse` checked.
pub(crate) fn c_strings(values: &[String]) -> Vec<CString> {
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
        let spec = parse(FULL.as_bytes()).unwrap();
        assert_eq!(spec.args, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(spec.env, ["PATH=/usr/bin:/bin", "HOME=/root"]);
        assert_eq!(spec.cwd, "/");
        assert_eq!((spec.uid, spec.gid), (1000, 100));
        assert_eq!(spec.additional_gids, [10, 20]);
        assert!(spec.no_new_privs);
    }

    #[test]
    fn optional_fields_default() {
        let spec = parse(br#"{"args": ["true"], "cwd": "/", "uid": 0, "gid": 0}"#).unwrap();
        assert!(spec.env.is_empty());
        assert!(spec.additional_gids.is_empty());
        assert!(!spec.no_new_privs);
        assert_eq!(path_var(&spec), DEFAULT_PATH);
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
            let err = parse(json.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{json}: got {err:?}, want {want:?}");
        }
    }

    #[test]
    fn parses_security_fields() {
        let spec = parse(
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
        let mut spec = parse(FULL.as_bytes()).unwrap();
        assert_eq!(path_var(&spec), "/usr/bin:/bin");
        spec.env.push("PATH=/opt/bin".into());
        assert_eq!(path_var(&spec), "/opt/bin");
        spec.env = vec!["MYPATH=/nope".into()];
        assert_eq!(path_var(&spec), DEFAULT_PATH);
    }
}
