//! Safe wrapper over liblxc: the only module that touches `lxc-sys`.
//!
//! A [`Container`] owns one reference on a `struct lxc_container` and drops it
//! with `lxc_container_put`. Library-level queries (version, API extensions,
//! supported config keys) are plain functions. C results become
//! [`LxcError`]s in [`check`], not at every call site.
//!
//! liblxc `start()` and `attach()` are deliberately not exposed here for use
//! from the daemon: they fork, and the daemon is multithreaded. They belong
//! to the single-threaded helper processes (see docs/architecture.md).

mod attach;
mod container;
mod error;
mod lifecycle;

pub(crate) use attach::AttachOptions;
pub(crate) use container::Container;
pub(crate) use error::LxcError;

use std::ffi::{CStr, CString};

/// The liblxc version linked at run time, e.g. `5.0.2`.
pub(crate) fn version() -> String {
    // SAFETY: lxc_get_version returns a pointer to a static NUL-terminated
    // string owned by liblxc; it is never freed.
    let ptr = unsafe { lxc_sys::lxc_get_version() };
    if ptr.is_null() {
        return String::from("unknown");
    }
    // SAFETY: non-null, static, NUL-terminated (see above).
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// Parses `major.minor` out of a liblxc version string.
pub(crate) fn parse_version(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether the linked liblxc understands a config key such as
/// `lxc.namespace.share.net`.
pub(crate) fn config_item_supported(key: &str) -> bool {
    let Ok(key) = CString::new(key) else {
        return false;
    };
    // SAFETY: `key` is a valid NUL-terminated string that outlives the call;
    // liblxc only reads it.
    unsafe { lxc_sys::lxc_config_item_is_supported(key.as_ptr()) }
}

/// Turns a boolean C result into a typed error naming container and operation.
pub(crate) fn check(ok: bool, name: &str, op: &'static str) -> Result<(), LxcError> {
    if ok {
        Ok(())
    } else {
        Err(LxcError::Call {
            name: name.to_owned(),
            op,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_parseable_and_supported() {
        let v = version();
        let (major, _) = parse_version(&v).expect("liblxc reports a version");
        assert!(major >= 5, "liblxc {v} is older than 5.0");
    }

    #[test]
    fn parse_version_forms() {
        assert_eq!(parse_version("5.0.2"), Some((5, 0)));
        assert_eq!(parse_version("6.0.0-devel"), Some((6, 0)));
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn config_keys_pvecri_relies_on_are_supported() {
        for key in [
            "lxc.namespace.share.",
            "lxc.cgroup.dir.container",
            "lxc.init.cmd",
            "lxc.console.path",
        ] {
            assert!(config_item_supported(key), "liblxc lacks {key}");
        }
        assert!(!config_item_supported("lxc.no.such.key"));
        assert!(!config_item_supported("bad\0key"));
    }
}
