//! Writers for each kind of tar entry. Each one first clears the name in its
//! (already symlink-free) parent directory, so an existing symlink is
//! unlinked and replaced, never written through.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{makedev, mkdirat, mknodat, Mode, SFlag};
use nix::unistd::{linkat, symlinkat, unlinkat, UnlinkatFlags};
use tar::EntryType;

use super::error::{io_fail, Fail};
use super::fsat;
use super::metadata::{Meta, Target};
use super::path::{normalize, split};
use super::unpacker::Unpacker;

/// Mode an entry is created with until its own mode is applied: nobody else
/// can open a half-written file in between.
const PRIVATE_MODE: u32 = 0o700;

impl Unpacker<'_> {
    pub(super) fn write_file<R: Read>(
        &mut self,
        parent: BorrowedFd<'_>,
        rel: &Path,
        name: &OsStr,
        entry: &mut tar::Entry<'_, R>,
        meta: &Meta,
    ) -> Result<(), Fail> {
        self.clear_slot(parent, rel, name, false)?;
        // O_EXCL|O_NOFOLLOW: should anything reappear at the name, fail
        // rather than write through it.
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(parent, name, flags, Mode::from_bits_truncate(PRIVATE_MODE))
            .map_err(io_fail("create file"))?;
        let mut file = File::from(fd);
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Fail::Corrupt(e)),
            };
            file.write_all(&self.buf[..n]).map_err(io_fail("write"))?;
            self.stats.bytes += n as u64;
        }
        meta.apply_fd(file.as_fd(), self.chown)?;
        meta.set_mtime_fd(file.as_fd())
    }

    pub(super) fn write_dir(
        &mut self,
        parent: BorrowedFd<'_>,
        rel: &Path,
        name: &OsStr,
        meta: &Meta,
    ) -> Result<(), Fail> {
        if !self.clear_slot(parent, rel, name, true)? {
            mkdirat(parent, name, Mode::from_bits_truncate(PRIVATE_MODE))
                .map_err(io_fail("create directory"))?;
        }
        let fd = fsat::open_dir(parent, name).map_err(io_fail("open directory"))?;
        meta.apply_fd(fd.as_fd(), self.chown)?;
        self.dir_times.insert(rel.to_owned(), meta.mtime);
        Ok(())
    }

    pub(super) fn write_symlink(
        &mut self,
        parent: BorrowedFd<'_>,
        rel: &Path,
        name: &OsStr,
        target: &[u8],
        meta: &Meta,
    ) -> Result<(), Fail> {
        self.clear_slot(parent, rel, name, false)?;
        // The target is stored verbatim: it is only ever resolved inside the
        // container's root, never by the unpacker.
        symlinkat(OsStr::from_bytes(target), parent, name).map_err(io_fail("create symlink"))?;
        meta.apply_at(
            parent,
            name,
            &self.dest.join(rel),
            Target::Symlink,
            self.chown,
        )?;
        meta.set_mtime_at(parent, name)
    }

    /// The link shares the target's inode, so the header's metadata is not
    /// applied: it would only restate (or clobber) the target's.
    pub(super) fn write_hardlink(
        &mut self,
        parent: BorrowedFd<'_>,
        rel: &Path,
        name: &OsStr,
        target: &[u8],
    ) -> Result<(), Fail> {
        let target = normalize(target).ok_or(Fail::Escape)?;
        let (target_parent, target_name) =
            split(&target).ok_or(Fail::Invalid("hard link to the layer root"))?;
        if target == rel {
            return Ok(());
        }
        self.clear_slot(parent, rel, name, false)?;
        // Resolved after the slot is cleared, which may have dropped the cache.
        let Some(target_dir) = self.parent_dir(target_parent, false)? else {
            return Err(Fail::Io("create hard link", Errno::ENOENT.into()));
        };
        // No AT_SYMLINK_FOLLOW: a symlink target is linked as the symlink itself.
        linkat(
            target_dir.as_fd(),
            target_name,
            parent,
            name,
            AtFlags::empty(),
        )
        .map_err(io_fail("create hard link"))
    }

    pub(super) fn write_node(
        &mut self,
        parent: BorrowedFd<'_>,
        rel: &Path,
        name: &OsStr,
        kind: EntryType,
        header: &tar::Header,
        meta: &Meta,
    ) -> Result<(), Fail> {
        let (sflag, dev) = match kind {
            EntryType::Fifo => (SFlag::S_IFIFO, 0),
            EntryType::Char | EntryType::Block => {
                let major = header.device_major().map_err(Fail::Corrupt)?.unwrap_or(0);
                let minor = header.device_minor().map_err(Fail::Corrupt)?.unwrap_or(0);
                let sflag = if kind == EntryType::Char {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                (sflag, makedev(major.into(), minor.into()))
            }
            _ => return Err(Fail::Invalid("not a device or fifo")),
        };
        self.clear_slot(parent, rel, name, false)?;
        mknodat(
            parent,
            name,
            sflag,
            Mode::from_bits_truncate(PRIVATE_MODE),
            dev,
        )
        .map_err(io_fail("create device node"))?;
        meta.apply_at(parent, name, &self.dest.join(rel), Target::Node, self.chown)?;
        meta.set_mtime_at(parent, name)
    }

    /// Makes `name` free for a new entry. An existing directory is kept (and
    /// `true` returned) when `keep_dir` is set; anything else is removed.
    fn clear_slot(
        &mut self,
        parent: BorrowedFd<'_>,
        rel: &Path,
        name: &OsStr,
        keep_dir: bool,
    ) -> Result<bool, Fail> {
        let Some(st) = fsat::stat_at(parent, name).map_err(io_fail("stat"))? else {
            return Ok(false);
        };
        if fsat::file_type(&st) != SFlag::S_IFDIR {
            unlinkat(parent, name, UnlinkatFlags::NoRemoveDir)
                .map_err(io_fail("remove existing"))?;
            return Ok(false);
        }
        if keep_dir {
            return Ok(true);
        }
        fsat::remove_tree(parent, name).map_err(io_fail("remove existing directory"))?;
        self.forget_dirs();
        self.dir_times.retain(|dir, _| !dir.starts_with(rel));
        Ok(false)
    }
}
