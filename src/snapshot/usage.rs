//! Disk usage of a directory tree, as ImageFsInfo reports it.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes allocated on disk (st_blocks * 512), hard links counted once.
    pub bytes: u64,
    /// Distinct inodes.
    pub inodes: u64,
}

impl Usage {
    /// Walks `root` without following symlinks or crossing into other
    /// filesystems (container root mounts are skipped). Entries that vanish
    /// during the walk are ignored.
    pub(crate) fn of(root: &Path) -> Usage {
        let mut usage = Usage::default();
        let Ok(meta) = std::fs::symlink_metadata(root) else {
            return usage;
        };
        let dev = meta.dev();
        let mut seen = HashSet::new();
        let mut stack = vec![root.to_owned()];
        while let Some(path) = stack.pop() {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.dev() != dev || !seen.insert(meta.ino()) {
                continue;
            }
            usage.bytes += meta.blocks() * 512;
            usage.inodes += 1;
            if meta.is_dir() {
                if let Ok(entries) = std::fs::read_dir(&path) {
                    stack.extend(entries.flatten().map(|e| e.path()));
                }
            }
        }
        usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_files_and_hard_links_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 10000]).unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let u = Usage::of(dir.path());
        assert_eq!(u.inodes, 3); // root, a (=b), d
        assert!(u.bytes >= 10000, "{u:?}");
        assert_eq!(Usage::of(&dir.path().join("missing")), Usage::default());
    }
}
