//! Where a reference is fetched from: its mirrors in order, then the
//! registry itself. A mirror `127.0.0.1:5000/registry.k8s.io` for host
//! `registry.k8s.io` serves `registry.k8s.io/pause` as repository
//! `registry.k8s.io/pause` on `127.0.0.1:5000`, i.e. the path prefix is
//! prepended to the repository. A mirror without the `resolve` capability
//! serves content by digest only; the puller resolves tags elsewhere.

use std::fmt;
use std::net::IpAddr;

use tracing::warn;

use super::settings::{Capabilities, Credential, RegistrySettings};
use crate::image::reference::{Reference, DEFAULT_REGISTRY};

/// Docker Hub is named `docker.io` in references but served from here.
const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `host[:port]` the requests go to.
    pub host: String,
    /// Repository path on that host.
    pub repository: String,
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
    /// A configured mirror rather than the reference's own registry.
    pub mirror: bool,
    /// What it may be asked; the registry itself may be asked anything.
    pub capabilities: Capabilities,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.insecure { "http" } else { "https" };
        write!(f, "{scheme}://{}/{}", self.host, self.repository)
    }
}

/// The endpoints to try for `reference`, in order. Never empty: without a
/// usable mirror the registry itself is tried even if fallback is off.
pub(crate) fn resolve_endpoints(
    settings: &RegistrySettings,
    reference: &Reference,
) -> Vec<Endpoint> {
    let mut endpoints: Vec<Endpoint> = settings
        .mirrors
        .get(&reference.registry)
        .into_iter()
        .flatten()
        .filter_map(|spec| {
            let mirror = parse_mirror(&spec.location);
            if mirror.is_none() {
                warn!(registry = %reference.registry, mirror = %spec.location, "ignoring malformed mirror");
            }
            mirror.map(|m| (m, spec.capabilities))
        })
        .map(|(mirror, capabilities)| Endpoint {
            insecure: mirror
                .plain_http
                .unwrap_or_else(|| is_insecure(settings, mirror.host)),
            host: mirror.host.to_owned(),
            repository: match mirror.prefix {
                "" => reference.repository.clone(),
                prefix => format!("{prefix}/{}", reference.repository),
            },
            mirror: true,
            capabilities,
        })
        .collect();
    let resolver = endpoints.iter().any(|e| e.capabilities.resolve);
    if endpoints.is_empty() || settings.fallback_to_upstream || !resolver {
        let host = if reference.registry == DEFAULT_REGISTRY {
            DOCKER_HUB_HOST
        } else {
            reference.registry.as_str()
        };
        endpoints.push(Endpoint {
            host: host.to_owned(),
            repository: reference.repository.clone(),
            insecure: is_insecure(settings, host) || is_insecure(settings, &reference.registry),
            mirror: false,
            // Without fallback, a registry whose mirrors may not resolve
            // tags is still asked which digest a tag names, but nothing more.
            // (Mirrors none of which may pull are refused with the config.)
            capabilities: if endpoints.is_empty() || settings.fallback_to_upstream {
                Capabilities::ALL
            } else {
                Capabilities {
                    pull: false,
                    resolve: true,
                }
            },
        });
    }
    endpoints
}

/// The credential to present to `endpoint`, from the request or the
/// credentials file; `None` leaves it to the credential helpers (asked for
/// [`helper_hosts`]). The request's credential was chosen by kubelet for
/// the reference's registry, so it wins there; a mirror prefers the
/// credential configured for the mirror host itself (which the request
/// cannot know about) and otherwise gets the request's, as containerd does
/// for pull-through mirrors.
pub(crate) fn credential_for(
    settings: &RegistrySettings,
    reference: &Reference,
    endpoint: &Endpoint,
    request: Option<&Credential>,
) -> Option<Credential> {
    let configured = |host: &str| settings.credentials.get(host);
    let chosen = if endpoint.mirror {
        configured(&endpoint.host).or(request)
    } else {
        request
            .or_else(|| configured(&reference.registry))
            .or_else(|| configured(&endpoint.host))
    };
    chosen.cloned()
}

/// The hosts whose helper credential `endpoint` gets, in order: a mirror
/// its own; the registry its reference name (`docker.io`), then the host
/// actually spoken to when that differs.
pub(crate) fn helper_hosts<'a>(reference: &'a Reference, endpoint: &'a Endpoint) -> Vec<&'a str> {
    if endpoint.mirror || endpoint.host == reference.registry {
        vec![endpoint.host.as_str()]
    } else {
        vec![reference.registry.as_str(), endpoint.host.as_str()]
    }
}

struct Mirror<'a> {
    host: &'a str,
    prefix: &'a str,
    /// Set when the spec names a scheme.
    plain_http: Option<bool>,
}

fn parse_mirror(spec: &str) -> Option<Mirror<'_>> {
    let spec = spec.trim();
    let (plain_http, rest) = if let Some(rest) = spec.strip_prefix("http://") {
        (Some(true), rest)
    } else if let Some(rest) = spec.strip_prefix("https://") {
        (Some(false), rest)
    } else {
        (None, spec)
    };
    let rest = rest.trim_end_matches('/');
    let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    // The prefix becomes part of URL paths; keep it to repository-like text.
    let prefix_ok = prefix.split('/').all(|c| {
        prefix.is_empty()
            || (!c.is_empty()
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
    });
    (host_ok && prefix_ok).then_some(Mirror {
        host,
        prefix,
        plain_http,
    })
}

/// Configured plain-HTTP hosts, plus loopback: traffic to it never leaves
/// the node, and local test or cache registries rarely have certificates
/// (docker treats 127.0.0.0/8 the same way). A loopback host with TLS
/// settings of its own speaks TLS: configuring them says so.
fn is_insecure(settings: &RegistrySettings, host: &str) -> bool {
    settings.insecure.iter().any(|h| h == host)
        || (is_loopback(host) && !settings.tls.contains_key(host))
}

fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::settings::MirrorSpec;
    use super::*;

    fn settings(mirrors: &[(&str, &[&str])], fallback: bool) -> RegistrySettings {
        RegistrySettings {
            mirrors: mirrors
                .iter()
                .map(|(host, list)| {
                    (
                        host.to_string(),
                        list.iter().map(|m| MirrorSpec::full(*m)).collect(),
                    )
                })
                .collect(),
            insecure: vec!["mirror.lan:5000".into()],
            fallback_to_upstream: fallback,
            ..RegistrySettings::default()
        }
    }

    fn summary(endpoints: &[Endpoint]) -> Vec<(String, String, bool)> {
        endpoints
            .iter()
            .map(|e| (e.host.clone(), e.repository.clone(), e.insecure))
            .collect()
    }

    fn row(host: &str, repo: &str, insecure: bool) -> (String, String, bool) {
        (host.into(), repo.into(), insecure)
    }

    #[test]
    fn mirrors_in_order_then_upstream() {
        let s = settings(
            &[(
                "registry.k8s.io",
                &[
                    "127.0.0.1:5000/registry.k8s.io",
                    "mirror.lan:5000",
                    "cache.example.com/k8s/",
                ],
            )],
            true,
        );
        let r = Reference::parse("registry.k8s.io/e2e-test-images/busybox:1.29-2").unwrap();
        let got = resolve_endpoints(&s, &r);
        assert_eq!(
            summary(&got),
            vec![
                row(
                    "127.0.0.1:5000",
                    "registry.k8s.io/e2e-test-images/busybox",
                    true
                ),
                row("mirror.lan:5000", "e2e-test-images/busybox", true),
                row("cache.example.com", "k8s/e2e-test-images/busybox", false),
                row("registry.k8s.io", "e2e-test-images/busybox", false),
            ]
        );
        assert!(got[..3].iter().all(|e| e.mirror) && !got[3].mirror);
        assert_eq!(
            got[0].to_string(),
            "http://127.0.0.1:5000/registry.k8s.io/e2e-test-images/busybox"
        );
    }

    #[test]
    fn docker_hub_mirrors_keyed_by_docker_io() {
        let s = settings(&[("docker.io", &["http://hub-cache.lan/docker.io"])], true);
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(
            summary(&resolve_endpoints(&s, &r)),
            vec![
                row("hub-cache.lan", "docker.io/library/busybox", true),
                row("registry-1.docker.io", "library/busybox", false),
            ]
        );
    }

    #[test]
    fn no_fallback_means_mirrors_only() {
        let s = settings(&[("ghcr.io", &["https://localhost:5443"])], false);
        let r = Reference::parse("ghcr.io/org/app:v1").unwrap();
        assert_eq!(
            summary(&resolve_endpoints(&s, &r)),
            vec![row("localhost:5443", "org/app", false)]
        );
    }

    #[test]
    fn upstream_when_no_usable_mirror() {
        let r = Reference::parse("quay.io/org/app").unwrap();
        let s = settings(&[("quay.io", &["", "bad host/x", "h/../etc"])], false);
        assert_eq!(
            summary(&resolve_endpoints(&s, &r)),
            vec![row("quay.io", "org/app", false)]
        );
        let other = settings(&[("docker.io", &["127.0.0.1:5000"])], false);
        assert_eq!(resolve_endpoints(&other, &r).len(), 1);
    }

    #[test]
    fn loopback_and_configured_hosts_are_plain_http() {
        let s = settings(&[], true);
        for (image, insecure) in [
            ("127.0.0.1:5000/x/y", true),
            ("localhost/foo", true),
            ("[::1]:5000/foo", true),
            ("mirror.lan:5000/foo", true),
            ("mirror.lan/foo", false),
            ("127.example.com/foo", false),
        ] {
            let r = Reference::parse(image).unwrap();
            assert_eq!(resolve_endpoints(&s, &r)[0].insecure, insecure, "{image}");
        }
        let mut s = settings(&[], true);
        s.tls.insert("127.0.0.1:5443".into(), Default::default());
        let r = Reference::parse("127.0.0.1:5443/x/y").unwrap();
        assert!(
            !resolve_endpoints(&s, &r)[0].insecure,
            "TLS settings mean TLS"
        );
    }

    #[test]
    fn request_credential_wins_upstream_mirror_credential_wins_mirror() {
        let mut s = settings(&[("docker.io", &["hub-cache.lan"])], true);
        let configured_hub = Credential::Basic {
            username: "node".into(),
            password: "p".into(),
        };
        let configured_mirror = Credential::Bearer("mirror-token".into());
        s.credentials = HashMap::from([
            ("docker.io".to_string(), configured_hub.clone()),
            ("hub-cache.lan".to_string(), configured_mirror.clone()),
        ]);
        let r = Reference::parse("busybox").unwrap();
        let eps = resolve_endpoints(&s, &r);
        let request = Credential::Basic {
            username: "pod".into(),
            password: "q".into(),
        };

        let cred = |i: usize, req: Option<&Credential>| credential_for(&s, &r, &eps[i], req);
        assert_eq!(cred(1, Some(&request)), Some(request.clone()));
        assert_eq!(cred(1, None), Some(configured_hub));
        assert_eq!(cred(0, Some(&request)), Some(configured_mirror));

        s.credentials.clear();
        let cred = |i: usize, req: Option<&Credential>| credential_for(&s, &r, &eps[i], req);
        assert_eq!(cred(0, Some(&request)), Some(request.clone()));
        assert_eq!(cred(0, None), None);
        assert_eq!(cred(1, None), None);

        assert_eq!(helper_hosts(&r, &eps[0]), ["hub-cache.lan"]);
        assert_eq!(
            helper_hosts(&r, &eps[1]),
            ["docker.io", "registry-1.docker.io"]
        );
    }

    #[test]
    fn mirror_capabilities_are_kept_and_upstream_has_all() {
        let mut s = settings(&[], true);
        s.mirrors.insert(
            "ghcr.io".into(),
            vec![MirrorSpec {
                location: "cache.lan".into(),
                capabilities: Capabilities {
                    pull: true,
                    resolve: false,
                },
            }],
        );
        let r = Reference::parse("ghcr.io/org/app:v1").unwrap();
        let eps = resolve_endpoints(&s, &r);
        assert!(eps[0].capabilities.pull && !eps[0].capabilities.resolve);
        assert_eq!(eps[1].capabilities, Capabilities::ALL);

        s.fallback_to_upstream = false;
        let eps = resolve_endpoints(&s, &r);
        assert_eq!(eps.len(), 2, "the registry still resolves the tag");
        assert!(!eps[1].capabilities.pull && eps[1].capabilities.resolve);
    }
}
