//! A metadata-preserving recursive copy (owners, modes incl. setuid,
//! timestamps, xattrs, symlinks, hard links, device nodes), for the
//! directory backend.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::error::io;
use super::SnapshotError;

/// Copies the tree at `src` to `dst`, which must not exist.
pub(super) fn copy_tree(src: &Path, dst: &Path) -> Result<(), SnapshotError> {
    let mut links = HashMap::new();
    copy_entry(src, dst, &mut links)
}

fn copy_entry(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
) -> Result<(), SnapshotError> {
    let meta = std::fs::symlink_metadata(src).map_err(io("stat", src))?;
    let ft = meta.file_type();
    if ft.is_dir() {
        std::fs::create_dir(dst).map_err(io("create", dst))?;
        for entry in std::fs::read_dir(src).map_err(io("list", src))? {
            let entry = entry.map_err(io("list", src))?;
            copy_entry(&entry.path(), &dst.join(entry.file_name()), links)?;
        }
    } else {
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = links.get(&key) {
                return std::fs::hard_link(first, dst).map_err(io("link", dst));
            }
            links.insert(key, dst.to_owned());
        }
        if ft.is_symlink() {
            let target = std::fs::read_link(src).map_err(io("readlink", src))?;
            std::os::unix::fs::symlink(&target, dst).map_err(io("symlink", dst))?;
        } else if ft.is_file() {
            std::fs::copy(src, dst).map_err(io("copy", dst))?;
        } else if ft.is_socket() {
            return Ok(());
        } else {
            let kind = if ft.is_char_device() {
                SFlag::S_IFCHR
            } else if ft.is_block_device() {
                SFlag::S_IFBLK
            } else {
                SFlag::S_IFIFO
            };
            mknod(
                dst,
                kind,
                Mode::from_bits_truncate(meta.mode()),
                meta.rdev(),
            )
            .map_err(|e| io("mknod", dst)(e.into()))?;
        }
    }
    copy_metadata(src, dst, &meta)
}

fn copy_metadata(src: &Path, dst: &Path, meta: &std::fs::Metadata) -> Result<(), SnapshotError> {
    let is_link = meta.file_type().is_symlink();
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid())).map_err(io("chown", dst))?;
    if !is_link {
        // After chown, which clears setuid/setgid.
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(io("chmod", dst))?;
    }
    if let Ok(names) = xattr::list(src) {
        for name in names {
            if let Ok(Some(value)) = xattr::get(src, &name) {
                xattr::set(dst, &name, &value).map_err(io("setxattr", dst))?;
            }
        }
    }
    let atime = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    utimensat(
        nix::fcntl::AT_FDCWD,
        dst,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| io("utimensat", dst)(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_everything_with_metadata() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping copies_everything_with_metadata: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("f"), b"data").unwrap();
        std::os::unix::fs::lchown(src.join("f"), Some(1000), Some(1001)).unwrap();
        std::fs::set_permissions(src.join("f"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::fs::hard_link(src.join("f"), src.join("h")).unwrap();
        std::os::unix::fs::symlink("f", src.join("l")).unwrap();
        mknod(
            &src.join("null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
        std::fs::create_dir(src.join("d")).unwrap();
        xattr::set(src.join("d"), "user.pvecri", b"x").unwrap();

        let dst = dir.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        let f = std::fs::metadata(dst.join("f")).unwrap();
        assert_eq!((f.uid(), f.gid(), f.mode() & 0o7777), (1000, 1001, 0o4755));
        assert_eq!(std::fs::read(dst.join("f")).unwrap(), b"data");
        assert_eq!(std::fs::metadata(dst.join("h")).unwrap().ino(), f.ino());
        assert_eq!(std::fs::read_link(dst.join("l")).unwrap(), Path::new("f"));
        assert!(std::fs::metadata(dst.join("null"))
            .unwrap()
            .file_type()
            .is_char_device());
        assert_eq!(
            xattr::get(dst.join("d"), "user.pvecri").unwrap().unwrap(),
            b"x"
        );
        assert_eq!(
            std::fs::metadata(dst.join("f")).unwrap().mtime(),
            std::fs::metadata(src.join("f")).unwrap().mtime()
        );
    }
}
