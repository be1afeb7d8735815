use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cgroups::limits::Resources;
use crate::store::Record;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    pub container_path: String,
    pub host_path: String,
    pub readonly: bool,
    /// Stored as the CRI number, as before the field was typed.
    #[serde(with = "propagation_as_cri")]
    pub propagation: Propagation,
    pub selinux_relabel: bool,
    /// Read-only with every mount beneath it too.
    #[serde(default)]
    pub recursive_read_only: bool,
    /// An image volume: the image mounted read-only instead of a host path.
    #[serde(default)]
    pub image: Option<ImageVolume>,
    /// nosuid, nodev, noexec: CRI mounts have none, a CDI spec's may.
    #[serde(default)]
    pub flags: MountFlags,
}

/// Mount flags beyond read-only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountFlags {
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
}

/// How mounts propagate between the host and a bind mount (CRI
/// `MountPropagation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// `rprivate`: nothing crosses in either direction.
    #[default]
    Private,
    /// `rslave`: host mounts appear in the container (CRI host-to-container).
    Slave,
    /// `rshared`: mounts cross both ways (CRI bidirectional).
    Shared,
}

impl Propagation {
    /// From the CRI enum value (private 0, host-to-container 1,
    /// bidirectional 2).
    pub fn from_cri(value: i32) -> Option<Self> {
        match value {
            0 => Some(Propagation::Private),
            1 => Some(Propagation::Slave),
            2 => Some(Propagation::Shared),
            _ => None,
        }
    }

    /// The CRI enum value.
    pub fn to_cri(self) -> i32 {
        match self {
            Propagation::Private => 0,
            Propagation::Slave => 1,
            Propagation::Shared => 2,
        }
    }
}

/// Stores a [`Propagation`] as its CRI number, the on-disk form container
/// records had before the field was typed, so older records load. Versions
/// before the type stored any number and mounted unknown ones private, so
/// an unknown stored number still reads as private rather than making the
/// record unreadable.
mod propagation_as_cri {
    use super::Propagation;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(p: &Propagation, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(p.to_cri())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Propagation, D::Error> {
        Ok(Propagation::from_cri(i32::deserialize(d)?).unwrap_or_default())
    }
}

/// The image of an image volume and the part of it mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageVolume {
    /// As requested (a name or an image ID).
    pub image: String,
    /// Path inside the image to mount instead of its root.
    pub sub_path: String,
    /// Resolved at CreateContainer: the image ID reported in status.
    #[serde(default)]
    pub image_ref: String,
    /// The image's top layer, kept from garbage collection while mounted.
    #[serde(default)]
    pub top_layer: Option<String>,
}

/// A host device the container asked for (CRI `Device`), validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSpec {
    pub host_path: String,
    pub container_path: String,
    /// A subset of `rwm`.
    pub permissions: String,
}

/// What CreateContainer asked for, after validation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// The request's `ContainerConfig` as it came (protobuf, base64), for
    /// pod checkpoints (see `PodConfig::request`).
    #[serde(default)]
    pub request: String,
    pub name: String,
    pub attempt: u32,
    /// As the request named it (the kubelet sends the image ID).
    pub image: String,
    /// The name the user wrote in the pod spec (CRI `user_specified_image`).
    #[serde(default)]
    pub user_specified_image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub working_dir: String,
    pub envs: Vec<(String, String)>,
    pub mounts: Vec<MountSpec>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub log_path: String,
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
    pub resources: Resources,
    #[serde(default)]
    pub devices: Vec<DeviceSpec>,
    /// Fully-qualified CDI device names (`vendor/class=device`), resolved
    /// against the node's CDI specs at CreateContainer (`crate::cdi`).
    #[serde(default)]
    pub cdi_devices: Vec<String>,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_username: String,
    pub supplemental_groups: Vec<i64>,
    pub privileged: bool,
    #[serde(default)]
    pub security: SecurityConfig,
}

/// The security context fields pvecri-init enforces (docs/security.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityConfig {
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
    pub add_ambient_capabilities: Vec<String>,
    pub readonly_rootfs: bool,
    pub no_new_privs: bool,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub seccomp: crate::security::Profile,
    /// `None`: the request named no profile (the node's default applies).
    #[serde(default)]
    pub apparmor: Option<crate::security::Profile>,
    /// PID namespace mode asked for the container, and the container whose
    /// namespace TARGET joins.
    pub pid_mode: crate::pod::NsMode,
    pub target_id: String,
    /// SupplementalGroupsPolicy Strict: the image's /etc/group memberships
    /// are not added.
    #[serde(default)]
    pub strict_supplemental_groups: bool,
    /// `user:role:type:level` from SELinuxOption; empty when none.
    #[serde(default)]
    pub selinux_label: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub pod_id: String,
    pub config: ContainerConfig,
    pub image_id: String,
    /// The image as the kubelet should see it (a repo digest, else the ID).
    pub image_ref: String,
    /// The image's name when the container was created (its first tag), for
    /// status when the request named it by ID.
    #[serde(default)]
    pub image_name: String,
    pub top_layer: Option<String>,
    pub state: ContainerState,
    pub created_at_ns: i64,
    pub started_at_ns: i64,
    pub finished_at_ns: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    /// Full path of the CRI log file ("" when none).
    pub log_file: String,
    pub cgroup: String,
    pub init_pid: i32,
    /// /proc/<pid>/stat start time of init, to never signal a recycled pid.
    pub init_start_time: u64,
    pub stop_signal: String,
    /// The identity the workload runs as, for ContainerStatus.user.
    #[serde(default)]
    pub user: Option<ResolvedUser>,
    /// Restored from a checkpoint archive: its processes are CRIU's, not
    /// liblxc's, so liblxc has no command socket for it and exec joins
    /// init's namespaces directly (`crate::exec`).
    #[serde(default)]
    pub restored: bool,
}

/// uid, gid and supplementary groups after resolution in the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl ContainerConfig {
    pub fn name_key(&self, pod_id: &str) -> String {
        format!("ctr/{pod_id}/{}/{}", self.name, self.attempt)
    }
}

impl Record for ContainerRecord {
    const TABLE: &'static str = "containers";
    fn key(&self) -> String {
        self.id.clone()
    }
}

#[cfg(test)]
mod propagation_tests {
    use super::*;

    #[test]
    fn stored_mounts_keep_the_cri_number_on_disk() {
        let m = MountSpec {
            container_path: "/d".into(),
            host_path: "/h".into(),
            propagation: Propagation::Slave,
            ..Default::default()
        };
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["propagation"], 1);
        let back: MountSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn an_unknown_stored_number_reads_as_private_as_it_always_mounted() {
        let json = serde_json::json!({
            "container_path": "/d", "host_path": "/h", "readonly": false,
            "propagation": 9, "selinux_relabel": false,
        });
        let m: MountSpec = serde_json::from_value(json).unwrap();
        assert_eq!(m.propagation, Propagation::Private);
    }

    #[test]
    fn records_from_before_cdi_and_mount_flags_load() {
        let mut json = serde_json::to_value(ContainerConfig {
            mounts: vec![MountSpec::default()],
            ..Default::default()
        })
        .unwrap();
        json.as_object_mut().unwrap().remove("cdi_devices");
        json["mounts"][0].as_object_mut().unwrap().remove("flags");
        let old: ContainerConfig = serde_json::from_value(json).unwrap();
        assert!(old.cdi_devices.is_empty());
        assert_eq!(old.mounts[0].flags, MountFlags::default());
    }
}
