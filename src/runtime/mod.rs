//! The runtime's domain core, shared by every CRI call: configuration, the
//! state store, images and node health. The gRPC layer (`crate::cri`)
//! converts requests into calls on this and never lets prost types in.

mod health;

pub use health::{Condition, ConditionKind};

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::Config;
use crate::image::content::ContentStore;
use crate::image::registry::{Puller, RegistrySettings};
use crate::image::ImageManager;
use crate::snapshot::Snapshots;
use crate::store::Store;

pub struct Runtime {
    config: Config,
    store: Arc<Store>,
    images: Arc<ImageManager>,
}

impl Runtime {
    /// Opens the content store and snapshot backend under the state dir.
    pub fn new(config: Config, store: Store) -> anyhow::Result<Arc<Self>> {
        let store = Arc::new(store);
        let content = Arc::new(
            ContentStore::new(config.state_dir.join("content")).with_context(|| {
                format!(
                    "cannot open the content store in {}",
                    config.state_dir.display()
                )
            })?,
        );
        let leftovers = content
            .cleanup_ingest()
            .context("cannot clean the content store's ingest directory")?;
        if leftovers > 0 {
            tracing::info!(
                leftovers,
                "removed partial downloads of an interrupted pull"
            );
        }
        let snapshots = Arc::new(
            Snapshots::open(&config.state_dir, config.images.snapshotter)
                .context("cannot open the snapshot backend")?,
        );
        let credentials = match &config.images.credentials_file {
            Some(path) => crate::image::auth_file::read(path).map_err(anyhow::Error::msg)?,
            None => Default::default(),
        };
        let settings = RegistrySettings {
            mirrors: config.images.mirrors.clone().into_iter().collect(),
            insecure: config.images.insecure_registries.clone(),
            credentials,
            stall_timeout: Duration::from_secs(config.images.stall_timeout_seconds),
            max_concurrent_downloads: config.images.max_concurrent_downloads,
            fallback_to_upstream: config.images.fallback_to_upstream,
        };
        let puller = Puller::new(settings, content.clone());
        let images = ImageManager::new(store.clone(), content, snapshots, puller);
        Ok(Arc::new(Self {
            config,
            store,
            images,
        }))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn images(&self) -> &Arc<ImageManager> {
        &self.images
    }

    /// Snapshot layers that containers are built on, which image removal
    /// must keep.
    pub fn layers_in_use(&self) -> HashSet<String> {
        HashSet::new()
    }

    /// RuntimeReady and NetworkReady, with reasons when not ready.
    pub fn conditions(&self) -> Vec<Condition> {
        vec![
            health::runtime_condition(&self.config),
            health::network_condition(),
        ]
    }
}
