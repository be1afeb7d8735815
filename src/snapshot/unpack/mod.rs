//! Unpacks one OCI image layer blob into a directory.
//!
//! The blob is sniffed for gzip/zstd, streamed through the `tar` crate's
//! reader, and every entry is written by us rather than by `tar`'s own
//! unpacker, because layers need whiteout handling and hostile layers must
//! not escape the destination. Escapes are stopped twice: paths are first
//! normalised lexically (`..` above the root is refused, a leading `/` is
//! dropped), then the parent directory is reached from a root fd one
//! `O_NOFOLLOW` component at a time, so a symlink on the way is refused and
//! the entry is created by name inside that parent fd (see `fsat`).
//!
//! Metadata is applied in the order chown, chmod, xattrs, mtime; directory
//! mtimes are set in a final pass once nothing writes into them. Nothing is
//! fsynced: the caller syncs the finished snapshot once.

mod compress;
mod entry;
mod error;
mod fsat;
mod metadata;
mod path;
mod unpacker;
mod whiteout;
mod xattr;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::io;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

pub(crate) use error::UnpackError;
use unpacker::Unpacker;

/// What whiteout entries turn into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhiteoutMode {
    /// Unpack into an empty directory that becomes one overlayfs lower layer:
    /// `.wh.NAME` becomes a 0/0 character device NAME, `.wh..wh..opq` sets
    /// xattr `trusted.overlay.opaque=y` on its directory.
    Overlay,
    /// Apply the layer on top of an existing tree (the plain-directory
    /// snapshot backend): `.wh.NAME` deletes NAME (recursively),
    /// `.wh..wh..opq` empties the directory of everything that came from lower
    /// layers (entries added by this same layer survive regardless of tar
    /// order).
    Apply,
}

/// What a finished unpack wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UnpackStats {
    /// Tar entries processed, whiteouts included.
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
}

/// Unpacks the layer blob at `blob` (gzip, zstd or plain tar) into the
/// existing directory `dest`.
///
/// Blocking; run it off the async threads. On error `dest` is left partially
/// written and should be discarded. Ownership is applied only when running as
/// root; device nodes and overlay whiteouts need root as well.
pub(crate) fn unpack_layer(
    blob: &Path,
    dest: &Path,
    mode: WhiteoutMode,
) -> Result<UnpackStats, UnpackError> {
    let corrupt = |source| UnpackError::Corrupt {
        layer: blob.to_owned(),
        source,
    };
    let open_layer = |source| UnpackError::OpenLayer {
        layer: blob.to_owned(),
        source,
    };
    let file = File::open(blob).map_err(open_layer)?;
    let reader = compress::open(file).map_err(open_layer)?;
    let root = nix::fcntl::open(
        dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| UnpackError::OpenDest {
        layer: blob.to_owned(),
        dest: dest.to_owned(),
        source: errno.into(),
    })?;

    let mut unpacker = Unpacker::new(blob, dest, mode, root);
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(corrupt)? {
        unpacker.entry(&mut entry.map_err(corrupt)?)?;
    }
    // Tar stops at its end-of-archive marker, but gzip and zstd check their
    // checksums only at the end of the stream.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(corrupt)?;
    unpacker.finish()
}

/// Removes `path` (absolute or relative, inside the tree at `root`) with
/// everything below it, reaching it one `O_NOFOLLOW` component at a time
/// as layer entries are: a symlink on the way is an escape, refused.
/// Missing is fine. `layer` names the source in errors.
pub(crate) fn remove_in_root(root: &Path, path: &str, layer: &Path) -> Result<(), UnpackError> {
    let entry = path::display_path(path.as_bytes());
    let fail = |f: error::Fail| f.into_error(layer.to_owned(), entry.clone());
    let rel = path::normalize(path.as_bytes())
        .ok_or_else(|| fail(error::Fail::Invalid("the path climbs above the root")))?;
    let Some((parent, name)) = path::split(&rel) else {
        return Err(fail(error::Fail::Invalid(
            "the root itself cannot be removed",
        )));
    };
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| UnpackError::OpenDest {
        layer: layer.to_owned(),
        dest: root.to_owned(),
        source: errno.into(),
    })?;
    use std::os::fd::AsFd;
    let Some(dir) = fsat::walk(root_fd.as_fd(), parent, false).map_err(fail)? else {
        return Ok(());
    };
    fsat::remove_tree(dir.as_fd(), name).map_err(|e| fail(error::Fail::Io("remove", e)))
}
