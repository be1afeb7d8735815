use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::store::Record;

/// How a pod namespace is provided (CRI `NamespaceMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum NsMode {
    #[default]
    Pod,
    Container,
    Node,
    Target,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// A port mapping's transport protocol (CRI `Protocol`).
///
/// Host-port entries store it by name (`"tcp"`); a pod's stored config keeps
/// the CRI number it has always had (see [`PortMapping::protocol`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// From the CRI enum value (TCP = 0, UDP = 1, SCTP = 2).
    pub fn from_cri(value: i32) -> Option<Self> {
        match value {
            0 => Some(Proto::Tcp),
            1 => Some(Proto::Udp),
            2 => Some(Proto::Sctp),
            _ => None,
        }
    }

    /// The CRI enum value.
    pub fn to_cri(self) -> i32 {
        match self {
            Proto::Tcp => 0,
            Proto::Udp => 1,
            Proto::Sctp => 2,
        }
    }

    /// The name nftables and CNI plugins use.
    pub fn keyword(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// Stores a [`Proto`] as its CRI number, the on-disk form pod records had
/// before the field was typed, so records written by older versions load.
mod proto_as_cri {
    use super::Proto;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(p: &Proto, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(p.to_cri())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Proto, D::Error> {
        let n = i32::deserialize(d)?;
        Proto::from_cri(n).ok_or_else(|| D::Error::custom(format!("unknown protocol {n}")))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PortMapping {
    #[serde(with = "proto_as_cri")]
    pub protocol: Proto,
    pub container_port: i32,
    pub host_port: i32,
    pub host_ip: String,
}

/// What RunPodSandbox asked for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodConfig {
    /// The request's `PodSandboxConfig` as it came (protobuf, base64): a
    /// pod checkpoint carries it, and RestorePod validates it again like
    /// any request instead of trusting the archive's copy of this record.
    #[serde(default)]
    pub request: String,
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
    pub hostname: String,
    pub log_directory: String,
    pub dns: Option<Dns>,
    pub port_mappings: Vec<PortMapping>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub cgroup_parent: String,
    pub network: NsMode,
    pub pid: NsMode,
    pub ipc: NsMode,
    pub sysctls: BTreeMap<String, String>,
    pub runtime_handler: String,
    /// `hostUsers: false`: the pod's user namespace maps (mode POD).
    #[serde(default)]
    pub userns: Option<crate::sandbox::userns::UserNamespace>,
}

impl PodConfig {
    /// The key that makes a pod unique for the kubelet.
    pub fn name_key(&self) -> String {
        format!(
            "pod/{}/{}/{}/{}",
            self.namespace, self.name, self.uid, self.attempt
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodState {
    Ready,
    NotReady,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    pub id: String,
    pub config: PodConfig,
    pub state: PodState,
    pub created_at_ns: i64,
    /// Pinned namespaces (empty when the pod uses the host's).
    pub ns_dir: String,
    pub net_ns: Option<String>,
    pub ipc_ns: Option<String>,
    pub uts_ns: Option<String>,
    /// hostname, hosts, resolv.conf.
    pub files_dir: String,
    #[serde(default)]
    pub ips: Vec<String>,
    /// The pod's shared PID namespace (shareProcessNamespace), pinned.
    #[serde(default)]
    pub pid_ns: Option<String>,
    /// Host PID and start time of the infra process holding `pid_ns`.
    #[serde(default)]
    pub infra_pid: i32,
    #[serde(default)]
    pub infra_start_time: u64,
    /// The pod's pinned user namespace (`hostUsers: false`).
    #[serde(default)]
    pub user_ns: Option<String>,
    /// The pod-level resources the kubelet last announced with
    /// UpdatePodSandboxResources (in-place resize). The kubelet writes the
    /// pod's own cgroup itself; pvecri keeps them for status and `inspect`.
    #[serde(default)]
    pub resources: Option<PodResources>,
}

/// Pod-level resources: the pod overhead and the sum of its containers'.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodResources {
    pub overhead: crate::cgroups::limits::Resources,
    pub resources: crate::cgroups::limits::Resources,
}

impl Record for PodRecord {
    const TABLE: &'static str = "pods";
    fn key(&self) -> String {
        self.id.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_port_mappings_keep_the_cri_number_on_disk() {
        let p = PortMapping {
            protocol: Proto::Sctp,
            container_port: 80,
            host_port: 8080,
            host_ip: String::new(),
        };
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["protocol"], 2);
        let back: PortMapping = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
        let bogus = serde_json::json!({
            "protocol": 7, "container_port": 80, "host_port": 0, "host_ip": "",
        });
        assert!(serde_json::from_value::<PortMapping>(bogus).is_err());
    }
}
