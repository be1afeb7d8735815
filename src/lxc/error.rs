use thiserror::Error;

/// A failed liblxc operation, naming the container and what was attempted.
#[derive(Debug, Error)]
pub(crate) enum LxcError {
    #[error("liblxc could not allocate container {name:?} in {lxcpath:?}")]
    New { name: String, lxcpath: String },
    #[error("liblxc {op} failed for container {name:?}")]
    Call { name: String, op: &'static str },
    #[error("{what} {value:?} contains a NUL byte")]
    Nul { what: &'static str, value: String },
}
