//! Kernel features pvecri depends on or adapts to.

use std::path::Path;

/// Namespaces a pod needs; each must exist under /proc/self/ns.
pub(crate) const NAMESPACES: [&str; 7] = ["mnt", "uts", "ipc", "net", "pid", "user", "cgroup"];

/// Whether the kernel lists `fstype` in /proc/filesystems (no modprobe:
/// a module that is not loaded counts as missing).
pub(crate) fn has_filesystem(fstype: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .map(|text| filesystems_contain(&text, fstype))
        .unwrap_or(false)
}

pub(crate) fn filesystems_contain(text: &str, fstype: &str) -> bool {
    text.lines()
        .any(|line| line.split_whitespace().last() == Some(fstype))
}

/// Namespaces from [`NAMESPACES`] the kernel does not offer.
pub(crate) fn missing_namespaces() -> Vec<&'static str> {
    NAMESPACES
        .into_iter()
        .filter(|ns| !Path::new("/proc/self/ns").join(ns).exists())
        .collect()
}

/// Whether seccomp filtering is available (the `Seccomp:` line of
/// /proc/self/status exists only on kernels built with it).
pub(crate) fn has_seccomp() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Seccomp:")))
        .unwrap_or(false)
}

/// Whether the ZFS module is loaded (its control device exists).
pub(crate) fn zfs_available() -> bool {
    Path::new("/dev/zfs").exists()
}

/// Whether this is a Proxmox VE node (its cluster filesystem is mounted or
/// its version tool is installed).
pub(crate) fn is_proxmox() -> bool {
    Path::new("/etc/pve").is_dir() || Path::new("/usr/bin/pveversion").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_filesystems() {
        let text = "nodev\tsysfs\nnodev\toverlay\n\text4\n";
        assert!(filesystems_contain(text, "overlay"));
        assert!(filesystems_contain(text, "ext4"));
        assert!(!filesystems_contain(text, "zfs"));
        assert!(!filesystems_contain(text, "nodev"));
    }

    #[test]
    fn this_kernel_has_the_namespaces_pods_need() {
        assert!(
            missing_namespaces().is_empty(),
            "{:?}",
            missing_namespaces()
        );
    }
}
