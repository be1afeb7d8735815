//! What a restored container is confined by: CRIU restores its processes'
//! credentials, capabilities, seccomp filters and LSM labels from the
//! images, and pvecri-init never runs for it. So the request that makes
//! the restored container must ask for exactly what the checkpointed one
//! ran with — else its confinement would silently not be the requested
//! one. The dump records it as `checkpoint/container.json`; a restore
//! compares and refuses any difference, naming it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::container::record::SecurityConfig;
use crate::container::ContainerConfig;

/// `checkpoint/container.json` (pvecri's own, next to CRIU's images).
pub(crate) const FILE: &str = "container.json";

/// The settings a restore cannot change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Confinement {
    /// The security context, without what names other containers (the PID
    /// namespace mode and target, checked by the restore's refusals).
    pub security: SecurityConfig,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_username: String,
    pub supplemental_groups: Vec<i64>,
    /// Mount point -> read-only.
    pub mounts: BTreeMap<String, bool>,
}

impl Confinement {
    pub(crate) fn of(c: &ContainerConfig) -> Self {
        let mut security = c.security.clone();
        security.pid_mode = Default::default();
        security.target_id.clear();
        Confinement {
            security,
            run_as_user: c.run_as_user,
            run_as_group: c.run_as_group,
            run_as_username: c.run_as_username.clone(),
            supplemental_groups: c.supplemental_groups.clone(),
            mounts: c
                .mounts
                .iter()
                .map(|m| (m.container_path.clone(), m.readonly))
                .collect(),
        }
    }

    /// What `requested` asks for that differs from the checkpointed
    /// container (`self`); empty: none.
    pub(crate) fn differences(&self, requested: &Confinement) -> Vec<String> {
        let mut out = Vec::new();
        if self.security != requested.security {
            out.push("the security context".to_owned());
        }
        if (self.run_as_user, self.run_as_group, &self.run_as_username)
            != (
                requested.run_as_user,
                requested.run_as_group,
                &requested.run_as_username,
            )
        {
            out.push("the user or group".to_owned());
        }
        if self.supplemental_groups != requested.supplemental_groups {
            out.push("the supplemental groups".to_owned());
        }
        for (path, readonly) in &self.mounts {
            match requested.mounts.get(path) {
                None => out.push(format!("no mount at {path}")),
                Some(r) if r != readonly => out.push(format!(
                    "the mount at {path} {}",
                    if *r { "read-only" } else { "writable" }
                )),
                Some(_) => {}
            }
        }
        for path in requested.mounts.keys() {
            if !self.mounts.contains_key(path) {
                out.push(format!("a mount at {path} the checkpoint lacks"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::MountSpec;

    fn config() -> ContainerConfig {
        ContainerConfig {
            run_as_user: Some(1000),
            mounts: vec![MountSpec {
                container_path: "/data".into(),
                host_path: "/srv/a".into(),
                readonly: true,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_same_request_in_another_pod_matches() {
        let dumped = Confinement::of(&config());
        let mut again = config();
        again.mounts[0].host_path = "/srv/elsewhere".into();
        again.security.target_id = "other".into();
        assert!(dumped.differences(&Confinement::of(&again)).is_empty());
    }

    #[test]
    fn every_difference_is_named() {
        let dumped = Confinement::of(&config());
        let mut other = config();
        other.run_as_user = Some(0);
        other.security.add_capabilities = vec!["SYS_ADMIN".into()];
        other.mounts[0].readonly = false;
        other.mounts.push(MountSpec {
            container_path: "/extra".into(),
            ..Default::default()
        });
        let diff = dumped.differences(&Confinement::of(&other));
        assert_eq!(
            diff,
            [
                "the security context",
                "the user or group",
                "the mount at /data writable",
                "a mount at /extra the checkpoint lacks"
            ]
        );
        let dropped = ContainerConfig {
            mounts: Vec::new(),
            ..config()
        };
        assert_eq!(
            dumped.differences(&Confinement::of(&dropped)),
            ["no mount at /data"]
        );
    }
}
