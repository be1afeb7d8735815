//! The store's side of the census: pod, container, network and image
//! records. A running daemon has the store open and redb then refuses a
//! reader, so the caller may fill [`StoreView::FromDaemon`] from the
//! daemon's CRI answers instead (network allocations are not in them).

use std::path::Path;

use crate::container::ContainerRecord;
use crate::image::record::ImageRecord;
use crate::network::cni::CniAttachment;
use crate::network::PodNetwork;
use crate::pod::PodRecord;
use crate::store::{ReadOnlyStore, StoreError};

/// Record keys by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StoreKeys {
    pub pods: Vec<String>,
    pub containers: Vec<String>,
    pub images: Vec<String>,
    /// `None`: not known (the daemon does not list them).
    pub networks: Option<Vec<String>>,
}

impl StoreKeys {
    /// Pod and container IDs (the keys of network records are pod IDs).
    pub(super) fn ids(&self) -> impl Iterator<Item = &String> {
        self.pods
            .iter()
            .chain(&self.containers)
            .chain(self.networks.iter().flatten())
    }
}

/// What is known of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreView {
    /// No store file: nothing was ever recorded here.
    Absent,
    /// Read from the file.
    Read(StoreKeys),
    /// A daemon has it open; nothing asked it.
    InUse,
    /// A daemon has it open; these are its CRI answers.
    FromDaemon(StoreKeys),
    /// Neither the file nor the daemon could be read.
    Unreadable(String),
}

fn read_keys(store: &ReadOnlyStore) -> Result<StoreKeys, StoreError> {
    let mut networks = store.keys::<PodNetwork>()?;
    networks.extend(store.keys::<CniAttachment>()?);
    Ok(StoreKeys {
        pods: store.keys::<PodRecord>()?,
        containers: store.keys::<ContainerRecord>()?,
        images: store.keys::<ImageRecord>()?,
        networks: Some(networks),
    })
}

/// Reads the store at `path` without changing it.
pub(crate) fn read(path: &Path) -> StoreView {
    if !path.exists() {
        return StoreView::Absent;
    }
    match ReadOnlyStore::open(path).and_then(|s| read_keys(&s)) {
        Ok(keys) => StoreView::Read(keys),
        Err(StoreError::InUse { .. }) => StoreView::InUse,
        Err(e) => StoreView::Unreadable(crate::errors::chain(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_store_is_absent_and_an_empty_one_has_no_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pvecri.redb");
        assert_eq!(read(&path), StoreView::Absent);
        let store = crate::store::Store::open(&path).unwrap();
        assert_eq!(read(&path), StoreView::InUse);
        drop(store);
        assert_eq!(
            read(&path),
            StoreView::Read(StoreKeys {
                networks: Some(Vec::new()),
                ..Default::default()
            })
        );
        std::fs::write(&path, b"not a redb file").unwrap();
        assert!(matches!(read(&path), StoreView::Unreadable(_)));
    }
}
