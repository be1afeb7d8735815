//! Registry credentials from a Docker `config.json`-style file:
//! `{"auths": {"registry.example.com": {"auth": "base64(user:pass)"}}}`
//! (`username`/`password`, `registrytoken` and `identitytoken` are accepted
//! too), plus the names of credential helpers: `credHelpers` (per host) and
//! `credsStore` (every other host), run by [`super::credential_helper`].

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use serde::Deserialize;

use super::credential_helper::{is_valid_name, HelperConfig};
use super::registry::Credential;

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    auths: HashMap<String, Entry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: String,
}

/// What the file holds: credentials by host, and which helpers to ask.
#[derive(Debug, Default)]
pub(crate) struct AuthFile {
    pub credentials: HashMap<String, Credential>,
    pub helpers: HelperConfig,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    registrytoken: String,
    #[serde(default)]
    identitytoken: String,
}

/// Reads the file; keys are normalised to bare hosts (`https://` and paths
/// removed, `index.docker.io` becomes `docker.io`).
pub(crate) fn read(path: &Path) -> Result<AuthFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

pub(crate) fn parse(text: &str) -> Result<AuthFile, String> {
    let file: File = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    for (key, entry) in file.auths {
        let host = normalise_host(&key);
        let cred = if !entry.registrytoken.is_empty() {
            Credential::Bearer(entry.registrytoken)
        } else if !entry.identitytoken.is_empty() {
            Credential::IdentityToken(entry.identitytoken)
        } else if !entry.username.is_empty() {
            Credential::Basic {
                username: entry.username,
                password: entry.password,
            }
        } else if !entry.auth.is_empty() {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(entry.auth.trim())
                .map_err(|e| format!("auth of {key:?} is not base64: {e}"))?;
            let text =
                String::from_utf8(raw).map_err(|_| format!("auth of {key:?} is not UTF-8"))?;
            let (u, p) = text
                .split_once(':')
                .ok_or_else(|| format!("auth of {key:?} is not `username:password`"))?;
            Credential::Basic {
                username: u.to_owned(),
                password: p.to_owned(),
            }
        } else {
            continue;
        };
        out.insert(host, cred);
    }
    let helper = |key: &str, name: String| {
        if is_valid_name(&name) {
            Ok(name)
        } else {
            Err(format!(
                "{key}: {name:?} is not a credential helper name (only A-Z a-z 0-9 . _ -)"
            ))
        }
    };
    let mut per_host = HashMap::new();
    for (key, name) in file.cred_helpers {
        per_host.insert(normalise_host(&key), helper("credHelpers", name)?);
    }
    let default = match file.creds_store {
        name if name.is_empty() => None,
        name => Some(helper("credsStore", name)?),
    };
    Ok(AuthFile {
        credentials: out,
        helpers: HelperConfig { per_host, default },
    })
}

pub(super) fn normalise_host(key: &str) -> String {
    let no_scheme = key.split_once("://").map_or(key, |(_, rest)| rest);
    let host = no_scheme.split('/').next().unwrap_or(no_scheme);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_config() {
        let text = r#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "dTpw"},
            "127.0.0.1:5001": {"username": "a", "password": "b"},
            "ghcr.io": {"registrytoken": "tok"},
            "empty.example": {}
        }}"#;
        let creds = parse(text).unwrap().credentials;
        assert!(
            matches!(&creds["docker.io"], Credential::Basic { username, password } if username == "u" && password == "p")
        );
        assert!(
            matches!(&creds["127.0.0.1:5001"], Credential::Basic { username, .. } if username == "a")
        );
        assert!(matches!(&creds["ghcr.io"], Credential::Bearer(t) if t == "tok"));
        assert!(!creds.contains_key("empty.example"));
        assert!(parse("{\"auths\": {\"x\": {\"auth\": \"%%%\"}}}").is_err());
    }

    #[test]
    fn parses_helpers_and_refuses_bad_names() {
        let text = r#"{"credHelpers": {"https://index.docker.io/v1/": "pass",
            "ghcr.io": "gh"}, "credsStore": "secretservice",
            "auths": {"q.io": {"identitytoken": "r"}}}"#;
        let file = parse(text).unwrap();
        assert_eq!(file.helpers.per_host["docker.io"], "pass");
        assert_eq!(file.helpers.per_host["ghcr.io"], "gh");
        assert_eq!(file.helpers.default.as_deref(), Some("secretservice"));
        assert_eq!(
            file.credentials["q.io"],
            Credential::IdentityToken("r".into())
        );
        for bad in [
            r#"{"credsStore": "../../bin/sh"}"#,
            r#"{"credHelpers": {"h": "a b"}}"#,
            r#"{"credHelpers": {"h": ""}}"#,
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("credential helper name"), "{bad}: {err}");
        }
        assert!(parse("{}").unwrap().helpers.default.is_none());
    }
}
