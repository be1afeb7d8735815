//! Importing a Proxmox VE container template as a one-layer image.
//!
//! A template is a compressed tar of a whole root filesystem. It is stored
//! decompressed, because the uncompressed tar's digest is what OCI calls the
//! layer's diff ID: storing it that way makes the blob digest, the diff ID
//! and the chain ID all the same value, and the snapshotter unpacks it like
//! any registry layer. The image config is synthesised without timestamps
//! so that importing the same file again yields the same image ID.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use serde::Serialize;

use super::blob;
use super::decompress;
use super::error::{Ctx, ImportError};
use super::template_name::TemplateName;
use super::Imported;
use crate::image::content::ContentStore;
use crate::image::record::{ImageRecord, LayerRecord};
use crate::image::registry::platform::Platform;
use crate::image::spec::ConfigFile;
use crate::snapshot::Snapshots;

/// Media type of an uncompressed OCI layer.
const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
/// Label recording which file an image was made from.
pub(crate) const SOURCE_LABEL: &str = "io.pvecri.source";
/// System containers boot their init, as `pct start` would.
const INIT: &str = "/sbin/init";
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Imports the template file at `path`, naming the result after `storage`
/// (or [`super::template_name::FILE_STORAGE`] for a bare path).
pub(super) fn import(
    ctx: Ctx<'_>,
    path: &Path,
    storage: &str,
    content: &ContentStore,
    snapshots: &Snapshots,
) -> Result<Imported, ImportError> {
    let template = path
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(TemplateName::parse)
        .ok_or_else(|| ctx.invalid(format!("{} is not a template file", path.display())))?;

    let file = File::open(path).map_err(ctx.io("open", path))?;
    let mut tar = decompress::open(file).map_err(ctx.io("read", path))?;
    let layer = blob::store(ctx, content, path, &mut tar, None)?;
    let diff_id = layer.digest.to_string();
    snapshots
        .commit_layer(&diff_id, None, &layer.path)
        .map_err(|source| ImportError::Snapshot {
            input: ctx.0.to_owned(),
            chain_id: diff_id.clone(),
            source: Box::new(source),
        })?;

    let arch = template
        .arch
        .map(str::to_owned)
        .unwrap_or_else(|| Platform::host().architecture);
    let config_json = template_config(&arch, &diff_id, path);
    let config = blob::store_bytes(ctx, content, &config_json)?;
    // Read back what was written, so the record cannot disagree with it.
    let run_config = ConfigFile::parse(&config_json)
        .map_err(ctx.json("the synthesised config"))?
        .config
        .unwrap_or_default();
    let id = config.digest.to_string();
    Ok(Imported {
        record: ImageRecord {
            id: id.clone(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            size: layer.size + config.size,
            layers: vec![LayerRecord {
                digest: diff_id.clone(),
                media_type: LAYER_MEDIA_TYPE.to_owned(),
                size: layer.size,
            }],
            chain_ids: vec![diff_id],
            run_config,
            // There is no manifest; the config stands in so that garbage
            // collection, which keeps manifest blobs, keeps nothing extra.
            manifest_digest: id,
            pinned: false,
            source: Some(ctx.0.to_owned()),
        },
        name: template.image_name(storage),
    })
}

#[derive(Serialize)]
struct ImageConfig<'a> {
    architecture: &'a str,
    os: &'static str,
    config: RunSection<'a>,
    rootfs: RootFs<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RunSection<'a> {
    env: [&'a str; 1],
    cmd: [&'a str; 1],
    labels: BTreeMap<&'a str, String>,
}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: [&'a str; 1],
}

/// The config of a template image. Structs (not a JSON map) fix the field
/// order, and the label holds the file's path rather than how the user
/// spelled it: the volume ID, the kubelet name and the path of one file
/// then all give one image ID.
fn template_config(arch: &str, diff_id: &str, path: &Path) -> Vec<u8> {
    let config = ImageConfig {
        architecture: arch,
        os: "linux",
        config: RunSection {
            env: [DEFAULT_PATH],
            cmd: [INIT],
            labels: BTreeMap::from([(SOURCE_LABEL, path.display().to_string())]),
        },
        rootfs: RootFs {
            kind: "layers",
            diff_ids: [diff_id],
        },
    };
    serde_json::to_vec(&config).expect("serialising plain structs cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::import::test_support::{compress, stores, template_tar, Codec};
    use crate::image::import::{import_with, parse, PveStorages};

    #[test]
    fn config_is_a_valid_image_config() {
        let json = template_config("arm64", "sha256:abc", Path::new("/t/x.tar.gz"));
        let parsed = ConfigFile::parse(&json).unwrap();
        assert_eq!(parsed.architecture, "arm64");
        assert_eq!(parsed.os, "linux");
        assert_eq!(parsed.rootfs.diff_ids, vec!["sha256:abc"]);
        let run = parsed.config.unwrap();
        assert_eq!(run.cmd, Some(vec![INIT.to_owned()]));
        assert_eq!(run.env, Some(vec![DEFAULT_PATH.to_owned()]));
        assert_eq!(
            run.labels.unwrap().get(SOURCE_LABEL).map(String::as_str),
            Some("/t/x.tar.gz")
        );
    }

    #[test]
    fn imports_every_compression() {
        let tar = template_tar();
        let diff_id = crate::image::content::Digest::of(&tar).to_string();
        for (codec, ext) in [
            (Codec::Gzip, "tar.gz"),
            (Codec::Zstd, "tar.zst"),
            (Codec::Xz, "tar.xz"),
        ] {
            let (dir, content, snapshots) = stores();
            let vz = dir.path().join("vz");
            let cache = vz.join("template/cache");
            std::fs::create_dir_all(&cache).unwrap();
            let file = format!("debian-12-standard_12.7-1_arm64.{ext}");
            std::fs::write(cache.join(&file), compress(&tar, codec)).unwrap();
            let storages = PveStorages::from_cfg_text("", &vz);

            let input = format!("pve-template:local:vztmpl/{file}");
            let source = parse(&input).unwrap().unwrap();
            let imported = import_with(&source, &storages, &content, &snapshots)
                .unwrap_or_else(|e| panic!("{ext}: {e:?}"));
            let record = &imported.record;
            assert_eq!(
                imported.name,
                "pve-template.local/local/debian-12-standard:12.7-1"
            );
            assert_eq!(record.chain_ids, vec![diff_id.clone()], "{ext}");
            assert_eq!(record.layers.len(), 1);
            assert_eq!(record.layers[0].digest, diff_id);
            assert_eq!(record.layers[0].media_type, LAYER_MEDIA_TYPE);
            assert_eq!(record.layers[0].size, tar.len() as u64);
            assert_eq!(record.manifest_digest, record.id);
            assert_eq!(record.source.as_deref(), Some(input.as_str()));
            assert!(record.repo_tags.is_empty() && record.repo_digests.is_empty());
            assert_eq!(record.run_config.cmd, Some(vec![INIT.to_owned()]));

            // The blobs are in the store and the config says what we claim.
            assert_eq!(std::fs::read(content.path(&diff_id).unwrap()).unwrap(), tar);
            let config = std::fs::read(content.path(&record.id).unwrap()).unwrap();
            assert_eq!(record.size, tar.len() as u64 + config.len() as u64);
            let config = ConfigFile::parse(&config).unwrap();
            assert_eq!(
                config.architecture, "arm64",
                "arch comes from the file name"
            );
            assert_eq!(config.rootfs.diff_ids, vec![diff_id.clone()]);

            // The layer is unpacked and holds the template's files.
            assert!(snapshots.has_layer(&diff_id));
            let fs = snapshots
                .layers_root()
                .join(diff_id.trim_start_matches("sha256:"))
                .join("fs");
            assert!(std::fs::read_to_string(fs.join("etc/os-release"))
                .unwrap()
                .contains("bookworm"));
            assert!(fs.join("sbin/init").is_file());

            // Same file again, and the same file by its kubelet name: same image.
            let again = import_with(&source, &storages, &content, &snapshots).unwrap();
            assert_eq!(again.record.id, record.id);
            let by_name = parse("pve-template.local/local/debian-12-standard:12.7-1")
                .unwrap()
                .unwrap();
            let again = import_with(&by_name, &storages, &content, &snapshots).unwrap();
            assert_eq!(again.record.id, record.id);
            assert_eq!(again.name, imported.name);
            assert!(
                std::fs::read_dir(content.root().join("ingest"))
                    .unwrap()
                    .next()
                    .is_none(),
                "no temp files left"
            );
        }
    }

    #[test]
    fn bare_paths_and_odd_names() {
        let (dir, content, snapshots) = stores();
        let path = dir.path().join("My Root.tar.zst");
        std::fs::write(&path, compress(&template_tar(), Codec::Zstd)).unwrap();
        let source = parse(&format!("pve-template:{}", path.display()))
            .unwrap()
            .unwrap();
        let imported = import_with(&source, &PveStorages::default(), &content, &snapshots).unwrap();
        assert_eq!(imported.name, "pve-template.local/file/my-root:latest");
        let config = std::fs::read(content.path(&imported.record.id).unwrap()).unwrap();
        assert_eq!(
            ConfigFile::parse(&config).unwrap().architecture,
            Platform::host().architecture,
            "no arch in the name: the host's"
        );
    }

    #[test]
    fn failures_name_the_input() {
        let (dir, content, snapshots) = stores();
        let missing = format!("pve-template:{}/none_1_amd64.tar.gz", dir.path().display());
        let source = parse(&missing).unwrap().unwrap();
        let err = import_with(&source, &PveStorages::default(), &content, &snapshots).unwrap_err();
        assert!(
            matches!(&err, ImportError::Io { op: "open", .. })
                && err.to_string().contains(&missing),
            "{err}"
        );

        let corrupt = dir.path().join("bad_1_amd64.tar.xz");
        let mut packed = compress(&template_tar(), Codec::Xz);
        packed.truncate(packed.len() / 2);
        std::fs::write(&corrupt, packed).unwrap();
        let source = parse(&format!("pve-template:{}", corrupt.display()))
            .unwrap()
            .unwrap();
        let err = import_with(&source, &PveStorages::default(), &content, &snapshots).unwrap_err();
        assert!(
            matches!(&err, ImportError::Io { op: "read", .. }),
            "{err:?}"
        );
        assert!(content.list().unwrap().is_empty());
        assert!(snapshots.layers().unwrap().is_empty());
    }
}
