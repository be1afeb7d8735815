//! Registry authentication: the `/v2/` probe, the `WWW-Authenticate`
//! challenge, and the token request of the Docker registry token protocol.
//!
//! Done here rather than by oci-client because its requests cannot carry a
//! client certificate ([`super::tls`]) and it cannot trade an identity
//! (OAuth2 refresh) token for a bearer token. With a Basic credential the
//! token is fetched with `GET realm?service=..&scope=..`; with an identity
//! token it is `POST realm` with `grant_type=refresh_token`. A registry
//! that answers the probe without a challenge gets no credential at all,
//! and one that challenges with `Basic` gets the password on each request.
//! Everything the registry sends back is bounded and checked before use:
//! the realm must be an http(s) URL, must not downgrade an HTTPS registry
//! to plain HTTP and must not name a loopback, link-local or unspecified
//! address unless the registry is on loopback itself ([`super::redirect`]);
//! the token must be a header-safe string. The token request follows no
//! redirect, and a refusal is reported by its status alone: the realm is
//! the registry's choice, so its answer is no business of the pod author's.
//!
//! A token can expire during a long pull. A request refused with a 401 and
//! a `Bearer` challenge logs in again with that challenge and is sent once
//! more ([`Presented::send`]); requests refused under the same token at
//! the same time share one renewal. A registry that keeps refusing gets
//! one extra token request per request, not a loop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use oci_client::errors::OciDistributionError;
use reqwest::{header, StatusCode, Url};
use serde::Deserialize;

use super::manifest_get::{read_capped, GetError};
use super::redirect;
use super::settings::Credential;
use super::stall;
use crate::image::limits::ERROR_BODY_MAX;

/// The most bytes of a token response read (registry JWTs are a few KiB).
const TOKEN_RESPONSE_MAX: u64 = 256 << 10;
/// `client_id` sent with a refresh-token grant (any name identifies us).
const CLIENT_ID: &str = "pvecri";

/// What one request carries.
#[derive(Clone, PartialEq, Eq)]
enum Header {
    None,
    Bearer(String),
    /// The registry challenged with `Basic`.
    Basic {
        username: String,
        password: String,
    },
}

impl Header {
    fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Header::None => request,
            Header::Bearer(token) => request.bearer_auth(token),
            Header::Basic { username, password } => request.basic_auth(username, Some(password)),
        }
    }
}

/// The credential every request of a pull carries, and the login that
/// renews it.
pub(super) struct Presented {
    header: RwLock<Header>,
    /// Bumped by every renewal, so a request knows whether the token it
    /// was refused with is still the current one.
    generation: AtomicU64,
    renewing: tokio::sync::Mutex<()>,
    login: Login,
}

impl Presented {
    /// Sends the request `build` makes, with the current credential. A
    /// 401 with a `Bearer` challenge renews the token with it (unless the
    /// credential is a fixed bearer token) and the request is sent again,
    /// once; its answer is returned whatever it is.
    pub(super) async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, GetError> {
        let seen = self.generation.load(Ordering::Acquire);
        let response = self.login.send(self.apply(build())).await?;
        if response.status() != StatusCode::UNAUTHORIZED
            || matches!(self.login.credential, Credential::Bearer(_))
        {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge);
        let Some(Challenge::Bearer { realm, service }) = challenge else {
            return Ok(response);
        };
        drop(response);
        self.renew(seen, &realm, service.as_deref()).await?;
        self.login.send(self.apply(build())).await
    }

    fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let header = self
            .header
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        header.apply(request)
    }

    /// A new token from `realm`, unless another request already renewed
    /// the one that generation `seen` had.
    async fn renew(&self, seen: u64, realm: &str, service: Option<&str>) -> Result<(), GetError> {
        let _one_at_a_time = self.renewing.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return Ok(());
        }
        let header = self
            .login
            .token(realm, service, &self.login.credential)
            .await?;
        *self.header.write().unwrap_or_else(PoisonError::into_inner) = header;
        self.generation.fetch_add(1, Ordering::AcqRel);
        tracing::debug!(host = %self.login.host, "registry token renewed after a 401");
        Ok(())
    }
}

/// What the `/v2/` probe said about authentication.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    /// No challenge: the registry wants no credential.
    Open,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// One pull's login at one endpoint.
pub(super) struct Login {
    /// The endpoint's client (its TLS settings, its redirect policy).
    pub http: reqwest::Client,
    /// The same TLS settings, following no redirect.
    pub token_http: reqwest::Client,
    /// `http` or `https`.
    pub scheme: &'static str,
    pub host: String,
    pub repository: String,
    pub credential: Credential,
    pub stall: Duration,
}

impl Login {
    /// Logs in: what the pull's requests present, renewable.
    pub(super) async fn run(self) -> Result<Presented, GetError> {
        let header = self.first().await?;
        Ok(Presented {
            header: RwLock::new(header),
            generation: AtomicU64::new(0),
            renewing: tokio::sync::Mutex::new(()),
            login: self,
        })
    }

    async fn first(&self) -> Result<Header, GetError> {
        if let Credential::Bearer(token) = &self.credential {
            return Ok(Header::Bearer(token.clone()));
        }
        let url = format!("{}://{}/v2/", self.scheme, self.host);
        let mut probe = self.send(self.http.get(&url)).await?;
        let challenge = match probe.headers().get(header::WWW_AUTHENTICATE) {
            None => Challenge::Open,
            Some(value) => parse_challenge(value.to_str().unwrap_or_default())
                .ok_or_else(|| spec_violation(format!("unusable WWW-Authenticate from {url}")))?,
        };
        // The body is not needed; drain a little of it so the connection
        // can be reused.
        let _ = read_capped(&mut probe, ERROR_BODY_MAX, self.stall).await;
        match (challenge, &self.credential) {
            (Challenge::Open, _) => Ok(Header::None),
            (Challenge::Basic, Credential::Basic { username, password }) => Ok(Header::Basic {
                username: username.clone(),
                password: password.clone(),
            }),
            (Challenge::Basic, Credential::IdentityToken(_)) => {
                Err(GetError::Registry(OciDistributionError::AuthenticationFailure(format!(
                    "{} asks for Basic authentication; an identity token needs a registry with token authentication",
                    self.host
                ))))
            }
            // Anonymous against Basic: the requests will meet the 401.
            (Challenge::Basic, _) => Ok(Header::None),
            (Challenge::Bearer { realm, service }, credential) => {
                self.token(&realm, service.as_deref(), credential).await
            }
        }
    }

    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        credential: &Credential,
    ) -> Result<Header, GetError> {
        let realm = checked_realm(realm, self.scheme, &self.host)?;
        let scope = format!("repository:{}:pull", self.repository);
        let request = match credential {
            Credential::IdentityToken(refresh) => {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("scope", scope.as_str()),
                    ("client_id", CLIENT_ID),
                ];
                if let Some(service) = service {
                    form.push(("service", service));
                }
                self.token_http.post(realm.clone()).form(&form)
            }
            other => {
                let mut query = vec![("scope", scope.as_str())];
                if let Some(service) = service {
                    query.push(("service", service));
                }
                let request = self.token_http.get(realm.clone()).query(&query);
                match other {
                    Credential::Basic { username, password } => {
                        request.basic_auth(username, Some(password))
                    }
                    _ => request,
                }
            }
        };
        let mut response = self.send(request).await?;
        let status = response.status();
        if status != StatusCode::OK {
            // Drained for the connection's sake, never reported.
            let _ = read_capped(&mut response, ERROR_BODY_MAX, self.stall).await;
            let endpoint = endpoint_name(&realm);
            return Err(GetError::Registry(match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST => {
                    OciDistributionError::AuthenticationFailure(format!(
                        "token endpoint {endpoint} refused the credential: HTTP {status}"
                    ))
                }
                _ if status.is_redirection() => OciDistributionError::SpecViolationError(format!(
                    "token endpoint {endpoint} answered HTTP {status}: token requests follow no redirect"
                )),
                _ => OciDistributionError::ServerError {
                    code: status.as_u16(),
                    url: endpoint,
                    message: "the token request failed".to_owned(),
                },
            }));
        }
        let body = read_capped(&mut response, TOKEN_RESPONSE_MAX, self.stall).await?;
        parse_token(&body).map(Header::Bearer).map_err(|why| {
            GetError::Registry(OciDistributionError::RegistryTokenDecodeError(format!(
                "token endpoint {}: {why}",
                endpoint_name(&realm)
            )))
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, GetError> {
        Ok(stall::within(self.stall, request.send())
            .await
            .ok_or(GetError::Stalled)??)
    }
}

fn spec_violation(message: String) -> GetError {
    GetError::Registry(OciDistributionError::SpecViolationError(message))
}

/// The realm as a URL we are willing to send a credential to (and to make
/// a request to at all) for the registry at `registry_host`.
fn checked_realm(realm: &str, registry_scheme: &str, registry_host: &str) -> Result<Url, GetError> {
    let url =
        Url::parse(realm).map_err(|_| spec_violation("the token realm is not a URL".to_owned()))?;
    match (url.scheme(), registry_scheme) {
        ("https", _) | ("http", "http") => {}
        ("http", _) => {
            return Err(spec_violation(format!(
                "the token realm {} is plain HTTP for an HTTPS registry",
                endpoint_name(&url)
            )))
        }
        _ => {
            return Err(spec_violation(
                "the token realm is not an http(s) URL".to_owned(),
            ))
        }
    }
    if url.host_str().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err(spec_violation(
            "the token realm has no host or carries credentials".to_owned(),
        ));
    }
    if redirect::is_local(url.host_str().unwrap_or_default())
        && !redirect::is_local_authority(registry_host)
    {
        return Err(spec_violation(format!(
            "the token realm {} is a loopback, link-local or unspecified address",
            endpoint_name(&url)
        )));
    }
    Ok(url)
}

/// `scheme://host[:port]/path` of a URL, for messages (no query).
fn endpoint_name(url: &Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    ) + url.path()
}

/// Parses `Bearer realm="..",service="..",scope=".."` or `Basic realm=".."`.
fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, params) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        if value.chars().any(char::is_control) {
            return None;
        }
        match key.as_str() {
            "realm" => realm = Some(value.to_owned()),
            "service" => service = Some(value.to_owned()),
            _ => {}
        }
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
    })
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
}

/// The bearer token of a token response (`token`, or OAuth2's
/// `access_token`), refused unless it can go into a header as is.
fn parse_token(body: &[u8]) -> Result<String, String> {
    let response: TokenResponse =
        serde_json::from_slice(body).map_err(|_| "the response is not a token object")?;
    let token = if response.token.is_empty() {
        response.access_token
    } else {
        response.token
    };
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the response has no usable token".to_owned());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"bearer service="s", realm="http://h/t""#),
            Some(Challenge::Bearer {
                realm: "http://h/t".into(),
                service: Some("s".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        for bad in [
            "Negotiate",
            r#"Bearer service="s""#,
            r#"Bearer realm="unterminated"#,
            "Bearer realm=\"a\u{1}b\"",
            "Bearer garbage",
        ] {
            assert_eq!(parse_challenge(bad), None, "{bad}");
        }
    }

    #[test]
    fn realms_must_be_safe_to_send_credentials_to() {
        let registry = "registry.example";
        assert!(checked_realm("https://auth.example/token", "https", registry).is_ok());
        assert!(checked_realm("http://10.0.0.5:5001/token", "http", registry).is_ok());
        assert!(checked_realm("http://127.0.0.1:5001/token", "http", "127.0.0.1:5000").is_ok());
        for (bad, scheme) in [
            ("http://auth.example/token", "https"),
            ("file:///etc/passwd", "http"),
            ("https://user:pw@auth.example/", "https"),
            ("not a url", "https"),
            ("http://127.0.0.1:5000/token", "http"),
            ("http://169.254.169.254/latest/meta-data/", "http"),
            ("https://[::1]:6443/api", "https"),
        ] {
            assert!(checked_realm(bad, scheme, registry).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens() {
        assert_eq!(parse_token(br#"{"token":"abc"}"#).unwrap(), "abc");
        assert_eq!(
            parse_token(br#"{"access_token":"xyz","expires_in":300}"#).unwrap(),
            "xyz"
        );
        for bad in [
            &br#"{"token":""}"#[..],
            br#"{"token":"a\r\nX: y"}"#,
            br#"{"token":"a b"}"#,
            b"<html>",
        ] {
            assert!(parse_token(bad).is_err());
        }
    }
}
