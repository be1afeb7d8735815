//! Checks a device gets whoever asks for it: a CRI request
//! (`cri/convert.rs`) or a CDI spec (`cdi/edits.rs`). Paths follow
//! `security::paths`; these add what is particular to device nodes.

use crate::security::input::InputError;
use crate::security::paths::check_absolute;

/// Where a device node may appear in a container: an absolute path
/// under `/dev`, without `..` or control characters.
pub(crate) fn device_target(path: &str) -> Result<(), InputError> {
    check_absolute(path)?;
    if !path.starts_with("/dev/") {
        return Err(InputError::NotUnderDev(path.to_owned()));
    }
    Ok(())
}

/// Device cgroup access: a subset of `rwm`, each letter once; empty
/// means all three (as runc reads it).
pub(crate) fn device_permissions(permissions: &str) -> Result<String, InputError> {
    if permissions.is_empty() {
        return Ok("rwm".to_owned());
    }
    let mut seen = std::collections::BTreeSet::new();
    if permissions
        .chars()
        .all(|p| "rwm".contains(p) && seen.insert(p))
    {
        Ok(permissions.to_owned())
    } else {
        Err(InputError::DevicePermissions(permissions.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_targets_stay_under_dev() {
        device_target("/dev/nvidia0").unwrap();
        device_target("/dev/dri/card0").unwrap();
        for bad in [
            "/dev",
            "dev/x",
            "/etc/passwd",
            "/dev/../etc/passwd",
            "/dev/x\nlxc.hook.pre-start=/bin/true",
            "/devices/x",
        ] {
            assert!(device_target(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn permissions_are_a_subset_of_rwm() {
        assert_eq!(device_permissions("").unwrap(), "rwm");
        assert_eq!(device_permissions("rw").unwrap(), "rw");
        assert_eq!(device_permissions("m").unwrap(), "m");
        for bad in ["rr", "x", "rwma", "RW", "r w"] {
            assert!(device_permissions(bad).is_err(), "{bad:?}");
        }
    }
}
