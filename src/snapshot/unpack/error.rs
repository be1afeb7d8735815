//! Errors of the layer unpacker, and the context-free `Fail` that entry-level
//! code returns so that only the driver has to know the layer and entry names.

use std::io;
use std::path::PathBuf;

/// Why a layer could not be unpacked. Every variant names the layer blob; the
/// entry-level ones also name the tar entry (as written in the archive).
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("open layer {}", layer.display())]
    OpenLayer {
        layer: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("open unpack destination {} for layer {}", dest.display(), layer.display())]
    OpenDest {
        layer: PathBuf,
        dest: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The compressed stream or the tar structure is damaged.
    #[error("layer {} is corrupt", layer.display())]
    Corrupt {
        layer: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The entry (or its hard-link target) would land outside the destination,
    /// either by `..` or through a symlink.
    #[error("layer {}: entry {} escapes the unpack destination", layer.display(), entry.display())]
    Escape { layer: PathBuf, entry: PathBuf },
    #[error("layer {}: entry {}: {reason}", layer.display(), entry.display())]
    Invalid {
        layer: PathBuf,
        entry: PathBuf,
        reason: &'static str,
    },
    #[error("layer {}: {op} {}", layer.display(), entry.display())]
    Io {
        layer: PathBuf,
        entry: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

/// An entry-level failure before the layer and entry names are attached.
#[derive(Debug)]
pub(super) enum Fail {
    Escape,
    Invalid(&'static str),
    Io(&'static str, io::Error),
    Corrupt(io::Error),
}

impl Fail {
    pub(super) fn into_error(self, layer: PathBuf, entry: PathBuf) -> UnpackError {
        match self {
            Fail::Escape => UnpackError::Escape { layer, entry },
            Fail::Invalid(reason) => UnpackError::Invalid {
                layer,
                entry,
                reason,
            },
            Fail::Io(op, source) => UnpackError::Io {
                layer,
                entry,
                op,
                source,
            },
            Fail::Corrupt(source) => UnpackError::Corrupt { layer, source },
        }
    }
}

/// `map_err` adapter naming the operation that failed.
pub(super) fn io_fail<E: Into<io::Error>>(op: &'static str) -> impl FnOnce(E) -> Fail {
    move |e| Fail::Io(op, e.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_layer_and_entry_without_trailing_period() {
        let err = Fail::Io("create file", io::Error::from_raw_os_error(libc::EACCES))
            .into_error("/blobs/abc".into(), "etc/passwd".into());
        let msg = err.to_string();
        assert_eq!(msg, "layer /blobs/abc: create file etc/passwd");
        assert!(std::error::Error::source(&err).is_some());

        let msg = Fail::Escape
            .into_error("/blobs/abc".into(), "../evil".into())
            .to_string();
        assert_eq!(
            msg,
            "layer /blobs/abc: entry ../evil escapes the unpack destination"
        );
    }
}
