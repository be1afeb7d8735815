//! Fixtures shared by the backend tests: layer tarballs built in memory,
//! written as blobs next to a backend root in a temp dir.

use std::path::{Path, PathBuf};

/// A layer under construction; entries are root-owned with fixed times.
pub(super) struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    pub(super) fn new() -> Self {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn append(mut self, kind: tar::EntryType, path: &str, mode: u32, data: &[u8]) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }

    pub(super) fn dir(self, path: &str) -> Self {
        self.append(tar::EntryType::Directory, path, 0o755, &[])
    }

    pub(super) fn file(self, path: &str, data: &[u8]) -> Self {
        self.append(tar::EntryType::Regular, path, 0o644, data)
    }

    /// An OCI whiteout hiding `name` in `dir` ("" for the root).
    pub(super) fn whiteout(self, dir: &str, name: &str) -> Self {
        let path = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.append(tar::EntryType::Regular, &path, 0o644, &[])
    }

    /// Writes the tarball (uncompressed, as layers may be) into `dir`.
    pub(super) fn blob(self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.0.into_inner().unwrap()).unwrap();
        path
    }
}

/// A well-formed chain ID whose hex digits are all `c`.
pub(super) fn chain_id(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

/// Sorted names in `dir`.
pub(super) fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// False, with a loud line, when a root-only test cannot run here; in CI
/// (`CI=true`), where tests run as root, it fails the test instead.
pub(crate) fn is_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} needs root, and CI runs tests as root");
    }
    eprintln!("skipping {test}: needs root");
    false
}
