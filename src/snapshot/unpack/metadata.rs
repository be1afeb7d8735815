//! Ownership, mode, xattrs and mtime of an entry, read from its tar header
//! and PAX records, and applied in the one order that keeps them all: chown
//! first (it clears setuid/setgid and file capabilities), then chmod, then
//! xattrs (so `security.capability` survives), mtime last.

use std::ffi::{CString, OsStr};
use std::io::Read;
use std::os::fd::BorrowedFd;
use std::path::Path;

use nix::fcntl::AtFlags;
use nix::sys::stat::{fchmod, fchmodat, futimens, utimensat, FchmodatFlags, Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, Gid, Uid};

use super::error::{io_fail, Fail};
use super::xattr;

const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// Overlayfs keeps its own bookkeeping (opaque dirs, redirects, metacopy) in
/// these; a layer that ships them could make overlayfs reinterpret the
/// stack, so they only ever come from our own whiteout conversion.
const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";

/// Permission bits including setuid, setgid and sticky; some writers also put
/// file-type bits in the tar mode field.
const PERMISSION_BITS: u32 = 0o7777;

#[derive(Debug)]
pub(super) struct Meta {
    pub uid: u32,
    pub gid: u32,
    pub mode: Mode,
    pub mtime: TimeSpec,
    pub xattrs: Vec<(CString, Vec<u8>)>,
}

/// How to apply metadata to an entry that cannot be opened as an fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    Symlink,
    Node,
}

impl Meta {
    /// Reads the header and PAX records. The tar crate already folds PAX
    /// `uid`/`gid` into the header, but not the sub-second PAX `mtime`.
    pub(super) fn read<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, Fail> {
        let header = entry.header();
        let mode = header.mode().map_err(Fail::Corrupt)? & PERMISSION_BITS;
        let uid = u32::try_from(header.uid().map_err(Fail::Corrupt)?)
            .map_err(|_| Fail::Invalid("uid does not fit in 32 bits"))?;
        let gid = u32::try_from(header.gid().map_err(Fail::Corrupt)?)
            .map_err(|_| Fail::Invalid("gid does not fit in 32 bits"))?;
        let secs = i64::try_from(header.mtime().map_err(Fail::Corrupt)?)
            .map_err(|_| Fail::Invalid("mtime out of range"))?;
        let mut meta = Meta {
            uid,
            gid,
            mode: Mode::from_bits_truncate(mode),
            mtime: TimeSpec::new(secs, 0),
            xattrs: Vec::new(),
        };
        let Some(pax) = entry.pax_extensions().map_err(Fail::Corrupt)? else {
            return Ok(meta);
        };
        for ext in pax {
            let ext = ext.map_err(Fail::Corrupt)?;
            let key = ext.key_bytes();
            if key == b"mtime" {
                if let Some(t) = ext.value().ok().and_then(parse_pax_time) {
                    meta.mtime = t;
                }
            } else if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                if name.starts_with(OVERLAY_XATTR_PREFIX) {
                    continue;
                }
                let name =
                    CString::new(name).map_err(|_| Fail::Invalid("xattr name contains NUL"))?;
                meta.xattrs.push((name, ext.value_bytes().to_vec()));
            }
        }
        Ok(meta)
    }

    /// Applies ownership, mode and xattrs to an open file or directory.
    /// `chown` is off when not running as root, where it could only fail.
    pub(super) fn apply_fd(&self, fd: BorrowedFd<'_>, chown: bool) -> Result<(), Fail> {
        if chown {
            fchown(
                fd,
                Some(Uid::from_raw(self.uid)),
                Some(Gid::from_raw(self.gid)),
            )
            .map_err(io_fail("chown"))?;
        }
        fchmod(fd, self.mode).map_err(io_fail("chmod"))?;
        for (name, value) in &self.xattrs {
            xattr::set_fd(fd, name, value).map_err(io_fail("set xattr on"))?;
        }
        Ok(())
    }

    /// Applies ownership, mode and xattrs to `name` in `parent` without
    /// following it; `full` is the same entry as a path, for the xattr calls.
    pub(super) fn apply_at(
        &self,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        full: &Path,
        target: Target,
        chown: bool,
    ) -> Result<(), Fail> {
        if chown {
            let (uid, gid) = (Uid::from_raw(self.uid), Gid::from_raw(self.gid));
            fchownat(
                parent,
                name,
                Some(uid),
                Some(gid),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(io_fail("chown"))?;
        }
        // Linux has no symlink modes. A node was just created by us at this
        // name, so following it is moot.
        if target == Target::Node {
            fchmodat(parent, name, self.mode, FchmodatFlags::FollowSymlink)
                .map_err(io_fail("chmod"))?;
        }
        for (xname, value) in &self.xattrs {
            xattr::set_path_nofollow(full, xname, value).map_err(io_fail("set xattr on"))?;
        }
        Ok(())
    }

    pub(super) fn set_mtime_fd(&self, fd: BorrowedFd<'_>) -> Result<(), Fail> {
        set_mtime_fd(fd, self.mtime)
    }

    pub(super) fn set_mtime_at(&self, parent: BorrowedFd<'_>, name: &OsStr) -> Result<(), Fail> {
        set_mtime_at(parent, name, self.mtime)
    }
}

/// Sets atime and mtime both to `mtime`: layers carry no meaningful atime and
/// a fixed one keeps unpacked trees reproducible.
pub(super) fn set_mtime_fd(fd: BorrowedFd<'_>, mtime: TimeSpec) -> Result<(), Fail> {
    futimens(fd, &mtime, &mtime).map_err(io_fail("set mtime of"))
}

pub(super) fn set_mtime_at(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    mtime: TimeSpec,
) -> Result<(), Fail> {
    utimensat(
        parent,
        name,
        &mtime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io_fail("set mtime of"))
}

/// Parses a PAX time, `SECONDS[.FRACTION]`, possibly negative.
fn parse_pax_time(value: &str) -> Option<TimeSpec> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let mut secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nanos: i64 = 0;
    for (i, digit) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(digit - b'0') * 10_i64.pow(8 - i as u32);
    }
    // "-1.25" is 1.25 s before the epoch: -2 s plus 0.75 s.
    if value.starts_with('-') && nanos > 0 {
        secs -= 1;
        nanos = 1_000_000_000 - nanos;
    }
    Some(TimeSpec::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(v: &str) -> Option<(i64, i64)> {
        parse_pax_time(v).map(|t| (t.tv_sec(), t.tv_nsec()))
    }

    #[test]
    fn pax_times_parse_with_nanoseconds() {
        assert_eq!(parsed("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(parsed("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(parsed("1.123456789123"), Some((1, 123_456_789)));
        assert_eq!(parsed("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(parsed("12x"), None);
        assert_eq!(parsed("1.2x"), None);
    }

    fn entry_meta(header: tar::Header, pax: &[(&str, &[u8])]) -> Meta {
        let mut builder = tar::Builder::new(Vec::new());
        if !pax.is_empty() {
            builder.append_pax_extensions(pax.iter().copied()).unwrap();
        }
        builder.append(&header, &[][..]).unwrap();
        let data = builder.into_inner().unwrap();
        let mut archive = tar::Archive::new(&data[..]);
        let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
        Meta::read(&mut entry).unwrap()
    }

    #[test]
    fn reads_header_and_pax_overrides() {
        let mut header = tar::Header::new_ustar();
        header.set_path("f").unwrap();
        header.set_mode(0o104755);
        header.set_uid(12);
        header.set_gid(34);
        header.set_mtime(1000);
        header.set_size(0);
        header.set_cksum();
        let meta = entry_meta(
            header,
            &[
                ("mtime", b"2000.25"),
                ("SCHILY.xattr.user.a", b"1"),
                ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ],
        );
        assert_eq!((meta.uid, meta.gid), (12, 34));
        assert_eq!(meta.mode.bits(), 0o4755, "type bits stripped, setuid kept");
        assert_eq!(
            (meta.mtime.tv_sec(), meta.mtime.tv_nsec()),
            (2000, 250_000_000)
        );
        assert_eq!(
            meta.xattrs.len(),
            1,
            "overlay xattrs from the layer are dropped"
        );
        assert_eq!(meta.xattrs[0].0.as_bytes(), b"user.a");
        assert_eq!(meta.xattrs[0].1, b"1");
    }
}
