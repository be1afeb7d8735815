//! SPDY/3.1, as far as the Kubernetes streaming protocols use it: the
//! frame layouts ([`frame`]), header blocks with zlib compression primed
//! with the SPDY dictionary ([`headers`]), and a server-side session that
//! accepts the peer's streams ([`session`]). No maintained Rust SPDY crate
//! exists; this is written against the SPDY/3.1 draft.

pub(crate) mod dictionary;
pub(crate) mod frame;
pub(crate) mod headers;
pub(crate) mod session;

pub(crate) use session::{Session, Stream, StreamWriter};

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("SPDY protocol error: {0}")]
    Protocol(&'static str),
    #[error("SPDY connection closed")]
    Closed,
    #[error("SPDY connection i/o")]
    Io(#[source] std::io::Error),
}
