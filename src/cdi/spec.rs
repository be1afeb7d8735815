//! The CDI spec file, as serde types.
//!
//! Unknown fields make a file invalid (as the reference implementation
//! loads it): an edit pvecri does not know must not be dropped silently.
//! Hooks, Intel RDT and network devices are only recognised, never
//! applied, so their contents are not parsed.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::Deserialize;

/// The spec versions pvecri reads (a leading `v` is allowed).
pub(crate) const KNOWN_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0",
];

/// One spec file: a kind and its devices.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Spec {
    pub cdi_version: String,
    /// `vendor/class`.
    pub kind: String,
    /// Read only to check its shape: nothing in pvecri consumes it.
    #[serde(default, rename = "annotations")]
    _annotations: BTreeMap<String, String>,
    pub devices: Vec<Device>,
    /// Applied once when any device of this spec is requested.
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

/// A device a container can ask for by `kind=name`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Device {
    pub name: String,
    #[serde(default, rename = "annotations")]
    _annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

/// What a device (or its spec) does to a container.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ContainerEdits {
    /// `NAME=value` entries.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub device_nodes: Vec<DeviceNode>,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    #[serde(default)]
    pub hooks: Vec<IgnoredAny>,
    #[serde(default)]
    pub intel_rdt: Option<IgnoredAny>,
    #[serde(default)]
    pub additional_gids: Vec<u32>,
    #[serde(default)]
    pub net_devices: Vec<IgnoredAny>,
}

/// A device node to give the container.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct DeviceNode {
    /// Path inside the container.
    pub path: String,
    /// Path on the node; `path` when absent.
    #[serde(default)]
    pub host_path: Option<String>,
    /// `c`, `u` (both character), `b` (block) or `p` (FIFO).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub major: Option<i64>,
    #[serde(default)]
    pub minor: Option<i64>,
    #[serde(default)]
    pub file_mode: Option<u32>,
    /// Device cgroup access, a subset of `rwm`; empty means `rwm`, `none`
    /// no access at all.
    #[serde(default)]
    pub permissions: Option<String>,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
}

/// A mount to give the container.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Mount {
    pub host_path: String,
    pub container_path: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

impl ContainerEdits {
    /// The kinds of edit in here that pvecri refuses to apply.
    pub(crate) fn unsupported(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.hooks.is_empty() {
            out.push("hooks");
        }
        if self.intel_rdt.is_some() {
            out.push("intelRdt");
        }
        if !self.net_devices.is_empty() {
            out.push("netDevices");
        }
        out
    }
}
