//! The embedded state store: redb, a crash-safe single-file B-tree with
//! copy-on-write commits (a transaction is either fully on disk or not at
//! all), so a daemon killed mid-write never leaves a torn record.
//!
//! Records are typed: each [`Record`] type names its table and key, and is
//! stored as JSON so that fields can be added without a migration. The
//! `meta` table holds the schema version; a store written by a newer pvecri
//! is refused rather than misread.

mod cache;
mod error;
mod readonly;

pub(crate) use error::StoreError;
pub(crate) use readonly::ReadOnlyStore;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Bumped whenever a record's meaning changes incompatibly.
pub(crate) const SCHEMA_VERSION: u32 = 1;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SCHEMA_KEY: &str = "schema_version";

/// A value kept in the store: its table and its key within the table.
/// Records are also kept decoded in memory ([`cache`]), hence `Clone` and
/// thread-safe.
pub trait Record: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    const TABLE: &'static str;
    fn key(&self) -> String;
}

pub struct Store {
    db: Database,
    path: PathBuf,
    cache: cache::Cache,
    /// Held from the start of a write until the cache has its result, and
    /// while a table is loaded into the cache.
    writer: Mutex<()>,
    /// An unsynced commit ([`Store::put_soon`]) is not on disk yet (set
    /// and cleared under the writer lock).
    deferred: AtomicBool,
    /// A [`Store::flush`] has been asked for and has not begun.
    flush_asked: AtomicBool,
}

impl Store {
    /// Opens (creating if missing) the store at `path` and checks its schema.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source: Box::new(source.into()),
        })?;
        let store = Self {
            db,
            path: path.to_owned(),
            cache: cache::Cache::default(),
            writer: Mutex::new(()),
            deferred: AtomicBool::new(false),
            flush_asked: AtomicBool::new(false),
        };
        store.check_schema()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let txn = self
            .db
            .begin_write()
            .map_err(self.err("begin schema check"))?;
        {
            let mut meta = txn.open_table(META).map_err(self.err("open meta table"))?;
            let found = meta
                .get(SCHEMA_KEY)
                .map_err(self.err("read schema version"))?
                .map(|v| decode_version(v.value()));
            match found {
                None => {
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION.to_le_bytes().as_slice())
                        .map_err(self.err("write schema version"))?;
                }
                Some(Some(v)) if v == SCHEMA_VERSION => {}
                Some(Some(v)) if v > SCHEMA_VERSION => {
                    return Err(StoreError::NewerSchema {
                        path: self.path.clone(),
                        found: v,
                        supported: SCHEMA_VERSION,
                    })
                }
                Some(other) => {
                    return Err(StoreError::BadSchema {
                        path: self.path.clone(),
                        found: other,
                    })
                }
            }
        }
        txn.commit().map_err(self.err("commit schema version"))
    }

    /// The schema version recorded in the store.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let txn = self.db.begin_read().map_err(self.err("begin read"))?;
        let meta = txn.open_table(META).map_err(self.err("open meta table"))?;
        let value = meta
            .get(SCHEMA_KEY)
            .map_err(self.err("read schema version"))?;
        value
            .and_then(|v| decode_version(v.value()))
            .ok_or_else(|| StoreError::BadSchema {
                path: self.path.clone(),
                found: None,
            })
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Inserts or replaces a record.
    pub fn put<R: Record>(&self, record: &R) -> Result<(), StoreError> {
        let _writer = self.lock_writer();
        self.commit_one(record)
    }

    /// Inserts or replaces a record without waiting for the disk, and
    /// asks for the synced commit that makes it durable off the caller's
    /// path ([`Store::flush_soon`]); a group commit. A crash before that
    /// loses it, so only for records whose loss a restart repairs by
    /// itself (what they name is then an orphan it removes).
    pub fn put_soon<R: Record>(self: &Arc<Self>, record: &R) -> Result<(), StoreError> {
        self.put_unsynced(record)?;
        self.flush_soon();
        Ok(())
    }

    /// As [`Store::put_soon`], for two records in one commit.
    pub fn put_pair_soon<A: Record, B: Record>(
        self: &Arc<Self>,
        a: &A,
        b: &B,
    ) -> Result<(), StoreError> {
        self.put_pair_unsynced(a, b)?;
        self.flush_soon();
        Ok(())
    }

    /// The write of [`Store::put_soon`] alone: visible at once, on disk
    /// with the next synced commit, whoever makes it.
    fn put_unsynced<R: Record>(&self, record: &R) -> Result<(), StoreError> {
        let _writer = self.lock_writer();
        self.commit(redb::Durability::None, |txn| self.insert(txn, record))?;
        self.cache.put(record);
        Ok(())
    }

    /// The write of [`Store::put_pair_soon`] alone.
    fn put_pair_unsynced<A: Record, B: Record>(&self, a: &A, b: &B) -> Result<(), StoreError> {
        self.commit_pair(a, b, redb::Durability::None)
    }

    /// Runs [`Store::flush`] in a blocking task of the current tokio
    /// runtime, unless one asked for has not begun yet (it takes this
    /// write along). Without a runtime (a tool, a test) it flushes now.
    fn flush_soon(self: &Arc<Self>) {
        if !self.flush_wanted() {
            return;
        }
        let flush = AskedFlush(Some(Arc::clone(self)));
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(move || flush.run())),
            Err(_) => flush.run(),
        }
    }

    /// Whether a caller of an unsynced write should run [`Store::flush`]
    /// now (false while one already asked for has not begun).
    fn flush_wanted(&self) -> bool {
        !self.flush_asked.swap(true, Ordering::SeqCst)
    }

    /// Makes every unsynced write so far durable: one synced commit, or
    /// nothing when a synced commit came after them already. Blocking (an
    /// fsync). A flush that fails leaves the writes marked unsynced: the
    /// next write's flush, or the close, tries again.
    pub fn flush(&self) -> Result<(), StoreError> {
        // Cleared first: a write after this point asks for a flush of its own.
        self.flush_asked.store(false, Ordering::SeqCst);
        let _writer = self.lock_writer();
        if !self.deferred.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.commit(redb::Durability::Immediate, |_| Ok(()))
    }

    /// Writes one record in its own (synced) commit and updates the cache;
    /// the caller holds the writer lock.
    fn commit_one<R: Record>(&self, record: &R) -> Result<(), StoreError> {
        self.commit(redb::Durability::Immediate, |txn| self.insert(txn, record))?;
        self.cache.put(record);
        Ok(())
    }

    /// Inserts or replaces two records in one commit: both are on disk
    /// afterwards, or neither (and one fsync instead of two).
    pub fn put_pair<A: Record, B: Record>(&self, a: &A, b: &B) -> Result<(), StoreError> {
        self.commit_pair(a, b, redb::Durability::Immediate)
    }

    fn commit_pair<A: Record, B: Record>(
        &self,
        a: &A,
        b: &B,
        durability: redb::Durability,
    ) -> Result<(), StoreError> {
        let _writer = self.lock_writer();
        self.commit(durability, |txn| {
            self.insert(txn, a)?;
            self.insert(txn, b)
        })?;
        self.cache.put(a);
        self.cache.put(b);
        Ok(())
    }

    /// One write transaction: `write` fills it, and it is committed with
    /// `durability`. A synced commit takes every earlier unsynced one to
    /// the disk with it; an unsynced one leaves the store marked for a
    /// flush. The caller holds the writer lock.
    fn commit<T>(
        &self,
        durability: redb::Durability,
        write: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let synced = matches!(durability, redb::Durability::Immediate);
        let mut txn = self.db.begin_write().map_err(self.err("begin write"))?;
        if !synced {
            txn.set_durability(durability)
                .map_err(self.err("set durability"))?;
        }
        let out = write(&txn)?;
        txn.commit().map_err(self.err("commit"))?;
        self.deferred.store(!synced, Ordering::SeqCst);
        Ok(out)
    }

    /// Read-modify-write of one record under the writer lock: `change`
    /// edits the latest stored copy and says whether it changed it; only
    /// then is it written. Two callers that each read, edit and put whole
    /// records could otherwise write back an older copy over the other's
    /// change. Returns the record as stored now (`None`: no such key).
    pub fn update<R: Record>(
        &self,
        key: &str,
        change: impl FnOnce(&mut R) -> bool,
    ) -> Result<Option<R>, StoreError> {
        let _writer = self.lock_writer();
        // The cache as is (loading it would take the writer lock again).
        let latest = match self.cache.get::<R>(key) {
            Some(found) => found.map(Arc::unwrap_or_clone),
            None => self.get_from_db::<R>(key)?,
        };
        let Some(mut record) = latest else {
            return Ok(None);
        };
        if change(&mut record) {
            self.commit_one(&record)?;
        }
        Ok(Some(record))
    }

    fn insert<R: Record>(
        &self,
        txn: &redb::WriteTransaction,
        record: &R,
    ) -> Result<(), StoreError> {
        let key = record.key();
        let bytes = serde_json::to_vec(record).map_err(|source| StoreError::Encode {
            table: R::TABLE,
            key: key.clone(),
            source,
        })?;
        let def = TableDefinition::<&str, &[u8]>::new(R::TABLE);
        let mut table = txn.open_table(def).map_err(self.err("open table"))?;
        table
            .insert(key.as_str(), bytes.as_slice())
            .map_err(self.err("insert"))?;
        Ok(())
    }

    /// Reads one record by key.
    pub fn get<R: Record>(&self, key: &str) -> Result<Option<R>, StoreError> {
        Ok(self.get_shared::<R>(key)?.map(Arc::unwrap_or_clone))
    }

    /// Every record of a type, in key order.
    pub fn list<R: Record>(&self) -> Result<Vec<R>, StoreError> {
        Ok(self
            .list_shared::<R>()?
            .into_iter()
            .map(Arc::unwrap_or_clone)
            .collect())
    }

    /// One record by key, shared with the cache (no copy).
    pub fn get_shared<R: Record>(&self, key: &str) -> Result<Option<Arc<R>>, StoreError> {
        if let Some(found) = self.cached::<R, _>(|c| c.get::<R>(key)) {
            return Ok(found);
        }
        Ok(self.get_from_db::<R>(key)?.map(Arc::new))
    }

    /// Every record of a type in key order, shared with the cache.
    pub fn list_shared<R: Record>(&self) -> Result<Vec<Arc<R>>, StoreError> {
        if let Some(all) = self.cached::<R, _>(|c| c.list::<R>()) {
            return Ok(all);
        }
        Ok(self
            .list_from_db::<R>()?
            .into_iter()
            .map(Arc::new)
            .collect())
    }

    /// `read` on the cache, loading `R`'s table first when it is not yet;
    /// `None` when the table cannot be cached.
    fn cached<R: Record, T>(&self, read: impl Fn(&cache::Cache) -> Option<T>) -> Option<T> {
        if let Some(v) = read(&self.cache) {
            return Some(v);
        }
        if self.cache.is_loaded::<R>() {
            return None;
        }
        {
            let _writer = self.lock_writer();
            if !self.cache.is_loaded::<R>() {
                // A table that does not decode stays uncached: reads go
                // to the database and name the bad record.
                let records = self.list_from_db::<R>().ok()?;
                self.cache.load(records);
            }
        }
        read(&self.cache)
    }

    fn get_from_db<R: Record>(&self, key: &str) -> Result<Option<R>, StoreError> {
        let def = TableDefinition::<&str, &[u8]>::new(R::TABLE);
        let txn = self.db.begin_read().map_err(self.err("begin read"))?;
        let table = match txn.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err("open table")(e)),
        };
        let Some(value) = table.get(key).map_err(self.err("get"))? else {
            return Ok(None);
        };
        decode::<R>(key, value.value()).map(Some)
    }

    fn list_from_db<R: Record>(&self) -> Result<Vec<R>, StoreError> {
        let def = TableDefinition::<&str, &[u8]>::new(R::TABLE);
        let txn = self.db.begin_read().map_err(self.err("begin read"))?;
        let table = match txn.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.err("open table")(e)),
        };
        let mut out = Vec::new();
        for entry in table.iter().map_err(self.err("iterate"))? {
            let (key, value) = entry.map_err(self.err("iterate"))?;
            out.push(decode::<R>(key.value(), value.value())?);
        }
        Ok(out)
    }

    /// Removes a record; `Ok(false)` when it was not there.
    pub fn delete<R: Record>(&self, key: &str) -> Result<bool, StoreError> {
        let def = TableDefinition::<&str, &[u8]>::new(R::TABLE);
        let _writer = self.lock_writer();
        let existed = self.commit(redb::Durability::Immediate, |txn| {
            let mut table = txn.open_table(def).map_err(self.err("open table"))?;
            let removed = table.remove(key).map_err(self.err("remove"))?;
            Ok(removed.is_some())
        })?;
        self.cache.delete::<R>(key);
        Ok(existed)
    }

    fn err<E: Into<redb::Error>>(&self, op: &'static str) -> impl Fn(E) -> StoreError + '_ {
        move |source| StoreError::Db {
            path: self.path.clone(),
            op,
            source: Box::new(source.into()),
        }
    }
}

/// A flush asked for by [`Store::flush_soon`]. Dropped without running
/// (its blocking task never began: the runtime shut down), it withdraws
/// the request, so that the next unsynced write asks for a flush again.
struct AskedFlush(Option<Arc<Store>>);

impl AskedFlush {
    fn run(mut self) {
        let Some(store) = self.0.take() else {
            return;
        };
        if let Err(e) = store.flush() {
            tracing::warn!(error = %crate::errors::chain(&e), "cannot sync the state store");
        }
    }
}

impl Drop for AskedFlush {
    fn drop(&mut self) {
        if let Some(store) = &self.0 {
            store.flush_asked.store(false, Ordering::SeqCst);
        }
    }
}

impl Drop for Store {
    /// A daemon that stops leaves nothing unsynced behind.
    fn drop(&mut self) {
        if self.deferred.load(Ordering::SeqCst) {
            if let Err(e) = self.flush() {
                tracing::warn!(error = %crate::errors::chain(&e), "cannot sync the state store at close");
            }
        }
    }
}

fn decode_version(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn decode<R: Record>(key: &str, bytes: &[u8]) -> Result<R, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
        table: R::TABLE,
        key: key.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Thing {
        id: String,
        n: u32,
    }

    impl Record for Thing {
        const TABLE: &'static str = "things";
        fn key(&self) -> String {
            self.id.clone()
        }
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Other {
        id: String,
    }

    impl Record for Other {
        const TABLE: &'static str = "others";
        fn key(&self) -> String {
            self.id.clone()
        }
    }

    #[test]
    fn a_pair_is_written_together() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        let thing = Thing {
            id: "t".into(),
            n: 1,
        };
        let other = Other { id: "o".into() };
        s.put_pair(&thing, &other).unwrap();
        assert_eq!(s.get::<Thing>("t").unwrap(), Some(thing));
        assert_eq!(s.get::<Other>("o").unwrap(), Some(other));
    }

    #[test]
    fn an_unsynced_pair_is_visible_at_once_and_kept_by_the_next_synced_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let thing = Thing {
            id: "t".into(),
            n: 1,
        };
        let other = Other { id: "o".into() };
        {
            let s = Store::open(&path).unwrap();
            s.put_pair_unsynced(&thing, &other).unwrap();
            assert_eq!(s.get::<Thing>("t").unwrap(), Some(thing.clone()));
            assert_eq!(s.list::<Other>().unwrap(), vec![other.clone()]);
            s.put(&Thing {
                id: "synced".into(),
                n: 2,
            })
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.get::<Thing>("t").unwrap(), Some(thing));
        assert_eq!(s.get::<Other>("o").unwrap(), Some(other));
        assert_eq!(s.list::<Thing>().unwrap().len(), 2);
    }

    /// What a crash would leave: the file as it is on disk now, opened as
    /// a store of its own.
    fn crash_image(path: &Path, dir: &Path) -> Store {
        let copy = dir.join("crash-image.redb");
        let _ = std::fs::remove_file(&copy);
        std::fs::copy(path, &copy).unwrap();
        Store::open(&copy).unwrap()
    }

    #[test]
    fn a_write_put_soon_is_on_disk_after_the_flush_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let s = Store::open(&path).unwrap();
        let thing = Thing {
            id: "t".into(),
            n: 1,
        };
        s.put_unsynced(&thing).unwrap();
        assert_eq!(s.get::<Thing>("t").unwrap(), Some(thing.clone()));
        assert_eq!(
            crash_image(&path, dir.path()).get::<Thing>("t").unwrap(),
            None
        );
        // One flush is asked for until it begins, whatever was written.
        assert!(s.flush_wanted());
        s.put_unsynced(&Thing {
            id: "u".into(),
            n: 2,
        })
        .unwrap();
        assert!(!s.flush_wanted());
        s.flush().unwrap();
        assert!(s.flush_wanted(), "a flush that began takes a new request");
        let image = crash_image(&path, dir.path());
        assert_eq!(image.get::<Thing>("t").unwrap(), Some(thing));
        assert_eq!(image.list::<Thing>().unwrap().len(), 2);
        // Nothing left to sync: the flush commits nothing.
        s.flush().unwrap();
    }

    #[test]
    fn put_soon_flushes_in_a_blocking_task_or_at_once_without_a_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let s = Arc::new(Store::open(&path).unwrap());
        let thing = |id: &str| Thing {
            id: id.into(),
            n: 1,
        };
        // No tokio runtime: the write is synced before put_soon returns.
        s.put_soon(&thing("bare")).unwrap();
        assert!(!s.deferred.load(Ordering::SeqCst));
        assert!(crash_image(&path, dir.path())
            .get::<Thing>("bare")
            .unwrap()
            .is_some());
        // In a runtime the flush runs on a blocking thread, after the
        // writes returned.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            s.put_pair_soon(&thing("pair"), &Other { id: "o".into() })
                .unwrap();
            s.put_soon(&thing("soon")).unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while s.deferred.load(Ordering::SeqCst) {
                assert!(std::time::Instant::now() < deadline, "no flush ran");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        let image = crash_image(&path, dir.path());
        assert_eq!(image.list::<Thing>().unwrap().len(), 3);
        assert_eq!(image.list::<Other>().unwrap().len(), 1);
    }

    #[test]
    fn a_flush_that_never_ran_is_asked_for_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let s = Arc::new(Store::open(&path).unwrap());
        s.put_unsynced(&Thing {
            id: "t".into(),
            n: 1,
        })
        .unwrap();
        assert!(s.flush_wanted());
        // The blocking task that held it was dropped before it began.
        drop(AskedFlush(Some(Arc::clone(&s))));
        assert!(s.deferred.load(Ordering::SeqCst), "nothing was synced");
        assert!(s.flush_wanted(), "the request was withdrawn");
        // The one asked for next runs, and syncs the write.
        AskedFlush(Some(Arc::clone(&s))).run();
        assert!(!s.deferred.load(Ordering::SeqCst));
        assert!(crash_image(&path, dir.path())
            .get::<Thing>("t")
            .unwrap()
            .is_some());
        assert!(s.flush_wanted(), "the flush took its request along");
    }

    #[test]
    fn a_delete_is_synced_and_takes_unsynced_writes_along() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let s = Store::open(&path).unwrap();
        let thing = |id: &str| Thing {
            id: id.into(),
            n: 1,
        };
        s.put(&thing("gone")).unwrap();
        s.put_unsynced(&thing("kept")).unwrap();
        assert!(s.delete::<Thing>("gone").unwrap());
        assert!(
            !s.deferred.load(Ordering::SeqCst),
            "no flush is left to make"
        );
        assert!(!s.delete::<Thing>("gone").unwrap());
        let image = crash_image(&path, dir.path());
        assert_eq!(image.get::<Thing>("gone").unwrap(), None);
        assert!(image.get::<Thing>("kept").unwrap().is_some());
    }

    #[test]
    fn a_synced_commit_or_a_close_keeps_what_was_put_soon() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let (early, late) = (
            Thing {
                id: "early".into(),
                n: 1,
            },
            Thing {
                id: "late".into(),
                n: 2,
            },
        );
        {
            let s = Store::open(&path).unwrap();
            s.put_unsynced(&early).unwrap();
            s.put(&Thing {
                id: "synced".into(),
                n: 3,
            })
            .unwrap();
            assert!(!s.deferred.load(Ordering::SeqCst));
            assert_eq!(
                crash_image(&path, dir.path())
                    .get::<Thing>("early")
                    .unwrap(),
                Some(early.clone())
            );
            s.put_unsynced(&late).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.get::<Thing>("early").unwrap(), Some(early));
        assert_eq!(
            s.get::<Thing>("late").unwrap(),
            Some(late),
            "synced at close"
        );
    }

    #[test]
    fn round_trip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(s.get::<Thing>("a").unwrap(), None);
            assert!(s.list::<Thing>().unwrap().is_empty());
            s.put(&Thing {
                id: "b".into(),
                n: 2,
            })
            .unwrap();
            s.put(&Thing {
                id: "a".into(),
                n: 1,
            })
            .unwrap();
            s.put(&Thing {
                id: "a".into(),
                n: 3,
            })
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        let all = s.list::<Thing>().unwrap();
        assert_eq!(
            all,
            vec![
                Thing {
                    id: "a".into(),
                    n: 3
                },
                Thing {
                    id: "b".into(),
                    n: 2
                }
            ]
        );
        assert!(s.delete::<Thing>("a").unwrap());
        assert!(!s.delete::<Thing>("a").unwrap());
        assert_eq!(
            s.get::<Thing>("b").unwrap(),
            Some(Thing {
                id: "b".into(),
                n: 2
            })
        );
    }

    #[test]
    fn cached_reads_follow_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        let t = |id: &str, n| Thing { id: id.into(), n };
        s.put(&t("a", 1)).unwrap();
        // The first read loads the table; later writes update it.
        assert_eq!(s.list::<Thing>().unwrap(), vec![t("a", 1)]);
        assert!(s.cache.is_loaded::<Thing>());
        s.put(&t("a", 2)).unwrap();
        s.put_pair(&t("b", 3), &Other { id: "o".into() }).unwrap();
        assert_eq!(s.list::<Thing>().unwrap(), vec![t("a", 2), t("b", 3)]);
        assert_eq!(s.get::<Thing>("b").unwrap(), Some(t("b", 3)));
        assert_eq!(s.get::<Thing>("zz").unwrap(), None);
        assert!(s.delete::<Thing>("a").unwrap());
        assert_eq!(s.list::<Thing>().unwrap(), vec![t("b", 3)]);
        // What the cache says is what is on disk.
        assert_eq!(s.list_from_db::<Thing>().unwrap(), vec![t("b", 3)]);
        assert_eq!(s.get::<Other>("o").unwrap(), Some(Other { id: "o".into() }));
    }

    #[test]
    fn an_update_edits_the_latest_copy() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        assert_eq!(s.update::<Thing>("a", |_| true).unwrap(), None);
        s.put(&Thing {
            id: "a".into(),
            n: 1,
        })
        .unwrap();
        for cached in [false, true] {
            if cached {
                s.list::<Thing>().unwrap();
            }
            let stale = s.get::<Thing>("a").unwrap().unwrap();
            s.put(&Thing {
                id: "a".into(),
                n: stale.n + 10,
            })
            .unwrap();
            // Based on the stored copy, not on `stale`.
            let after = s.update::<Thing>("a", |t| {
                t.n += 1;
                true
            });
            assert_eq!(after.unwrap().unwrap().n, stale.n + 11);
            // Unchanged: nothing written.
            let same = s.update::<Thing>("a", |_| false).unwrap().unwrap();
            assert_eq!(same.n, stale.n + 11);
            assert_eq!(s.list_from_db::<Thing>().unwrap()[0].n, stale.n + 11);
        }
    }

    #[test]
    fn concurrent_writers_leave_the_cache_equal_to_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        s.list::<Thing>().unwrap();
        let threads: Vec<_> = (0..4u32)
            .map(|w| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for n in 0..25 {
                        s.put(&Thing {
                            id: format!("k{}", n % 5),
                            n: w * 100 + n,
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            s.list::<Thing>().unwrap(),
            s.list_from_db::<Thing>().unwrap()
        );
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut meta = txn.open_table(META).unwrap();
                meta.insert(SCHEMA_KEY, (SCHEMA_VERSION + 1).to_le_bytes().as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let err = Store::open(&path).err().expect("newer schema refused");
        assert!(matches!(err, StoreError::NewerSchema { .. }), "{err}");
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn corrupt_record_is_a_decode_error_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        {
            let txn = s.db.begin_write().unwrap();
            {
                let def = TableDefinition::<&str, &[u8]>::new("things");
                let mut t = txn.open_table(def).unwrap();
                t.insert("x", b"{not json".as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let err = s.get::<Thing>("x").unwrap_err();
        assert!(err.to_string().contains("things/x"), "{err}");
        // An undecodable table is not cached: every read names the record.
        assert!(!s.cache.is_loaded::<Thing>());
        let err = s.list::<Thing>().unwrap_err();
        assert!(err.to_string().contains("things/x"), "{err}");
    }
}
