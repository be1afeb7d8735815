//! The parts of an OCI/Docker image config that pvecri uses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The image config blob, as far as pvecri reads it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ConfigFile {
    // Never read, but kept so that a config whose platform fields have the
    // wrong type is still refused, and so they show in Debug output.
    #[allow(dead_code)]
    #[serde(default)]
    pub architecture: String,
    #[allow(dead_code)]
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// How a container of this image runs by default (`config` in the blob).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct RunConfig {
    pub user: Option<String>,
    pub env: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub stop_signal: Option<String>,
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
}

impl ConfigFile {
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// The user an image runs as, as ImageStatus reports it: a numeric user
/// becomes `uid`, a name becomes `username` (the group part is ignored).
pub(crate) fn image_user(user: Option<&str>) -> (Option<i64>, String) {
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return (None, String::new());
    };
    let name = user.split(':').next().unwrap_or_default();
    match name.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, name.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_forms() {
        assert_eq!(image_user(None), (None, String::new()));
        assert_eq!(image_user(Some("")), (None, String::new()));
        assert_eq!(image_user(Some("1002")), (Some(1002), String::new()));
        assert_eq!(image_user(Some("1003:1004")), (Some(1003), String::new()));
        assert_eq!(image_user(Some("www-data")), (None, "www-data".into()));
        assert_eq!(image_user(Some("www-data:1004")), (None, "www-data".into()));
    }

    #[test]
    fn parses_a_docker_config() {
        let json = br#"{"architecture":"amd64","os":"linux",
            "config":{"User":"1002","Env":["PATH=/bin"],"Cmd":["sh"],"ExposedPorts":{"80/tcp":{}}},
            "rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        let c = ConfigFile::parse(json).unwrap();
        let run = c.config.unwrap();
        assert_eq!(run.user.as_deref(), Some("1002"));
        assert_eq!(run.cmd, Some(vec!["sh".to_owned()]));
        assert_eq!(c.rootfs.diff_ids, vec!["sha256:aa"]);
    }
}
