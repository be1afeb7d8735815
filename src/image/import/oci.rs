//! Importing an image from an OCI image layout (`skopeo copy ... oci:` or
//! `oci-archive:`).
//!
//! `index.json` may list several images, told apart by their
//! `org.opencontainers.image.ref.name` annotation; the user picks one by that
//! name, or need not when there is only one. An entry may be an index in
//! turn (a multi-platform image), from which this node's platform is chosen
//! like a registry pull would. Every blob is checked against its digest
//! before it is used or stored, so a tampered layout fails instead of
//! importing something other than what its manifest names.

use oci_client::manifest::{
    ImageIndexEntry, OciImageIndex, OciImageManifest, IMAGE_CONFIG_MEDIA_TYPE,
    IMAGE_DOCKER_CONFIG_MEDIA_TYPE, IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};

use super::blob::{self, Expected};
use super::error::{Ctx, ImportError};
use super::layout::Layout;
use super::template_name::{repository_component, tag};
use super::Imported;
use crate::image::content::{ContentStore, Digest};
use crate::image::limits::{CONFIG_MAX, MANIFEST_MAX};
use crate::image::record::{ImageRecord, LayerRecord};
use crate::image::reference::Reference;
use crate::image::registry::platform::{select_manifest, Platform};
use crate::image::spec::ConfigFile;
use crate::snapshot::{chain_ids, Snapshots};

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// How an imported layout image is named when its own name will not do.
pub(super) struct Fallback<'a> {
    /// `oci-archive.local` or `oci-layout.local`.
    pub host: &'static str,
    /// The archive's file name or the layout directory's name.
    pub stem: &'a str,
}

pub(super) fn import(
    ctx: Ctx<'_>,
    layout: &Layout,
    wanted: Option<&str>,
    fallback: Fallback<'_>,
    content: &ContentStore,
    snapshots: &Snapshots,
) -> Result<Imported, ImportError> {
    let index: OciImageIndex =
        serde_json::from_slice(&layout.read_file(ctx, "index.json", MANIFEST_MAX)?)
            .map_err(ctx.json("index.json"))?;
    let (entry, ref_name) = select_entry(ctx, &index.manifests, wanted)?;
    let entry = resolve_platform(ctx, layout, entry)?;
    let manifest_digest = digest(ctx, "manifest", &entry.digest)?;
    let manifest_bytes = layout.read_blob(
        ctx,
        "manifest",
        &manifest_digest,
        size(ctx, &entry.digest, entry.size)?,
        MANIFEST_MAX,
    )?;
    let manifest: OciImageManifest = serde_json::from_slice(&manifest_bytes)
        .map_err(ctx.json(format!("manifest {manifest_digest}")))?;
    check_media_types(ctx, &manifest)?;

    let config_digest = digest(ctx, "config", &manifest.config.digest)?;
    let config_size = size(ctx, &manifest.config.digest, manifest.config.size)?;
    let config_bytes = layout.read_blob(ctx, "config", &config_digest, config_size, CONFIG_MAX)?;
    let config =
        ConfigFile::parse(&config_bytes).map_err(ctx.json(format!("config {config_digest}")))?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(ImportError::LayerCount {
            input: ctx.0.to_owned(),
            diff_ids: config.rootfs.diff_ids.len(),
            layers: manifest.layers.len(),
        });
    }

    // Layers first: an image whose config is in the store is expected to
    // have its layers there too.
    let mut layers = Vec::with_capacity(manifest.layers.len());
    for descriptor in &manifest.layers {
        let digest = digest(ctx, "layer", &descriptor.digest)?;
        let size = size(ctx, &descriptor.digest, descriptor.size)?;
        if !content.has(&descriptor.digest) {
            let (mut reader, _, from) = layout.open_blob(ctx, &digest)?;
            let expected = Expected {
                what: "layer",
                digest: &digest,
                size,
            };
            blob::store(ctx, content, &from, &mut reader, Some(expected))?;
        }
        layers.push(LayerRecord {
            digest: digest.to_string(),
            media_type: descriptor.media_type.clone(),
            size,
        });
    }
    blob::store_bytes(ctx, content, &config_bytes)?;
    blob::store_bytes(ctx, content, &manifest_bytes)?;

    let chain = chain_ids(&config.rootfs.diff_ids);
    for (i, (chain_id, layer)) in chain.iter().zip(&layers).enumerate() {
        let parent = i.checked_sub(1).map(|p| chain[p].as_str());
        let blob = content
            .path(&layer.digest)
            .expect("layer digests were validated above");
        snapshots
            .commit_layer(chain_id, parent, &blob)
            .map_err(|source| ImportError::Snapshot {
                input: ctx.0.to_owned(),
                chain_id: chain_id.clone(),
                source: Box::new(source),
            })?;
    }

    Ok(Imported {
        record: ImageRecord {
            id: config_digest.to_string(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            size: config_size + layers.iter().map(|l| l.size).sum::<u64>(),
            layers,
            chain_ids: chain,
            run_config: config.config.unwrap_or_default(),
            manifest_digest: manifest_digest.to_string(),
            pinned: false,
            source: Some(ctx.0.to_owned()),
        },
        name: image_name(ref_name.as_deref(), &fallback),
    })
}

fn ref_name(entry: &ImageIndexEntry) -> Option<&str> {
    entry
        .annotations
        .as_ref()?
        .get(REF_NAME)
        .map(String::as_str)
}

/// The top-level entries of the image the user asked for, with its name.
/// Several entries may carry one name (one per platform); choosing among
/// them is left to [`resolve_platform`].
fn select_entry(
    ctx: Ctx<'_>,
    entries: &[ImageIndexEntry],
    wanted: Option<&str>,
) -> Result<(Candidates, Option<String>), ImportError> {
    let mut names: Vec<&str> = entries.iter().filter_map(ref_name).collect();
    names.sort();
    names.dedup();
    let available = || {
        if names.is_empty() {
            "no named images".to_owned()
        } else {
            names.join(", ")
        }
    };
    let chosen: Vec<ImageIndexEntry> = match wanted {
        Some(wanted) => entries
            .iter()
            .filter(|e| ref_name(e) == Some(wanted))
            .cloned()
            .collect(),
        // Without a name, the layout must hold one image: entries that
        // share a name (or all lack one) are platforms of one image.
        None if names.len() > 1
            || (names.len() == 1 && entries.iter().any(|e| ref_name(e).is_none())) =>
        {
            return Err(ImportError::Ambiguous {
                input: ctx.0.to_owned(),
                available: available(),
            });
        }
        None => entries.to_vec(),
    };
    if chosen.is_empty() {
        return Err(match wanted {
            Some(wanted) => ImportError::NoSuchImage {
                input: ctx.0.to_owned(),
                wanted: wanted.to_owned(),
                available: available(),
            },
            None => ctx.invalid("index.json lists no images"),
        });
    }
    let name = wanted
        .map(str::to_owned)
        .or_else(|| names.first().map(|n| (*n).to_owned()));
    Ok((Candidates(chosen), name))
}

/// Entries of one image: a single manifest, a single index, or manifests
/// for several platforms.
struct Candidates(Vec<ImageIndexEntry>);

/// Narrows candidates down to the one image manifest for this node.
fn resolve_platform(
    ctx: Ctx<'_>,
    layout: &Layout,
    Candidates(mut entries): Candidates,
) -> Result<ImageIndexEntry, ImportError> {
    // A lone index entry stands for its children; one level is all that
    // skopeo and containerd write.
    if let [only] = entries.as_slice() {
        if is_index(&only.media_type) {
            let digest = digest(ctx, "index", &only.digest)?;
            let bytes = layout.read_blob(
                ctx,
                "index",
                &digest,
                size(ctx, &only.digest, only.size)?,
                MANIFEST_MAX,
            )?;
            let nested: OciImageIndex =
                serde_json::from_slice(&bytes).map_err(ctx.json(format!("index {digest}")))?;
            entries = nested.manifests;
        }
    }
    let entry = match entries.as_slice() {
        [only] if only.platform.is_none() => only.clone(),
        _ => {
            let host = Platform::host();
            select_manifest(&entries, &host)
                .map_err(|offered| ImportError::NoPlatform {
                    input: ctx.0.to_owned(),
                    platform: host.to_string(),
                    available: offered.join(", "),
                })?
                .clone()
        }
    };
    if !is_image_manifest(&entry.media_type) {
        return Err(ImportError::Unsupported {
            input: ctx.0.to_owned(),
            what: "manifest",
            media_type: entry.media_type,
        });
    }
    Ok(entry)
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_IMAGE_INDEX_MEDIA_TYPE || media_type == IMAGE_MANIFEST_LIST_MEDIA_TYPE
}

fn is_image_manifest(media_type: &str) -> bool {
    media_type == OCI_IMAGE_MEDIA_TYPE || media_type == IMAGE_MANIFEST_MEDIA_TYPE
}

/// Refuses configs that are not container images and layers the unpacker
/// cannot read (encrypted, foreign compressions), before any copying.
fn check_media_types(ctx: Ctx<'_>, manifest: &OciImageManifest) -> Result<(), ImportError> {
    let config_type = manifest.config.media_type.as_str();
    if config_type != IMAGE_CONFIG_MEDIA_TYPE && config_type != IMAGE_DOCKER_CONFIG_MEDIA_TYPE {
        return Err(ImportError::Unsupported {
            input: ctx.0.to_owned(),
            what: "config",
            media_type: config_type.to_owned(),
        });
    }
    for layer in &manifest.layers {
        if !layer_supported(&layer.media_type) {
            return Err(ImportError::Unsupported {
                input: ctx.0.to_owned(),
                what: "layer",
                media_type: layer.media_type.clone(),
            });
        }
    }
    Ok(())
}

/// OCI and Docker layer types that are tar, gzip or zstd (the unpacker
/// sniffs which).
fn layer_supported(media_type: &str) -> bool {
    let family = [
        "application/vnd.oci.image.layer.",
        "application/vnd.docker.image.rootfs.",
    ]
    .iter()
    .any(|p| media_type.starts_with(p));
    let format = [".tar", ".tar+gzip", ".tar+zstd", ".tar.gzip"]
        .iter()
        .any(|s| media_type.ends_with(s));
    family && format
}

fn digest(ctx: Ctx<'_>, what: &'static str, digest: &str) -> Result<Digest, ImportError> {
    Digest::parse(digest).map_err(|source| ImportError::BadDigest {
        input: ctx.0.to_owned(),
        what,
        digest: digest.to_owned(),
        source,
    })
}

fn size(ctx: Ctx<'_>, digest: &str, size: i64) -> Result<u64, ImportError> {
    u64::try_from(size)
        .map_err(|_| ctx.invalid(format!("descriptor {digest} has negative size {size}")))
}

/// The name the image is tagged with. A `ref.name` that is a full reference
/// (`docker.io/library/busybox:1.36`, as containerd writes) is kept,
/// normalised; a bare tag (`1.36`, as skopeo writes) goes under a name
/// made from the file, since read as a reference it would name a Docker
/// Hub repository.
fn image_name(ref_name: Option<&str>, fallback: &Fallback<'_>) -> String {
    if let Some(name) = ref_name.filter(|n| n.contains(['/', ':', '@'])) {
        if let Some(tagged) = Reference::parse(name).ok().and_then(|r| r.repo_tag()) {
            return tagged;
        }
    }
    let repository = repository_component(fallback.stem).unwrap_or_else(|| "image".to_owned());
    let version = ref_name.map(tag).unwrap_or_else(|| "latest".to_owned());
    format!("{}/{repository}:{version}", fallback.host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::import::test_support::{stores, template_tar, OciLayoutBuilder};
    use crate::image::import::{import_with, parse, PveStorages};

    fn import_dir(
        input: &str,
    ) -> Result<(Imported, tempfile::TempDir, ContentStore, Snapshots), ImportError> {
        let (dir, content, snapshots) = stores();
        let source = parse(input).unwrap().unwrap();
        import_with(&source, &PveStorages::default(), &content, &snapshots)
            .map(|i| (i, dir, content, snapshots))
    }

    #[test]
    fn names() {
        let fb = Fallback {
            host: "oci-archive.local",
            stem: "My Image",
        };
        assert_eq!(image_name(None, &fb), "oci-archive.local/my-image:latest");
        assert_eq!(
            image_name(Some("1.36"), &fb),
            "oci-archive.local/my-image:1.36"
        );
        assert_eq!(
            image_name(Some("busybox:1.36"), &fb),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(
            image_name(Some("ghcr.io/org/app:v1"), &fb),
            "ghcr.io/org/app:v1"
        );
        assert_eq!(
            image_name(Some("Bad/Name:x"), &fb),
            "oci-archive.local/my-image:Bad_Name_x"
        );
    }

    #[test]
    fn layer_types() {
        assert!(layer_supported(
            "application/vnd.oci.image.layer.v1.tar+gzip"
        ));
        assert!(layer_supported("application/vnd.oci.image.layer.v1.tar"));
        assert!(layer_supported(
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        ));
        assert!(!layer_supported(
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
        ));
        assert!(!layer_supported(
            "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
        ));
    }

    #[test]
    fn imports_a_layout_directory_and_archive() {
        let src = tempfile::tempdir().unwrap();
        let mut layout = OciLayoutBuilder::new(src.path().join("app"));
        let image = layout.add_image(&template_tar(), Some("1.0"));
        layout.finish();

        let input = format!("oci-layout:{}", src.path().join("app").display());
        let (imported, _dir, content, snapshots) = import_dir(&input).unwrap();
        let record = &imported.record;
        assert_eq!(imported.name, "oci-layout.local/app:1.0");
        assert_eq!(record.id, image.config);
        assert_eq!(record.manifest_digest, image.manifest);
        assert_eq!(record.chain_ids, vec![image.diff_id.clone()]);
        assert_eq!(record.layers[0].digest, image.layer);
        assert_eq!(
            record.layers[0].media_type,
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(record.source.as_deref(), Some(input.as_str()));
        assert_eq!(record.run_config.cmd, Some(vec!["/sbin/init".to_owned()]));
        for blob in [&image.config, &image.manifest, &image.layer] {
            assert!(content.has(blob), "{blob} stored");
        }
        let fs = snapshots
            .layers_root()
            .join(image.diff_id.trim_start_matches("sha256:"))
            .join("fs");
        assert!(fs.join("etc/os-release").is_file());

        // The same layout packed as a tar, named by its tag.
        let archive = src.path().join("app.tar");
        let mut builder = tar::Builder::new(std::fs::File::create(&archive).unwrap());
        builder.append_dir_all(".", src.path().join("app")).unwrap();
        builder.finish().unwrap();
        drop(builder);
        let input = format!("oci-archive:{}:1.0", archive.display());
        let (imported, ..) = import_dir(&input).unwrap();
        assert_eq!(imported.name, "oci-archive.local/app:1.0");
        assert_eq!(imported.record.id, image.config);
    }

    #[test]
    fn images_are_picked_by_name() {
        let src = tempfile::tempdir().unwrap();
        let dir = src.path().join("multi");
        let mut layout = OciLayoutBuilder::new(dir.clone());
        let first = layout.add_image(&template_tar(), Some("docker.io/library/first:1"));
        let second = layout.add_image(b"not even a tar, never read", Some("second"));
        layout.finish();

        let base = format!("oci-layout:{}", dir.display());
        let err = import_dir(&base).err().unwrap();
        assert!(matches!(err, ImportError::Ambiguous { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("docker.io/library/first:1, second"),
            "{err}"
        );

        let err = import_dir(&format!("{base}:third")).err().unwrap();
        assert!(matches!(err, ImportError::NoSuchImage { .. }), "{err:?}");
        assert!(err.to_string().contains("\"third\""), "{err}");

        let (imported, ..) = import_dir(&format!("{base}:docker.io/library/first:1")).unwrap();
        assert_eq!(imported.record.id, first.config);
        assert_eq!(imported.name, "docker.io/library/first:1");
        assert_ne!(first.config, second.config);
    }

    #[test]
    fn nested_index_resolves_to_this_platform() {
        let src = tempfile::tempdir().unwrap();
        let dir = src.path().join("multi-arch");
        let host = Platform::host().architecture;
        let foreign = if host == "s390x" { "amd64" } else { "s390x" };
        let mut layout = OciLayoutBuilder::new(dir.clone());
        let other = layout.image(b"never unpacked", foreign);
        let native = layout.image(&template_tar(), &host);
        layout.add_platforms(&[(foreign, &other), (&host, &native)], Some("v3"));
        layout.finish();

        let (imported, ..) = import_dir(&format!("oci-layout:{}", dir.display())).unwrap();
        assert_eq!(imported.record.id, native.config);
        assert_eq!(imported.record.manifest_digest, native.manifest);
        assert_eq!(imported.name, "oci-layout.local/multi-arch:v3");

        // Only the foreign platform: refused, naming what there is.
        let dir = src.path().join("foreign");
        let mut layout = OciLayoutBuilder::new(dir.clone());
        let other = layout.image(b"never unpacked", foreign);
        layout.add_platforms(&[(foreign, &other)], None);
        layout.finish();
        let err = import_dir(&format!("oci-layout:{}", dir.display()))
            .err()
            .unwrap();
        assert!(matches!(err, ImportError::NoPlatform { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&format!("linux/{foreign}")),
            "{err}"
        );
    }

    #[test]
    fn tampered_blobs_are_refused_and_not_stored() {
        let src = tempfile::tempdir().unwrap();
        let dir = src.path().join("bad");
        let mut layout = OciLayoutBuilder::new(dir.clone());
        let image = layout.add_image(&template_tar(), None);
        layout.finish();
        let layer_file = dir
            .join("blobs/sha256")
            .join(image.layer.trim_start_matches("sha256:"));
        let mut bytes = std::fs::read(&layer_file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&layer_file, bytes).unwrap();

        let (dir2, content, snapshots) = stores();
        let source = parse(&format!("oci-layout:{}", dir.display()))
            .unwrap()
            .unwrap();
        let err = import_with(&source, &PveStorages::default(), &content, &snapshots).unwrap_err();
        assert!(
            matches!(err, ImportError::DigestMismatch { what: "layer", .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(&image.layer), "{err}");
        assert!(content.list().unwrap().is_empty(), "nothing stored");
        assert!(std::fs::read_dir(content.root().join("ingest"))
            .unwrap()
            .next()
            .is_none());
        assert!(snapshots.layers().unwrap().is_empty());
        drop(dir2);

        // A missing blob is named as such.
        std::fs::remove_file(&layer_file).unwrap();
        let err = import_with(&source, &PveStorages::default(), &content, &snapshots).unwrap_err();
        assert!(matches!(err, ImportError::MissingBlob { .. }), "{err:?}");
    }
}
