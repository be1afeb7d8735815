use std::ffi::CString;
use std::ptr::NonNull;

use super::{check, LxcError};

/// One counted reference on a liblxc container object.
///
/// The handle is created with `lxc_container_new` and released with
/// `lxc_container_put` on drop. It is `Send` (see below) but not `Sync`:
/// liblxc serialises operations on a container with its own locks, yet the
/// struct's cached fields are not safe to read concurrently with a call.
pub(crate) struct Container {
    ptr: NonNull<lxc_sys::lxc_container>,
    name: String,
}

// SAFETY: the handle owns its reference and liblxc keeps no thread-affine
// state in `struct lxc_container`; moving it to another thread is fine as
// long as only one thread uses it at a time, which `!Sync` guarantees.
unsafe impl Send for Container {}

impl Container {
    /// Opens (without creating anything on disk) container `name` under `lxcpath`.
    pub(crate) fn open(name: &str, lxcpath: &str) -> Result<Self, LxcError> {
        let c_name = cstring("container name", name)?;
        let c_path = cstring("lxc path", lxcpath)?;
        // SAFETY: both arguments are valid C strings for the duration of the
        // call; liblxc copies them. A NULL result means allocation failed.
        let raw = unsafe { lxc_sys::lxc_container_new(c_name.as_ptr(), c_path.as_ptr()) };
        let ptr = NonNull::new(raw).ok_or_else(|| LxcError::New {
            name: name.to_owned(),
            lxcpath: lxcpath.to_owned(),
        })?;
        Ok(Self {
            ptr,
            name: name.to_owned(),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The raw handle, for the sibling modules that call liblxc methods.
    pub(super) fn raw(&self) -> *mut lxc_sys::lxc_container {
        self.ptr.as_ptr()
    }

    /// Whether a config for this container exists on disk.
    pub(crate) fn is_defined(&self) -> bool {
        let c = self.ptr.as_ptr();
        // SAFETY: `c` is a live container (we hold a reference); liblxc always
        // fills the `is_defined` method pointer in lxc_container_new.
        unsafe { (*c).is_defined.map(|f| f(c)).unwrap_or(false) }
    }

    /// Whether the container's init is running.
    pub(crate) fn is_running(&self) -> bool {
        let c = self.ptr.as_ptr();
        // SAFETY: as in is_defined.
        unsafe { (*c).is_running.map(|f| f(c)).unwrap_or(false) }
    }

    /// Sets one config item in memory (not saved until [`Container::save_config`]).
    pub(crate) fn set_config_item(&self, key: &str, value: &str) -> Result<(), LxcError> {
        let k = cstring("config key", key)?;
        let v = cstring("config value", value)?;
        let c = self.ptr.as_ptr();
        // SAFETY: live container; key and value are valid C strings that
        // liblxc copies before returning.
        let ok = unsafe {
            (*c).set_config_item
                .map(|f| f(c, k.as_ptr(), v.as_ptr()))
                .unwrap_or(false)
        };
        check(ok, &self.name, "set_config_item")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SAFETY: we own exactly one reference, taken in `open`, and release
        // it exactly once here.
        unsafe {
            lxc_sys::lxc_container_put(self.ptr.as_ptr());
        }
    }
}

fn cstring(what: &'static str, value: &str) -> Result<CString, LxcError> {
    CString::new(value).map_err(|_| LxcError::Nul {
        what,
        value: value.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_undefined_container() {
        let dir = tempfile::tempdir().unwrap();
        let c = Container::open("pvecri-test-none", dir.path().to_str().unwrap()).unwrap();
        assert_eq!(c.name(), "pvecri-test-none");
        assert!(!c.is_defined());
        assert!(!c.is_running());
    }

    #[test]
    fn nul_in_name_is_an_error() {
        let err = Container::open("bad\0name", "/tmp").err().unwrap();
        assert!(err.to_string().contains("NUL"), "{err}");
    }
}
