//! Content-addressed blob store: `<root>/blobs/sha256/<hex>`.
//!
//! A blob only ever appears under its digest after its bytes were hashed
//! and counted on the way to disk, so anything found under `blobs/` can be
//! trusted to match its name. Writes go to a private file in `<root>/ingest/`
//! that is fsynced and then renamed into place; a failed, cancelled or
//! mismatching write deletes its temp file, and leftovers from a crash are
//! removed by [`ContentStore::cleanup_ingest`] at startup. Digests are
//! validated before any path is built from them, so a digest can never name
//! a file outside the store.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ALGORITHM: &str = "sha256";
const HEX_LEN: usize = 64;
const WRITE_BUFFER: usize = 1 << 20;

#[derive(Debug, Error)]
pub(crate) enum ContentError {
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        digest: String,
        reason: &'static str,
    },
    #[error("unsupported digest algorithm {algorithm:?} in {digest:?}: only sha256 is supported")]
    UnsupportedAlgorithm { digest: String, algorithm: String },
    #[error("content digest mismatch: expected {expected}, computed {computed}")]
    DigestMismatch { expected: String, computed: String },
    #[error("content size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("content {digest} not found")]
    NotFound { digest: String },
    #[error("content {digest} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        digest: String,
        size: u64,
        limit: u64,
    },
    #[error("reading the data for {digest} failed")]
    Source {
        digest: String,
        #[source]
        source: io::Error,
    },
    #[error("content store: {op} {path} failed")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A validated `sha256:<64 lowercase hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Digest {
    hex: String,
}

impl Digest {
    pub(crate) fn parse(digest: &str) -> Result<Digest, ContentError> {
        let Some((algorithm, hex)) = digest.split_once(':') else {
            return Err(ContentError::InvalidDigest {
                digest: digest.to_owned(),
                reason: "expected <algorithm>:<hex>",
            });
        };
        if algorithm != ALGORITHM {
            return Err(ContentError::UnsupportedAlgorithm {
                digest: digest.to_owned(),
                algorithm: algorithm.to_owned(),
            });
        }
        if hex.len() != HEX_LEN || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ContentError::InvalidDigest {
                digest: digest.to_owned(),
                reason: "expected 64 lowercase hex characters",
            });
        }
        Ok(Digest {
            hex: hex.to_owned(),
        })
    }

    /// The digest of `data`.
    pub(crate) fn of(data: &[u8]) -> Digest {
        Digest {
            hex: hex::encode(Sha256::digest(data)),
        }
    }

    pub(crate) fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ALGORITHM}:{}", self.hex)
    }
}

impl FromStr for Digest {
    type Err = ContentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

#[derive(Debug)]
pub(crate) struct ContentStore {
    root: PathBuf,
    blobs: PathBuf,
    ingest: PathBuf,
}

/// Distinguishes concurrent ingests of the same digest in one process.
static INGEST_SEQ: AtomicU64 = AtomicU64::new(0);

impl ContentStore {
    /// Opens the store at `root`, creating its directories (mode 0700) if
    /// needed.
    pub(crate) fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        let blobs = root.join("blobs").join(ALGORITHM);
        let ingest = root.join("ingest");
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        builder.create(&blobs)?;
        builder.create(&ingest)?;
        Ok(ContentStore {
            root,
            blobs,
            ingest,
        })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob lives (whether or not it is present yet).
    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(&digest.hex)
    }

    /// [`ContentStore::blob_path`] for a digest string, validated first.
    pub(crate) fn path(&self, digest: &str) -> Result<PathBuf, ContentError> {
        Digest::parse(digest).map(|d| self.blob_path(&d))
    }

    /// Whether the blob is present. A malformed digest is never present.
    pub(crate) fn has(&self, digest: &str) -> bool {
        self.path(digest).is_ok_and(|p| p.is_file())
    }

    /// Streams a blob into the store, verifying its size (when known) and
    /// digest before it becomes visible. Returns the blob's final path.
    /// Stops early once more than `expected_size` bytes arrive, so a
    /// misbehaving server cannot fill the disk.
    pub(crate) async fn ingest<S>(
        &self,
        digest: &str,
        expected_size: Option<u64>,
        stream: S,
    ) -> Result<PathBuf, ContentError>
    where
        S: Stream<Item = io::Result<Bytes>>,
    {
        let expected = Digest::parse(digest)?;
        let (temp, file) = TempFile::create(&self.ingest, &expected).await?;
        // Network chunks are small; batching them saves a trip to the
        // blocking pool per chunk.
        let mut file = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut hasher = Sha256::new();
        let mut written: u64 = 0;
        let mut stream = pin!(stream);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| ContentError::Source {
                digest: digest.to_owned(),
                source,
            })?;
            written += chunk.len() as u64;
            if let Some(size) = expected_size.filter(|&size| written > size) {
                return Err(ContentError::SizeMismatch {
                    digest: digest.to_owned(),
                    expected: size,
                    actual: written,
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|source| temp.io_error("write", source))?;
        }
        if let Some(size) = expected_size.filter(|&size| written != size) {
            return Err(ContentError::SizeMismatch {
                digest: digest.to_owned(),
                expected: size,
                actual: written,
            });
        }
        let computed = Digest {
            hex: hex::encode(hasher.finalize()),
        };
        if computed != expected {
            return Err(ContentError::DigestMismatch {
                expected: expected.to_string(),
                computed: computed.to_string(),
            });
        }
        file.flush()
            .await
            .map_err(|source| temp.io_error("write", source))?;
        // Without the fsync a crash after the rename could leave a blob
        // whose name promises bytes the disk never got.
        file.get_ref()
            .sync_all()
            .await
            .map_err(|source| temp.io_error("fsync", source))?;
        drop(file);
        let target = self.blob_path(&expected);
        temp.persist(&target).await?;
        sync_dir(&self.blobs).await?;
        Ok(target)
    }

    /// [`ContentStore::ingest`] for data already in memory (manifests,
    /// configs).
    #[cfg(test)]
    pub(crate) async fn ingest_bytes(
        &self,
        digest: &str,
        data: &[u8],
    ) -> Result<PathBuf, ContentError> {
        let chunk = Bytes::copy_from_slice(data);
        let len = chunk.len() as u64;
        self.ingest(
            digest,
            Some(len),
            futures_util::stream::once(async move { Ok(chunk) }),
        )
        .await
    }

    /// Reads a whole blob of at most `limit` bytes and checks it still
    /// matches its digest; meant for small blobs such as manifests and
    /// configs. The cap holds whatever descriptor led here: a manifest may
    /// name a big layer already in the store as its config.
    pub(crate) async fn read(&self, digest: &str, limit: u64) -> Result<Vec<u8>, ContentError> {
        let expected = Digest::parse(digest)?;
        let path = self.blob_path(&expected);
        let io_error = |op, source| ContentError::Io {
            op,
            path: path.clone(),
            source,
        };
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ContentError::NotFound {
                    digest: digest.to_owned(),
                })
            }
            Err(source) => return Err(io_error("open", source)),
        };
        let size = file
            .metadata()
            .await
            .map_err(|source| io_error("stat", source))?
            .len();
        if size > limit {
            return Err(ContentError::TooLarge {
                digest: digest.to_owned(),
                size,
                limit,
            });
        }
        let mut data = Vec::with_capacity(size as usize);
        // Blobs are never rewritten in place; the take() only matters if
        // something outside pvecri does it anyway.
        file.take(limit)
            .read_to_end(&mut data)
            .await
            .map_err(|source| io_error("read", source))?;
        let computed = Digest::of(&data);
        if computed != expected {
            return Err(ContentError::DigestMismatch {
                expected: expected.to_string(),
                computed: computed.to_string(),
            });
        }
        Ok(data)
    }

    /// Deletes a blob; returns whether it was there. Blocking.
    pub(crate) fn remove(&self, digest: &str) -> Result<bool, ContentError> {
        let path = self.path(digest)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(ContentError::Io {
                op: "remove",
                path,
                source,
            }),
        }
    }

    /// Digests of all blobs, sorted. Files whose names are not digests
    /// (which this store never writes) are ignored. Blocking.
    pub(crate) fn list(&self) -> Result<Vec<String>, ContentError> {
        let mut digests: Vec<String> = read_dir(&self.blobs)?
            .into_iter()
            .filter_map(|(name, _)| Digest::parse(&format!("{ALGORITHM}:{name}")).ok())
            .map(|d| d.to_string())
            .collect();
        digests.sort();
        Ok(digests)
    }

    /// `(bytes, inodes)` used by blobs and in-flight ingests; bytes are
    /// allocated blocks, as `du` counts them. Blocking.
    #[cfg(test)]
    pub(crate) fn usage(&self) -> Result<(u64, u64), ContentError> {
        use std::os::unix::fs::MetadataExt;

        let (mut bytes, mut inodes) = (0, 0);
        for dir in [&self.blobs, &self.ingest] {
            for (_, meta) in read_dir(dir)? {
                bytes += meta.blocks() * 512;
                inodes += 1;
            }
        }
        Ok((bytes, inodes))
    }

    /// Deletes temp files left by ingests that never finished (a crash or
    /// kill mid-pull). Call at startup, before any pull can be running;
    /// returns how many files were removed. Blocking.
    pub(crate) fn cleanup_ingest(&self) -> Result<usize, ContentError> {
        let entries = read_dir(&self.ingest)?;
        for (name, _) in &entries {
            let path = self.ingest.join(name);
            fs::remove_file(&path).map_err(|source| ContentError::Io {
                op: "remove",
                path,
                source,
            })?;
        }
        Ok(entries.len())
    }
}

/// An ingest temp file that deletes itself unless persisted, so errors,
/// early returns and dropped (cancelled) pulls leave nothing behind.
struct TempFile {
    path: PathBuf,
}

impl TempFile {
    async fn create(
        dir: &Path,
        digest: &Digest,
    ) -> Result<(TempFile, tokio::fs::File), ContentError> {
        let seq = INGEST_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}-{}-{seq}", digest.hex, std::process::id()));
        // Created synchronously: tokio's open runs on a blocking thread that
        // would finish creating the file after a cancelled pull dropped
        // this future, leaving it with no guard to remove it. Creating an
        // empty file is one short syscall.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map(tokio::fs::File::from_std)
            .map_err(|source| ContentError::Io {
                op: "create",
                path: path.clone(),
                source,
            })?;
        Ok((TempFile { path }, file))
    }

    fn io_error(&self, op: &'static str, source: io::Error) -> ContentError {
        ContentError::Io {
            op,
            path: self.path.clone(),
            source,
        }
    }

    async fn persist(mut self, target: &Path) -> Result<(), ContentError> {
        tokio::fs::rename(&self.path, target)
            .await
            .map_err(|source| self.io_error("rename", source))?;
        // Renamed away: nothing left for Drop to delete.
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            // Best effort; cleanup_ingest catches whatever this misses.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Makes a rename into `dir` durable.
async fn sync_dir(dir: &Path) -> Result<(), ContentError> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| ContentError::Io {
                op: "fsync",
                path: dir,
                source,
            })
    })
    .await
    .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
}

/// Regular files directly in `dir`, with their metadata.
fn read_dir(dir: &Path) -> Result<Vec<(String, fs::Metadata)>, ContentError> {
    let io_err = |source| ContentError::Io {
        op: "read directory",
        path: dir.to_owned(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            // Removed between readdir and stat (a concurrent remove).
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(e)),
        };
        if meta.is_file() {
            if let Ok(name) = entry.file_name().into_string() {
                out.push((name, meta));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = io::Result<Bytes>> {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    fn ingest_dir_is_empty(store: &ContentStore) -> bool {
        fs::read_dir(store.root().join("ingest")).unwrap().count() == 0
    }

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::new(dir.path().join("content")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn ingest_good_blob_in_chunks() {
        let (_dir, store) = store();
        let digest = Digest::of(b"hello world").to_string();
        let path = store
            .ingest(&digest, Some(11), chunks(&[b"hello", b" ", b"world"]))
            .await
            .unwrap();
        assert_eq!(path, store.path(&digest).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"hello world");
        assert!(store.has(&digest));
        assert_eq!(store.read(&digest, 11).await.unwrap(), b"hello world");
        assert_eq!(store.list().unwrap(), vec![digest.clone()]);
        let (bytes, inodes) = store.usage().unwrap();
        assert_eq!(inodes, 1);
        assert!(bytes >= 11, "usage {bytes}");
        assert!(ingest_dir_is_empty(&store));

        // Ingesting the same blob again is harmless.
        store.ingest_bytes(&digest, b"hello world").await.unwrap();
        assert_eq!(store.list().unwrap().len(), 1);

        assert!(store.remove(&digest).unwrap());
        assert!(!store.remove(&digest).unwrap());
        assert!(!store.has(&digest));
    }

    #[tokio::test]
    async fn bad_digest_leaves_nothing() {
        let (_dir, store) = store();
        let claimed = Digest::of(b"expected").to_string();
        let err = store.ingest_bytes(&claimed, b"tampered").await.unwrap_err();
        match &err {
            ContentError::DigestMismatch { expected, computed } => {
                assert_eq!(expected, &claimed);
                assert_eq!(computed, &Digest::of(b"tampered").to_string());
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains(&claimed));
        assert!(!store.has(&claimed));
        assert!(store.list().unwrap().is_empty());
        assert!(ingest_dir_is_empty(&store));
    }

    #[tokio::test]
    async fn size_mismatch_is_refused() {
        let (_dir, store) = store();
        let digest = Digest::of(b"abcdef").to_string();
        for (size, actual) in [(5, 6), (7, 6)] {
            let err = store
                .ingest(&digest, Some(size), chunks(&[b"abc", b"def"]))
                .await
                .unwrap_err();
            assert!(
                matches!(err, ContentError::SizeMismatch { expected, actual: got, .. }
                    if expected == size && got == actual),
                "{err:?}"
            );
        }
        assert!(!store.has(&digest));
        assert!(ingest_dir_is_empty(&store));
    }

    #[tokio::test]
    async fn stream_error_leaves_nothing() {
        let (_dir, store) = store();
        let digest = Digest::of(b"abc").to_string();
        let stream = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"ab")),
            Err(io::Error::other("connection reset")),
        ]);
        let err = store.ingest(&digest, None, stream).await.unwrap_err();
        assert!(matches!(err, ContentError::Source { .. }), "{err:?}");
        assert!(ingest_dir_is_empty(&store));
    }

    #[tokio::test]
    async fn cancelled_ingest_leaves_nothing() {
        let (_dir, store) = store();
        let digest = Digest::of(b"never").to_string();
        let stream = futures_util::stream::iter(vec![Ok(Bytes::from_static(b"nev"))])
            .chain(futures_util::stream::pending());
        let ingest = store.ingest(&digest, None, stream);
        let res = tokio::time::timeout(std::time::Duration::from_millis(50), ingest).await;
        assert!(res.is_err(), "pending stream should not finish");
        assert!(ingest_dir_is_empty(&store));
    }

    #[tokio::test]
    async fn traversal_and_foreign_digests_are_refused() {
        let (dir, store) = store();
        fs::write(dir.path().join("secret"), b"x").unwrap();
        let bad = [
            "sha256:../../../secret",
            "sha256:/etc/passwd",
            &format!("sha256:{}/..", "a".repeat(61)),
            &format!("sha256:{}", "A".repeat(64)),
            &format!("sha256:{}", "a".repeat(63)),
            "sha256",
            "",
        ];
        for digest in bad {
            assert!(!store.has(digest), "{digest}");
            let err = store.ingest_bytes(digest, b"x").await.unwrap_err();
            assert!(
                matches!(err, ContentError::InvalidDigest { .. }),
                "{digest}: {err:?}"
            );
            assert!(store.read(digest, 1024).await.is_err());
            assert!(store.remove(digest).is_err());
        }
        let err = store
            .ingest_bytes(&format!("sha512:{}", "a".repeat(128)), b"x")
            .await
            .unwrap_err();
        assert!(matches!(err, ContentError::UnsupportedAlgorithm { .. }));
        assert!(err.to_string().contains("only sha256"));
        assert!(dir.path().join("secret").exists());
    }

    #[tokio::test]
    async fn read_detects_corruption_and_absence() {
        let (_dir, store) = store();
        let digest = Digest::of(b"config").to_string();
        assert!(matches!(
            store.read(&digest, 1024).await,
            Err(ContentError::NotFound { .. })
        ));
        let path = store.ingest_bytes(&digest, b"config").await.unwrap();
        fs::write(&path, b"bitrot").unwrap();
        assert!(matches!(
            store.read(&digest, 1024).await,
            Err(ContentError::DigestMismatch { .. })
        ));
        assert!(matches!(
            store.read(&digest, 5).await,
            Err(ContentError::TooLarge {
                size: 6,
                limit: 5,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn cleanup_ingest_removes_leftovers_only() {
        let (_dir, store) = store();
        let digest = Digest::of(b"kept").to_string();
        store.ingest_bytes(&digest, b"kept").await.unwrap();
        let ingest = store.root().join("ingest");
        fs::write(ingest.join("leftover-1"), b"partial").unwrap();
        fs::write(ingest.join("leftover-2"), b"partial").unwrap();
        assert_eq!(store.cleanup_ingest().unwrap(), 2);
        assert!(ingest_dir_is_empty(&store));
        assert!(store.has(&digest));
        assert_eq!(store.cleanup_ingest().unwrap(), 0);
    }

    #[test]
    fn digest_round_trips() {
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }
}
