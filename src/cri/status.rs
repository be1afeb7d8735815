//! The one mapping from domain errors to gRPC status codes.
//!
//! Messages carry the whole cause chain ("pulling image x failed: ...: 404")
//! so that `crictl` and kubelet events say what went wrong.

use tonic::{Code, Status};

use crate::image::ImageError;
use crate::runtime::RuntimeError;

pub use crate::errors::chain;

pub fn invalid(field: &str, message: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {message}"))
}

pub fn from_image_error(err: &ImageError) -> Status {
    let code = match err {
        ImageError::InvalidReference { .. } => Code::InvalidArgument,
        ImageError::Pull { source, .. } if source.is_not_found() => Code::NotFound,
        ImageError::Pull { source, .. } if source.is_unauthorized() => Code::Unauthenticated,
        ImageError::Pull { source, .. } if source.is_stalled() => Code::DeadlineExceeded,
        ImageError::Pull { source, .. } if source.is_too_large() => Code::ResourceExhausted,
        ImageError::Pull { .. } => Code::Unavailable,
        ImageError::BadConfig { .. } | ImageError::LayerCount { .. } => Code::InvalidArgument,
        ImageError::Import { .. } => Code::InvalidArgument,
        ImageError::Content { .. }
        | ImageError::Snapshot { .. }
        | ImageError::Store(_)
        | ImageError::Task { .. } => Code::Internal,
    };
    Status::new(code, chain(err))
}

pub fn from_runtime_error(err: &RuntimeError) -> Status {
    let code = match err {
        RuntimeError::NotFound { .. } | RuntimeError::ImageNotFound { .. } => Code::NotFound,
        RuntimeError::NameTaken { .. } => Code::AlreadyExists,
        RuntimeError::Invalid { .. }
        | RuntimeError::Process { .. }
        | RuntimeError::ImageFile { .. } => Code::InvalidArgument,
        RuntimeError::WrongState { .. } => Code::FailedPrecondition,
        RuntimeError::Timeout { .. } => Code::DeadlineExceeded,
        RuntimeError::Image(e) => return from_image_error(e),
        RuntimeError::Os { .. } | RuntimeError::Store(_) => Code::Internal,
    };
    Status::new(code, chain(err))
}
