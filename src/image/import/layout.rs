//! Reading an OCI image layout, as a directory or packed in a tar file.
//!
//! An archive is not unpacked: one pass over its headers records where each
//! file's bytes sit, and blobs are then read in place. That costs no disk
//! space and skips blobs of other platforms or images entirely. Blob reads
//! that go through [`Layout::read_blob`] are verified against their digest;
//! large blobs are streamed out with [`Layout::open_blob`] and verified by
//! the content store writer.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use super::decompress::{self, Compression};
use super::error::{Ctx, ImportError};
use crate::image::content::Digest;

/// Where a file's bytes are inside an archive.
#[derive(Debug, Clone, Copy)]
pub(super) struct Extent {
    offset: u64,
    size: u64,
}

pub(super) enum Layout {
    Dir(PathBuf),
    Archive {
        path: PathBuf,
        files: HashMap<String, Extent>,
    },
}

impl Layout {
    pub(super) fn open_dir(ctx: Ctx<'_>, dir: &Path) -> Result<Layout, ImportError> {
        if !dir.join("index.json").is_file() {
            return Err(ctx.invalid(format!(
                "{} is not an oci image layout (no index.json)",
                dir.display()
            )));
        }
        Ok(Layout::Dir(dir.to_owned()))
    }

    pub(super) fn open_archive(ctx: Ctx<'_>, path: &Path) -> Result<Layout, ImportError> {
        let mut file = File::open(path).map_err(ctx.io("open", path))?;
        let mut head = Vec::new();
        (&mut file)
            .take(6)
            .read_to_end(&mut head)
            .map_err(ctx.io("read", path))?;
        if decompress::detect(&head) != Compression::None {
            return Err(ctx.invalid(format!(
                "{} is compressed; oci archives are read in place, so decompress it first",
                path.display()
            )));
        }
        file.rewind().map_err(ctx.io("read", path))?;
        let mut files = HashMap::new();
        let mut archive = tar::Archive::new(file);
        let entries = archive.entries_with_seek().map_err(ctx.io("read", path))?;
        for entry in entries {
            let entry = entry.map_err(ctx.io("read", path))?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let Some(name) = entry.path().ok().as_deref().and_then(normal_name) else {
                continue;
            };
            files.insert(
                name,
                Extent {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                },
            );
        }
        if !files.contains_key("index.json") {
            return Err(ctx.invalid(format!(
                "{} is not an oci archive (no index.json)",
                path.display()
            )));
        }
        Ok(Layout::Archive {
            path: path.to_owned(),
            files,
        })
    }

    /// A file of the layout (`index.json`), at most `limit` bytes.
    pub(super) fn read_file(
        &self,
        ctx: Ctx<'_>,
        name: &str,
        limit: u64,
    ) -> Result<Vec<u8>, ImportError> {
        let (mut reader, size, path) = self.open(ctx, name)?;
        if size > limit {
            return Err(ImportError::TooLarge {
                input: ctx.0.to_owned(),
                what: "file",
                digest: name.to_owned(),
                limit,
            });
        }
        let mut data = Vec::with_capacity(size as usize);
        reader
            .read_to_end(&mut data)
            .map_err(ctx.io("read", path))?;
        Ok(data)
    }

    /// A blob read whole and checked against its digest and `size`.
    pub(super) fn read_blob(
        &self,
        ctx: Ctx<'_>,
        what: &'static str,
        digest: &Digest,
        size: u64,
        limit: u64,
    ) -> Result<Vec<u8>, ImportError> {
        if size > limit {
            return Err(ImportError::TooLarge {
                input: ctx.0.to_owned(),
                what,
                digest: digest.to_string(),
                limit,
            });
        }
        let (reader, _, path) = self.open_blob(ctx, digest)?;
        let mut data = Vec::new();
        // One byte past the promise is enough to tell it was broken.
        reader
            .take(size + 1)
            .read_to_end(&mut data)
            .map_err(ctx.io("read", path))?;
        if data.len() as u64 != size {
            return Err(ImportError::SizeMismatch {
                input: ctx.0.to_owned(),
                what,
                digest: digest.to_string(),
                expected: size,
                actual: data.len() as u64,
            });
        }
        let computed = Digest::of(&data);
        if &computed != digest {
            return Err(ImportError::DigestMismatch {
                input: ctx.0.to_owned(),
                what,
                expected: digest.to_string(),
                computed: computed.to_string(),
            });
        }
        Ok(data)
    }

    /// A blob's bytes (unverified), their length and a path for messages.
    pub(super) fn open_blob(
        &self,
        ctx: Ctx<'_>,
        digest: &Digest,
    ) -> Result<(Box<dyn Read>, u64, PathBuf), ImportError> {
        // A validated digest is 64 hex digits, so this cannot leave blobs/.
        let name = format!("blobs/sha256/{}", digest.hex());
        self.open(ctx, &name).map_err(|e| match e {
            ImportError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                ImportError::MissingBlob {
                    input: ctx.0.to_owned(),
                    digest: digest.to_string(),
                }
            }
            other => other,
        })
    }

    fn open(&self, ctx: Ctx<'_>, name: &str) -> Result<(Box<dyn Read>, u64, PathBuf), ImportError> {
        match self {
            Layout::Dir(dir) => {
                let path = dir.join(name);
                let file = File::open(&path).map_err(ctx.io("open", &path))?;
                let size = file.metadata().map_err(ctx.io("stat", &path))?.len();
                Ok((Box::new(file), size, path))
            }
            Layout::Archive { path, files } => {
                let shown = path.join(name);
                let Some(extent) = files.get(name) else {
                    return Err(ctx.io("open", shown)(io::ErrorKind::NotFound.into()));
                };
                let mut file = File::open(path).map_err(ctx.io("open", path))?;
                file.seek(SeekFrom::Start(extent.offset))
                    .map_err(ctx.io("read", &shown))?;
                Ok((Box::new(file.take(extent.size)), extent.size, shown))
            }
        }
    }
}

/// `./blobs/sha256/x` and `blobs/sha256/x` are the same file; names with
/// `..` are never looked up, so they are dropped.
fn normal_name(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_are_normalised() {
        assert_eq!(
            normal_name(Path::new("./index.json")).as_deref(),
            Some("index.json")
        );
        assert_eq!(
            normal_name(Path::new("/blobs/sha256/ab")).as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(normal_name(Path::new("blobs/../index.json")), None);
        assert_eq!(normal_name(Path::new("./")), None);
    }

    #[test]
    fn compressed_and_foreign_archives_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("img.tar.gz");
        std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
        let err = Layout::open_archive(Ctx("oci-archive:x"), &gz)
            .err()
            .unwrap();
        assert!(err.to_string().contains("decompress it first"), "{err}");

        let plain = dir.path().join("other.tar");
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(2);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "README", &b"hi"[..])
            .unwrap();
        std::fs::write(&plain, builder.into_inner().unwrap()).unwrap();
        let err = Layout::open_archive(Ctx("oci-archive:x"), &plain)
            .err()
            .unwrap();
        assert!(err.to_string().contains("no index.json"), "{err}");

        let err = Layout::open_dir(Ctx("oci-layout:x"), dir.path())
            .err()
            .unwrap();
        assert!(err.to_string().contains("no index.json"), "{err}");
    }
}
