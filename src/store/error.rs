use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot open state store {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("state store {path} is open in a running daemon")]
    InUse { path: PathBuf },
    #[error("state store {path} needs the repair a daemon does when it opens it (it was not closed cleanly)")]
    NeedsRepair { path: PathBuf },
    #[error("state store {path}: {op} failed")]
    Db {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: Box<redb::Error>,
    },
    #[error(
        "state store {path} has schema version {found}, newer than the {supported} this pvecri supports; \
         upgrade pvecri or restore a matching backup"
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("state store {path} has an unreadable schema version ({found:?})")]
    BadSchema { path: PathBuf, found: Option<u32> },
    #[error("cannot encode record {table}/{key}")]
    Encode {
        table: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot decode record {table}/{key}")]
    Decode {
        table: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
}
