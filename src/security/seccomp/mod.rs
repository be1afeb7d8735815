//! Seccomp filters for pvecri-init: the built-in RuntimeDefault profile and
//! OCI-format Localhost profiles, both turned into one [`Filter`] form.
//!
//! RuntimeDefault is an explicit allow list ([`default_list`]) with EPERM
//! for everything else, so a syscall nobody reviewed (io_uring, or one a
//! later kernel adds) is refused rather than allowed by omission.

mod default_list;
mod localhost;

use std::collections::BTreeSet;

use caps::Capability;

use super::caps::has;
use default_list::{ALLOWED, BY_CAPABILITY, NEVER};

pub(crate) use localhost::load_localhost;
/// The filter as pvecri-init's spec.json carries it.
pub(crate) use pvecri_spec::{Action, ArgCondition, CmpOp, Filter, Rule};

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

/// RuntimeDefault for a container holding `caps`: the allow list, the
/// calls its capabilities unlock, argument rules for clone, clone3,
/// personality and socket, and EPERM for every other syscall.
pub(crate) fn runtime_default(caps: u64) -> Filter {
    let mut allowed: BTreeSet<&str> = ALLOWED.iter().flat_map(|g| g.iter().copied()).collect();
    // A name gated by two capabilities (bpf, syslog, perf_event_open) is
    // allowed when either is held.
    for (cap, names) in BY_CAPABILITY {
        if has(caps, *cap) {
            allowed.extend(names.iter().copied());
        }
    }
    allowed.retain(|n| !NEVER.contains(n));
    let allowed: Vec<String> = allowed.into_iter().map(str::to_owned).collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::caps;
    use libseccomp::{ScmpArch, ScmpSyscall};

    /// The names [`runtime_default`] gives argument rules of their own.
    const CONDITIONAL: &[&str] = &["clone", "clone3", "personality", "socket"];

    /// The ABIs pvecri-init's filter covers on x86_64.
    const ABIS: [ScmpArch; 3] = [ScmpArch::X8664, ScmpArch::X86, ScmpArch::X32];

    /// Allowed names libseccomp 2.5.4 (Debian 12) cannot resolve: the two
    /// that only exist inside x86's socketcall multiplexer, and syscalls
    /// from kernels newer than its table.
    const NOT_IN_LIBSECCOMP: &[&str] = &[
        "getxattrat",
        "listxattrat",
        "mseal",
        "open_tree_attr",
        "recv",
        "removexattrat",
        "send",
        "setxattrat",
    ];

    fn default_caps() -> u64 {
        caps::resolve(&[], &[]).unwrap()
    }

    fn all_caps() -> u64 {
        caps::resolve(&["ALL".into()], &[]).unwrap()
    }

    /// Names allowed without conditions.
    fn allowed(f: &Filter) -> BTreeSet<String> {
        f.rules
            .iter()
            .filter(|r| r.action == Action::Allow && r.args.is_empty())
            .flat_map(|r| r.names.clone())
            .collect()
    }

    /// Names some rule allows, with or without argument conditions.
    fn reachable(f: &Filter) -> BTreeSet<String> {
        f.rules
            .iter()
            .filter(|r| r.action == Action::Allow)
            .flat_map(|r| r.names.clone())
            .collect()
    }

    fn listed() -> Vec<&'static str> {
        ALLOWED
            .iter()
            .flat_map(|g| g.iter().copied())
            .chain(BY_CAPABILITY.iter().flat_map(|(_, n)| n.iter().copied()))
            .chain(CONDITIONAL.iter().copied())
            .collect()
    }

    /// Every syscall name libseccomp knows for `arch`, by number.
    fn table(arch: ScmpArch) -> BTreeSet<String> {
        // x32 numbers carry bit 30.
        let base = if arch == ScmpArch::X32 {
            0x4000_0000
        } else {
            0
        };
        (base..base + 1024)
            .filter_map(|n| ScmpSyscall::from(n).get_name_by_arch(arch).ok())
            .collect()
    }

    #[test]
    fn io_uring_is_denied_whatever_the_capabilities() {
        for caps in [0, default_caps(), all_caps()] {
            let f = runtime_default(caps);
            assert_eq!(f.default_action, Action::Errno(EPERM));
            let r = reachable(&f);
            for name in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
                assert!(!r.contains(name), "{name} allowed with caps {caps:#x}");
                assert!(
                    !f.rules.iter().any(|r| r.names.iter().any(|n| n == name)),
                    "{name} has a rule of its own"
                );
            }
        }
    }

    #[test]
    fn everyday_syscalls_are_allowed() {
        let f = runtime_default(default_caps());
        let a = allowed(&f);
        for name in [
            "read",
            "write",
            "openat",
            "openat2",
            "close_range",
            "execve",
            "execveat",
            "futex",
            "futex_time64",
            "clock_gettime",
            "clock_gettime64",
            "clock_nanosleep_time64",
            "statx",
            "newfstatat",
            "epoll_pwait2",
            "faccessat2",
            "fchmodat2",
            "pidfd_open",
            "rseq",
            "getrandom",
            "copy_file_range",
            "memfd_create",
            "membarrier",
            "landlock_create_ruleset",
            "sendfile",
            "accept4",
            "setuid",
            "capset",
            "chroot",
            "_llseek",
            "socketcall",
            "arch_prctl",
            "prlimit64",
            "wait4",
            "rt_sigreturn",
        ] {
            assert!(a.contains(name), "{name} should be allowed");
        }
        // The conditional ones have rules that allow their ordinary use.
        let rules_for = |name: &str| -> Vec<&Rule> {
            f.rules
                .iter()
                .filter(|r| r.action == Action::Allow && r.names.iter().any(|n| n == name))
                .collect()
        };
        for name in ["clone", "socket", "personality"] {
            assert!(!rules_for(name).is_empty(), "{name} has no allow rule");
        }
        // futex_time64 is a real x86 syscall, so the x86 filter gets it.
        assert!(
            ScmpSyscall::from_name_by_arch("futex_time64", ScmpArch::X86)
                .is_ok_and(|n| i32::from(n) >= 0)
        );
    }

    #[test]
    fn unlisted_syscalls_are_denied() {
        let f = runtime_default(default_caps());
        let r = reachable(&f);
        for name in [
            "kexec_load",
            "kexec_file_load",
            "add_key",
            "keyctl",
            "request_key",
            "bpf",
            "lookup_dcookie",
            "mount",
            "unshare",
            "setns",
            "open_by_handle_at",
            "perf_event_open",
            "userfaultfd",
            "fanotify_init",
            "migrate_pages",
            "clock_settime64",
            "vm86",
            "ustat",
            "uselib",
            "no_such_syscall",
        ] {
            assert!(!r.contains(name), "{name} should be denied");
        }
    }

    #[test]
    fn capabilities_unlock_their_calls() {
        let caps = caps::resolve(&["SYS_ADMIN".into(), "SYS_TIME".into()], &[]).unwrap();
        let a = allowed(&runtime_default(caps));
        for name in [
            "mount",
            "sethostname",
            "clone",
            "clone3",
            "settimeofday",
            "clock_settime64",
            "bpf",
        ] {
            assert!(
                a.contains(name),
                "{name} should be allowed with the capability"
            );
        }
        assert!(!a.contains("keyctl"));
        assert!(!a.contains("kexec_load"));
        // Either of two gating capabilities is enough.
        let bpf_only = caps::resolve(&["BPF".into()], &[]).unwrap();
        let a = allowed(&runtime_default(bpf_only));
        assert!(a.contains("bpf"));
        assert!(!a.contains("mount"));
    }

    #[test]
    fn clone_rules_without_sys_admin() {
        let f = runtime_default(default_caps());
        let a = allowed(&f);
        for name in ["clone", "clone3", "socket", "personality"] {
            assert!(!a.contains(name), "{name} should not be allowed outright");
        }
        let clone = f.rules.iter().find(|r| r.names == ["clone"]).unwrap();
        assert_eq!(clone.args[0].op, CmpOp::MaskedEq);
        assert_eq!(clone.args[0].value, CLONE_NAMESPACE_FLAGS);
        assert_eq!(clone.args[0].value_two, 0);
        let clone3 = f.rules.iter().find(|r| r.names == ["clone3"]).unwrap();
        assert_eq!(clone3.action, Action::Errno(ENOSYS));
        let socket = f.rules.iter().find(|r| r.names == ["socket"]).unwrap();
        assert_eq!(
            (socket.args[0].op, socket.args[0].value),
            (CmpOp::Ne, AF_VSOCK)
        );
    }

    #[test]
    fn lists_do_not_overlap() {
        let names = listed();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        // BY_CAPABILITY lists a few names under two capabilities.
        let twice: BTreeSet<&str> = ["bpf", "perf_event_open", "syslog"].into();
        let mut seen = BTreeSet::new();
        for n in &names {
            assert!(seen.insert(*n) || twice.contains(n), "{n} listed twice");
        }
        for n in NEVER {
            assert!(!unique.contains(n), "{n} is in NEVER and on an allow list");
        }
        // An unconditional entry would make a gate or an argument rule moot.
        let allowed: BTreeSet<&str> = ALLOWED.iter().flat_map(|g| g.iter().copied()).collect();
        let gated = BY_CAPABILITY
            .iter()
            .flat_map(|(_, n)| n.iter().copied())
            .chain(CONDITIONAL.iter().copied());
        for n in gated {
            assert!(!allowed.contains(n), "{n} is gated and allowed outright");
        }
        for n in NEVER {
            assert!(!reachable(&runtime_default(all_caps())).contains(*n), "{n}");
        }
    }

    #[test]
    fn listed_names_are_known_to_libseccomp() {
        let unknown: Vec<&str> = listed()
            .into_iter()
            .filter(|name| {
                !ABIS.iter().any(|arch| {
                    ScmpSyscall::from_name_by_arch(name, *arch).is_ok_and(|n| i32::from(n) >= 0)
                })
            })
            .filter(|name| !NOT_IN_LIBSECCOMP.contains(name))
            .collect();
        assert!(unknown.is_empty(), "misspelt or unknown: {unknown:?}");
    }

    #[test]
    fn every_time64_call_is_allowed() {
        let time64: Vec<String> = table(ScmpArch::X86)
            .into_iter()
            .filter(|n| n.contains("time64"))
            .collect();
        assert!(time64.len() >= 20, "{time64:?}");
        let plain = allowed(&runtime_default(default_caps()));
        let with_time = allowed(&runtime_default(all_caps()));
        for name in &time64 {
            if name == "clock_settime64" {
                assert!(!plain.contains(name) && with_time.contains(name));
            } else {
                assert!(plain.contains(name), "{name} should be allowed");
            }
        }
    }

    /// Prints, without failing, the syscalls libseccomp knows for this
    /// machine that no list mentions: they are denied by default, and a
    /// reviewer should decide whether they belong on a list.
    #[test]
    fn report_unreviewed_native_syscalls() {
        let reviewed: BTreeSet<&str> = listed().into_iter().chain(NEVER.iter().copied()).collect();
        let native = table(ScmpArch::native());
        assert!(native.contains("read") && native.contains("keyctl"));
        let unreviewed: Vec<&String> = native
            .iter()
            .filter(|n| !reviewed.contains(n.as_str()))
            .collect();
        eprintln!(
            "syscalls denied by RuntimeDefault without review ({}): {unreviewed:?}",
            unreviewed.len()
        );
    }
}
