//! Which redirects a registry client follows.
//!
//! A registry (or a token realm it names) is untrusted, and a redirect
//! makes the daemon send a request of the registry's choosing from the
//! node. So registry clients follow a redirect only to http(s), never from
//! HTTPS down to plain HTTP (that would undo the TLS the operator asked
//! for), and never to a loopback, link-local or unspecified address unless
//! the registry itself is on loopback (a local test registry redirecting to
//! itself). Only IP literals and `localhost` are recognised: a name that
//! resolves to such an address is not, as checking it would need the
//! resolver's answer for the connection actually made. Token requests
//! follow no redirect at all (see [`super::auth`]): a 307/308 would
//! re-send the refresh token to wherever the realm pointed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use reqwest::redirect::{Attempt, Policy};
use reqwest::Url;
use thiserror::Error;

/// The longest redirect chain followed (reqwest's default).
const MAX_REDIRECTS: usize = 10;

/// Why a redirect was not followed. Names the target's host only: its
/// path and query may carry a storage backend's signed credential.
#[derive(Debug, Error, PartialEq, Eq)]
pub(super) enum RedirectError {
    #[error("refused redirect from HTTPS to plain HTTP ({host})")]
    Downgrade { host: String },
    #[error("refused redirect to {host}: a loopback, link-local or unspecified address")]
    LocalAddress { host: String },
    #[error("refused redirect to a {scheme}: URL")]
    Scheme { scheme: String },
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooMany,
}

/// The redirect policy of the client for requests to `registry_host`
/// (`host[:port]`).
pub(super) fn registry_policy(registry_host: &str) -> Policy {
    let registry_local = is_local_authority(registry_host);
    Policy::custom(move |attempt: Attempt<'_>| {
        match check(registry_local, attempt.previous(), attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(refused) => attempt.error(refused),
        }
    })
}

/// Whether `next` may be followed after `previous` (the first of which is
/// the original request).
fn check(registry_local: bool, previous: &[Url], next: &Url) -> Result<(), RedirectError> {
    if previous.len() > MAX_REDIRECTS {
        return Err(RedirectError::TooMany);
    }
    let host = next.host_str().unwrap_or_default().to_owned();
    match next.scheme() {
        "https" => {}
        "http" if previous.iter().any(|u| u.scheme() == "https") => {
            return Err(RedirectError::Downgrade { host })
        }
        "http" => {}
        other => {
            return Err(RedirectError::Scheme {
                scheme: other.to_owned(),
            })
        }
    }
    if !registry_local && is_local(&host) {
        return Err(RedirectError::LocalAddress { host });
    }
    Ok(())
}

/// Whether `authority` (`host[:port]`, IPv6 in brackets) names this node.
pub(super) fn is_local_authority(authority: &str) -> bool {
    Url::parse(&format!("http://{authority}/"))
        .ok()
        .is_some_and(|url| is_local(url.host_str().unwrap_or_default()))
}

/// Whether a URL's host (as `Url::host_str` gives it: IPv4 normalised,
/// IPv6 in brackets) is loopback, link-local or unspecified, as far as the
/// URL itself says.
pub(super) fn is_local(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return is_local_ip(ip);
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

fn is_local_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_local_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_local_v4(v4),
            None => is_local_v6(v6),
        },
    }
}

fn is_local_v4(ip: Ipv4Addr) -> bool {
    // 0.0.0.0/8 reaches this host on Linux, like the unspecified address.
    ip.is_loopback() || ip.is_link_local() || ip.octets()[0] == 0
}

fn is_local_v6(ip: Ipv6Addr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || (ip.segments()[0] & 0xffc0) == 0xfe80
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::test_http::{serve, Reply};
    use super::*;

    fn urls(list: &[&str]) -> Vec<Url> {
        list.iter().map(|u| Url::parse(u).unwrap()).collect()
    }

    #[test]
    fn redirects_are_judged_by_scheme_and_address() {
        let from_https = urls(&["https://registry.example/v2/a/blobs/x"]);
        let from_http = urls(&["http://registry.example/v2/a/blobs/x"]);
        let ok = |prev: &[Url], next: &str| check(false, prev, &Url::parse(next).unwrap());
        assert_eq!(ok(&from_https, "https://cdn.example/blob?sig=1"), Ok(()));
        assert_eq!(ok(&from_http, "http://cache.lan:5000/blob"), Ok(()));
        assert_eq!(ok(&from_http, "https://cdn.example/blob"), Ok(()));
        assert_eq!(ok(&from_https, "https://10.1.2.3/blob"), Ok(()));
        assert!(matches!(
            ok(&from_https, "http://cdn.example/blob"),
            Err(RedirectError::Downgrade { .. })
        ));
        // A chain that went through HTTPS once stays there.
        let mixed = urls(&["http://r.example/", "https://s.example/"]);
        assert!(ok(&mixed, "http://t.example/").is_err());
        for local in [
            "http://127.0.0.1:10250/pods",
            "http://127.1/",
            "http://2130706433/",
            "http://169.254.169.254/latest/meta-data/",
            "http://0.0.0.0:6443/",
            "http://[::1]/",
            "http://[::]/",
            "http://[fe80::1]/",
            "http://[::ffff:169.254.169.254]/",
            "https://localhost/",
            "https://api.LOCALHOST./",
        ] {
            assert!(
                matches!(
                    ok(&from_http, local),
                    Err(RedirectError::LocalAddress { .. })
                ),
                "{local}"
            );
        }
        assert!(matches!(
            ok(&from_http, "file:///etc/shadow"),
            Err(RedirectError::Scheme { .. })
        ));
        let long = urls(&["http://r.example/"; MAX_REDIRECTS + 1]);
        assert_eq!(ok(&long, "http://r.example/"), Err(RedirectError::TooMany));
        // A registry on loopback may redirect to itself, but not downgrade.
        let local_registry = urls(&["http://127.0.0.1:5000/v2/"]);
        assert_eq!(
            check(
                true,
                &local_registry,
                &Url::parse("http://127.0.0.1:5000/x").unwrap()
            ),
            Ok(())
        );
        assert!(check(true, &from_https, &Url::parse("http://127.0.0.1/").unwrap()).is_err());
    }

    #[test]
    fn local_registries_are_recognised() {
        for local in [
            "127.0.0.1:5000",
            "localhost:5000",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_local_authority(local), "{local}");
        }
        for remote in ["registry-1.docker.io", "10.0.0.5:5000", "[2001:db8::1]:443"] {
            assert!(!is_local_authority(remote), "{remote}");
        }
    }

    /// A real client with the policy: a registry that is not on loopback
    /// (a name pinned to the test server's address) cannot bounce the
    /// daemon to a loopback service.
    #[tokio::test]
    async fn a_remote_registry_cannot_redirect_to_loopback() {
        let internal = serve(HashMap::from([(
            "/secret".to_owned(),
            Reply::Ok {
                content_type: "text/plain",
                body: b"instance-credentials".to_vec(),
            },
        )]))
        .await;
        let location = format!("http://{internal}/secret");
        let registry = serve(HashMap::from([(
            "/v2/a/manifests/v1".to_owned(),
            Reply::Redirect {
                status: 307,
                location: location.clone(),
            },
        )]))
        .await;
        let client = |host: &str| {
            reqwest::Client::builder()
                .redirect(registry_policy(host))
                .resolve("registry.test", registry)
                .build()
                .unwrap()
        };
        let url = format!("http://registry.test:{}/v2/a/manifests/v1", registry.port());
        let err = client("registry.test").get(&url).send().await.unwrap_err();
        assert!(err.is_redirect(), "{err}");
        let refused = std::error::Error::source(&err)
            .and_then(|e| e.downcast_ref::<RedirectError>())
            .unwrap_or_else(|| panic!("not a refusal: {err:?}"));
        assert!(matches!(refused, RedirectError::LocalAddress { .. }));
        // The same redirect from a loopback registry is followed.
        let local = format!("http://{registry}/v2/a/manifests/v1");
        let response = client(&registry.to_string())
            .get(&local)
            .send()
            .await
            .unwrap();
        assert_eq!(response.text().await.unwrap(), "instance-credentials");
    }
}
