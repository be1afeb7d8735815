//! End-to-end tests: layers are built in memory with `tar::Builder`, written
//! as blobs into a tempdir and unpacked with `unpack_layer`.

mod basic;
mod compression;
mod escape;
mod whiteout;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

pub(super) const MTIME: u64 = 1_600_000_000;

/// Root-only tests return early, loudly, elsewhere.
fn needs_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    eprintln!("skipping {test}: needs root");
    true
}

fn header(kind: EntryType, mode: u32) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h.set_size(0);
    h
}

/// A layer under construction.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Self {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn dir(self, path: &str, mode: u32) -> Self {
        self.dir_with(path, |h| h.set_mode(mode))
    }

    fn file(self, path: &str, data: &[u8], mode: u32) -> Self {
        self.file_with(path, data, |h| h.set_mode(mode))
    }

    fn file_with(mut self, path: &str, data: &[u8], tweak: impl FnOnce(&mut Header)) -> Self {
        let mut h = header(EntryType::Regular, 0o644);
        h.set_size(data.len() as u64);
        tweak(&mut h);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }

    fn symlink(self, path: &str, target: &str) -> Self {
        self.link_with(EntryType::Symlink, path, target, |h| h.set_mode(0o777))
    }

    fn hardlink(self, path: &str, target: &str) -> Self {
        self.link_with(EntryType::Link, path, target, |_| {})
    }

    fn link_with(
        mut self,
        kind: EntryType,
        path: &str,
        target: &str,
        tweak: impl FnOnce(&mut Header),
    ) -> Self {
        let mut h = header(kind, 0o644);
        tweak(&mut h);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    fn dir_with(mut self, path: &str, tweak: impl FnOnce(&mut Header)) -> Self {
        let mut h = header(EntryType::Directory, 0o755);
        tweak(&mut h);
        self.0.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    fn node(mut self, path: &str, kind: EntryType, major: u32, minor: u32, mode: u32) -> Self {
        let mut h = header(kind, mode);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.0.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    /// PAX records that apply to the next entry.
    fn pax(mut self, records: &[(&str, &[u8])]) -> Self {
        self.0
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        self
    }

    /// An entry whose name and link name are written byte for byte, since
    /// `Header::set_path` refuses the `..` a hostile layer would carry.
    fn raw(mut self, kind: EntryType, path: &[u8], link: &[u8], data: &[u8]) -> Self {
        let mut h = header(kind, 0o644);
        h.set_size(data.len() as u64);
        let old = h.as_old_mut();
        old.name[..path.len()].copy_from_slice(path);
        old.linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn tar(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 1).unwrap()
}

/// A scratch area: `outer/dest` is the unpack root, `outer/outside` holds a
/// sentinel that escapes would hit, blobs live next to `outer`.
struct Scratch {
    tmp: tempfile::TempDir,
    blobs: usize,
}

impl Scratch {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("outer/dest")).unwrap();
        fs::create_dir_all(tmp.path().join("outer/outside")).unwrap();
        fs::write(tmp.path().join("outer/outside/sentinel"), b"untouched").unwrap();
        Scratch { tmp, blobs: 0 }
    }

    fn dest(&self) -> PathBuf {
        self.tmp.path().join("outer/dest")
    }

    fn outside(&self) -> PathBuf {
        self.tmp.path().join("outer/outside")
    }

    fn blob(&mut self, bytes: &[u8]) -> PathBuf {
        self.blobs += 1;
        let path = self.tmp.path().join(format!("blob{}", self.blobs));
        fs::write(&path, bytes).unwrap();
        path
    }

    fn unpack(
        &mut self,
        bytes: &[u8],
        mode: super::WhiteoutMode,
    ) -> Result<super::UnpackStats, super::UnpackError> {
        let blob = self.blob(bytes);
        super::unpack_layer(&blob, &self.dest(), mode)
    }

    /// Panics unless the only things next to `dest` are `outside` with its
    /// untouched sentinel.
    fn assert_nothing_escaped(&self) {
        assert_eq!(names(&self.tmp.path().join("outer")), ["dest", "outside"]);
        assert_eq!(names(&self.outside()), ["sentinel"]);
        assert_eq!(
            fs::read(self.outside().join("sentinel")).unwrap(),
            b"untouched"
        );
        let blobs: Vec<_> = names(self.tmp.path())
            .into_iter()
            .filter(|n| n != "outer" && !n.starts_with("blob"))
            .collect();
        assert!(blobs.is_empty(), "stray files next to outer: {blobs:?}");
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}
