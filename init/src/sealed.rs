//! Sealed in-memory copies of pvecri-init. A process a container can see
//! must not run the host's binary: `/proc/<pid>/exe` reopens that very
//! file, for writing too once nothing executes it any more (runc's
//! CVE-2019-5736), and the daemon runs it as root on the host. A memfd
//! copy sealed against writing, growing and shrinking, with the seals
//! themselves sealed, cannot be changed by anyone, whoever opens it.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::sys::{self, Errno};

/// The seals that make a memfd immutable for good.
pub(crate) const SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// A close-on-exec memfd holding `from`'s contents (read from its current
/// offset), executable and sealed.
pub(crate) fn sealed_copy(from: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // MFD_EXEC (6.3) keeps the copy executable where vm.memfd_noexec asks
    // for non-executable memfds by default; older kernels refuse the flag.
    let memfd = match sys::memfd_create(name, flags | libc::MFD_EXEC) {
        Err(Errno(libc::EINVAL)) => sys::memfd_create(name, flags)?,
        other => other?,
    };
    sys::copy_all(from, memfd.as_fd())?;
    seal_write(memfd.as_fd())?;
    Ok(memfd)
}

/// How often sealing is tried while the kernel finds the copy's pages
/// still referenced.
const SEAL_TRIES: u32 = 20;

/// Adds [`SEALS`], trying again while the kernel answers EBUSY: the
/// write seal waits only briefly for extra references to the copy's
/// pages to go, and pages just written can still be held in another
/// CPU's batch of pages on their way to the LRU lists (seen once in CI, on
/// a 2-CPU machine under load).
fn seal_write(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let mut tries = 1;
    loop {
        match sys::add_seals(fd, SEALS) {
            Err(Errno(libc::EBUSY)) if tries < SEAL_TRIES => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Whether `fd` is a memfd carrying all of [`SEALS`].
pub(crate) fn is_sealed(fd: BorrowedFd<'_>) -> bool {
    sys::seals(fd).is_ok_and(|s| s & SEALS == SEALS)
}

/// Makes sure this process runs from a sealed copy of itself: returns
/// when it already does, else re-executes itself from one with the same
/// arguments and environment (and returns only if that fails). Used by the
/// modes that leave a process in a pod's PID namespace, before anything
/// else happens, so the PID stays the one the daemon started.
pub(crate) fn reexec_sealed() -> Result<(), (&'static str, Errno)> {
    let exe = sys::open_at_cwd(c"/proc/self/exe").map_err(|e| ("open /proc/self/exe", e))?;
    if is_sealed(exe.as_fd()) {
        return Ok(());
    }
    let copy = sealed_copy(exe.as_fd(), c"pvecri-init").map_err(|e| ("sealed copy", e))?;
    drop(exe);
    let args = c_strings(std::env::args_os().map(OsStringExt::into_vec));
    let env = c_strings(std::env::vars_os().map(|(k, v)| {
        let mut entry = k.into_vec();
        entry.push(b'=');
        entry.extend_from_slice(v.as_bytes());
        entry
    }));
    // The memfd is close-on-exec: the new image holds no descriptor of it.
    Err((
        "exec the sealed copy",
        sys::execve_fd(copy.as_fd(), &args, &env),
    ))
}

/// Arguments and environment entries as C strings; none can hold a NUL
/// (the kernel handed them over as C strings).
fn c_strings(items: impl Iterator<Item = Vec<u8>>) -> Vec<CString> {
    items.filter_map(|item| CString::new(item).ok()).collect()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;

    use super::*;

    fn copy_of(bytes: &[u8]) -> std::fs::File {
        let mut src = tempfile::tempfile().unwrap();
        src.write_all(bytes).unwrap();
        src.rewind().unwrap();
        std::fs::File::from(sealed_copy(src.as_fd(), c"test").unwrap())
    }

    #[test]
    fn the_copy_has_the_contents_and_cannot_change() {
        let bytes: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut copy = copy_of(&bytes);
        assert!(is_sealed(copy.as_fd()));
        let mut read = Vec::new();
        copy.rewind().unwrap();
        copy.read_to_end(&mut read).unwrap();
        assert_eq!(read, bytes);
        // Not through this descriptor, nor through a new one.
        let err = copy.write_all(b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
        let path = format!("/proc/self/fd/{}", copy.as_raw_fd());
        let mut reopened = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        let err = reopened.write_all(b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
        assert_eq!(
            copy.set_len(1).unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
        assert_eq!(
            sys::add_seals(copy.as_fd(), 0),
            Err(Errno(libc::EPERM)),
            "the seals are sealed"
        );
    }

    #[test]
    fn the_copy_is_close_on_exec() {
        let copy = copy_of(b"#!/bin/true\n");
        // SAFETY: F_GETFD on a descriptor we own.
        let flags = unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_GETFD) };
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
    }

    #[test]
    fn an_ordinary_file_is_not_sealed() {
        let file = tempfile::tempfile().unwrap();
        assert!(!is_sealed(file.as_fd()));
    }
}
