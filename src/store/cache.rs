//! The store's decoded records, kept in memory in step with its commits so
//! that reads (the List RPCs above all) neither open a transaction nor
//! decode JSON.
//!
//! A table is loaded whole on its first read and from then on updated by
//! every write that commits through the [`Store`](super::Store): the store
//! holds its writer lock from the start of a write transaction until the
//! cache has the committed value, and loads a table under the same lock, so
//! the cache never holds a value older than the one on disk. A table that
//! cannot be loaded (a record that does not decode) is not cached: reads of
//! it keep going to the database and report the bad record as before.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use super::Record;

/// One table's records by key, each an `Arc<R>` of the table's type.
type Table = BTreeMap<String, Arc<dyn Any + Send + Sync>>;

#[derive(Default)]
pub(super) struct Cache {
    tables: RwLock<HashMap<&'static str, Table>>,
}

impl Cache {
    /// Every cached record of `R` in key order, or `None` when its table
    /// is not loaded.
    pub(super) fn list<R: Record>(&self) -> Option<Vec<Arc<R>>> {
        let tables = self.tables.read().unwrap_or_else(|e| e.into_inner());
        let table = tables.get(R::TABLE)?;
        table
            .values()
            .map(|v| v.clone().downcast::<R>().ok())
            .collect()
    }

    /// One cached record: `Some(None)` when the table is loaded and has no
    /// such key, `None` when the table is not loaded.
    pub(super) fn get<R: Record>(&self, key: &str) -> Option<Option<Arc<R>>> {
        let tables = self.tables.read().unwrap_or_else(|e| e.into_inner());
        let table = tables.get(R::TABLE)?;
        match table.get(key) {
            None => Some(None),
            Some(v) => v.clone().downcast::<R>().ok().map(Some),
        }
    }

    pub(super) fn is_loaded<R: Record>(&self) -> bool {
        let tables = self.tables.read().unwrap_or_else(|e| e.into_inner());
        tables.contains_key(R::TABLE)
    }

    /// Installs a freshly read table (the caller holds the writer lock).
    pub(super) fn load<R: Record>(&self, records: Vec<R>) {
        let table: Table = records
            .into_iter()
            .map(|r| (r.key(), Arc::new(r) as Arc<dyn Any + Send + Sync>))
            .collect();
        let mut tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
        tables.insert(R::TABLE, table);
    }

    /// A committed insert or replacement (the caller holds the writer
    /// lock); nothing to do while the table is not loaded.
    pub(super) fn put<R: Record>(&self, record: &R) {
        let mut tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
        if let Some(table) = tables.get_mut(R::TABLE) {
            table.insert(record.key(), Arc::new(record.clone()));
        }
    }

    /// A committed removal (the caller holds the writer lock).
    pub(super) fn delete<R: Record>(&self, key: &str) {
        let mut tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
        if let Some(table) = tables.get_mut(R::TABLE) {
            table.remove(key);
        }
    }
}
