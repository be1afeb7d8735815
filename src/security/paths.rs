//! Masked and read-only paths: the lists a non-privileged container gets
//! when the kubelet sends none, and validation of request paths.

use super::input::InputError;

/// Hidden from non-privileged containers (kernel interfaces that leak host
/// data or allow host changes).
pub(crate) const DEFAULT_MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Mounted read-only in non-privileged containers.
pub(crate) const DEFAULT_READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// An absolute path without `..` components or control characters (NUL
/// and newline included: see `security::input`).
pub(crate) fn check_absolute(path: &str) -> Result<(), InputError> {
    if !path.starts_with('/') {
        return Err(InputError::NotAbsolute(path.to_owned()));
    }
    super::input::check_text(path)?;
    if path.split('/').any(|c| c == "..") {
        return Err(InputError::DotDotComponent(path.to_owned()));
    }
    Ok(())
}

/// Mount destinations a non-privileged container may not cover: the
/// kernel interfaces LXC set up read-only or masked.
pub(crate) fn check_mount_target(path: &str, privileged: bool) -> Result<(), InputError> {
    check_absolute(path)?;
    if privileged {
        return Ok(());
    }
    let clean: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    match clean.as_slice() {
        [] => Err(InputError::RootMount),
        ["proc", ..] | ["sys", ..] => Err(InputError::KernelInterface(path.to_owned())),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths() {
        assert!(check_absolute("/data").is_ok());
        assert!(check_absolute("data").is_err());
        assert!(check_absolute("/data/../etc").is_err());
        assert!(check_absolute("/a\0b").is_err());
        assert!(check_absolute("/x\nlxc.hook.pre-start=/usr/bin/touch").is_err());
    }

    #[test]
    fn mount_targets() {
        assert!(check_mount_target("/var/lib/x", false).is_ok());
        assert!(check_mount_target("/proc/sys", false).is_err());
        assert!(check_mount_target("/sys", false).is_err());
        assert!(check_mount_target("//./proc", false).is_err());
        assert!(check_mount_target("/", false).is_err());
        assert!(check_mount_target("/proc/sys", true).is_ok());
        assert!(check_mount_target("/procfs", false).is_ok());
    }
}
