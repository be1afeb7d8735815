use thiserror::Error;

/// Any error kept as a cause.
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

use crate::container::image_file::ImageFileError;
use crate::container::process::ProcessError;
use crate::container::run_dir::RunDirError;
use crate::image::ImageError;
use crate::store::StoreError;

/// Errors of pod and container operations; `crate::cri::status` maps them
/// to gRPC codes.
#[derive(Debug, Error)]
pub(crate) enum RuntimeError {
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
    /// The node or the container lacks what the operation needs; the
    /// message names it.
    #[error("cannot {op} container {id}: {message}")]
    Unsupported {
        op: &'static str,
        id: String,
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
    #[error("{op} for {id} failed")]
    Os {
        op: &'static str,
        id: String,
        #[source]
        source: BoxError,
    },
    #[error("{op} for {id} timed out after {seconds}s")]
    Timeout {
        op: &'static str,
        id: String,
        seconds: u64,
    },
    #[error("container {id}: cannot give the requested CDI devices")]
    Cdi {
        id: String,
        #[source]
        source: crate::cdi::CdiError,
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

    /// A failed step of an operation on `id`; `err` stays the cause, so
    /// callers and logs can walk the whole chain.
    pub(crate) fn os(op: &'static str, id: &str, err: impl Into<BoxError>) -> Self {
        RuntimeError::Os {
            op,
            id: id.to_owned(),
            source: err.into(),
        }
    }
}

impl From<crate::failpoint::Fired> for RuntimeError {
    fn from(e: crate::failpoint::Fired) -> Self {
        RuntimeError::Os {
            op: "a step",
            id: e.0.to_owned(),
            source: Box::new(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn os_errors_keep_their_cause() {
        let io = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let err = RuntimeError::os("writing the config", "c1", io);
        assert_eq!(err.to_string(), "writing the config for c1 failed");
        let cause = err.source().expect("a cause");
        let io = cause
            .downcast_ref::<std::io::Error>()
            .expect("the io::Error");
        assert_eq!(io.raw_os_error(), Some(libc::ENOSPC));
        assert!(crate::errors::chain(&err).starts_with("writing the config for c1 failed: "));
    }
}
