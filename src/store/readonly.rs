//! Reading a store without changing it, for `pvecri census`: redb opens a
//! store read-only only while no daemon has it open (a running daemon
//! holds it exclusively), and refuses one a crashed daemon left needing
//! repair rather than repairing it.

use std::path::{Path, PathBuf};

use redb::{DatabaseError, ReadOnlyDatabase, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Record, StoreError};

pub(crate) struct ReadOnlyStore {
    db: ReadOnlyDatabase,
    path: PathBuf,
}

impl ReadOnlyStore {
    /// Opens the store at `path` for reading.
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        match ReadOnlyDatabase::open(path) {
            Ok(db) => Ok(Self {
                db,
                path: path.to_owned(),
            }),
            Err(DatabaseError::DatabaseAlreadyOpen) => Err(StoreError::InUse {
                path: path.to_owned(),
            }),
            Err(DatabaseError::RepairAborted) => Err(StoreError::NeedsRepair {
                path: path.to_owned(),
            }),
            Err(source) => Err(StoreError::Open {
                path: path.to_owned(),
                source: Box::new(source.into()),
            }),
        }
    }

    /// The keys of every record of a type, in key order.
    pub(crate) fn keys<R: Record>(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        self.each::<R>(|key, _| {
            out.push(key.to_owned());
            Ok(())
        })?;
        Ok(out)
    }

    /// Every record of a type, in key order.
    pub(crate) fn list<R: Record>(&self) -> Result<Vec<R>, StoreError> {
        let mut out = Vec::new();
        self.each::<R>(|key, value| {
            out.push(super::decode::<R>(key, value)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f` with each key and value of `R`'s table, in key order; a
    /// table that does not exist yet is empty.
    fn each<R: Record>(
        &self,
        mut f: impl FnMut(&str, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let err = |op: &'static str| {
            let path = self.path.clone();
            move |e: redb::Error| StoreError::Db {
                path,
                op,
                source: Box::new(e),
            }
        };
        let def = TableDefinition::<&str, &[u8]>::new(R::TABLE);
        let txn = self
            .db
            .begin_read()
            .map_err(|e| err("begin read")(e.into()))?;
        let table = match txn.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(err("open table")(e.into())),
        };
        for entry in table.iter().map_err(|e| err("iterate")(e.into()))? {
            let (key, value) = entry.map_err(|e| err("iterate")(e.into()))?;
            f(key.value(), value.value())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[derive(Clone, serde::Serialize, serde::Deserialize)]
    struct Thing {
        id: String,
    }

    impl Record for Thing {
        const TABLE: &'static str = "things";
        fn key(&self) -> String {
            self.id.clone()
        }
    }

    #[test]
    fn keys_are_read_once_the_writer_is_gone_and_refused_while_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let writer = Store::open(&path).unwrap();
        writer.put(&Thing { id: "b".into() }).unwrap();
        writer.put(&Thing { id: "a".into() }).unwrap();
        let err = ReadOnlyStore::open(&path)
            .err()
            .expect("refused while open");
        assert!(matches!(err, StoreError::InUse { .. }), "{err}");
        drop(writer);
        let r = ReadOnlyStore::open(&path).unwrap();
        assert_eq!(r.keys::<Thing>().unwrap(), ["a", "b"]);
        let ids: Vec<String> = r
            .list::<Thing>()
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
        #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
        struct Missing;
        impl Record for Missing {
            const TABLE: &'static str = "missing";
            fn key(&self) -> String {
                String::new()
            }
        }
        assert!(r.keys::<Missing>().unwrap().is_empty());
        assert!(r.list::<Missing>().unwrap().is_empty());
    }
}
