//! The runtime's domain core, shared by every CRI call: configuration, the
//! state store and node health. The gRPC layer (`crate::cri`) converts
//! requests into calls on this and never lets prost types in.

mod health;

pub use health::{Condition, ConditionKind};

use std::sync::Arc;

use crate::config::Config;
use crate::store::Store;

pub struct Runtime {
    config: Config,
    store: Store,
}

impl Runtime {
    pub fn new(config: Config, store: Store) -> Arc<Self> {
        Arc::new(Self { config, store })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// RuntimeReady and NetworkReady, with reasons when not ready.
    pub fn conditions(&self) -> Vec<Condition> {
        vec![
            health::runtime_condition(&self.config),
            health::network_condition(),
        ]
    }
}
