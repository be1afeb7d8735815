//! Sealed memfd copies of the files an attached process inherits. The
//! process starts inside the container as root, and the command it
//! becomes is the container's; a descriptor of a host file would let the
//! container reopen that file through `/proc/<pid>/fd` for writing (for
//! pvecri-init, which the daemon runs as root on the host, that is runc's
//! CVE-2019-5736). A memfd sealed against writes, growth and shrinking,
//! with its seals sealed, holds the same bytes and cannot be changed
//! through any descriptor.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The seals that make a memfd immutable for good.
const SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SealError {
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create a memfd for {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot copy {path} into a memfd")]
    Copy {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot seal the copy of {path}")]
    Seal {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A close-on-exec, executable memfd named `name` holding `path`'s
/// contents, sealed.
pub(crate) fn sealed_copy(path: &Path, name: &std::ffi::CStr) -> Result<File, SealError> {
    let err = |make: fn(PathBuf, std::io::Error) -> SealError| {
        move |source: std::io::Error| make(path.to_owned(), source)
    };
    let mut from =
        File::open(path).map_err(err(|path, source| SealError::Open { path, source }))?;
    let mut copy =
        File::from(memfd(name).map_err(err(|path, source| SealError::Create { path, source }))?);
    // std copies with copy_file_range (or sendfile) where it can.
    std::io::copy(&mut from, &mut copy)
        .map_err(err(|path, source| SealError::Copy { path, source }))?;
    seal(&copy).map_err(err(|path, source| SealError::Seal { path, source }))?;
    // The reader (pvecri-init reading the spec) starts where this offset is.
    std::io::Seek::rewind(&mut copy)
        .map_err(err(|path, source| SealError::Copy { path, source }))?;
    Ok(copy)
}

/// How often sealing is tried while the kernel finds the copy's pages
/// still referenced.
const SEAL_TRIES: u32 = 20;

/// Adds [`SEALS`] to `copy`, trying again while the kernel answers EBUSY:
/// the write seal waits only briefly for extra references to the copy's
/// pages to go, and pages just written can still be held in another
/// CPU's batch of pages on their way to the LRU lists (pvecri-init's own
/// copy met it once in CI, on a 2-CPU machine under load).
fn seal(copy: &File) -> std::io::Result<()> {
    let mut tries = 1;
    loop {
        // SAFETY: F_ADD_SEALS takes an integer; copy is a live memfd.
        if unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EBUSY) || tries >= SEAL_TRIES {
            return Err(err);
        }
        tries += 1;
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Whether `file` carries every seal a [`sealed_copy`] has (a regular file
/// carries none).
pub(crate) fn is_sealed(file: &impl std::os::fd::AsFd) -> bool {
    // SAFETY: F_GET_SEALS takes no argument; the fd is live for the borrow.
    let seals = unsafe { libc::fcntl(file.as_fd().as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & SEALS == SEALS
}

fn memfd(name: &std::ffi::CStr) -> std::io::Result<OwnedFd> {
    let create = |flags: libc::c_uint| {
        // SAFETY: name is NUL-terminated and outlives the call.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
        if fd < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            // SAFETY: memfd_create returned a new fd that nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        }
    };
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // MFD_EXEC (6.3) keeps the copy executable where vm.memfd_noexec asks
    // for non-executable memfds by default; older kernels refuse the flag.
    match create(flags | libc::MFD_EXEC) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => create(flags),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn a_copy_has_the_bytes_and_no_descriptor_can_change_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("init");
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let mut copy = sealed_copy(&path, c"test").unwrap();
        assert!(is_sealed(&copy));
        let mut read = Vec::new();
        // Read from where the attached process starts reading.
        copy.read_to_end(&mut read).unwrap();
        assert_eq!(read, bytes);
        let reopened = format!("/proc/self/fd/{}", copy.as_raw_fd());
        let mut writer = std::fs::OpenOptions::new()
            .append(true)
            .open(reopened)
            .unwrap();
        let denied = writer.write_all(b"x").unwrap_err();
        assert_eq!(denied.raw_os_error(), Some(libc::EPERM));
        assert!(copy.set_len(0).is_err());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "the source is untouched"
        );
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let err = sealed_copy(Path::new("/nonexistent/pvecri-init"), c"test").unwrap_err();
        assert_eq!(err.to_string(), "cannot open /nonexistent/pvecri-init");
    }

    #[test]
    fn a_plain_file_is_not_sealed() {
        assert!(!is_sealed(&tempfile::tempfile().unwrap()));
    }
}
