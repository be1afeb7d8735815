//! The one mapping from domain errors to gRPC status codes.
//!
//! Messages carry the whole cause chain ("pulling image x failed: ...: 404")
//! so that `crictl` and kubelet events say what went wrong.

use tonic::{Code, Status};

use crate::image::ImageError;

/// `err: cause: cause...`
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = cause.source();
    }
    msg
}

pub fn invalid(field: &str, message: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {message}"))
}

pub fn from_image_error(err: &ImageError) -> Status {
    let code = match err {
        ImageError::InvalidReference { .. } => Code::InvalidArgument,
        ImageError::Pull { source, .. } if source.is_not_found() => Code::NotFound,
        ImageError::Pull { source, .. } if source.is_unauthorized() => Code::Unauthenticated,
        ImageError::Pull { source, .. } if source.is_stalled() => Code::DeadlineExceeded,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_joins_causes() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(chain(&e), "outer: inner");
    }
}
