//! Kernel features pvecri depends on or adapts to.

use std::path::Path;

/// Namespaces a pod needs; each must exist under /proc/self/ns.
pub(crate) const NAMESPACES: [&str; 7] = ["mnt", "uts", "ipc", "net", "pid", "user", "cgroup"];

/// The running kernel's release string (`6.8.12-4-pve`), empty where
/// uname fails.
pub(crate) fn release() -> String {
    nix::sys::utsname::uname()
        .ok()
        .and_then(|uts| uts.release().to_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The running kernel's (major, minor).
pub(crate) fn version() -> Option<(u32, u32)> {
    parse_version(&release())
}

/// (major, minor) of a kernel release string such as `6.8.12-4-pve`.
pub(crate) fn parse_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

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
    fn kernel_releases_parse_to_major_and_minor() {
        assert_eq!(parse_version("6.8.12-4-pve"), Some((6, 8)));
        assert_eq!(parse_version("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(parse_version("6.18.44-fc-v1300"), Some((6, 18)));
        assert_eq!(parse_version("garbage"), None);
        assert!(version().is_some(), "this kernel's own release parses");
    }

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
