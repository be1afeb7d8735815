//! The container's writable layer as `rootfs-diff.tar` (what it added or
//! changed) and `deleted.files` (what it removed from the image).
//!
//! With the overlay backend that is the upper dir: an overlay whiteout (a
//! 0:0 character device) is a deleted path, everything else is content.
//! Mount points of host binds are left out: LXC creates them in the upper
//! dir when the image lacks them, and they belong to the node, not to the
//! container. The walk never follows a symlink; it runs while the
//! container is frozen, so nothing changes under it.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub(crate) enum DiffError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the diff holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct DiffSummary {
    /// Entries written to the tar (directories included).
    pub entries: usize,
    /// Paths written to `deleted.files`, absolute inside the container.
    pub deleted: Vec<String>,
}

/// Writes `tar_path` from `upper` and, when the container deleted
/// anything, `deleted_path` (a JSON array of absolute paths). `exclude`
/// holds absolute paths inside the container that are left out with
/// everything below them.
pub(crate) fn write(
    upper: &Path,
    exclude: &[String],
    tar_path: &Path,
    deleted_path: &Path,
) -> Result<DiffSummary, DiffError> {
    let werr = |path: &Path| {
        let path = path.to_owned();
        move |source| DiffError::Write { path, source }
    };
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(tar_path)
        .map_err(werr(tar_path))?;
    let mut tar = tar::Builder::new(file);
    tar.follow_symlinks(false);
    let mut summary = DiffSummary::default();
    walk(upper, Path::new(""), exclude, &mut tar, &mut summary)?;
    let mut file = tar.into_inner().map_err(werr(tar_path))?;
    file.flush().map_err(werr(tar_path))?;
    if !summary.deleted.is_empty() {
        let json = serde_json::to_vec(&summary.deleted).map_err(|e| DiffError::Write {
            path: deleted_path.to_owned(),
            source: e.into(),
        })?;
        std::fs::write(deleted_path, json).map_err(werr(deleted_path))?;
    }
    Ok(summary)
}

fn walk(
    root: &Path,
    rel: &Path,
    exclude: &[String],
    tar: &mut tar::Builder<File>,
    summary: &mut DiffSummary,
) -> Result<(), DiffError> {
    let dir = root.join(rel);
    let rerr = |path: &Path| {
        let path = path.to_owned();
        move |source| DiffError::Read { path, source }
    };
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(rerr(&dir))?
        .collect::<Result<_, _>>()
        .map_err(rerr(&dir))?;
    // A stable order makes two diffs of the same layer identical.
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let rel = rel.join(entry.file_name());
        let inside = format!("/{}", rel.display());
        if exclude.iter().any(|e| e == &inside) {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(rerr(&path))?;
        if meta.file_type().is_char_device() && meta.rdev() == 0 {
            summary.deleted.push(inside);
            continue;
        }
        // A unix socket's file is made by bind(2), which the restored
        // process repeats (CRIU restores bound sockets by binding again);
        // tar cannot hold one anyway.
        if meta.file_type().is_socket() {
            continue;
        }
        tar.append_path_with_name(&path, &rel)
            .map_err(|source| DiffError::Write {
                path: path.clone(),
                source,
            })?;
        summary.entries += 1;
        if meta.is_dir() {
            walk(root, &rel, exclude, tar, summary)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_go_to_the_tar_and_whiteouts_to_deleted_files() {
        let tmp = tempfile::tempdir().unwrap();
        let upper = tmp.path().join("upper");
        std::fs::create_dir_all(upper.join("data/sub")).unwrap();
        std::fs::write(upper.join("data/sub/counter"), "42\n").unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(upper.join("etc/hostname"), "").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", upper.join("data/link")).unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(upper.join("data/app.sock")).unwrap();
        let root = nix::unistd::geteuid().is_root();
        if root {
            // A whiteout, as overlayfs records a deletion.
            nix::sys::stat::mknod(
                &upper.join("etc/motd"),
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o000),
                0,
            )
            .unwrap();
        }
        let tar_path = tmp.path().join("rootfs-diff.tar");
        let deleted = tmp.path().join("deleted.files");
        let summary = write(&upper, &["/etc/hostname".into()], &tar_path, &deleted).unwrap();

        let mut names = Vec::new();
        let mut archive = tar::Archive::new(File::open(&tar_path).unwrap());
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            names.push(e.path().unwrap().display().to_string());
            if e.path().unwrap().ends_with("link") {
                assert_eq!(e.header().entry_type(), tar::EntryType::Symlink);
            }
        }
        assert_eq!(
            names,
            ["data", "data/link", "data/sub", "data/sub/counter", "etc"]
        );
        assert_eq!(summary.entries, 5);
        if root {
            assert_eq!(summary.deleted, ["/etc/motd"]);
            let list: Vec<String> =
                serde_json::from_slice(&std::fs::read(&deleted).unwrap()).unwrap();
            assert_eq!(list, ["/etc/motd"]);
        } else {
            assert!(!deleted.exists(), "nothing deleted, no file");
        }
    }

    #[test]
    fn an_existing_output_is_not_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("t.tar"), "x").unwrap();
        let err = write(
            tmp.path(),
            &[],
            &tmp.path().join("t.tar"),
            &tmp.path().join("d"),
        )
        .unwrap_err();
        assert!(matches!(err, DiffError::Write { .. }), "{err:?}");
    }
}
