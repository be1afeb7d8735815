//! The one mapping from domain errors to gRPC status codes.
//!
//! Messages carry the whole cause chain ("pulling image x failed: ...: 404")
//! so that `crictl` and kubelet events say what went wrong.

use tonic::{Code, Status};

use crate::cdi::CdiError;
use crate::image::ImageError;
use crate::runtime::RuntimeError;

pub(super) use crate::errors::chain;

pub(super) fn invalid(field: &str, message: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {message}"))
}

pub(super) fn from_image_error(err: &ImageError) -> Status {
    let code = match err {
        ImageError::InvalidReference { .. } => Code::InvalidArgument,
        ImageError::Pinned { .. } => Code::FailedPrecondition,
        ImageError::Pull { source, .. } if source.is_not_found() => Code::NotFound,
        ImageError::Pull { source, .. } if source.is_unauthorized() => Code::Unauthenticated,
        ImageError::Pull { source, .. } if source.is_stalled() => Code::DeadlineExceeded,
        ImageError::Pull { source, .. } if source.is_too_large() => Code::ResourceExhausted,
        ImageError::Pull { source, .. } if source.is_refused_by_policy() => {
            Code::FailedPrecondition
        }
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

pub(super) fn from_runtime_error(err: &RuntimeError) -> Status {
    let code = match err {
        RuntimeError::NotFound { .. } | RuntimeError::ImageNotFound { .. } => Code::NotFound,
        RuntimeError::NameTaken { .. } => Code::AlreadyExists,
        RuntimeError::Invalid { .. }
        | RuntimeError::Process { .. }
        | RuntimeError::ImageFile { .. }
        | RuntimeError::RunDir(_) => Code::InvalidArgument,
        RuntimeError::WrongState { .. } | RuntimeError::Unsupported { .. } => {
            Code::FailedPrecondition
        }
        RuntimeError::Timeout { .. } => Code::DeadlineExceeded,
        RuntimeError::Image(e) => return from_image_error(e),
        RuntimeError::Cdi { source, .. } => match source {
            CdiError::BadName(_) => Code::InvalidArgument,
            CdiError::UnknownDevice { .. } => Code::NotFound,
            // The node's specs, not the request, are what is wrong.
            CdiError::Unsupported { .. } | CdiError::Edit { .. } => Code::FailedPrecondition,
        },
        RuntimeError::Os { .. } | RuntimeError::Store(_) => Code::Internal,
    };
    Status::new(code, chain(err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::image_file::ImageFileError;
    use crate::image::registry::PullError;

    #[test]
    fn signature_refusals_are_failed_precondition_naming_image_rule_and_reason() {
        let pull = ImageError::Pull {
            image: "r/a:1".into(),
            source: Box::new(PullError::SignatureRefused {
                reference: "r/a:1".into(),
                endpoint: "https://r/a".into(),
                rule: "r".into(),
                source: Box::new(crate::image::signature::SignatureError::Unsigned {
                    tag: "sha256-00.sig".into(),
                }),
            }),
        };
        let status = from_image_error(&pull);
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(
            status.message().contains(
                "image r/a:1 from https://r/a is refused by signature policy rule \"r\": no signature: the repository has no sha256-00.sig tag"
            ),
            "{}",
            status.message()
        );
    }

    #[test]
    fn oversized_images_are_resource_exhausted_and_bad_passwd_invalid() {
        let pull = ImageError::Pull {
            image: "r/a:1".into(),
            source: Box::new(PullError::TooLarge {
                reference: "r/a:1".into(),
                endpoint: "https://r/a".into(),
                what: "manifest",
                name: "1".into(),
                size: None,
                limit: 4 << 20,
            }),
        };
        let status = from_image_error(&pull);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(
            status
                .message()
                .contains("manifest 1 is over the limit of 4194304 bytes"),
            "{}",
            status.message()
        );
        let passwd = RuntimeError::ImageFile {
            id: "c1".into(),
            source: ImageFileError::NotRegular {
                path: "etc/passwd".into(),
                kind: "a FIFO",
            },
        };
        let status = from_runtime_error(&passwd);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status
                .message()
                .contains("the image's /etc/passwd is a FIFO, not a regular file"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn cdi_errors_say_whose_fault_it_is() {
        let cdi = |source| RuntimeError::Cdi {
            id: "c1".into(),
            source,
        };
        let unknown = from_runtime_error(&cdi(CdiError::UnknownDevice {
            device: "vendor.com/gpu=9".into(),
            dirs: "/etc/cdi".into(),
        }));
        assert_eq!(unknown.code(), Code::NotFound);
        assert!(
            unknown.message().contains("vendor.com/gpu=9"),
            "{unknown:?}"
        );
        let hooks = from_runtime_error(&cdi(CdiError::Unsupported {
            device: "vendor.com/gpu=0".into(),
            spec: "/etc/cdi/gpu.json".into(),
            edit: "hooks",
        }));
        assert_eq!(hooks.code(), Code::FailedPrecondition);
        assert!(
            hooks.message().contains("vendor.com/gpu=0") && hooks.message().contains("hooks"),
            "{hooks:?}"
        );
        let name = crate::cdi::parse_name("gpu").unwrap_err();
        assert_eq!(
            from_runtime_error(&cdi(CdiError::BadName(name))).code(),
            Code::InvalidArgument
        );
    }
}
