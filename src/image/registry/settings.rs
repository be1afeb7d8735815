use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use thiserror::Error;

use super::tls::{HostTls, TlsError, TlsFiles};
use crate::config::{ImagesConfig, MirrorCapability};
use crate::image::credential_helper::Helpers;

#[derive(Debug, Error)]
pub(crate) enum SettingsError {
    #[error("images.credentials_file: {0}")]
    CredentialsFile(String),
    #[error("images.registries.{host:?}: cannot load its TLS files")]
    Tls {
        host: String,
        #[source]
        source: TlsError,
    },
}

/// How images are fetched: mirrors, plain-HTTP hosts, TLS, credentials,
/// limits.
#[derive(Debug, Clone)]
pub(crate) struct RegistrySettings {
    /// registry host -> ordered list of mirror endpoints
    pub mirrors: HashMap<String, Vec<MirrorSpec>>,
    /// hosts (host[:port]) spoken to over plain HTTP; loopback hosts always are
    pub insecure: Vec<String>,
    /// host (host[:port]) -> its CA roots, client certificate, skip_verify
    pub tls: HashMap<String, HostTls>,
    /// per-registry-host credentials used when the request has none
    pub credentials: HashMap<String, Credential>,
    /// credential helpers asked when neither the request nor
    /// `credentials` has a credential
    pub helpers: Helpers,
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
            tls: HashMap::new(),
            credentials: HashMap::new(),
            helpers: Helpers::default(),
            stall_timeout: Duration::from_secs(60),
            // containerd's default; more rarely helps a single node.
            max_concurrent_downloads: 3,
            fallback_to_upstream: true,
        }
    }
}

impl RegistrySettings {
    /// The settings `[images]` describes, with the credentials file and the
    /// TLS files read (once, at start-up: a bad file stops the daemon).
    pub(crate) fn from_config(images: &ImagesConfig) -> Result<Self, SettingsError> {
        let file = match &images.credentials_file {
            Some(path) => {
                crate::image::auth_file::read(path).map_err(SettingsError::CredentialsFile)?
            }
            None => Default::default(),
        };
        let mut mirrors: HashMap<String, Vec<MirrorSpec>> = images
            .mirrors
            .iter()
            .map(|(host, list)| (host.clone(), list.iter().map(MirrorSpec::full).collect()))
            .collect();
        let mut tls = HashMap::new();
        for (host, registry) in &images.registries {
            if !registry.mirrors.is_empty() {
                let specs = registry.mirrors.iter().map(|m| MirrorSpec {
                    location: m.host.clone(),
                    capabilities: Capabilities {
                        pull: m.capabilities.contains(&MirrorCapability::Pull),
                        resolve: m.capabilities.contains(&MirrorCapability::Resolve),
                    },
                });
                mirrors.insert(host.clone(), specs.collect());
            }
            let files = TlsFiles {
                ca_file: registry.ca_file.clone(),
                client_cert_file: registry.client_cert_file.clone(),
                client_key_file: registry.client_key_file.clone(),
                skip_verify: registry.skip_verify,
            };
            if files != TlsFiles::default() {
                let loaded = HostTls::load(&files).map_err(|source| SettingsError::Tls {
                    host: host.clone(),
                    source,
                })?;
                tls.insert(host.clone(), loaded);
            }
        }
        Ok(RegistrySettings {
            mirrors,
            insecure: images.insecure_registries.clone(),
            tls,
            credentials: file.credentials,
            helpers: Helpers::new(file.helpers, images.credential_helper_dir.clone()),
            stall_timeout: Duration::from_secs(images.stall_timeout_seconds),
            max_concurrent_downloads: images.max_concurrent_downloads,
            fallback_to_upstream: images.fallback_to_upstream,
        })
    }
}

/// One mirror of a registry and what it may be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MirrorSpec {
    /// "host[:port][/path-prefix]"; an `http://` or `https://` prefix is
    /// accepted and forces the scheme.
    pub location: String,
    pub capabilities: Capabilities,
}

impl MirrorSpec {
    /// A mirror trusted with everything (the `mirrors` option's kind).
    pub(crate) fn full(location: impl Into<String>) -> Self {
        MirrorSpec {
            location: location.into(),
            capabilities: Capabilities::ALL,
        }
    }
}

/// What an endpoint may be asked, as containerd's `capabilities`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Capabilities {
    /// Content by digest: manifests, configs, layers.
    pub pull: bool,
    /// Tag to digest: a mirror without it is never trusted to say which
    /// image a tag names.
    pub resolve: bool,
}

impl Capabilities {
    pub(crate) const ALL: Capabilities = Capabilities {
        pull: true,
        resolve: true,
    };
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
    /// An OAuth2 refresh token, exchanged at the registry's token endpoint
    /// for a bearer token (the CRI's `identity_token`).
    IdentityToken(String),
    Anonymous,
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
            Credential::IdentityToken(_) => {
                f.debug_tuple("IdentityToken").field(&"<redacted>").finish()
            }
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
        let identity = Credential::IdentityToken("r3fresh".into());
        let shown = format!("{basic:?} {bearer:?} {identity:?}");
        assert!(shown.contains("alice"));
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok3n") && !shown.contains("r3fresh"),
            "{shown}"
        );
    }
}
