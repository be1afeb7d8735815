use thiserror::Error;

use crate::container::image_file::ImageFileError;
use crate::container::process::ProcessError;
use crate::container::run_dir::RunDirError;
use crate::image::ImageError;
use crate::store::StoreError;

/// Errors of pod and container operations; `crate::cri::status` maps them
/// to gRPC codes.
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{what} name {key:?} is already reserved by {holder}")]
    NameTaken {
        what: &'static str,
        key: String,
        holder: String,
    },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{what} {id} is {state}: {message}")]
    WrongState {
        what: &'static str,
        id: String,
        state: String,
        message: String,
    },
    #[error("image {image:?} is not present; pull it first")]
    ImageNotFound { image: String },
    #[error("container {id}: {source}")]
    Process {
        id: String,
        #[source]
        source: ProcessError,
    },
    #[error("container {id}: cannot look up users and groups")]
    ImageFile {
        id: String,
        #[source]
        source: ImageFileError,
    },
    #[error("{op} for {id} failed: {message}")]
    Os {
        op: &'static str,
        id: String,
        message: String,
    },
    #[error("{op} for {id} timed out after {seconds}s")]
    Timeout {
        op: &'static str,
        id: String,
        seconds: u64,
    },
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RuntimeError {
    /// The container is not in a state that allows the operation.
    pub(crate) fn container_state(c: &crate::container::ContainerRecord, message: &str) -> Self {
        RuntimeError::WrongState {
            what: "container",
            id: c.id.clone(),
            state: format!("{:?}", c.state).to_lowercase(),
            message: message.to_owned(),
        }
    }

    pub(crate) fn os(op: &'static str, id: &str, err: impl std::fmt::Display) -> Self {
        RuntimeError::Os {
            op,
            id: id.to_owned(),
            message: err.to_string(),
        }
    }
}

impl From<crate::failpoint::Fired> for RuntimeError {
    fn from(e: crate::failpoint::Fired) -> Self {
        RuntimeError::Os {
            op: "a step",
            id: e.0.to_owned(),
            message: e.to_string(),
        }
    }
}
