//! Pod sysctls: which ones a pod may set and where they live in /proc/sys.
//!
//! Only namespaced sysctls are allowed, the same set Kubernetes calls
//! namespaced: `kernel.shm*`, `kernel.msg*`, `kernel.sem`, `fs.mqueue.*`
//! (ipc namespace) and `net.*` (net namespace). `kernel.hostname` and
//! `kernel.domainname` are uts-namespaced but refused: the hostname comes
//! from the pod spec. Anything else would change the host.
//!
//! Names use dots or slashes. As in Kubernetes, when the first separator is
//! a dot, dots and slashes swap meaning, so `net.ipv4.conf.eth0/100.rp_filter`
//! and `net/ipv4/conf/eth0.100/rp_filter` both name the file
//! `/proc/sys/net/ipv4/conf/eth0.100/rp_filter`.

use std::path::PathBuf;

use thiserror::Error;

use super::ns::NsKind;

const MAX_NAME: usize = 256;
const MAX_VALUE: usize = 4096;

#[derive(Debug, Error)]
pub(crate) enum SysctlError {
    #[error("invalid sysctl name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("invalid value {value:?} for sysctl {name}: {reason}")]
    InvalidValue {
        name: String,
        value: String,
        reason: &'static str,
    },
    #[error("sysctl {name} is not namespaced (a pod may set kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.* and net.*)")]
    NotNamespaced { name: String },
    #[error("sysctl {name} needs the pod's own {namespace} namespace, which is not pinned")]
    NamespaceNotPinned { name: String, namespace: NsKind },
}

/// A validated pod sysctl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sysctl {
    name: String,
    /// Relative to /proc/sys, slash-separated.
    key: String,
    value: String,
    namespace: NsKind,
}

impl Sysctl {
    pub(crate) fn parse(name: &str, value: &str) -> Result<Self, SysctlError> {
        let key = to_key(name)?;
        let namespace = namespace_of(&key).ok_or_else(|| SysctlError::NotNamespaced {
            name: name.to_owned(),
        })?;
        let bad_value = |reason| SysctlError::InvalidValue {
            name: name.to_owned(),
            value: value.to_owned(),
            reason,
        };
        if value.len() > MAX_VALUE {
            return Err(bad_value("it is longer than 4096 bytes"));
        }
        if value.contains(['\n', '\r', '\0']) {
            return Err(bad_value("it contains a newline or NUL"));
        }
        Ok(Self {
            name: name.to_owned(),
            key,
            value: value.to_owned(),
            namespace,
        })
    }

    /// The name as the pod spec wrote it.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn value(&self) -> &str {
        &self.value
    }

    /// The namespace the sysctl belongs to.
    pub(crate) fn namespace(&self) -> NsKind {
        self.namespace
    }

    /// `/proc/sys/<key>`. It resolves against the namespaces of the thread
    /// that opens it, not of the process.
    pub(crate) fn proc_path(&self) -> PathBuf {
        PathBuf::from("/proc/sys").join(&self.key)
    }
}

fn to_key(name: &str) -> Result<String, SysctlError> {
    let bad = |reason| SysctlError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(bad("it must be 1 to 256 bytes long"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
    {
        return Err(bad(
            "only ASCII letters, digits, '_', '-', '.' and '/' are allowed",
        ));
    }
    if name.contains("..") {
        return Err(bad("it contains '..'"));
    }
    let dotted = name.find(['.', '/']).map(|i| name.as_bytes()[i]) == Some(b'.');
    let key: String = if dotted {
        name.chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect()
    } else {
        name.to_owned()
    };
    let parts: Vec<&str> = key.split('/').collect();
    if parts.len() < 2 {
        return Err(bad("it names no sysctl below a top-level directory"));
    }
    if parts.iter().any(|p| p.is_empty() || *p == ".") {
        return Err(bad("it has an empty or '.' component"));
    }
    Ok(key)
}

fn namespace_of(key: &str) -> Option<NsKind> {
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        ["net", ..] => Some(NsKind::Net),
        ["kernel", leaf]
            if leaf.starts_with("shm") || leaf.starts_with("msg") || *leaf == "sem" =>
        {
            Some(NsKind::Ipc)
        }
        ["fs", "mqueue", _] => Some(NsKind::Ipc),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str) -> Result<Sysctl, SysctlError> {
        Sysctl::parse(name, "1")
    }

    #[test]
    fn namespaced_sysctls_map_to_their_namespace_and_file() {
        let cases = [
            (
                "net.ipv4.ip_forward",
                NsKind::Net,
                "/proc/sys/net/ipv4/ip_forward",
            ),
            (
                "kernel/shm_rmid_forced",
                NsKind::Ipc,
                "/proc/sys/kernel/shm_rmid_forced",
            ),
            ("kernel.shmmax", NsKind::Ipc, "/proc/sys/kernel/shmmax"),
            ("kernel.msgmnb", NsKind::Ipc, "/proc/sys/kernel/msgmnb"),
            ("kernel.sem", NsKind::Ipc, "/proc/sys/kernel/sem"),
            (
                "fs.mqueue.queues_max",
                NsKind::Ipc,
                "/proc/sys/fs/mqueue/queues_max",
            ),
            (
                "net.ipv4.conf.eth0/100.rp_filter",
                NsKind::Net,
                "/proc/sys/net/ipv4/conf/eth0.100/rp_filter",
            ),
            (
                "net/ipv4/conf/eth0.100/rp_filter",
                NsKind::Net,
                "/proc/sys/net/ipv4/conf/eth0.100/rp_filter",
            ),
        ];
        for (name, ns, path) in cases {
            let s = parse(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(s.namespace(), ns, "{name}");
            assert_eq!(s.proc_path(), PathBuf::from(path), "{name}");
            assert_eq!(s.name(), name);
        }
    }

    #[test]
    fn host_wide_sysctls_are_refused() {
        for name in [
            "vm.swappiness",
            "kernel.hostname",
            "kernel.domainname",
            "kernel.sem_next_id",
            "kernel.pid_max",
            "fs.file-max",
            "fs.mqueue",
        ] {
            assert!(
                matches!(parse(name), Err(SysctlError::NotNamespaced { .. })),
                "{name} accepted"
            );
        }
    }

    #[test]
    fn traversal_and_odd_names_are_refused() {
        for name in [
            "",
            "net",
            "net/../vm/swappiness",
            "net.ipv4..ip_forward",
            "/net/ipv4/ip_forward",
            "net/ipv4//ip_forward",
            "net/./ipv4",
            "net.ipv4.ip_forward\n",
            "net.ipv4 ip_forward",
            "net.ipv4.*",
        ] {
            assert!(
                matches!(parse(name), Err(SysctlError::InvalidName { .. })),
                "{name:?} accepted"
            );
        }
    }

    #[test]
    fn values_with_newlines_are_refused() {
        for value in ["1\n", "1\nnet.ipv4.ip_forward=1", "1\r", "1\0"] {
            assert!(matches!(
                Sysctl::parse("net.ipv4.ip_forward", value),
                Err(SysctlError::InvalidValue { .. })
            ));
        }
        // Multi-field values are fine.
        Sysctl::parse("kernel.sem", "250 32000 32 128").unwrap();
    }
}
