//! Seccomp filters for pvecri-init: the built-in RuntimeDefault profile and
//! OCI-format Localhost profiles, both turned into one [`Filter`] form.

use std::collections::BTreeSet;
use std::path::Path;

use caps::Capability;
use serde::Deserialize;

use super::caps::has;

/// The filter as pvecri-init's spec.json carries it.
pub use pvecri_spec::{Action, ArgCondition, CmpOp, Filter, Rule};

const EPERM: u16 = libc::EPERM as u16;
const ENOSYS: u16 = libc::ENOSYS as u16;

/// Namespace-creating clone flags (NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
/// NEWUSER, NEWPID, NEWNET): plain `clone` may not use them without
/// CAP_SYS_ADMIN.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// AF_VSOCK: talks to the hypervisor, never what a pod needs.
const AF_VSOCK: u64 = 40;

/// `personality` values that only select Linux behaviour (PER_LINUX,
/// PER_LINUX32, UNAME26 variants and the query value).
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// Syscalls RuntimeDefault refuses unless the container holds the
/// capability that gates them in the kernel anyway; the filter keeps them
/// away from a kernel bug when it does not.
const BY_CAPABILITY: &[(Capability, &[&str])] = &[
    (
        Capability::CAP_SYS_ADMIN,
        &[
            "bpf",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "pivot_root",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "swapoff",
            "swapon",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    (
        Capability::CAP_SYS_BOOT,
        &["kexec_file_load", "kexec_load", "reboot"],
    ),
    (Capability::CAP_SYS_CHROOT, &["chroot"]),
    (
        Capability::CAP_SYS_MODULE,
        &["delete_module", "finit_module", "init_module"],
    ),
    (Capability::CAP_SYS_PACCT, &["acct"]),
    (
        Capability::CAP_SYS_PTRACE,
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "userfaultfd",
        ],
    ),
    (Capability::CAP_SYS_RAWIO, &["ioperm", "iopl"]),
    (
        Capability::CAP_SYS_TIME,
        &["clock_settime", "clock_settime64", "settimeofday", "stime"],
    ),
    (Capability::CAP_SYS_TTY_CONFIG, &["vhangup"]),
    (
        Capability::CAP_SYS_NICE,
        &[
            "get_mempolicy",
            "mbind",
            "move_pages",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    (Capability::CAP_SYSLOG, &["syslog"]),
    (Capability::CAP_BPF, &["bpf"]),
    (Capability::CAP_PERFMON, &["perf_event_open"]),
    (Capability::CAP_DAC_READ_SEARCH, &["open_by_handle_at"]),
];

/// Never allowed by RuntimeDefault: the kernel keyring is not namespaced,
/// and the rest are obsolete or unimplemented interfaces.
const NEVER: &[&str] = &[
    "add_key",
    "afs_syscall",
    "create_module",
    "get_kernel_syms",
    "getpmsg",
    "keyctl",
    "nfsservctl",
    "putpmsg",
    "query_module",
    "request_key",
    "security",
    "_sysctl",
    "sysfs",
    "tuxcall",
    "uselib",
    "ustat",
    "vm86",
    "vm86old",
    "vserver",
];

/// Syscalls with argument rules of their own in RuntimeDefault.
const CONDITIONAL: &[&str] = &["clone", "clone3", "personality", "socket"];

/// 32-bit x86 entry points that the native table does not list but 32-bit
/// programs use (the filter covers the x86 and x32 ABIs too).
const COMPAT_ONLY: &[&str] = &[
    "_llseek",
    "_newselect",
    "chown32",
    "fadvise64_64",
    "fchown32",
    "fcntl64",
    "fstat64",
    "fstatat64",
    "fstatfs64",
    "ftruncate64",
    "getegid32",
    "geteuid32",
    "getgid32",
    "getgroups32",
    "getresgid32",
    "getresuid32",
    "getuid32",
    "ipc",
    "lchown32",
    "lstat64",
    "mmap2",
    "recv",
    "send",
    "sendfile64",
    "setfsgid32",
    "setfsuid32",
    "setgid32",
    "setgroups32",
    "setregid32",
    "setresgid32",
    "setresuid32",
    "setreuid32",
    "setuid32",
    "sigaction",
    "signal",
    "sigpending",
    "sigprocmask",
    "sigreturn",
    "sigsuspend",
    "socketcall",
    "stat64",
    "statfs64",
    "truncate64",
    "ugetrlimit",
    "waitpid",
];

/// Every syscall name libseccomp knows for this machine's architecture.
pub fn native_syscalls() -> BTreeSet<String> {
    (0..1024)
        .filter_map(|n| libseccomp::ScmpSyscall::from(n).get_name().ok())
        .collect()
}

/// RuntimeDefault for a container holding `caps`: an allow list (every
/// known syscall except the refused ones) with EPERM for the rest, plus
/// argument rules for clone, clone3, personality and socket.
pub fn runtime_default(caps: u64, native: &BTreeSet<String>) -> Filter {
    let mut refused: BTreeSet<&str> = NEVER.iter().copied().collect();
    refused.extend(CONDITIONAL);
    for (cap, names) in BY_CAPABILITY {
        if !has(caps, *cap) {
            refused.extend(names.iter().copied());
        }
    }
    // A name gated by two capabilities (bpf, syslog, perf_event_open) is
    // allowed when either is held.
    for (cap, names) in BY_CAPABILITY {
        if has(caps, *cap) {
            for n in names.iter() {
                refused.remove(n);
            }
        }
    }
    refused.extend(CONDITIONAL);
    let allowed: Vec<String> = native
        .iter()
        .map(String::as_str)
        .chain(COMPAT_ONLY.iter().copied())
        .filter(|n| !refused.contains(n))
        .map(str::to_owned)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut rules = vec![Rule {
        names: allowed,
        action: Action::Allow,
        args: vec![],
    }];
    rules.push(Rule {
        names: vec!["socket".into()],
        action: Action::Allow,
        args: vec![ArgCondition {
            index: 0,
            op: CmpOp::Ne,
            value: AF_VSOCK,
            value_two: 0,
        }],
    });
    for value in PERSONALITIES {
        rules.push(Rule {
            names: vec!["personality".into()],
            action: Action::Allow,
            args: vec![ArgCondition {
                index: 0,
                op: CmpOp::Eq,
                value: *value,
                value_two: 0,
            }],
        });
    }
    if has(caps, Capability::CAP_SYS_ADMIN) {
        rules.push(Rule {
            names: vec!["clone".into(), "clone3".into()],
            action: Action::Allow,
            args: vec![],
        });
    } else {
        rules.push(Rule {
            names: vec!["clone".into()],
            action: Action::Allow,
            args: vec![ArgCondition {
                index: 0,
                op: CmpOp::MaskedEq,
                value: CLONE_NAMESPACE_FLAGS,
                value_two: 0,
            }],
        });
        // clone3 passes its flags in memory, out of the filter's reach:
        // ENOSYS makes libc fall back to clone, which is checked.
        rules.push(Rule {
            names: vec!["clone3".into()],
            action: Action::Errno(ENOSYS),
            args: vec![],
        });
    }
    Filter {
        default_action: Action::Errno(EPERM),
        rules,
    }
}

/// Why a Localhost profile cannot be used; the message names the file and
/// the field.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
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
pub fn load_localhost(path: &Path, caps: u64) -> Result<Filter, ProfileError> {
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
        .map_err(|m| field_err("defaultAction".into(), m))?;
    let holds = |names: &[String]| {
        names
            .iter()
            .all(|n| super::caps::parse(n).is_ok_and(|c| has(caps, c)))
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
        let act = action(&s.action, s.errno_ret).map_err(|m| field_err(at("action"), m))?;
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

fn action(name: &str, errno: Option<u16>) -> Result<Action, String> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => Action::Allow,
        // Without errnoRet, EPERM (as runc and crun).
        "SCMP_ACT_ERRNO" => Action::Errno(errno.unwrap_or(EPERM)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_TRACE" => Action::Trace(errno.unwrap_or(EPERM)),
        "SCMP_ACT_NOTIFY" => return Err("SCMP_ACT_NOTIFY is not supported".into()),
        other => return Err(format!("unknown action {other:?}")),
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

    fn allowed(f: &Filter) -> BTreeSet<String> {
        f.rules
            .iter()
            .filter(|r| r.action == Action::Allow && r.args.is_empty())
            .flat_map(|r| r.names.clone())
            .collect()
    }

    #[test]
    fn native_table_is_known() {
        let n = native_syscalls();
        for name in ["read", "write", "execve", "mount", "keyctl"] {
            assert!(n.contains(name), "{name}");
        }
    }

    #[test]
    fn runtime_default_without_sys_admin() {
        let f = runtime_default(caps::resolve(&[], &[]).unwrap(), &native_syscalls());
        assert_eq!(f.default_action, Action::Errno(1));
        let a = allowed(&f);
        for name in ["read", "execve", "setuid", "capset", "chroot", "socketcall"] {
            assert!(a.contains(name), "{name} should be allowed");
        }
        for name in [
            "mount",
            "keyctl",
            "unshare",
            "sethostname",
            "reboot",
            "clone",
            "clone3",
        ] {
            assert!(!a.contains(name), "{name} should not be allowed outright");
        }
        let clone = f.rules.iter().find(|r| r.names == ["clone"]).unwrap();
        assert_eq!(clone.args[0].op, CmpOp::MaskedEq);
        assert_eq!(clone.args[0].value, CLONE_NAMESPACE_FLAGS);
        assert_eq!(clone.args[0].value_two, 0);
        let clone3 = f.rules.iter().find(|r| r.names == ["clone3"]).unwrap();
        assert_eq!(clone3.action, Action::Errno(libc::ENOSYS as u16));
    }

    #[test]
    fn runtime_default_follows_capabilities() {
        let caps = caps::resolve(&["SYS_ADMIN".into(), "SYS_TIME".into()], &[]).unwrap();
        let a = allowed(&runtime_default(caps, &native_syscalls()));
        for name in [
            "mount",
            "sethostname",
            "clone",
            "clone3",
            "settimeofday",
            "bpf",
        ] {
            assert!(
                a.contains(name),
                "{name} should be allowed with the capability"
            );
        }
        assert!(!a.contains("keyctl"));
    }

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
