//! Reading a small text file of an image (`/etc/passwd`, `/etc/group`) from
//! the host, as the image is untrusted.
//!
//! - The path is resolved by the kernel with the root filesystem as root
//!   (`openat2` `RESOLVE_IN_ROOT`): absolute symlinks restart at the image's
//!   root and `..` never climbs above it, so `etc -> /etc` or
//!   `passwd -> ../../../../etc/shadow` name files of the image, never of
//!   the host. Magic links (`/proc/self/...`) are refused.
//! - It is opened `O_PATH` first and checked with `fstat`: a FIFO would
//!   block the reader forever, and opening a device node (an image can
//!   ship any, e.g. the watchdog, which arms on open) has side effects.
//!   Only a regular file is then opened for reading, through that very
//!   descriptor, with `O_NONBLOCK`.
//! - At most [`IMAGE_TEXT_FILE_MAX`] bytes are read.
//!
//! Callers run this on a blocking thread: it is file I/O on an overlay.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, Mode, SFlag};

use crate::image::limits::IMAGE_TEXT_FILE_MAX;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ImageFileError {
    #[error("cannot open the image's root filesystem {root}")]
    Root {
        root: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("cannot open the image's /{path}")]
    Open {
        path: String,
        #[source]
        source: Errno,
    },
    #[error("the image's /{path} is {kind}, not a regular file")]
    NotRegular { path: String, kind: &'static str },
    #[error("the image's /{path} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("cannot read the image's /{path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The text of `rel` (relative to the image's root, e.g. `etc/passwd`);
/// a missing file, or a missing directory on the way, reads as empty.
/// Bytes that are not UTF-8 are replaced, as a name lookup needs no more.
pub(crate) fn read(rootfs: &Path, rel: &str) -> Result<String, ImageFileError> {
    read_capped(rootfs, rel, IMAGE_TEXT_FILE_MAX)
}

fn read_capped(rootfs: &Path, rel: &str, limit: u64) -> Result<String, ImageFileError> {
    let root = open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| ImageFileError::Root {
        root: rootfs.to_owned(),
        source,
    })?;
    let open_error = |source| ImageFileError::Open {
        path: rel.to_owned(),
        source,
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let found = match openat2(&root, rel, how) {
        Ok(fd) => fd,
        Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(String::new()),
        Err(e) => return Err(open_error(e)),
    };
    let st = fstat(&found).map_err(open_error)?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    if kind != SFlag::S_IFREG {
        return Err(ImageFileError::NotRegular {
            path: rel.to_owned(),
            kind: describe(kind),
        });
    }
    let size = st.st_size as u64;
    if size > limit {
        return Err(ImageFileError::TooLarge {
            path: rel.to_owned(),
            size,
            limit,
        });
    }
    let file = File::from(reopen(&found).map_err(open_error)?);
    let mut data = Vec::with_capacity(size as usize);
    // The size was checked, but a file can grow; one byte more tells.
    file.take(limit + 1)
        .read_to_end(&mut data)
        .map_err(|source| ImageFileError::Read {
            path: rel.to_owned(),
            source,
        })?;
    if data.len() as u64 > limit {
        return Err(ImageFileError::TooLarge {
            path: rel.to_owned(),
            size: data.len() as u64,
            limit,
        });
    }
    Ok(String::from_utf8_lossy(&data).into_owned())
}

/// Opens the inode behind an `O_PATH` descriptor for reading. The
/// `/proc/self/fd` link names that inode, not a path, so nothing can be
/// swapped in between the check and the open.
fn reopen(path_fd: &OwnedFd) -> Result<OwnedFd, Errno> {
    open(
        format!("/proc/self/fd/{}", path_fd.as_raw_fd()).as_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn describe(kind: SFlag) -> &'static str {
    match kind {
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFLNK => "a symlink",
        _ => "not a file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    use nix::sys::stat::{makedev, mknod};
    use nix::unistd::mkfifo;

    struct Image {
        dir: tempfile::TempDir,
    }

    impl Image {
        /// A root with `etc/`, and a host file outside it.
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("root/etc")).unwrap();
            std::fs::write(dir.path().join("host-secret"), "host:x:0:0::/:/bin/sh\n").unwrap();
            Image { dir }
        }

        fn root(&self) -> PathBuf {
            self.dir.path().join("root")
        }

        fn etc(&self, name: &str) -> PathBuf {
            self.root().join("etc").join(name)
        }
    }

    #[test]
    fn reads_a_regular_file_and_missing_reads_empty() {
        let img = Image::new();
        std::fs::write(img.etc("passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        assert_eq!(
            read(&img.root(), "etc/passwd").unwrap(),
            "root:x:0:0::/root:/bin/sh\n"
        );
        assert_eq!(read(&img.root(), "etc/group").unwrap(), "");
        assert_eq!(read(&img.root(), "nothing/here/group").unwrap(), "");
        assert_eq!(read(&img.root(), "etc/passwd/group").unwrap(), "");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let img = Image::new();
        mkfifo(&img.etc("passwd"), Mode::from_bits_truncate(0o644)).unwrap();
        let err = read(&img.root(), "etc/passwd").unwrap_err();
        assert!(
            matches!(err, ImageFileError::NotRegular { kind: "a FIFO", .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "the image's /etc/passwd is a FIFO, not a regular file"
        );
    }

    #[test]
    fn device_nodes_are_refused_unopened() {
        let img = Image::new();
        // Inside the root, /dev/zero is the image's, which has none: a
        // link to it reads as missing, never as the host's endless zeros.
        symlink("/dev/zero", img.etc("group")).unwrap();
        assert_eq!(read(&img.root(), "etc/group").unwrap(), "");
        // A device node the image ships (layers may carry any): needs root.
        let node = img.etc("passwd");
        match mknod(
            &node,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o644),
            makedev(1, 5),
        ) {
            Ok(()) => {
                let err = read(&img.root(), "etc/passwd").unwrap_err();
                assert!(
                    matches!(
                        err,
                        ImageFileError::NotRegular {
                            kind: "a character device",
                            ..
                        }
                    ),
                    "{err:?}"
                );
            }
            Err(e) => eprintln!("skipping the device node case: mknod: {e}"),
        }
    }

    #[test]
    fn sockets_and_directories_are_refused() {
        let img = Image::new();
        std::fs::create_dir(img.etc("passwd")).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(img.etc("group")).unwrap();
        let kind = |rel| match read(&img.root(), rel) {
            Err(ImageFileError::NotRegular { kind, .. }) => kind,
            other => panic!("{rel}: {other:?}"),
        };
        assert_eq!(kind("etc/passwd"), "a directory");
        assert_eq!(kind("etc/group"), "a socket");
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let img = Image::new();
        std::fs::write(img.etc("passwd.real"), "img:x:1:1::/:/bin/sh\n").unwrap();
        // Absolute, relative and climbing links, and a linked directory.
        symlink("/etc/passwd.real", img.etc("passwd")).unwrap();
        assert_eq!(
            read(&img.root(), "etc/passwd").unwrap(),
            "img:x:1:1::/:/bin/sh\n"
        );
        symlink("../../../../host-secret", img.etc("group")).unwrap();
        assert_eq!(read(&img.root(), "etc/group").unwrap(), "");
        symlink(img.dir.path(), img.root().join("hostdir")).unwrap();
        assert_eq!(read(&img.root(), "hostdir/host-secret").unwrap(), "");
        // A real file of that name inside the root is what they reach.
        std::fs::write(img.root().join("host-secret"), "inside\n").unwrap();
        assert_eq!(read(&img.root(), "etc/group").unwrap(), "inside\n");
    }

    #[test]
    fn magic_links_and_loops_are_refused() {
        let img = Image::new();
        std::fs::create_dir_all(img.root().join("proc/self")).unwrap();
        symlink("/proc/self/root/etc/passwd", img.etc("passwd")).unwrap();
        // The image's /proc is an ordinary directory: not the host's.
        assert_eq!(read(&img.root(), "etc/passwd").unwrap(), "");
        symlink("loop-b", img.etc("loop-a")).unwrap();
        symlink("loop-a", img.etc("loop-b")).unwrap();
        let err = read(&img.root(), "etc/loop-a").unwrap_err();
        assert!(
            matches!(
                err,
                ImageFileError::Open {
                    source: Errno::ELOOP,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn oversized_files_are_refused() {
        let img = Image::new();
        std::fs::write(img.etc("passwd"), vec![b'x'; 101]).unwrap();
        let err = read_capped(&img.root(), "etc/passwd", 100).unwrap_err();
        assert!(
            matches!(
                err,
                ImageFileError::TooLarge {
                    size: 101,
                    limit: 100,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            read_capped(&img.root(), "etc/passwd", 101).unwrap().len(),
            101
        );
        // And the real cap, with a sparse file that costs no disk.
        let big = File::create(img.etc("group")).unwrap();
        big.set_len(IMAGE_TEXT_FILE_MAX + 1).unwrap();
        assert!(matches!(
            read(&img.root(), "etc/group"),
            Err(ImageFileError::TooLarge { .. })
        ));
    }
}
