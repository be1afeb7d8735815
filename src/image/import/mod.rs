//! Local image imports: Proxmox VE container templates and OCI image
//! layouts become images without a registry.
//!
//! [`parse`] decides from the name alone whether an image is local (see
//! [`source`] for the accepted forms); [`import`] then does the blocking work:
//! blobs go into the content store (verified, atomically, like a pull's),
//! layers are committed in the snapshotter, and the result is an
//! [`ImageRecord`] plus the name to tag it with. Templates are named
//! `pve-template.local/<storage>/<name>:<version>`, which the kubelet accepts
//! as an image name and which maps back to the same file (see
//! [`template_name`]), so a pod spec can use a template directly.

mod blob;
mod decompress;
mod error;
mod layout;
mod oci;
pub(crate) mod source;
mod storage;
pub(crate) mod template_name;
mod vztmpl;

#[cfg(test)]
mod test_support;

use std::path::Path;
use std::time::Instant;

pub(crate) use error::ImportError;
pub(crate) use source::{parse, LocalSource, SourceKind};
pub(crate) use storage::PveStorages;

use crate::image::content::ContentStore;
use crate::image::record::ImageRecord;
use crate::snapshot::Snapshots;
use error::Ctx;

/// An imported image, committed but not yet named in the image store.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Imported {
    pub record: ImageRecord,
    /// The canonical name to tag the image with.
    pub name: String,
}

/// Imports `source` into the content store and snapshots, reading the
/// node's PVE storage config when the source names a storage.
///
/// Blocking (call from `spawn_blocking`): a template is decompressed and
/// unpacked in full.
pub(crate) fn import(
    source: &LocalSource,
    content: &ContentStore,
    snapshots: &Snapshots,
) -> Result<Imported, ImportError> {
    let storages = if source.uses_storages() {
        PveStorages::load()?
    } else {
        PveStorages::default()
    };
    import_with(source, &storages, content, snapshots)
}

/// [`import`] with the storages given. Blocking.
pub(crate) fn import_with(
    source: &LocalSource,
    storages: &PveStorages,
    content: &ContentStore,
    snapshots: &Snapshots,
) -> Result<Imported, ImportError> {
    let ctx = Ctx(&source.input);
    let started = Instant::now();
    let imported = match &source.kind {
        SourceKind::StorageFile { storage, file } => {
            let path = storages.require_template_dir(ctx, storage)?.join(file);
            vztmpl::import(ctx, &path, storage, content, snapshots)?
        }
        SourceKind::StorageTemplate {
            storage,
            name,
            version,
        } => {
            let dir = storages.require_template_dir(ctx, storage)?;
            let path = template_name::find(ctx, &dir, name, version)?;
            vztmpl::import(ctx, &path, storage, content, snapshots)?
        }
        SourceKind::TemplatePath(path) => {
            vztmpl::import(ctx, path, template_name::FILE_STORAGE, content, snapshots)?
        }
        SourceKind::OciArchive { path, name } => {
            let layout = layout::Layout::open_archive(ctx, path)?;
            let fallback = oci::Fallback {
                host: "oci-archive.local",
                stem: &file_stem(path),
            };
            oci::import(ctx, &layout, name.as_deref(), fallback, content, snapshots)?
        }
        SourceKind::OciLayout { dir, name } => {
            let layout = layout::Layout::open_dir(ctx, dir)?;
            let fallback = oci::Fallback {
                host: "oci-layout.local",
                stem: &file_stem(dir),
            };
            oci::import(ctx, &layout, name.as_deref(), fallback, content, snapshots)?
        }
    };
    tracing::info!(
        source = %source.input,
        id = %imported.record.id,
        name = %imported.name,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "image imported"
    );
    Ok(imported)
}

/// A file name without its archive extension, for naming.
fn file_stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.strip_suffix(".tar").map(str::to_owned).unwrap_or(name)
}
