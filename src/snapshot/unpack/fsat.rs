//! Directory-fd based filesystem primitives that never follow symlinks.
//!
//! Every entry is created relative to an fd of its parent directory, and that
//! fd is reached from the unpack root one component at a time with
//! `O_NOFOLLOW | O_DIRECTORY`. A symlink anywhere on the way (`etc -> /etc`,
//! `x -> ../..`) therefore stops the walk instead of redirecting the write,
//! and the final operation resolves a single name inside that directory fd.
//! (The one path-based call, xattrs on symlinks and device nodes, has no fd
//! variant; it runs on a path whose parents this walk has just checked.)

use std::ffi::{CStr, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::NonNull;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::error::{io_fail, Fail};

/// Mode for parent directories a layer uses without listing them; matches
/// what containerd and Docker create in that case.
const IMPLICIT_DIR_MODE: u32 = 0o755;

/// Opens directory `name` inside `parent` without following a symlink there.
pub(super) fn open_dir(parent: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Walks `rel` (normalised, relative) down from `start`, creating missing
/// directories when `create` is set. Returns `None` if a component is
/// missing and `create` is not set. A symlink component is an escape attempt.
pub(super) fn walk(
    start: BorrowedFd<'_>,
    rel: &Path,
    create: bool,
) -> Result<Option<OwnedFd>, Fail> {
    let mut cur = start
        .try_clone_to_owned()
        .map_err(io_fail("open directory"))?;
    for part in rel.iter() {
        let next = match open_dir(cur.as_fd(), part) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create => {
                mkdirat(
                    cur.as_fd(),
                    part,
                    Mode::from_bits_truncate(IMPLICIT_DIR_MODE),
                )
                .map_err(io_fail("create parent directory"))?;
                open_dir(cur.as_fd(), part)
                    .map_err(|e| classify_open_error(cur.as_fd(), part, e))?
            }
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(classify_open_error(cur.as_fd(), part, e)),
        };
        cur = next;
    }
    Ok(Some(cur))
}

/// `O_NOFOLLOW | O_DIRECTORY` reports a symlink as `ELOOP` or `ENOTDIR`
/// depending on the kernel path taken, so look at what is really there.
fn classify_open_error(parent: BorrowedFd<'_>, name: &OsStr, err: Errno) -> Fail {
    if !matches!(err, Errno::ELOOP | Errno::ENOTDIR) {
        return Fail::Io("open directory", err.into());
    }
    match stat_at(parent, name) {
        Ok(Some(st)) if file_type(&st) == SFlag::S_IFLNK => Fail::Escape,
        Ok(Some(_)) => Fail::Invalid("a parent path component is not a directory"),
        Ok(None) => Fail::Io("open directory", err.into()),
        Err(e) => Fail::Io("stat", e.into()),
    }
}

/// `lstat` of `name` inside `parent`; `None` if nothing is there.
pub(super) fn stat_at(parent: BorrowedFd<'_>, name: &OsStr) -> Result<Option<FileStat>, Errno> {
    match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(super) fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Removes `name` inside `parent`, recursively if it is a directory, never
/// following symlinks. Missing is fine.
pub(super) fn remove_tree(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    if !unlink_non_dir(parent, name)? {
        return Ok(());
    }
    // Depth-first with an explicit stack: a hostile layer can nest directories
    // far deeper than the thread stack could recurse.
    struct Frame {
        name: OsString,
        fd: OwnedFd,
        children: Vec<OsString>,
    }
    let fd = open_dir(parent, name)?;
    let children = list_dir(fd.as_fd())?;
    let mut stack = vec![Frame {
        name: name.to_owned(),
        fd,
        children,
    }];
    while let Some(top) = stack.last_mut() {
        if let Some(child) = top.children.pop() {
            if unlink_non_dir(top.fd.as_fd(), &child)? {
                let fd = open_dir(top.fd.as_fd(), &child)?;
                let children = list_dir(fd.as_fd())?;
                stack.push(Frame {
                    name: child,
                    fd,
                    children,
                });
            }
            continue;
        }
        let done = stack.pop().expect("stack is not empty");
        let holder = stack.last().map_or(parent, |f| f.fd.as_fd());
        unlinkat(holder, done.name.as_os_str(), UnlinkatFlags::RemoveDir)?;
    }
    Ok(())
}

/// Unlinks a non-directory; returns whether `name` is a directory instead.
/// Trying the unlink first saves a stat on the common path; Linux reports a
/// directory as `EISDIR`.
fn unlink_non_dir(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<bool> {
    match unlinkat(parent, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(false),
        Err(Errno::EISDIR) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Names in directory `dir`, without `.` and `..`.
pub(super) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let stream = DirStream::open(dir)?;
    let mut names = Vec::new();
    loop {
        Errno::clear();
        // SAFETY: the stream pointer is valid for the life of `stream`, which
        // is not shared with another thread.
        let ent = unsafe { libc::readdir(stream.0.as_ptr()) };
        if ent.is_null() {
            return match Errno::last() {
                Errno::UnknownErrno => Ok(names),
                e => Err(e.into()),
            };
        }
        // SAFETY: readdir returned a valid dirent whose d_name is a
        // NUL-terminated string, valid until the next readdir on this stream;
        // it is copied out before that.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_owned());
        }
    }
}

/// Owned `DIR*` stream; closed on drop.
struct DirStream(NonNull<libc::DIR>);

impl DirStream {
    fn open(dir: BorrowedFd<'_>) -> io::Result<Self> {
        // fdopendir takes over the fd, so hand it a duplicate and leave
        // `dir` usable by the caller.
        let raw = dir.try_clone_to_owned()?.into_raw_fd();
        // SAFETY: `raw` is an open directory fd that we own; on success the
        // stream owns it.
        let ptr = unsafe { libc::fdopendir(raw) };
        match NonNull::new(ptr) {
            Some(ptr) => {
                // SAFETY: ptr is a valid stream. A duplicate shares the file
                // offset with `dir`, so start from the beginning explicitly.
                unsafe { libc::rewinddir(ptr.as_ptr()) };
                Ok(DirStream(ptr))
            }
            None => {
                let err = io::Error::last_os_error();
                // SAFETY: fdopendir failed, so `raw` is still ours to close.
                unsafe { libc::close(raw) };
                Err(err)
            }
        }
    }
}

impl Drop for DirStream {
    fn drop(&mut self) {
        // SAFETY: the stream is valid and closed exactly once, here.
        unsafe { libc::closedir(self.0.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn root_fd(dir: &Path) -> OwnedFd {
        nix::fcntl::open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap()
    }

    #[test]
    fn walk_creates_missing_parents_only_when_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let root = root_fd(tmp.path());
        assert!(walk(root.as_fd(), Path::new("a/b"), false)
            .unwrap()
            .is_none());
        assert!(walk(root.as_fd(), Path::new("a/b"), true)
            .unwrap()
            .is_some());
        assert!(tmp.path().join("a/b").is_dir());
    }

    #[test]
    fn walk_refuses_symlinked_components() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), tmp.path().join("link")).unwrap();
        symlink("../..", tmp.path().join("up")).unwrap();
        let root = root_fd(tmp.path());
        for rel in ["link", "link/sub", "up/x"] {
            match walk(root.as_fd(), Path::new(rel), true) {
                Err(Fail::Escape) => {}
                other => panic!("{rel}: expected escape, got {other:?}"),
            }
        }
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn walk_reports_a_file_in_the_way() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("f"), b"").unwrap();
        let root = root_fd(tmp.path());
        assert!(matches!(
            walk(root.as_fd(), Path::new("f/x"), true),
            Err(Fail::Invalid(_))
        ));
    }

    #[test]
    fn remove_tree_deletes_deep_trees_but_not_symlink_targets() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("keep"), b"x").unwrap();
        let deep = tmp.path().join("t/a/b/c/d");
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("f"), b"x").unwrap();
        symlink(outside.path(), tmp.path().join("t/a/link")).unwrap();
        let root = root_fd(tmp.path());

        remove_tree(root.as_fd(), OsStr::new("t")).unwrap();
        assert!(!tmp.path().join("t").exists());
        assert!(outside.path().join("keep").exists());
        // Missing is not an error, and a top-level symlink is unlinked, not followed.
        remove_tree(root.as_fd(), OsStr::new("t")).unwrap();
        symlink(outside.path(), tmp.path().join("l")).unwrap();
        remove_tree(root.as_fd(), OsStr::new("l")).unwrap();
        assert!(outside.path().join("keep").exists());
    }

    #[test]
    fn list_dir_skips_dot_entries_and_leaves_fd_usable() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("x"), b"").unwrap();
        fs::create_dir(tmp.path().join("y")).unwrap();
        let root = root_fd(tmp.path());
        let mut names = list_dir(root.as_fd()).unwrap();
        names.sort();
        assert_eq!(names, ["x", "y"]);
        // Listing again from the same fd starts over.
        assert_eq!(list_dir(root.as_fd()).unwrap().len(), 2);
    }
}
