//! Writing blobs into the content store from blocking code.
//!
//! [`ContentStore::ingest`] is async and wants the digest up front; an
//! import learns the digest of a decompressed template only after the last
//! byte. So this writes to a private file in the store's `ingest/` dir while
//! hashing, and renames it under its digest only once the bytes are complete,
//! fsynced and (when a digest was promised) verified: the same discipline as
//! the store's own ingest, so a blob under `blobs/` still always matches its
//! name. Leftovers of a crash are removed by the store's startup cleanup.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use super::error::{Ctx, ImportError};
use crate::image::content::{ContentStore, Digest};

const CHUNK: usize = 1 << 20;

/// A blob that is in the content store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StoredBlob {
    pub digest: Digest,
    pub size: u64,
    pub path: PathBuf,
}

/// What the caller promises about a blob's bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Expected<'a> {
    /// Names the blob in errors ("layer", "config").
    pub what: &'static str,
    pub digest: &'a Digest,
    pub size: u64,
}

/// Copies `reader` (whose bytes come from `from`, for error messages) into
/// the store. With `expected`, refuses bytes that do not match it, and stops
/// reading as soon as there are more than promised.
pub(super) fn store(
    ctx: Ctx<'_>,
    content: &ContentStore,
    from: &Path,
    reader: &mut dyn Read,
    expected: Option<Expected<'_>>,
) -> Result<StoredBlob, ImportError> {
    let temp = TempBlob::create(ctx, content)?;
    let mut file = &temp.file;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ctx.io("read", from)(e)),
        };
        size += n as u64;
        if let Some(e) = expected.filter(|e| size > e.size) {
            return Err(size_mismatch(ctx, e, size));
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(ctx.io("write", &temp.path))?;
    }
    let digest = Digest::parse(&format!("sha256:{}", hex::encode(hasher.finalize())))
        .expect("a sha256 hex digest is always valid");
    if let Some(e) = expected {
        if size != e.size {
            return Err(size_mismatch(ctx, e, size));
        }
        if &digest != e.digest {
            return Err(ImportError::DigestMismatch {
                input: ctx.0.to_owned(),
                what: e.what,
                expected: e.digest.to_string(),
                computed: digest.to_string(),
            });
        }
    }
    let path = content.blob_path(&digest);
    // Re-importing an unchanged file: the store has these bytes already, and
    // the temp file is dropped (deleted) unused.
    if !path.is_file() {
        temp.persist(ctx, &path)?;
    }
    Ok(StoredBlob { digest, size, path })
}

/// [`store`] for bytes in memory (configs, manifests).
pub(super) fn store_bytes(
    ctx: Ctx<'_>,
    content: &ContentStore,
    data: &[u8],
) -> Result<StoredBlob, ImportError> {
    store(ctx, content, Path::new("<memory>"), &mut { data }, None)
}

fn size_mismatch(ctx: Ctx<'_>, e: Expected<'_>, actual: u64) -> ImportError {
    ImportError::SizeMismatch {
        input: ctx.0.to_owned(),
        what: e.what,
        digest: e.digest.to_string(),
        expected: e.size,
        actual,
    }
}

/// Distinguishes concurrent imports in one process.
static SEQ: AtomicU64 = AtomicU64::new(0);

/// The file being written; deleted on drop unless persisted, so errors and
/// panics leave nothing behind.
struct TempBlob {
    path: PathBuf,
    file: File,
    persisted: bool,
}

impl TempBlob {
    fn create(ctx: Ctx<'_>, content: &ContentStore) -> Result<TempBlob, ImportError> {
        let dir = content.root().join("ingest");
        fs::create_dir_all(&dir).map_err(ctx.io("create", &dir))?;
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("import-{}-{seq}", std::process::id()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(ctx.io("create", &path))?;
        Ok(TempBlob {
            path,
            file,
            persisted: false,
        })
    }

    fn persist(mut self, ctx: Ctx<'_>, target: &Path) -> Result<(), ImportError> {
        // Without the fsync a crash right after the rename could leave a
        // blob whose name promises bytes that never reached the disk.
        self.file.sync_all().map_err(ctx.io("fsync", &self.path))?;
        let parent = target.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(parent).map_err(ctx.io("create", parent))?;
        fs::rename(&self.path, target).map_err(ctx.io("rename", &self.path))?;
        self.persisted = true;
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(ctx.io("fsync", parent))
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_dir() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let content = ContentStore::new(dir.path().join("content")).unwrap();
        (dir, content)
    }

    fn ingest_is_empty(content: &ContentStore) -> bool {
        fs::read_dir(content.root().join("ingest")).unwrap().count() == 0
    }

    #[test]
    fn stores_under_the_computed_digest() {
        let (_dir, content) = store_dir();
        let blob = store_bytes(Ctx("t"), &content, b"hello").unwrap();
        assert_eq!(blob.digest, Digest::of(b"hello"));
        assert_eq!(blob.size, 5);
        assert_eq!(fs::read(&blob.path).unwrap(), b"hello");
        assert!(content.has(&blob.digest.to_string()));
        // Storing the same bytes again is harmless and leaves no temp file.
        assert_eq!(store_bytes(Ctx("t"), &content, b"hello").unwrap(), blob);
        assert!(ingest_is_empty(&content));
    }

    #[test]
    fn broken_promises_leave_nothing() {
        let (_dir, content) = store_dir();
        let claimed = Digest::of(b"expected");
        for (size, needle) in [(8, "does not match"), (3, "3"), (20, "20")] {
            let err = store(
                Ctx("oci-layout:/x"),
                &content,
                Path::new("/x/blob"),
                &mut &b"tampered"[..],
                Some(Expected {
                    what: "layer",
                    digest: &claimed,
                    size,
                }),
            )
            .unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("oci-layout:/x") && msg.contains(needle),
                "{msg}"
            );
        }
        assert!(content.list().unwrap().is_empty());
        assert!(ingest_is_empty(&content));
    }

    #[test]
    fn read_errors_name_the_source() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("corrupt xz stream"))
            }
        }
        let (_dir, content) = store_dir();
        let err = store(
            Ctx("t"),
            &content,
            Path::new("/t.tar.xz"),
            &mut Failing,
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("read /t.tar.xz"), "{err}");
        assert!(ingest_is_empty(&content));
    }
}
