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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PortMapping {
    pub protocol: i32,
    pub container_port: i32,
    pub host_port: i32,
    pub host_ip: String,
}

/// What RunPodSandbox asked for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodConfig {
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
}

impl Record for PodRecord {
    const TABLE: &'static str = "pods";
    fn key(&self) -> String {
        self.id.clone()
    }
}
