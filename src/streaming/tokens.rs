//! Single-use, expiring tokens that name a pending streaming request.
//!
//! The CRI call validates the request and parks it here; the URL it
//! returns carries the token. The first connection to present the token
//! takes the request, so a URL works once, and only within [`TOKEN_TTL`]
//! (the kubelet's own streaming cache keeps entries as long).

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a returned URL stays valid.
pub(crate) const TOKEN_TTL: Duration = Duration::from_secs(60);
/// Pending requests kept at most; a flood of unused URLs cannot grow the
/// map without bound.
const MAX_PENDING: usize = 4096;

/// What a streaming URL does, validated by the CRI call that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pending {
    Exec {
        container_id: String,
        cmd: Vec<String>,
        stdio: Stdio,
    },
    Attach {
        container_id: String,
        stdio: Stdio,
    },
    PortForward {
        pod_id: String,
        /// `None`: the pod's network namespace is the host's.
        net_ns: Option<std::path::PathBuf>,
    },
}

/// Which standard streams a session carries.
pub(crate) use crate::runtime::StreamStdio as Stdio;

impl Pending {
    /// The URL path segment that serves this kind of request.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Pending::Exec { .. } => "exec",
            Pending::Attach { .. } => "attach",
            Pending::PortForward { .. } => "portforward",
        }
    }
}

#[derive(Default)]
pub(crate) struct Tokens {
    pending: Mutex<HashMap<String, (Pending, Instant)>>,
}

impl Tokens {
    /// Parks `request` and returns its token, or `None` when too many
    /// requests are pending.
    pub(crate) fn insert(&self, request: Pending) -> Option<String> {
        let token = new_token()?;
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        pending.retain(|_, (_, at)| now.duration_since(*at) < TOKEN_TTL);
        if pending.len() >= MAX_PENDING {
            return None;
        }
        pending.insert(token.clone(), (request, now));
        Some(token)
    }

    /// Takes the request behind `token` if it is known and fresh; either
    /// way the token is spent.
    pub(crate) fn take(&self, token: &str) -> Option<Pending> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let (request, at) = pending.remove(token)?;
        (at.elapsed() < TOKEN_TTL).then_some(request)
    }
}

/// 128 random bits, URL-safe.
fn new_token() -> Option<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .ok()?;
    Some(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Pending {
        Pending::PortForward {
            pod_id: "p".into(),
            net_ns: None,
        }
    }

    #[test]
    fn a_token_works_once() {
        let tokens = Tokens::default();
        let t = tokens.insert(request()).unwrap();
        assert_eq!(t.len(), 32);
        assert_eq!(tokens.take(&t), Some(request()));
        assert_eq!(tokens.take(&t), None);
        assert_eq!(tokens.take("nope"), None);
    }

    #[test]
    fn tokens_are_distinct() {
        let tokens = Tokens::default();
        let a = tokens.insert(request()).unwrap();
        let b = tokens.insert(request()).unwrap();
        assert_ne!(a, b);
    }
}
