//! Per-layer state and the dispatch of each tar entry to its writer.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::sys::time::TimeSpec;
use tar::EntryType;

use super::error::{Fail, UnpackError};
use super::fsat;
use super::metadata::{self, Meta};
use super::path::{display_path, normalize, split};
use super::whiteout::Whiteout;
use super::{UnpackStats, WhiteoutMode};

/// Size of the copy buffer for file contents.
const COPY_BUF_SIZE: usize = 256 * 1024;

pub(super) struct Unpacker<'a> {
    pub(super) layer: &'a Path,
    pub(super) dest: &'a Path,
    pub(super) mode: WhiteoutMode,
    pub(super) root: Rc<OwnedFd>,
    /// Only root can chown; other callers get their own uid on every entry.
    pub(super) chown: bool,
    /// Last parent directory resolved. Tar streams are grouped by directory,
    /// so this saves re-walking from the root for nearly every entry. Any
    /// removal clears it, so it never points into a deleted tree.
    cache: Option<(PathBuf, Rc<OwnedFd>)>,
    /// Paths this layer wrote, with their ancestors (Apply mode only): an
    /// opaque or plain whiteout only hides lower layers, never its own layer.
    pub(super) touched: HashSet<PathBuf>,
    /// Directory mtimes, set last because writing into a directory bumps them.
    pub(super) dir_times: BTreeMap<PathBuf, TimeSpec>,
    pub(super) buf: Vec<u8>,
    pub(super) stats: UnpackStats,
}

impl<'a> Unpacker<'a> {
    pub(super) fn new(layer: &'a Path, dest: &'a Path, mode: WhiteoutMode, root: OwnedFd) -> Self {
        Unpacker {
            layer,
            dest,
            mode,
            root: Rc::new(root),
            chown: nix::unistd::geteuid().is_root(),
            cache: None,
            touched: HashSet::new(),
            dir_times: BTreeMap::new(),
            buf: vec![0; COPY_BUF_SIZE],
            stats: UnpackStats::default(),
        }
    }

    /// Applies one tar entry.
    pub(super) fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), UnpackError> {
        let raw = entry.path_bytes().into_owned();
        self.apply(entry, &raw)
            .map_err(|fail| fail.into_error(self.layer.to_owned(), display_path(&raw)))
    }

    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, raw: &[u8]) -> Result<(), Fail> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        self.stats.entries += 1;
        let rel = normalize(raw).ok_or(Fail::Escape)?;
        let meta = Meta::read(entry)?;
        // Pre-POSIX tars mark directories only by a trailing slash.
        let is_dir =
            kind == EntryType::Directory || (kind == EntryType::Regular && raw.ends_with(b"/"));

        let Some((parent, name)) = split(&rel) else {
            return self.root_entry(is_dir, &meta);
        };
        if let Some(whiteout) = Whiteout::parse(name)? {
            return self.whiteout(parent, whiteout, &meta);
        }
        if self.mode == WhiteoutMode::Apply {
            self.touch(&rel);
        }
        let pfd = self
            .parent_dir(parent, true)?
            .ok_or(Fail::Invalid("parent directory vanished"))?;
        let pfd = pfd.as_fd();
        match kind {
            _ if is_dir => self.write_dir(pfd, &rel, name, &meta),
            // The tar crate expands GNU sparse files into their full contents.
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.write_file(pfd, &rel, name, entry, &meta)
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or(Fail::Invalid("symlink has no target"))?;
                self.write_symlink(pfd, &rel, name, &target, &meta)
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or(Fail::Invalid("hard link has no target"))?;
                self.write_hardlink(pfd, &rel, name, &target)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.write_node(pfd, &rel, name, kind, entry.header(), &meta)
            }
            _ => Err(Fail::Invalid("unsupported tar entry type")),
        }
    }

    /// `./` entries carry the root directory's own metadata.
    fn root_entry(&mut self, is_dir: bool, meta: &Meta) -> Result<(), Fail> {
        if !is_dir {
            return Err(Fail::Invalid("only a directory can name the layer root"));
        }
        meta.apply_fd(self.root.as_fd(), self.chown)?;
        self.dir_times.insert(PathBuf::new(), meta.mtime);
        Ok(())
    }

    fn touch(&mut self, rel: &Path) {
        // Ancestors of a recorded path are always recorded too, so the first
        // already-known path ends the climb.
        let mut cur = Some(rel);
        while let Some(p) = cur.filter(|p| !p.as_os_str().is_empty()) {
            if !self.touched.insert(p.to_owned()) {
                break;
            }
            cur = p.parent();
        }
    }

    /// The directory `rel` (normalised) under the root, reached without
    /// following symlinks; created if missing and `create` is set.
    pub(super) fn parent_dir(
        &mut self,
        rel: &Path,
        create: bool,
    ) -> Result<Option<Rc<OwnedFd>>, Fail> {
        let (start, rest) = match &self.cache {
            Some((cached, fd)) if rel.starts_with(cached) => {
                (fd.clone(), rel.strip_prefix(cached).unwrap_or(rel))
            }
            _ => (self.root.clone(), rel),
        };
        if rest.as_os_str().is_empty() {
            return Ok(Some(start));
        }
        let Some(fd) = fsat::walk(start.as_fd(), rest, create)? else {
            return Ok(None);
        };
        let fd = Rc::new(fd);
        self.cache = Some((rel.to_owned(), fd.clone()));
        Ok(Some(fd))
    }

    /// Must follow every removal of a directory: the cache may point into it.
    pub(super) fn forget_dirs(&mut self) {
        self.cache = None;
    }

    /// Sets the deferred directory mtimes, once nothing will write into them.
    pub(super) fn finish(mut self) -> Result<UnpackStats, UnpackError> {
        let times = std::mem::take(&mut self.dir_times);
        for (rel, mtime) in times {
            self.set_dir_time(&rel, mtime)
                .map_err(|fail| fail.into_error(self.layer.to_owned(), rel.clone()))?;
        }
        Ok(self.stats)
    }

    fn set_dir_time(&mut self, rel: &Path, mtime: TimeSpec) -> Result<(), Fail> {
        let Some((parent, name)) = split(rel) else {
            return metadata::set_mtime_fd(self.root.as_fd(), mtime);
        };
        let pfd = self
            .parent_dir(parent, false)?
            .ok_or(Fail::Invalid("directory vanished before its mtime was set"))?;
        metadata::set_mtime_at(pfd.as_fd(), name, mtime)
    }
}
