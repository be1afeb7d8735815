//! Extended-attribute calls. nix has no xattr wrappers and the `xattr` crate
//! is not a direct dependency, so the two libc calls we need live here.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Sets `name` on the file open as `fd`.
pub(super) fn set_fd(fd: BorrowedFd<'_>, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: `fd` is open for the duration of the call, `name` is
    // NUL-terminated and `value` is valid for `value.len()` bytes.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    check(rc)
}

/// Sets `name` on `path` itself, not on what a symlink there points to. Only
/// for entries that cannot be opened for `fsetxattr` (symlinks, device nodes,
/// fifos); the caller has already walked `path`'s parents symlink-free.
pub(super) fn set_path_nofollow(path: &Path, name: &CStr, value: &[u8]) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: both strings are NUL-terminated and live across the call;
    // `value` is valid for `value.len()` bytes.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    check(rc)
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads `name` of `path` without following a symlink; `None` if unset.
#[cfg(test)]
pub(super) fn get_path_nofollow(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let path = CString::new(path.as_os_str().as_bytes())?;
    let name = CString::new(name)?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: both strings are NUL-terminated and `buf` is writable for its length.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENODATA) => Ok(None),
            _ => Err(err),
        };
    }
    buf.truncate(n as usize);
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn user_xattr_roundtrip_on_fd_and_path() {
        let tmp = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(tmp.path().join("f")).unwrap();
        let name = CString::new("user.pvecri.test").unwrap();
        match set_fd(file.as_fd(), &name, b"v1") {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                eprintln!("skipping user_xattr_roundtrip_on_fd_and_path: no user xattrs on tmp fs");
                return;
            }
            other => other.unwrap(),
        }
        let path = tmp.path().join("f");
        assert_eq!(
            get_path_nofollow(&path, "user.pvecri.test")
                .unwrap()
                .as_deref(),
            Some(&b"v1"[..])
        );
        set_path_nofollow(&path, &name, b"v2").unwrap();
        assert_eq!(
            get_path_nofollow(&path, "user.pvecri.test")
                .unwrap()
                .as_deref(),
            Some(&b"v2"[..])
        );
        assert_eq!(get_path_nofollow(&path, "user.unset").unwrap(), None);
    }
}
