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
    /// Pulls and imports hold it shared for their whole run; garbage
    /// collection holds it exclusively, so it never deletes a blob or layer
    /// a pull has found present and is about to unpack or record (critest
    /// in the VM saw "open layer ...: No such file" from that race).
    gc: tokio::sync::RwLock<()>,
    /// Names of images that are reported pinned and never removed
    /// (`images.pinned_images`).
    pinned: Vec<String>,
    /// Set while layers of removed images may still be on disk because a
    /// container used them: [`ImageManager::collect_deferred`] collects
    /// them once the containers are gone. Starts set, so the first
    /// collection after a restart finds what an earlier run left.
    deferred: std::sync::atomic::AtomicBool,
    /// The last [`FsUsage`] (walking every writable layer is slow), renewed
    /// in the background once old; forgotten when images change.
    fs_usage: Arc<crate::stats::UsageCache<FsUsage>>,
    /// Set while a background renewal of `fs_usage` runs.
    fs_usage_renewing: Arc<std::sync::atomic::AtomicBool>,
    /// Bumped when images change: a measurement that began before keeps
    /// its figure to itself.
    fs_usage_generation: Arc<std::sync::atomic::AtomicU64>,
}

/// How old the image and container filesystem usage may grow before a
/// request has it measured again in the background.
const FS_USAGE_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// Disk usage of the image and container filesystems.
#[derive(Debug, Clone)]
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
        pinned: Vec<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            content,
            snapshots,
            puller,
            inflight: std::sync::Mutex::new(HashMap::new()),
            names: tokio::sync::Mutex::new(()),
            gc: tokio::sync::RwLock::new(()),
            pinned,
            deferred: std::sync::atomic::AtomicBool::new(true),
            fs_usage: Arc::new(crate::stats::UsageCache::new(FS_USAGE_TTL)),
            fs_usage_renewing: Arc::default(),
            fs_usage_generation: Arc::default(),
        })
    }

    /// Whether a `pinned_images` entry names `image`.
    fn is_pinned(&self, image: &ImageRecord) -> bool {
        image.pinned
            || self
                .pinned
                .iter()
                .any(|name| resolve(std::slice::from_ref(image), name).is_some())
    }

    /// `image` with `pinned` as the configuration says.
    fn marked(&self, mut image: ImageRecord) -> ImageRecord {
        image.pinned = self.is_pinned(&image);
        image
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
            let _pulling = self.gc.read().await;
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
                        async move {
                            let _pulling = this.gc.read().await;
                            this.clone()
                                .pull_now(reference, auth)
                                .await
                                .map_err(Arc::new)
                        }
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
        self.fs_usage_changed();
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
        self.fs_usage_changed();
        Ok(())
    }

    /// The image an ID, tag or digest reference names, if any.
    pub(crate) fn status(&self, image: &str) -> Result<Option<ImageRecord>, ImageError> {
        let images = self.store.list::<ImageRecord>()?;
        Ok(resolve(&images, image).cloned().map(|i| self.marked(i)))
    }

    /// All images, or the one `filter` names.
    pub(crate) fn list(&self, filter: Option<&str>) -> Result<Vec<ImageRecord>, ImageError> {
        let images = self.store.list::<ImageRecord>()?;
        let found = match filter.filter(|f| !f.is_empty()) {
            Some(f) => resolve(&images, f).cloned().into_iter().collect(),
            None => images,
        };
        Ok(found.into_iter().map(|i| self.marked(i)).collect())
    }

    /// Removes the image `image` names with all its names; unknown images
    /// are not an error (the kubelet retries removals). Layers and blobs no
    /// other image (or container) uses are deleted.
    pub(crate) async fn remove(
        &self,
        image: &str,
        layers_in_use: &HashSet<String>,
    ) -> Result<(), ImageError> {
        {
            let _guard = self.names.lock().await;
            let images = self.store.list::<ImageRecord>()?;
            let Some(found) = resolve(&images, image) else {
                return Ok(());
            };
            if self.is_pinned(found) {
                return Err(ImageError::Pinned {
                    image: image.to_owned(),
                    id: found.id.clone(),
                });
            }
            let id = found.id.clone();
            self.store.delete::<ImageRecord>(&id)?;
            info!(image, id = %id, "image removed");
        }
        let collected = self.collect(layers_in_use).await;
        self.fs_usage_changed();
        collected
    }

    /// Collects what removed images left because containers used it, once
    /// something may be left ([`ImageManager::remove`] while in use, or a
    /// restart); cheap otherwise. Called after a container is removed.
    pub(crate) async fn collect_deferred(
        &self,
        layers_in_use: &HashSet<String>,
    ) -> Result<(), ImageError> {
        if !self
            .deferred
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(());
        }
        let collected = self.collect(layers_in_use).await;
        self.fs_usage_changed();
        collected
    }

    /// Whether [`ImageManager::collect_deferred`] has anything to do.
    pub(crate) fn has_deferred(&self) -> bool {
        self.deferred.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Deletes every layer and blob no image record and no layer in
    /// `layers_in_use` needs.
    async fn collect(&self, layers_in_use: &HashSet<String>) -> Result<(), ImageError> {
        // Once no pull runs, the records name every blob and layer in use
        // (a pull records its image before it ends). The names lock is not
        // held here: a running pull may need it to finish.
        let _collecting = self.gc.write().await;
        let remaining = self.store.list::<ImageRecord>()?;
        let snapshots = self.snapshots.clone();
        let content = self.content.clone();
        let in_use = layers_in_use.clone();
        let kept_for_containers = tokio::task::spawn_blocking(move || {
            collect_garbage(&remaining, &in_use, &snapshots, &content);
            // Layers kept only because a container uses them go when it does.
            let named: HashSet<&String> = remaining.iter().flat_map(|i| &i.chain_ids).collect();
            in_use.iter().any(|l| !named.contains(l))
        })
        .await
        .map_err(|e| ImageError::Task {
            what: "garbage collection",
            message: e.to_string(),
        })?;
        if kept_for_containers {
            self.deferred
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }

    /// Disk usage of the image and container filesystems: the last
    /// measurement, renewed in the background once it is older than
    /// [`FS_USAGE_TTL`]; measured here only when there is none (at first,
    /// and after images changed).
    pub(crate) async fn fs_usage(&self) -> FsUsage {
        use std::sync::atomic::Ordering;
        let now = std::time::Instant::now();
        if let Some(usage) = self.fs_usage.get("", now) {
            let old = !self.fs_usage.take_wanted().is_empty();
            let renewing = old
                .then(|| crate::busy::Busy::try_start(&self.fs_usage_renewing))
                .flatten();
            if let Some(renewing) = renewing {
                let snapshots = self.snapshots.clone();
                let content_root = self.content.root().to_owned();
                let cache = self.fs_usage.clone();
                let generation = self.fs_usage_generation.clone();
                let began = generation.load(Ordering::SeqCst);
                tokio::task::spawn_blocking(move || {
                    let _renewing = renewing;
                    let usage = measure_fs_usage(&snapshots, &content_root);
                    // Images changed meanwhile: this figure is already old.
                    if generation.load(Ordering::SeqCst) == began {
                        cache.put("", std::time::Instant::now(), usage);
                    }
                });
            }
            return usage;
        }
        let began = self.fs_usage_generation.load(Ordering::SeqCst);
        let snapshots = self.snapshots.clone();
        let content_root = self.content.root().to_owned();
        let usage =
            tokio::task::spawn_blocking(move || measure_fs_usage(&snapshots, &content_root))
                .await
                .unwrap_or_else(|_| FsUsage {
                    images_mountpoint: Default::default(),
                    images: Usage::default(),
                    containers_mountpoint: Default::default(),
                    containers: Usage::default(),
                });
        if self.fs_usage_generation.load(Ordering::SeqCst) == began {
            self.fs_usage.put("", now, usage.clone());
        }
        usage
    }

    /// Images changed: the next [`Self::fs_usage`] measures again.
    fn fs_usage_changed(&self) {
        self.fs_usage_generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.fs_usage.forget("");
    }
}

fn measure_fs_usage(snapshots: &Snapshots, content_root: &std::path::Path) -> FsUsage {
    let mut images = snapshots.layers_usage();
    let blobs = Usage::of(content_root);
    images.bytes += blobs.bytes;
    images.inodes += blobs.inodes;
    FsUsage {
        images_mountpoint: snapshots.layers_root().to_owned(),
        images,
        containers_mountpoint: snapshots.rootfs_root().to_owned(),
        containers: snapshots.rootfs_total_usage(),
    }
}

/// Removes `layers` in passes: a backend may refuse a layer while another
/// is built on it (ZFS: a snapshot with a clone), so what failed is tried
/// again as long as a pass removed something.
fn remove_layers(snapshots: &Snapshots, mut layers: Vec<&String>) {
    loop {
        let before = layers.len();
        let mut errors = Vec::new();
        layers.retain(|layer| match snapshots.remove_layer(layer) {
            Ok(()) => false,
            Err(err) => {
                errors.push((layer.to_string(), err));
                true
            }
        });
        if layers.is_empty() || layers.len() == before {
            for (layer, err) in errors {
                warn!(layer = %layer, error = %crate::errors::chain(&err), "cannot remove unused layer");
            }
            return;
        }
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
            let unused: Vec<&String> = layers
                .iter()
                .filter(|l| !keep_layers.contains(l.as_str()))
                .collect();
            remove_layers(snapshots, unused);
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::image::content::Digest;
    use crate::image::registry::RegistrySettings;
    use crate::snapshot::BackendKind;

    /// A manager over a real store, content store and (mount-free) dir
    /// backend in a temp dir; its puller never gets to run.
    struct Fixture {
        _dir: tempfile::TempDir,
        manager: Arc<ImageManager>,
        store: Arc<Store>,
        content: Arc<ContentStore>,
        snapshots: Arc<Snapshots>,
    }

    fn fixture() -> Fixture {
        fixture_with(|dir| Snapshots::open(dir, BackendKind::Dir, None).unwrap())
    }

    /// The same over the zfs backend on the fake ZFS (which refuses to
    /// destroy a snapshot that still has clones).
    fn zfs_fixture() -> (Fixture, crate::zfs::fake::FakeZfs) {
        let mut fake = None;
        let f = fixture_with(|dir| {
            let zfs = crate::zfs::fake::FakeZfs::new(dir, "tank");
            fake = Some(zfs.clone());
            Snapshots::Zfs(
                crate::snapshot::ZfsSnapshotter::open(
                    dir.join("snapshots/zfs"),
                    "tank/pvecri",
                    Box::new(zfs),
                )
                .unwrap(),
            )
        });
        (f, fake.unwrap())
    }

    fn fixture_with(snapshots: impl FnOnce(&Path) -> Snapshots) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("state.redb")).unwrap());
        let content = Arc::new(ContentStore::new(dir.path().join("content")).unwrap());
        let snapshots = Arc::new(snapshots(dir.path()));
        let puller = Puller::new(RegistrySettings::default(), content.clone());
        let manager = ImageManager::new(
            store.clone(),
            content.clone(),
            snapshots.clone(),
            puller,
            vec!["docker.io/library/pinned:1".into()],
        );
        Fixture {
            _dir: dir,
            manager,
            store,
            content,
            snapshots,
        }
    }

    /// An uncompressed layer holding one file.
    fn layer(name: &str, data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
        b.into_inner().unwrap()
    }

    /// Stores an image made of `tars` (lowest first) the way a pull leaves
    /// one: blobs in the content store, layers committed, a record named
    /// `name` (a full `registry/repo:tag`) with a repo digest.
    async fn add_image(f: &Fixture, name: &str, tars: &[&[u8]]) -> ImageRecord {
        let diff_ids: Vec<String> = tars.iter().map(|t| Digest::of(t).to_string()).collect();
        let chain = chain_ids(&diff_ids);
        let mut layers = Vec::new();
        for (i, tar) in tars.iter().enumerate() {
            // Uncompressed: the blob digest is the diff ID.
            let digest = diff_ids[i].clone();
            let blob = f.content.ingest_bytes(&digest, tar).await.unwrap();
            let parent = i.checked_sub(1).map(|p| chain[p].as_str());
            f.snapshots.commit_layer(&chain[i], parent, &blob).unwrap();
            layers.push(LayerRecord {
                digest,
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                size: tar.len() as u64,
            });
        }
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let id = Digest::of(&config).to_string();
        f.content.ingest_bytes(&id, &config).await.unwrap();
        let manifest = serde_json::to_vec(&json!({"schemaVersion": 2, "config": id})).unwrap();
        let manifest_digest = Digest::of(&manifest).to_string();
        f.content
            .ingest_bytes(&manifest_digest, &manifest)
            .await
            .unwrap();
        let reference = Reference::parse(name).unwrap();
        let record = ImageRecord {
            id: id.clone(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            size: (config.len() + tars.iter().map(|t| t.len()).sum::<usize>()) as u64,
            layers,
            chain_ids: chain,
            run_config: Default::default(),
            manifest_digest: manifest_digest.clone(),
            pinned: false,
            source: None,
        };
        f.manager
            .add_names(record, &reference, &manifest_digest)
            .await
            .unwrap();
        f.store.get::<ImageRecord>(&id).unwrap().unwrap()
    }

    /// Every blob an image's record refers to.
    fn blobs_of(image: &ImageRecord) -> Vec<String> {
        let mut blobs = vec![image.id.clone(), image.manifest_digest.clone()];
        blobs.extend(image.layers.iter().map(|l| l.digest.clone()));
        blobs
    }

    fn layer_files(f: &Fixture, chain_id: &str) -> Vec<String> {
        let hex = chain_id.trim_start_matches("sha256:");
        let fs = f.snapshots.layers_root().join(hex).join("fs");
        let mut names: Vec<String> = std::fs::read_dir(fs)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn removing_an_image_keeps_what_another_image_shares() {
        let f = fixture();
        let base = layer("base", b"shared");
        let app = layer("app", b"app");
        let web = layer("web", b"web");
        let a = add_image(&f, "docker.io/library/app:1", &[&base, &app]).await;
        let w = add_image(&f, "docker.io/library/web:1", &[&base, &web]).await;
        assert_eq!(a.chain_ids[0], w.chain_ids[0]);
        assert_eq!(f.snapshots.layers().unwrap().len(), 3);

        f.manager
            .remove("docker.io/library/app:1", &HashSet::new())
            .await
            .unwrap();
        assert!(f.manager.status(&a.id).unwrap().is_none());
        // The shared base stays, as a layer and as a blob; app's own go.
        let mut layers = w.chain_ids.clone();
        layers.sort();
        assert_eq!(f.snapshots.layers().unwrap(), layers);
        let mut blobs = blobs_of(&w);
        blobs.sort();
        assert_eq!(f.content.list().unwrap(), blobs);
        assert_eq!(layer_files(&f, &w.chain_ids[1]), ["base", "web"]);

        f.manager.remove(&w.id, &HashSet::new()).await.unwrap();
        assert!(f.manager.list(None).unwrap().is_empty());
        assert!(f.snapshots.layers().unwrap().is_empty());
        assert!(f.content.list().unwrap().is_empty());
    }

    #[tokio::test]
    async fn zfs_layers_go_children_first_and_shared_ones_stay() {
        if !nix::unistd::geteuid().is_root() {
            // Unpacking root-owned layer files needs root (CI runs as root).
            assert!(std::env::var("CI").is_err(), "needs root in CI");
            eprintln!("skipping zfs_layers_go_children_first_and_shared_ones_stay: needs root");
            return;
        }
        let (f, fake) = zfs_fixture();
        let base = layer("base", b"shared");
        let mid = layer("mid", b"m");
        let app = layer("app", b"app");
        let web = layer("web", b"web");
        let a = add_image(&f, "docker.io/library/app:1", &[&base, &mid, &app]).await;
        let w = add_image(&f, "docker.io/library/web:1", &[&base, &web]).await;
        assert_eq!(f.snapshots.layers().unwrap().len(), 4);
        // A child layer is a clone of its parent's snapshot: ZFS refuses
        // the parent first, so removal must go from the top down.
        f.manager
            .remove("docker.io/library/app:1", &HashSet::new())
            .await
            .unwrap();
        let mut left = w.chain_ids.clone();
        left.sort();
        assert_eq!(f.snapshots.layers().unwrap(), left);
        for chain_id in &a.chain_ids[1..] {
            assert!(!f.snapshots.has_layer(chain_id), "{chain_id}");
        }
        f.manager.remove(&w.id, &HashSet::new()).await.unwrap();
        assert!(f.snapshots.layers().unwrap().is_empty());
        assert_eq!(
            fake.all(),
            [
                "tank",
                "tank/pvecri",
                "tank/pvecri/containers",
                "tank/pvecri/layers"
            ]
        );
    }

    #[tokio::test]
    async fn layers_a_container_uses_survive_their_image() {
        let f = fixture();
        let base = layer("base", b"b");
        let top = layer("top", b"t");
        let image = add_image(&f, "docker.io/library/app:1", &[&base, &top]).await;
        let in_use = HashSet::from([image.chain_ids[1].clone()]);
        f.manager.remove(&image.id, &in_use).await.unwrap();
        // The container's top layer is kept whole (the dir backend's
        // layers are full trees); everything else is unused now.
        assert_eq!(f.snapshots.layers().unwrap(), [image.chain_ids[1].clone()]);
        assert_eq!(layer_files(&f, &image.chain_ids[1]), ["base", "top"]);
        assert!(f.content.list().unwrap().is_empty());
    }

    #[tokio::test]
    async fn layers_kept_for_a_container_go_once_it_is_removed() {
        let f = fixture();
        let image = add_image(&f, "docker.io/library/app:1", &[&layer("a", b"a")]).await;
        let in_use = HashSet::from([image.chain_ids[0].clone()]);
        // A restart's first collection runs once, then only when needed.
        f.manager.collect_deferred(&in_use).await.unwrap();
        assert!(!f.manager.has_deferred());
        f.manager.remove(&image.id, &in_use).await.unwrap();
        assert_eq!(f.snapshots.layers().unwrap(), image.chain_ids);
        assert!(f.manager.has_deferred());
        // The container is gone: nothing uses the layer any more.
        f.manager.collect_deferred(&HashSet::new()).await.unwrap();
        assert!(f.snapshots.layers().unwrap().is_empty());
        assert!(!f.manager.has_deferred());
    }

    #[tokio::test]
    async fn pinned_images_are_reported_and_never_removed() {
        let f = fixture();
        let pinned = add_image(&f, "docker.io/library/pinned:1", &[&layer("p", b"p")]).await;
        let other = add_image(&f, "docker.io/library/other:1", &[&layer("o", b"o")]).await;
        let listed = f.manager.list(None).unwrap();
        let flag = |id: &str| listed.iter().find(|i| i.id == id).unwrap().pinned;
        assert!(flag(&pinned.id));
        assert!(!flag(&other.id));
        assert!(f.manager.status(&pinned.id).unwrap().unwrap().pinned);
        let err = f
            .manager
            .remove("docker.io/library/pinned:1", &HashSet::new())
            .await
            .unwrap_err();
        assert!(matches!(err, ImageError::Pinned { .. }), "{err}");
        assert!(f.manager.status(&pinned.id).unwrap().is_some());
        assert_eq!(f.snapshots.layers().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn blobs_named_by_a_repo_digest_are_kept_and_strays_removed() {
        let f = fixture();
        let one = layer("one", b"1");
        let two = layer("two", b"2");
        let keep = add_image(&f, "docker.io/library/keep:1", &[&one]).await;
        let gone = add_image(&f, "docker.io/library/gone:1", &[&two]).await;
        // A multi-platform index is what a repo digest names: not in the
        // record otherwise, but needed to answer for that name.
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        let index_digest = Digest::of(index).to_string();
        f.content.ingest_bytes(&index_digest, index).await.unwrap();
        let mut record = keep.clone();
        record.repo_digests = vec![format!("docker.io/library/keep@{index_digest}")];
        f.store.put(&record).unwrap();
        // A blob nothing names, as an interrupted pull leaves.
        let stray = b"stray";
        f.content
            .ingest_bytes(&Digest::of(stray).to_string(), stray)
            .await
            .unwrap();

        f.manager.remove(&gone.id, &HashSet::new()).await.unwrap();
        let mut expected = blobs_of(&keep);
        expected.push(index_digest);
        expected.sort();
        assert_eq!(f.content.list().unwrap(), expected);
        assert_eq!(f.snapshots.layers().unwrap(), keep.chain_ids);
    }

    #[tokio::test]
    async fn removing_an_unknown_image_is_not_an_error_and_removes_nothing() {
        let f = fixture();
        let one = layer("one", b"1");
        let image = add_image(&f, "docker.io/library/app:1", &[&one]).await;
        // A stray layer is collected only when an image is removed.
        let stray = layer("stray", b"s");
        let blob = f
            .content
            .ingest_bytes(&Digest::of(&stray).to_string(), &stray)
            .await
            .unwrap();
        let stray_chain = Digest::of(b"stray chain").to_string();
        f.snapshots.commit_layer(&stray_chain, None, &blob).unwrap();

        for unknown in [
            "docker.io/library/app:2",
            "nothere",
            &format!("sha256:{}", "0".repeat(64)),
        ] {
            f.manager.remove(unknown, &HashSet::new()).await.unwrap();
        }
        assert_eq!(f.manager.list(None).unwrap(), std::slice::from_ref(&image));
        assert!(f.snapshots.has_layer(&stray_chain));
        assert_eq!(f.content.list().unwrap().len(), blobs_of(&image).len() + 1);

        // Removing twice: the second time is an unknown image.
        f.manager.remove(&image.id, &HashSet::new()).await.unwrap();
        f.manager.remove(&image.id, &HashSet::new()).await.unwrap();
        assert!(f.snapshots.layers().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_moved_tag_leaves_the_old_image_and_its_layers() {
        let f = fixture();
        let v1 = layer("v", b"1");
        let v2 = layer("v", b"2");
        let old = add_image(&f, "docker.io/library/app:latest", &[&v1]).await;
        let new = add_image(&f, "docker.io/library/app:latest", &[&v2]).await;
        let old = f.store.get::<ImageRecord>(&old.id).unwrap().unwrap();
        assert!(old.repo_tags.is_empty(), "{old:?}");
        assert_eq!(new.repo_tags, ["docker.io/library/app:latest"]);
        // Short and full names both find the new image.
        assert_eq!(f.manager.status("app").unwrap().unwrap().id, new.id);
        assert_eq!(
            f.manager
                .status("docker.io/library/app:latest")
                .unwrap()
                .unwrap()
                .id,
            new.id
        );
        // The untagged old image is still there, by ID and by digest.
        assert_eq!(f.manager.status(&old.id).unwrap().unwrap().id, old.id);
        assert_eq!(
            f.manager.status(&old.repo_digests[0]).unwrap().unwrap().id,
            old.id
        );

        f.manager.remove("app", &HashSet::new()).await.unwrap();
        assert_eq!(f.manager.list(None).unwrap(), std::slice::from_ref(&old));
        assert_eq!(f.snapshots.layers().unwrap(), old.chain_ids);
    }

    #[tokio::test]
    async fn pulling_an_image_again_merges_its_names() {
        let f = fixture();
        let one = layer("one", b"1");
        let first = add_image(&f, "docker.io/library/app:1", &[&one]).await;
        let again = add_image(&f, "docker.io/library/app:stable", &[&one]).await;
        assert_eq!(first.id, again.id);
        assert_eq!(
            again.repo_tags,
            ["docker.io/library/app:1", "docker.io/library/app:stable"]
        );
        // The same repo digest is recorded once.
        assert_eq!(again.repo_digests.len(), 1);
        assert_eq!(f.manager.list(None).unwrap().len(), 1);
        assert_eq!(f.manager.list(Some("")).unwrap().len(), 1);
        assert_eq!(
            f.manager.list(Some("app:stable")).unwrap(),
            std::slice::from_ref(&again)
        );
        assert!(f.manager.list(Some("app:2")).unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_local_name_moves_to_the_newest_import() {
        let f = fixture();
        let one = layer("one", b"1");
        let two = layer("two", b"2");
        let first = add_image(&f, "docker.io/library/a:1", &[&one]).await;
        let second = add_image(&f, "docker.io/library/b:1", &[&two]).await;
        let name = "pve-template:debian-12";
        f.manager.add_local(first.clone(), name).await.unwrap();
        f.manager.add_local(second.clone(), name).await.unwrap();
        let first = f.store.get::<ImageRecord>(&first.id).unwrap().unwrap();
        let second = f.store.get::<ImageRecord>(&second.id).unwrap().unwrap();
        assert_eq!(first.repo_tags, ["docker.io/library/a:1"]);
        assert_eq!(second.repo_tags, ["docker.io/library/b:1", name]);
        // Adding it again does not repeat the name.
        f.manager.add_local(second.clone(), name).await.unwrap();
        assert_eq!(
            f.store
                .get::<ImageRecord>(&second.id)
                .unwrap()
                .unwrap()
                .repo_tags,
            second.repo_tags
        );
    }

    #[tokio::test]
    async fn fs_usage_counts_layers_and_blobs_as_the_image_filesystem() {
        let f = fixture();
        let before = f.manager.fs_usage().await;
        let big = layer("big", &vec![1u8; 256 * 1024]);
        add_image(&f, "docker.io/library/big:1", &[&big]).await;
        let after = f.manager.fs_usage().await;
        // The tarball in the content store plus its unpacked file.
        assert!(
            after.images.bytes >= before.images.bytes + 2 * 256 * 1024,
            "{:?} {:?}",
            before.images,
            after.images
        );
        assert_eq!(after.images_mountpoint, f.snapshots.layers_root());
        assert_eq!(after.containers_mountpoint, f.snapshots.rootfs_root());
        assert_eq!(after.containers, before.containers);
        assert!(Path::new(&after.images_mountpoint).is_dir());
    }

    fn record(id_char: char, tags: &[&str]) -> ImageRecord {
        ImageRecord {
            id: format!("sha256:{}", id_char.to_string().repeat(64)),
            repo_tags: tags.iter().map(|t| t.to_string()).collect(),
            repo_digests: Vec::new(),
            size: 0,
            layers: Vec::new(),
            chain_ids: Vec::new(),
            run_config: Default::default(),
            manifest_digest: String::new(),
            pinned: false,
            source: None,
        }
    }

    #[test]
    fn images_resolve_by_id_prefix_tag_and_digest() {
        let mut a = record('a', &["docker.io/library/busybox:latest"]);
        a.id = format!("sha256:abcdef{}", "0".repeat(58));
        let b = record('b', &["registry.local:5000/team/app:v2"]);
        let mut c = record('c', &[]);
        c.id = format!("sha256:abcdef{}", "1".repeat(58));
        let digest = format!("sha256:{}", "d".repeat(64));
        c.repo_digests = vec![format!("docker.io/library/busybox@{digest}")];
        let images = [a.clone(), b.clone(), c.clone()];
        let found = |q: &str| resolve(&images, q).map(|i| i.id.clone());

        assert_eq!(found(&b.id), Some(b.id.clone()));
        assert_eq!(
            found(b.id.trim_start_matches("sha256:")),
            Some(b.id.clone())
        );
        assert_eq!(found("bbbbbb"), Some(b.id.clone()));
        assert_eq!(found("sha256:bbbbbbb"), Some(b.id.clone()));
        // Too short to be an ID prefix, or shared by two images.
        assert_eq!(found("bbbbb"), None);
        assert_eq!(found("abcdef"), None);
        assert_eq!(found("abcdef0"), Some(a.id.clone()));
        assert_eq!(found("busybox"), Some(a.id.clone()));
        assert_eq!(found("docker.io/busybox:latest"), Some(a.id.clone()));
        assert_eq!(found("busybox:1"), None);
        assert_eq!(found("registry.local:5000/team/app:v2"), Some(b.id.clone()));
        assert_eq!(found(&format!("busybox@{digest}")), Some(c.id.clone()));
        assert_eq!(found(&format!("other@{digest}")), None);
        assert_eq!(found(""), None);
        assert_eq!(found("Not A Reference"), None);
    }
}
