//! OCI whiteouts (`.wh.NAME` hides NAME, `.wh..wh..opq` hides a directory's
//! lower contents), either converted to overlayfs's on-disk form or applied
//! to a tree that already holds the lower layers.
//!
//! Per the image spec a whiteout hides only lower layers, never entries of
//! its own layer, whatever their order in the tar.

use std::ffi::{CStr, OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::fcntl::AtFlags;
use nix::sys::stat::{mknodat, Mode, SFlag};
use nix::unistd::{fchownat, Gid, Uid};

use super::error::{io_fail, Fail};
use super::fsat;
use super::metadata::Meta;
use super::unpacker::Unpacker;
use super::xattr;
use super::WhiteoutMode;

const PREFIX: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Whiteout<'a> {
    /// `.wh.NAME`
    Name(&'a OsStr),
    /// `.wh..wh..opq`
    Opaque,
    /// Other `.wh..wh.*` names are aufs bookkeeping (e.g. `.wh..wh.plnk`)
    /// that Docker also skips.
    AufsMeta,
}

impl<'a> Whiteout<'a> {
    /// Classifies an entry's final name; `None` for ordinary names.
    pub(super) fn parse(name: &'a OsStr) -> Result<Option<Self>, Fail> {
        let bytes = name.as_bytes();
        let Some(hidden) = bytes.strip_prefix(PREFIX) else {
            return Ok(None);
        };
        if bytes == OPAQUE {
            return Ok(Some(Whiteout::Opaque));
        }
        if hidden.starts_with(PREFIX) {
            return Ok(Some(Whiteout::AufsMeta));
        }
        if matches!(hidden, b"" | b"." | b"..") {
            return Err(Fail::Invalid("whiteout names no file"));
        }
        Ok(Some(Whiteout::Name(OsStr::from_bytes(hidden))))
    }
}

impl Unpacker<'_> {
    /// Handles a whiteout found in directory `parent`.
    pub(super) fn whiteout(
        &mut self,
        parent: &Path,
        whiteout: Whiteout<'_>,
        meta: &Meta,
    ) -> Result<(), Fail> {
        match (self.mode, whiteout) {
            (_, Whiteout::AufsMeta) => Ok(()),
            (WhiteoutMode::Overlay, Whiteout::Opaque) => {
                let dir = self.existing_or_new_dir(parent)?;
                xattr::set_fd(dir.as_fd(), OVERLAY_OPAQUE_XATTR, b"y")
                    .map_err(io_fail("mark opaque"))
            }
            (WhiteoutMode::Overlay, Whiteout::Name(name)) => {
                let dir = self.existing_or_new_dir(parent)?;
                // Something already here came from this layer and wins.
                if fsat::stat_at(dir.as_fd(), name)
                    .map_err(io_fail("stat"))?
                    .is_some()
                {
                    return Ok(());
                }
                // Overlayfs's whiteout: a 0:0 character device.
                mknodat(dir.as_fd(), name, SFlag::S_IFCHR, Mode::empty(), 0)
                    .map_err(io_fail("create whiteout"))?;
                if self.chown {
                    let (uid, gid) = (Uid::from_raw(meta.uid), Gid::from_raw(meta.gid));
                    fchownat(
                        dir.as_fd(),
                        name,
                        Some(uid),
                        Some(gid),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .map_err(io_fail("chown"))?;
                }
                Ok(())
            }
            (WhiteoutMode::Apply, Whiteout::Name(name)) => {
                if self.touched.contains(&parent.join(name)) {
                    return Ok(());
                }
                // Nothing below to hide if the directory is not there. A
                // symlinked parent is still refused: deleting through it would
                // delete outside the tree.
                let Some(dir) = self.parent_dir(parent, false)? else {
                    return Ok(());
                };
                fsat::remove_tree(dir.as_fd(), name).map_err(io_fail("remove whited-out"))?;
                self.forget_dirs();
                Ok(())
            }
            (WhiteoutMode::Apply, Whiteout::Opaque) => {
                let Some(dir) = self.parent_dir(parent, false)? else {
                    return Ok(());
                };
                let cleared = self.clear_lower(dir, parent);
                self.forget_dirs();
                cleared
            }
        }
    }

    fn existing_or_new_dir(&mut self, rel: &Path) -> Result<Rc<OwnedFd>, Fail> {
        self.parent_dir(rel, true)?
            .ok_or(Fail::Invalid("parent directory vanished"))
    }

    /// Removes everything under `dir` that this layer did not write. Directories
    /// this layer wrote into are kept but searched too, since lower layers may
    /// have left other entries inside them.
    fn clear_lower(&mut self, dir: Rc<OwnedFd>, rel: &Path) -> Result<(), Fail> {
        // Explicit stack of (holder, name, path) rather than recursion: the
        // layer controls the depth.
        let mut pending: Vec<(Rc<OwnedFd>, Option<OsString>, PathBuf)> =
            vec![(dir, None, rel.to_owned())];
        while let Some((holder, name, dir_rel)) = pending.pop() {
            let fd = match name {
                None => holder,
                Some(name) => Rc::new(
                    fsat::open_dir(holder.as_fd(), &name).map_err(io_fail("open directory"))?,
                ),
            };
            for child in fsat::list_dir(fd.as_fd()).map_err(io_fail("list directory"))? {
                let child_rel = dir_rel.join(&child);
                if !self.touched.contains(&child_rel) {
                    fsat::remove_tree(fd.as_fd(), &child).map_err(io_fail("remove lower entry"))?;
                    continue;
                }
                let st = fsat::stat_at(fd.as_fd(), &child).map_err(io_fail("stat"))?;
                if st.is_some_and(|st| fsat::file_type(&st) == SFlag::S_IFDIR) {
                    pending.push((fd.clone(), Some(child), child_rel));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str) -> Option<Whiteout<'_>> {
        Whiteout::parse(OsStr::new(name)).unwrap()
    }

    #[test]
    fn classifies_whiteout_names() {
        assert_eq!(parse("passwd"), None);
        assert_eq!(parse(".whatever"), None);
        assert_eq!(
            parse(".wh.passwd"),
            Some(Whiteout::Name(OsStr::new("passwd")))
        );
        assert_eq!(
            parse(".wh..bashrc"),
            Some(Whiteout::Name(OsStr::new(".bashrc")))
        );
        assert_eq!(parse(".wh..wh..opq"), Some(Whiteout::Opaque));
        assert_eq!(parse(".wh..wh.plnk"), Some(Whiteout::AufsMeta));
    }

    #[test]
    fn whiteouts_naming_nothing_are_invalid() {
        for name in [".wh.", ".wh..", ".wh..."] {
            assert!(
                matches!(Whiteout::parse(OsStr::new(name)), Err(Fail::Invalid(_))),
                "{name}"
            );
        }
    }
}
