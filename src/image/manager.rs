//! The image service's domain logic: pull (once per reference at a time),
//! resolve names, list, remove with garbage collection, and report usage.
//!
//! Names: a tag (`registry/repo:tag`) or repo digest (`registry/repo@sha256:..`)
//! points at exactly one image; pulling a tag that moved takes the name off
//! the old image. An image is unpacked into snapshots at pull time, so
//! container creation never waits on decompression.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use tracing::{info, warn};

use super::content::ContentStore;
use super::error::ImageError;
use super::record::{ImageRecord, LayerRecord};
use super::reference::Reference;
use super::registry::{Credential, PulledImage, Puller};
use super::spec::ConfigFile;
use crate::snapshot::{chain_ids, Snapshots, Usage};
use crate::store::Store;

type SharedPull = Shared<BoxFuture<'static, Result<String, Arc<ImageError>>>>;

pub(crate) struct ImageManager {
    store: Arc<Store>,
    content: Arc<ContentStore>,
    snapshots: Arc<Snapshots>,
    puller: Puller,
    inflight: std::sync::Mutex<HashMap<String, SharedPull>>,
    /// Serialises changes to image records (names move between images).
    names: tokio::sync::Mutex<()>,
}

/// Disk usage of the image and container filesystems.
pub(crate) struct FsUsage {
    pub images_mountpoint: std::path::PathBuf,
    pub images: Usage,
    pub containers_mountpoint: std::path::PathBuf,
    pub containers: Usage,
}

impl ImageManager {
    pub(crate) fn new(
        store: Arc<Store>,
        content: Arc<ContentStore>,
        snapshots: Arc<Snapshots>,
        puller: Puller,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            content,
            snapshots,
            puller,
            inflight: std::sync::Mutex::new(HashMap::new()),
            names: tokio::sync::Mutex::new(()),
        })
    }

    pub(crate) fn snapshots(&self) -> &Arc<Snapshots> {
        &self.snapshots
    }

    /// Pulls `image` and returns its ID. Concurrent pulls of the same
    /// reference share one download; a caller that gives up (deadline)
    /// does not cancel it for the others.
    pub(crate) async fn pull(
        self: &Arc<Self>,
        image: &str,
        auth: Option<Credential>,
    ) -> Result<String, Arc<ImageError>> {
        let local = super::import::parse(image).map_err(|e| Arc::new(import_error(image, &e)))?;
        if let Some(source) = local {
            return self.import(image, source).await.map_err(Arc::new);
        }
        let reference = Reference::parse(image).map_err(|source| {
            Arc::new(ImageError::InvalidReference {
                image: image.to_owned(),
                source,
            })
        })?;
        let key = reference.to_string();
        let shared = {
            let mut inflight = self.inflight.lock().expect("inflight lock poisoned");
            match inflight.get(&key) {
                Some(s) => s.clone(),
                None => {
                    let this = self.clone();
                    let task = tokio::spawn({
                        let this = this.clone();
                        let reference = reference.clone();
                        async move { this.pull_now(reference, auth).await.map_err(Arc::new) }
                    });
                    let key2 = key.clone();
                    let fut = async move {
                        let result = task.await.unwrap_or_else(|e| {
                            Err(Arc::new(ImageError::Task {
                                what: "pull",
                                message: e.to_string(),
                            }))
                        });
                        this.inflight
                            .lock()
                            .expect("inflight lock poisoned")
                            .remove(&key2);
                        result
                    }
                    .boxed()
                    .shared();
                    inflight.insert(key, fut.clone());
                    fut
                }
            }
        };
        shared.await
    }

    async fn pull_now(
        self: Arc<Self>,
        reference: Reference,
        auth: Option<Credential>,
    ) -> Result<String, ImageError> {
        let started = std::time::Instant::now();
        let pulled =
            self.puller
                .pull(&reference, auth)
                .await
                .map_err(|source| ImageError::Pull {
                    image: reference.to_string(),
                    source: Box::new(source),
                })?;
        crate::failpoint::hit("pull.after_fetch").map_err(|e| ImageError::Task {
            what: "pull",
            message: e.to_string(),
        })?;
        let record = self.unpack(&reference, &pulled).await?;
        crate::failpoint::hit("pull.before_record").map_err(|e| ImageError::Task {
            what: "pull",
            message: e.to_string(),
        })?;
        let id = record.id.clone();
        self.add_names(record, &reference, &pulled.repo_digest)
            .await?;
        info!(image = %reference, id = %id, elapsed_ms = started.elapsed().as_millis() as u64, "image pulled");
        Ok(id)
    }

    /// Unpacks every layer not yet committed and builds the record.
    async fn unpack(
        &self,
        reference: &Reference,
        pulled: &PulledImage,
    ) -> Result<ImageRecord, ImageError> {
        let image = reference.to_string();
        let config = ConfigFile::parse(&pulled.config).map_err(|source| ImageError::BadConfig {
            image: image.clone(),
            source,
        })?;
        if config.rootfs.diff_ids.len() != pulled.layers.len() {
            return Err(ImageError::LayerCount {
                image,
                diff_ids: config.rootfs.diff_ids.len(),
                layers: pulled.layers.len(),
            });
        }
        let chain = chain_ids(&config.rootfs.diff_ids);
        let blobs: Vec<_> = pulled
            .layers
            .iter()
            .map(|l| self.content.path(&l.digest))
            .collect();
        let snapshots = self.snapshots.clone();
        let chain2 = chain.clone();
        let image2 = image.clone();
        tokio::task::spawn_blocking(move || {
            for (i, (chain_id, blob)) in chain2.iter().zip(&blobs).enumerate() {
                let blob = blob.as_ref().map_err(|e| ImageError::Content {
                    image: image2.clone(),
                    message: e.to_string(),
                })?;
                let parent = i.checked_sub(1).map(|p| chain2[p].as_str());
                snapshots
                    .commit_layer(chain_id, parent, blob)
                    .map_err(|source| ImageError::Snapshot {
                        image: image2.clone(),
                        source,
                    })?;
            }
            Ok::<(), ImageError>(())
        })
        .await
        .map_err(|e| ImageError::Task {
            what: "unpack",
            message: e.to_string(),
        })??;
        Ok(ImageRecord {
            id: pulled.config_digest.clone(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            size: pulled.size,
            layers: pulled
                .layers
                .iter()
                .map(|l| LayerRecord {
                    digest: l.digest.clone(),
                    media_type: l.media_type.clone(),
                    size: l.size,
                })
                .collect(),
            chain_ids: chain,
            run_config: config.config.unwrap_or_default(),
            manifest_digest: pulled.manifest_digest.clone(),
            pinned: false,
            source: None,
        })
    }

    /// Stores `record` under the reference's tag and repo digest, taking
    /// those names off any other image.
    async fn add_names(
        &self,
        record: ImageRecord,
        reference: &Reference,
        repo_digest: &str,
    ) -> Result<(), ImageError> {
        let mut names = Vec::new();
        if reference.digest.is_none() {
            names.extend(reference.repo_tag());
        }
        let digest_name = reference.repo_digest(repo_digest);
        let _guard = self.names.lock().await;
        let images = self.store.list::<ImageRecord>()?;
        for mut other in images.iter().filter(|i| i.id != record.id).cloned() {
            let before = (other.repo_tags.len(), other.repo_digests.len());
            other.repo_tags.retain(|t| !names.contains(t));
            other.repo_digests.retain(|d| *d != digest_name);
            if before != (other.repo_tags.len(), other.repo_digests.len()) {
                self.store.put(&other)?;
            }
        }
        let mut merged = images
            .into_iter()
            .find(|i| i.id == record.id)
            .unwrap_or(record);
        for name in names {
            if !merged.repo_tags.contains(&name) {
                merged.repo_tags.push(name);
            }
        }
        if !merged.repo_digests.contains(&digest_name) {
            merged.repo_digests.push(digest_name);
        }
        self.store.put(&merged)?;
        Ok(())
    }

    /// Imports a Proxmox template or a local OCI archive/layout.
    async fn import(
        &self,
        image: &str,
        source: super::import::LocalSource,
    ) -> Result<String, ImageError> {
        let content = self.content.clone();
        let snapshots = self.snapshots.clone();
        let imported = tokio::task::spawn_blocking(move || {
            super::import::import(&source, &content, &snapshots)
        })
        .await
        .map_err(|e| ImageError::Task {
            what: "import",
            message: e.to_string(),
        })?
        .map_err(|e| import_error(image, &e))?;
        let id = imported.record.id.clone();
        self.add_local(imported.record, &imported.name).await?;
        info!(image, id = %id, name = %imported.name, "image imported");
        Ok(id)
    }

    /// Stores an image built locally (template import), under `name`.
    pub(crate) async fn add_local(
        &self,
        record: ImageRecord,
        name: &str,
    ) -> Result<(), ImageError> {
        let _guard = self.names.lock().await;
        for mut other in self
            .store
            .list::<ImageRecord>()?
            .into_iter()
            .filter(|i| i.id != record.id)
        {
            if other.repo_tags.iter().any(|t| t == name) {
                other.repo_tags.retain(|t| t != name);
                self.store.put(&other)?;
            }
        }
        let mut merged = self.store.get::<ImageRecord>(&record.id)?.unwrap_or(record);
        if !merged.repo_tags.iter().any(|t| t == name) {
            merged.repo_tags.push(name.to_owned());
        }
        self.store.put(&merged)?;
        Ok(())
    }

    /// The image an ID, tag or digest reference names, if any.
    pub(crate) fn status(&self, image: &str) -> Result<Option<ImageRecord>, ImageError> {
        let images = self.store.list::<ImageRecord>()?;
        Ok(resolve(&images, image).cloned())
    }

    /// All images, or the one `filter` names.
    pub(crate) fn list(&self, filter: Option<&str>) -> Result<Vec<ImageRecord>, ImageError> {
        let images = self.store.list::<ImageRecord>()?;
        Ok(match filter.filter(|f| !f.is_empty()) {
            Some(f) => resolve(&images, f).cloned().into_iter().collect(),
            None => images,
        })
    }

    /// Removes the image `image` names with all its names; unknown images
    /// are not an error (the kubelet retries removals). Layers and blobs no
    /// other image (or container) uses are deleted.
    pub(crate) async fn remove(
        &self,
        image: &str,
        layers_in_use: &HashSet<String>,
    ) -> Result<(), ImageError> {
        let _guard = self.names.lock().await;
        let images = self.store.list::<ImageRecord>()?;
        let Some(found) = resolve(&images, image) else {
            return Ok(());
        };
        let id = found.id.clone();
        self.store.delete::<ImageRecord>(&id)?;
        info!(image, id = %id, "image removed");
        let remaining: Vec<ImageRecord> = images.into_iter().filter(|i| i.id != id).collect();
        let snapshots = self.snapshots.clone();
        let content = self.content.clone();
        let in_use = layers_in_use.clone();
        tokio::task::spawn_blocking(move || {
            collect_garbage(&remaining, &in_use, &snapshots, &content)
        })
        .await
        .map_err(|e| ImageError::Task {
            what: "garbage collection",
            message: e.to_string(),
        })?;
        Ok(())
    }

    pub(crate) async fn fs_usage(&self) -> FsUsage {
        let snapshots = self.snapshots.clone();
        let content_root = self.content.root().to_owned();
        tokio::task::spawn_blocking(move || {
            let mut images = Usage::of(snapshots.layers_root());
            let blobs = Usage::of(&content_root);
            images.bytes += blobs.bytes;
            images.inodes += blobs.inodes;
            FsUsage {
                images_mountpoint: snapshots.layers_root().to_owned(),
                images,
                containers_mountpoint: snapshots.rootfs_root().to_owned(),
                containers: Usage::of(snapshots.rootfs_root()),
            }
        })
        .await
        .unwrap_or_else(|_| FsUsage {
            images_mountpoint: Default::default(),
            images: Usage::default(),
            containers_mountpoint: Default::default(),
            containers: Usage::default(),
        })
    }
}

/// Deletes layers and blobs that no remaining image and no container uses.
fn collect_garbage(
    images: &[ImageRecord],
    layers_in_use: &HashSet<String>,
    snapshots: &Snapshots,
    content: &ContentStore,
) {
    let mut keep_layers: HashSet<&str> = layers_in_use.iter().map(String::as_str).collect();
    let mut keep_blobs: HashSet<&str> = HashSet::new();
    for image in images {
        keep_layers.extend(image.chain_ids.iter().map(String::as_str));
        keep_blobs.insert(&image.id);
        keep_blobs.insert(&image.manifest_digest);
        keep_blobs.extend(image.layers.iter().map(|l| l.digest.as_str()));
        keep_blobs.extend(
            image
                .repo_digests
                .iter()
                .filter_map(|d| d.split_once('@').map(|(_, d)| d)),
        );
    }
    match snapshots.layers() {
        Ok(layers) => {
            for layer in layers.iter().filter(|l| !keep_layers.contains(l.as_str())) {
                if let Err(err) = snapshots.remove_layer(layer) {
                    warn!(layer = %layer, error = %err, "cannot remove unused layer");
                }
            }
        }
        Err(err) => warn!(error = %err, "cannot list layers for garbage collection"),
    }
    match content.list() {
        Ok(blobs) => {
            for blob in blobs.iter().filter(|b| !keep_blobs.contains(b.as_str())) {
                if let Err(err) = content.remove(blob) {
                    warn!(blob = %blob, error = %err, "cannot remove unused blob");
                }
            }
        }
        Err(err) => warn!(error = %err, "cannot list blobs for garbage collection"),
    }
}

/// Finds the image a query names: its ID (with or without `sha256:`, or a
/// unique prefix of at least 6 hex digits), a tag or a repo digest.
pub(crate) fn resolve<'a>(images: &'a [ImageRecord], query: &str) -> Option<&'a ImageRecord> {
    let bare = query.strip_prefix("sha256:").unwrap_or(query);
    if let Some(found) = images
        .iter()
        .find(|i| i.id == query || i.id.strip_prefix("sha256:") == Some(bare))
    {
        return Some(found);
    }
    if bare.len() >= 6 && bare.len() < 64 && bare.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut matches = images
            .iter()
            .filter(|i| i.id.trim_start_matches("sha256:").starts_with(bare));
        if let (Some(one), None) = (matches.next(), matches.next()) {
            return Some(one);
        }
    }
    let reference = Reference::parse(query).ok()?;
    match &reference.digest {
        Some(digest) => {
            let name = reference.repo_digest(digest);
            images.iter().find(|i| i.repo_digests.contains(&name))
        }
        None => {
            let tag = reference.repo_tag()?;
            images.iter().find(|i| i.repo_tags.contains(&tag))
        }
    }
}

fn import_error(image: &str, err: &super::import::ImportError) -> ImageError {
    ImageError::Import {
        source_path: image.to_owned(),
        message: crate::errors::chain(err),
    }
}
