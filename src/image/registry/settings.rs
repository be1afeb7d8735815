use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use oci_client::secrets::RegistryAuth;

/// How images are fetched: mirrors, plain-HTTP hosts, credentials, limits.
#[derive(Debug, Clone)]
pub(crate) struct RegistrySettings {
    /// registry host -> ordered list of mirror endpoints, each
    /// "host[:port][/path-prefix]" (an `http://` or `https://` prefix is
    /// accepted and forces the scheme)
    pub mirrors: HashMap<String, Vec<String>>,
    /// hosts (host[:port]) spoken to over plain HTTP; loopback hosts always are
    pub insecure: Vec<String>,
    /// per-registry-host credentials used when the request has none
    pub credentials: HashMap<String, Credential>,
    /// a pull with no bytes received for this long fails (a slow pull does not)
    pub stall_timeout: Duration,
    pub max_concurrent_downloads: usize,
    /// try the upstream registry itself after all mirrors failed (default true)
    pub fallback_to_upstream: bool,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            mirrors: HashMap::new(),
            insecure: Vec::new(),
            credentials: HashMap::new(),
            stall_timeout: Duration::from_secs(60),
            // containerd's default; more rarely helps a single node.
            max_concurrent_downloads: 3,
            fallback_to_upstream: true,
        }
    }
}

/// Registry credentials, from a pull request or the node's configuration.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// A registry (bearer) token, sent as is.
    Bearer(String),
    Anonymous,
}

impl Credential {
    pub(super) fn to_registry_auth(&self) -> RegistryAuth {
        match self {
            Credential::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Credential::Bearer(token) => RegistryAuth::Bearer(token.clone()),
            Credential::Anonymous => RegistryAuth::Anonymous,
        }
    }
}

// Hand-written so secrets never reach a log line through `{:?}`.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::Bearer(_) => f.debug_tuple("Bearer").field(&"<redacted>").finish(),
            Credential::Anonymous => f.write_str("Anonymous"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let basic = Credential::Basic {
            username: "alice".into(),
            password: "hunter2".into(),
        };
        let bearer = Credential::Bearer("tok3n".into());
        let shown = format!("{basic:?} {bearer:?}");
        assert!(shown.contains("alice"));
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok3n"),
            "{shown}"
        );
    }
}
