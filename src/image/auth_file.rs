//! Registry credentials from a Docker `config.json`-style file:
//! `{"auths": {"registry.example.com": {"auth": "base64(user:pass)"}}}`
//! (`username`/`password` and `registrytoken` are accepted too).

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use serde::Deserialize;

use super::registry::Credential;

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    auths: HashMap<String, Entry>,
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
}

/// Reads the file; keys are normalised to bare hosts (`https://` and paths
/// removed, `index.docker.io` becomes `docker.io`).
pub(crate) fn read(path: &Path) -> Result<HashMap<String, Credential>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

pub(crate) fn parse(text: &str) -> Result<HashMap<String, Credential>, String> {
    let file: File = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    for (key, entry) in file.auths {
        let host = normalise_host(&key);
        let cred = if !entry.registrytoken.is_empty() {
            Credential::Bearer(entry.registrytoken)
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
    Ok(out)
}

fn normalise_host(key: &str) -> String {
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
        let creds = parse(text).unwrap();
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
}
