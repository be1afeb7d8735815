//! proto <-> domain conversions for pods and containers.

use std::collections::BTreeMap;
use std::collections::HashMap;

use tonic::Status;

use super::status::invalid;
use super::v1;
use crate::cgroups::limits::Resources;
use crate::container::{
    ContainerConfig, ContainerRecord, ContainerState, DeviceSpec, ImageVolume, MountSpec,
    Propagation, SecurityConfig,
};
use crate::pod::record::{Dns, PortMapping, Proto};
use crate::pod::{NsMode, PodConfig, PodRecord, PodState};

fn btree(m: &HashMap<String, String>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn hash(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Refuses control characters in a request string (`security::input`).
fn text(field: &str, value: &str) -> Result<(), Status> {
    crate::security::input::check_text(value).map_err(|e| invalid(field, e))
}

/// [`text`] for every key and value of a map.
fn text_map(field: &str, map: &HashMap<String, String>, values_too: bool) -> Result<(), Status> {
    for (k, v) in map {
        text(&format!("{field} key"), k)?;
        if values_too {
            text(&format!("{field}[{k:?}]"), v)?;
        }
    }
    Ok(())
}

fn ns_mode(mode: i32) -> NsMode {
    match v1::NamespaceMode::try_from(mode).unwrap_or(v1::NamespaceMode::Pod) {
        v1::NamespaceMode::Pod => NsMode::Pod,
        v1::NamespaceMode::Container => NsMode::Container,
        v1::NamespaceMode::Node => NsMode::Node,
        v1::NamespaceMode::Target => NsMode::Target,
    }
}

fn ns_mode_proto(mode: NsMode) -> i32 {
    (match mode {
        NsMode::Pod => v1::NamespaceMode::Pod,
        NsMode::Container => v1::NamespaceMode::Container,
        NsMode::Node => v1::NamespaceMode::Node,
        NsMode::Target => v1::NamespaceMode::Target,
    }) as i32
}

/// A RunPodSandbox request as a [`PodConfig`]. `handlers` are the runtime
/// handler names the configuration serves (`Config::runtime_handlers`): a
/// handler outside them is refused rather than run as a plain LXC
/// container.
pub(super) fn pod_config(
    req: &v1::RunPodSandboxRequest,
    handlers: &[String],
) -> Result<PodConfig, Status> {
    let c = req
        .config
        .as_ref()
        .ok_or_else(|| invalid("config", "a pod sandbox config is required"))?;
    let md = c
        .metadata
        .as_ref()
        .ok_or_else(|| invalid("config.metadata", "metadata is required"))?;
    if md.name.is_empty() {
        return Err(invalid("config.metadata.name", "a pod name is required"));
    }
    pod_strings(req, c, md, handlers)?;
    let linux = c.linux.as_ref();
    let opts = linux
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref());
    let userns = user_namespace(opts)?;
    Ok(PodConfig {
        request: encode_request(req),
        name: md.name.clone(),
        uid: md.uid.clone(),
        namespace: md.namespace.clone(),
        attempt: md.attempt,
        hostname: c.hostname.clone(),
        log_directory: c.log_directory.clone(),
        dns: c.dns_config.as_ref().map(|d| Dns {
            servers: d.servers.clone(),
            searches: d.searches.clone(),
            options: d.options.clone(),
        }),
        port_mappings: port_mappings(&c.port_mappings)?,
        labels: btree(&c.labels),
        annotations: btree(&c.annotations),
        cgroup_parent: linux.map(|l| l.cgroup_parent.clone()).unwrap_or_default(),
        network: opts.map(|o| ns_mode(o.network)).unwrap_or_default(),
        pid: opts.map(|o| ns_mode(o.pid)).unwrap_or(NsMode::Container),
        ipc: opts.map(|o| ns_mode(o.ipc)).unwrap_or_default(),
        sysctls: linux.map(|l| btree(&l.sysctls)).unwrap_or_default(),
        runtime_handler: req.runtime_handler.clone(),
        userns,
    })
}

/// Every string of a RunPodSandbox request that reaches a file, a path, a
/// command line or a log (`security::input`).
/// CRI port mappings as pod records; the protocol must be one CRI names.
/// Port numbers and host addresses are checked where the network is made.
fn port_mappings(list: &[v1::PortMapping]) -> Result<Vec<PortMapping>, Status> {
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            let protocol = Proto::from_cri(p.protocol).ok_or_else(|| {
                invalid(
                    &format!("config.port_mappings[{i}].protocol"),
                    format!("unknown protocol {}", p.protocol),
                )
            })?;
            Ok(PortMapping {
                protocol,
                container_port: p.container_port,
                host_port: p.host_port,
                host_ip: p.host_ip.clone(),
            })
        })
        .collect()
}

fn pod_strings(
    req: &v1::RunPodSandboxRequest,
    c: &v1::PodSandboxConfig,
    md: &v1::PodSandboxMetadata,
    handlers: &[String],
) -> Result<(), Status> {
    text("config.metadata.name", &md.name)?;
    text("config.metadata.uid", &md.uid)?;
    text("config.metadata.namespace", &md.namespace)?;
    text("config.hostname", &c.hostname)?;
    if !c.log_directory.is_empty() {
        crate::security::paths::check_absolute(&c.log_directory)
            .map_err(|e| invalid("config.log_directory", e))?;
    }
    if let Some(dns) = &c.dns_config {
        for (field, list) in [
            ("servers", &dns.servers),
            ("searches", &dns.searches),
            ("options", &dns.options),
        ] {
            crate::security::input::check_all(list)
                .map_err(|e| invalid(&format!("config.dns_config.{field}"), e))?;
        }
    }
    for (i, p) in c.port_mappings.iter().enumerate() {
        text(&format!("config.port_mappings[{i}].host_ip"), &p.host_ip)?;
    }
    text_map("config.labels", &c.labels, true)?;
    text_map("config.annotations", &c.annotations, false)?;
    if let Some(linux) = &c.linux {
        crate::security::input::check_cgroup_path(&linux.cgroup_parent)
            .map_err(|e| invalid("config.linux.cgroup_parent", e))?;
        text_map("config.linux.sysctls", &linux.sysctls, true)?;
    }
    text("runtime_handler", &req.runtime_handler)?;
    if !handlers.contains(&req.runtime_handler) {
        return Err(invalid(
            "runtime_handler",
            format!(
                "{:?} is not a runtime handler of pvecri (it has {:?}; `runtime_handlers` in the config adds names)",
                req.runtime_handler, handlers
            ),
        ));
    }
    Ok(())
}

fn userns_proto(ids: Option<&crate::sandbox::userns::UserNamespace>) -> v1::UserNamespace {
    let mapping = |m: crate::sandbox::userns::IdMapping| v1::IdMapping {
        container_id: m.container_id,
        host_id: m.host_id,
        length: m.length,
    };
    match ids {
        None => v1::UserNamespace {
            mode: v1::NamespaceMode::Node as i32,
            ..Default::default()
        },
        Some(ids) => v1::UserNamespace {
            mode: v1::NamespaceMode::Pod as i32,
            uids: vec![mapping(ids.uids)],
            gids: vec![mapping(ids.gids)],
        },
    }
}

const USERNS_FIELD: &str = "config.linux.security_context.namespace_options.userns_options";

/// `hostUsers: false` arrives as mode POD with exactly one uid and one gid
/// range that maps container ID 0; NODE (or nothing) is the host's user
/// namespace. CONTAINER and TARGET have no meaning for user namespaces.
fn user_namespace(
    opts: Option<&v1::NamespaceOption>,
) -> Result<Option<crate::sandbox::userns::UserNamespace>, Status> {
    let Some(userns) = opts.and_then(|o| o.userns_options.as_ref()) else {
        return Ok(None);
    };
    match v1::NamespaceMode::try_from(userns.mode) {
        Ok(v1::NamespaceMode::Node) => return Ok(None),
        Ok(v1::NamespaceMode::Pod) => {}
        Ok(other) => {
            return Err(invalid(
                &format!("{USERNS_FIELD}.mode"),
                format!(
                    "{} is not supported for user namespaces (POD or NODE only)",
                    other.as_str_name()
                ),
            ))
        }
        Err(_) => {
            return Err(invalid(
                &format!("{USERNS_FIELD}.mode"),
                format!("unknown mode {}", userns.mode),
            ))
        }
    }
    let opts = opts.expect("userns_options came from opts");
    for (name, mode) in [
        ("network", opts.network),
        ("pid", opts.pid),
        ("ipc", opts.ipc),
    ] {
        if mode == v1::NamespaceMode::Node as i32 {
            return Err(invalid(
                &format!("config.linux.security_context.namespace_options.{name}"),
                "a pod with its own user namespace cannot use the node's namespaces",
            ));
        }
    }
    Ok(Some(crate::sandbox::userns::UserNamespace {
        uids: one_mapping("uids", &userns.uids)?,
        gids: one_mapping("gids", &userns.gids)?,
    }))
}

fn one_mapping(
    what: &str,
    mappings: &[v1::IdMapping],
) -> Result<crate::sandbox::userns::IdMapping, Status> {
    let field = format!("{USERNS_FIELD}.{what}");
    let [m] = mappings else {
        return Err(invalid(
            &field,
            format!(
                "exactly one mapping is supported, {} were given",
                mappings.len()
            ),
        ));
    };
    if m.container_id != 0 {
        return Err(invalid(
            &field,
            format!(
                "the mapping must start at container ID 0 (it starts at {})",
                m.container_id
            ),
        ));
    }
    if m.length == 0 || m.host_id.checked_add(m.length).is_none() {
        return Err(invalid(
            &field,
            format!(
                "host IDs {}..+{} are not a valid range",
                m.host_id, m.length
            ),
        ));
    }
    Ok(crate::sandbox::userns::IdMapping {
        container_id: m.container_id,
        host_id: m.host_id,
        length: m.length,
    })
}

fn pod_state(s: PodState) -> i32 {
    (match s {
        PodState::Ready => v1::PodSandboxState::SandboxReady,
        PodState::NotReady => v1::PodSandboxState::SandboxNotready,
    }) as i32
}

pub(super) fn pod_state_filter(s: i32) -> Option<PodState> {
    match v1::PodSandboxState::try_from(s).ok()? {
        v1::PodSandboxState::SandboxReady => Some(PodState::Ready),
        v1::PodSandboxState::SandboxNotready => Some(PodState::NotReady),
    }
}

fn pod_metadata(p: &PodRecord) -> v1::PodSandboxMetadata {
    v1::PodSandboxMetadata {
        name: p.config.name.clone(),
        uid: p.config.uid.clone(),
        namespace: p.config.namespace.clone(),
        attempt: p.config.attempt,
    }
}

pub(super) fn pod_status(p: &PodRecord) -> v1::PodSandboxStatus {
    v1::PodSandboxStatus {
        id: p.id.clone(),
        metadata: Some(pod_metadata(p)),
        state: pod_state(p.state),
        created_at: p.created_at_ns,
        network: Some(v1::PodSandboxNetworkStatus {
            ip: p.ips.first().cloned().unwrap_or_default(),
            additional_ips: p
                .ips
                .iter()
                .skip(1)
                .map(|ip| v1::PodIp { ip: ip.clone() })
                .collect(),
        }),
        linux: Some(v1::LinuxPodSandboxStatus {
            namespaces: Some(v1::Namespace {
                options: Some(v1::NamespaceOption {
                    network: ns_mode_proto(p.config.network),
                    pid: ns_mode_proto(p.config.pid),
                    ipc: ns_mode_proto(p.config.ipc),
                    userns_options: Some(userns_proto(p.config.userns.as_ref())),
                    ..Default::default()
                }),
            }),
        }),
        labels: hash(&p.config.labels),
        annotations: hash(&p.config.annotations),
        runtime_handler: p.config.runtime_handler.clone(),
    }
}

pub(super) fn pod_summary(p: &PodRecord) -> v1::PodSandbox {
    v1::PodSandbox {
        id: p.id.clone(),
        metadata: Some(pod_metadata(p)),
        state: pod_state(p.state),
        created_at: p.created_at_ns,
        labels: hash(&p.config.labels),
        annotations: hash(&p.config.annotations),
        runtime_handler: p.config.runtime_handler.clone(),
    }
}

pub(super) fn resources(r: Option<&v1::LinuxContainerResources>) -> Resources {
    let Some(r) = r else {
        return Resources::default();
    };
    Resources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        pids_limit: 0,
        oom_score_adj: r.oom_score_adj,
        unified: btree(&r.unified),
    }
}

fn resources_proto(r: &Resources) -> v1::LinuxContainerResources {
    v1::LinuxContainerResources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        unified: hash(&r.unified),
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
        ..Default::default()
    }
}

pub(super) fn container_config(c: &v1::ContainerConfig) -> Result<ContainerConfig, Status> {
    let md = c
        .metadata
        .as_ref()
        .ok_or_else(|| invalid("config.metadata", "metadata is required"))?;
    if md.name.is_empty() {
        return Err(invalid(
            "config.metadata.name",
            "a container name is required",
        ));
    }
    let image = c
        .image
        .as_ref()
        .map(|i| i.image.clone())
        .unwrap_or_default();
    if image.is_empty() {
        return Err(invalid("config.image.image", "an image is required"));
    }
    // A path is a checkpoint archive to restore (CRI-O's convention; no
    // image reference starts with a slash).
    if image.starts_with('/') {
        archive_path("config.image.image", &image)?;
    }
    container_strings(c, md)?;
    let linux = c.linux.as_ref();
    let sc = linux.and_then(|l| l.security_context.as_ref());
    let privileged = sc.is_some_and(|s| s.privileged);
    let devices = devices(&c.devices)?;
    let cdi_devices = cdi_devices(&c.cdi_devices)?;
    let mut mounts = Vec::new();
    for (i, m) in c.mounts.iter().enumerate() {
        crate::security::paths::check_mount_target(&m.container_path, privileged)
            .map_err(|e| invalid(&format!("config.mounts[{i}].container_path"), e))?;
        text(&format!("config.mounts[{i}].host_path"), &m.host_path)?;
        let propagation = Propagation::from_cri(m.propagation).ok_or_else(|| {
            invalid(
                &format!("config.mounts[{i}].propagation"),
                format!("unknown mount propagation {}", m.propagation),
            )
        })?;
        let image = m.image.as_ref().filter(|i| !i.image.is_empty());
        let image = match image {
            Some(spec) => Some(image_volume(i, m, spec)?),
            None => {
                crate::security::paths::check_absolute(&m.host_path)
                    .map_err(|e| invalid(&format!("config.mounts[{i}].host_path"), e))?;
                None
            }
        };
        if m.recursive_read_only {
            let field = format!("config.mounts[{i}].recursive_read_only");
            if !m.readonly {
                return Err(invalid(&field, "needs readonly: true"));
            }
            if propagation != Propagation::Private {
                return Err(invalid(
                    &field,
                    "needs private propagation (mounts arriving later would be writable)",
                ));
            }
        }
        mounts.push(MountSpec {
            container_path: m.container_path.clone(),
            host_path: m.host_path.clone(),
            readonly: m.readonly,
            propagation,
            selinux_relabel: m.selinux_relabel,
            recursive_read_only: m.recursive_read_only,
            image,
            flags: Default::default(),
        });
    }
    if c.log_path.split('/').any(|p| p == "..") || c.log_path.starts_with('/') {
        return Err(invalid(
            "config.log_path",
            format!(
                "{:?} must be relative to the pod's log directory, without ..",
                c.log_path
            ),
        ));
    }
    let security = security_config(sc)?;
    Ok(ContainerConfig {
        request: encode_request(c),
        name: md.name.clone(),
        attempt: md.attempt,
        image,
        user_specified_image: c
            .image
            .as_ref()
            .map(|i| i.user_specified_image.clone())
            .unwrap_or_default(),
        command: c.command.clone(),
        args: c.args.clone(),
        working_dir: c.working_dir.clone(),
        envs: c
            .envs
            .iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    String::from_utf8_lossy(&kv.value).into_owned(),
                )
            })
            .collect(),
        mounts,
        labels: btree(&c.labels),
        annotations: btree(&c.annotations),
        log_path: c.log_path.clone(),
        stdin: c.stdin,
        stdin_once: c.stdin_once,
        tty: c.tty,
        resources: checked_resources(
            "config.linux.resources",
            linux.and_then(|l| l.resources.as_ref()),
        )?,
        devices,
        cdi_devices,
        run_as_user: sc.and_then(|s| s.run_as_user.as_ref()).map(|v| v.value),
        run_as_group: sc.and_then(|s| s.run_as_group.as_ref()).map(|v| v.value),
        run_as_username: sc.map(|s| s.run_as_username.clone()).unwrap_or_default(),
        supplemental_groups: sc
            .map(|s| s.supplemental_groups.clone())
            .unwrap_or_default(),
        privileged,
        security,
    })
}

/// Every string of a CreateContainer request that reaches a config file, a
/// path, a command line or a log and has no stricter check of its own below
/// (`security::input`). Commands and environment values may span lines
/// (scripts, certificates) but hold no NUL.
fn container_strings(c: &v1::ContainerConfig, md: &v1::ContainerMetadata) -> Result<(), Status> {
    use crate::security::input::{check_env_name, check_no_nul};
    text("config.metadata.name", &md.name)?;
    if let Some(image) = &c.image {
        text("config.image.image", &image.image)?;
        text(
            "config.image.user_specified_image",
            &image.user_specified_image,
        )?;
    }
    for (field, list) in [("config.command", &c.command), ("config.args", &c.args)] {
        for (i, a) in list.iter().enumerate() {
            check_no_nul(a).map_err(|e| invalid(&format!("{field}[{i}]"), e))?;
        }
    }
    text("config.working_dir", &c.working_dir)?;
    for (i, kv) in c.envs.iter().enumerate() {
        check_env_name(&kv.key).map_err(|e| invalid(&format!("config.envs[{i}].key"), e))?;
        check_no_nul(&String::from_utf8_lossy(&kv.value))
            .map_err(|e| invalid(&format!("config.envs[{i}].value"), e))?;
    }
    text("config.log_path", &c.log_path)?;
    text_map("config.labels", &c.labels, true)?;
    text_map("config.annotations", &c.annotations, false)?;
    if let Some(sc) = c.linux.as_ref().and_then(|l| l.security_context.as_ref()) {
        text(
            "config.linux.security_context.run_as_username",
            &sc.run_as_username,
        )?;
    }
    Ok(())
}

/// Exec and attach commands become an argument vector: no NUL.
pub(super) fn exec_command(cmd: &[String]) -> Result<(), Status> {
    if cmd.is_empty() {
        return Err(invalid("cmd", "a command is required"));
    }
    for (i, a) in cmd.iter().enumerate() {
        crate::security::input::check_no_nul(a).map_err(|e| invalid(&format!("cmd[{i}]"), e))?;
    }
    Ok(())
}

/// A checkpoint archive's path: absolute, normalised and naming a file (no
/// `.` or `..` component, no trailing slash, no control character).
fn archive_path(field: &str, loc: &str) -> Result<(), Status> {
    text(field, loc)?;
    if !loc.starts_with('/') {
        return Err(invalid(field, format!("{loc:?} is not an absolute path")));
    }
    if loc.ends_with('/') {
        return Err(invalid(
            field,
            format!("{loc:?} names a directory, not a file"),
        ));
    }
    if loc
        .split('/')
        .skip(1)
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(invalid(
            field,
            format!("{loc:?} is not normalised (empty, . or .. components)"),
        ));
    }
    Ok(())
}

/// A request as stored in its record (`PodConfig::request`).
fn encode_request(m: &impl prost::Message) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(m.encode_to_vec())
}

/// A stored request decoded again (`field` names it in the error).
fn decode_request<M: prost::Message + Default>(field: &str, text: &str) -> Result<M, Status> {
    use base64::Engine;
    if text.is_empty() {
        return Err(invalid(
            field,
            "the archive has no CRI request for it (made by an older pvecri): pass a config",
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| invalid(field, format!("not base64: {e}")))?;
    M::decode(bytes.as_slice()).map_err(|e| invalid(field, format!("not a CRI request: {e}")))
}

/// The pod config a restore runs: the caller's, else the checkpointed
/// pod's original RunPodSandbox request, validated again like any
/// request (an archive's copy of a record is never trusted).
pub(super) fn restored_pod_config(
    req: &v1::RestorePodRequest,
    stored: &str,
    handlers: &[String],
) -> Result<PodConfig, Status> {
    let run = match &req.config {
        Some(c) => v1::RunPodSandboxRequest {
            config: Some(c.clone()),
            runtime_handler: req.runtime_handler.clone(),
        },
        None => decode_request("pod.json pod request", stored)?,
    };
    pod_config(&run, handlers)
}

/// A restored container's config: the caller's for its name, else its
/// original CreateContainer request, validated again; the image is the
/// archive's.
pub(super) fn restored_container_config(
    req: &v1::RestorePodRequest,
    name: &str,
    stored: &str,
    archive: &std::path::Path,
) -> Result<ContainerConfig, Status> {
    let mut c = match req
        .container_configs
        .iter()
        .find(|c| c.metadata.as_ref().is_some_and(|m| m.name == name))
    {
        Some(c) => c.clone(),
        None => decode_request::<v1::ContainerConfig>(
            &format!("pod.json request of container {name:?}"),
            stored,
        )?,
    };
    c.image = Some(v1::ImageSpec {
        image: archive.display().to_string(),
        ..Default::default()
    });
    container_config(&c)
}

/// The most pre-dumps a CheckpointPod may ask for: each rereads the
/// container's whole memory map.
const MAX_PRE_COPY: u32 = 8;

/// CheckpointPod's request: `output_path` an archive path as for
/// CheckpointContainer, the container IDs non-empty strings.
pub(super) fn pod_checkpoint_request(
    req: &v1::CheckpointPodRequest,
) -> Result<crate::runtime::PodCheckpointRequest, Status> {
    if req.output_path.is_empty() {
        return Err(invalid("output_path", "a path for the archive is required"));
    }
    archive_path("output_path", &req.output_path)?;
    for (i, id) in req.container_ids.iter().enumerate() {
        if id.is_empty() {
            return Err(invalid(&format!("container_ids[{i}]"), "an ID is required"));
        }
        text(&format!("container_ids[{i}]"), id)?;
    }
    let leave_running = match req.options.get("leave-running").map(String::as_str) {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(invalid(
                "options[\"leave-running\"]",
                format!("{other:?} is neither true nor false"),
            ))
        }
    };
    let pre_copy = match req.options.get("pre-copy") {
        None => 0,
        Some(n) => match n.parse::<u32>() {
            Ok(n) if n <= MAX_PRE_COPY => n,
            _ => {
                return Err(invalid(
                    "options[\"pre-copy\"]",
                    format!("{n:?} is not a number of pre-dumps from 0 to {MAX_PRE_COPY}"),
                ))
            }
        },
    };
    if let Some(key) = req
        .options
        .keys()
        .find(|k| *k != "leave-running" && *k != "pre-copy")
    {
        return Err(invalid(
            "options",
            format!("unknown option {key:?} (known: leave-running, pre-copy)"),
        ));
    }
    Ok(crate::runtime::PodCheckpointRequest {
        output: std::path::PathBuf::from(&req.output_path),
        containers: req.container_ids.clone(),
        leave_running,
        pre_copy,
    })
}

/// RestorePod's own configs, checked before the archive is unpacked:
/// the pod's as RunPodSandbox's, each container's as CreateContainer's
/// (the image is the archive's, so any stands in for it).
pub(super) fn restore_pod_configs(
    req: &v1::RestorePodRequest,
    handlers: &[String],
) -> Result<(), Status> {
    if let Some(c) = &req.config {
        pod_config(
            &v1::RunPodSandboxRequest {
                config: Some(c.clone()),
                runtime_handler: req.runtime_handler.clone(),
            },
            handlers,
        )?;
    }
    for c in &req.container_configs {
        let mut c = c.clone();
        c.image = Some(v1::ImageSpec {
            image: "/restore.tar".into(),
            ..Default::default()
        });
        container_config(&c)?;
    }
    Ok(())
}

/// RestorePod's archive path, checked like a checkpoint location.
pub(super) fn restore_pod_archive(
    req: &v1::RestorePodRequest,
) -> Result<std::path::PathBuf, Status> {
    if req.checkpoint_path.is_empty() {
        return Err(invalid("checkpoint_path", "the archive's path is required"));
    }
    archive_path("checkpoint_path", &req.checkpoint_path)?;
    Ok(std::path::PathBuf::from(&req.checkpoint_path))
}

/// CheckpointContainer's request as the runtime takes it: `location` an
/// absolute, normalised path naming a file (no `.` or `..` component, no
/// trailing slash, no control character); `timeout` in seconds, 0 for the
/// default. Whether its directory exists is checked by the runtime.
pub(super) fn checkpoint_request(
    req: &v1::CheckpointContainerRequest,
) -> Result<crate::runtime::CheckpointRequest, Status> {
    const FIELD: &str = "location";
    let loc = &req.location;
    if loc.is_empty() {
        return Err(invalid(FIELD, "a path for the archive is required"));
    }
    archive_path(FIELD, loc)?;
    if req.timeout < 0 {
        return Err(invalid("timeout", "must not be negative"));
    }
    Ok(crate::runtime::CheckpointRequest {
        location: std::path::PathBuf::from(loc),
        timeout: std::time::Duration::from_secs(req.timeout as u64),
        leave_running: true,
        pre_copy: 0,
    })
}

/// CRI devices: absolute paths without control characters, the container
/// path under /dev, permissions a non-empty subset of `rwm` (empty means
/// all three) (`container::checks`). Whether the host path is a device is
/// checked at CreateContainer.
fn devices(list: &[v1::Device]) -> Result<Vec<DeviceSpec>, Status> {
    use crate::container::checks;
    use crate::security::paths::check_absolute;
    let mut out = Vec::with_capacity(list.len());
    for (i, d) in list.iter().enumerate() {
        check_absolute(&d.host_path)
            .map_err(|e| invalid(&format!("config.devices[{i}].host_path"), e))?;
        checks::device_target(&d.container_path)
            .map_err(|e| invalid(&format!("config.devices[{i}].container_path"), e))?;
        let permissions = checks::device_permissions(&d.permissions)
            .map_err(|e| invalid(&format!("config.devices[{i}].permissions"), e))?;
        out.push(DeviceSpec {
            host_path: d.host_path.clone(),
            container_path: d.container_path.clone(),
            permissions,
        });
    }
    Ok(out)
}

/// CDI devices by fully-qualified name (`vendor/class=device`), checked
/// here and resolved against the node's specs at CreateContainer. Only
/// this field, which the kubelet fills from device plugins and DRA, is
/// read: the `cdi.k8s.io/*` annotations are the pod author's to set.
fn cdi_devices(list: &[v1::CdiDevice]) -> Result<Vec<String>, Status> {
    list.iter()
        .enumerate()
        .map(|(i, d)| {
            crate::cdi::parse_name(&d.name)
                .map(|_| d.name.clone())
                .map_err(|e| invalid(&format!("config.CDI_devices[{i}].name"), e))
        })
        .collect()
}

/// [`resources`] of the request field `field`, with the strings that become
/// cgroup settings checked: cpusets are lists of numbers and ranges, and
/// `unified` may only name files of the resource controllers. Device access
/// is pvecri's decision alone (`devices.*` would open the device cgroup)
/// and `cgroup.*` files shape the hierarchy.
pub(super) fn checked_resources(
    field: &str,
    r: Option<&v1::LinuxContainerResources>,
) -> Result<Resources, Status> {
    let out = resources(r);
    for (name, value) in [
        ("cpuset_cpus", &out.cpuset_cpus),
        ("cpuset_mems", &out.cpuset_mems),
    ] {
        crate::cgroups::limits::check_cpuset(value)
            .map_err(|e| invalid(&format!("{field}.{name}"), e))?;
    }
    for (key, value) in &out.unified {
        crate::cgroups::limits::check_unified(key, value)
            .map_err(|e| invalid(&format!("{field}.unified[{key:?}]"), e))?;
    }
    Ok(out)
}

/// An image volume: read-only (the kubelet always asks so; anything else is
/// refused, as the CRI asks), with a relative sub path inside the image.
fn image_volume(i: usize, m: &v1::Mount, spec: &v1::ImageSpec) -> Result<ImageVolume, Status> {
    if !m.readonly {
        return Err(invalid(
            &format!("config.mounts[{i}].readonly"),
            "an image volume must be read-only",
        ));
    }
    let sub = &m.image_sub_path;
    text(&format!("config.mounts[{i}].image.image"), &spec.image)?;
    text(&format!("config.mounts[{i}].image_sub_path"), sub)?;
    if sub.starts_with('/') || sub.split('/').any(|c| c == "..") {
        return Err(invalid(
            &format!("config.mounts[{i}].image_sub_path"),
            format!("{sub:?} must be a relative path inside the image, without .."),
        ));
    }
    Ok(ImageVolume {
        image: spec.image.clone(),
        sub_path: sub.clone(),
        ..Default::default()
    })
}

/// The container security context, validated: paths absolute, profiles
/// resolved from the structured field or the deprecated string form (still
/// sent by older kubelets, hence the allow).
#[allow(deprecated)]
fn security_config(
    sc: Option<&v1::LinuxContainerSecurityContext>,
) -> Result<SecurityConfig, Status> {
    use crate::security::paths::check_absolute;
    let Some(sc) = sc else {
        return Ok(SecurityConfig::default());
    };
    let caps = sc.capabilities.clone().unwrap_or_default();
    for (field, names) in [
        ("add_capabilities", &caps.add_capabilities),
        ("drop_capabilities", &caps.drop_capabilities),
        ("add_ambient_capabilities", &caps.add_ambient_capabilities),
    ] {
        for n in names {
            if !n.eq_ignore_ascii_case("ALL") {
                crate::security::caps::parse(n).map_err(|e| {
                    invalid(
                        &format!("config.linux.security_context.capabilities.{field}"),
                        e,
                    )
                })?;
            }
        }
    }
    for (field, paths) in [
        ("masked_paths", &sc.masked_paths),
        ("readonly_paths", &sc.readonly_paths),
    ] {
        for p in paths {
            check_absolute(p)
                .map_err(|e| invalid(&format!("config.linux.security_context.{field}"), e))?;
        }
    }
    // No seccomp profile means none, as the CRI defines it (the kubelet
    // sends RuntimeDefault when the node defaults to it).
    let seccomp = profile(sc.seccomp.as_ref(), &sc.seccomp_profile_path)
        .map_err(|e| invalid("config.linux.security_context.seccomp", e))?
        .unwrap_or_default();
    if let crate::security::Profile::Localhost(path) = &seccomp {
        check_absolute(path)
            .map_err(|e| invalid("config.linux.security_context.seccomp.localhost_ref", e))?;
    }
    let apparmor = profile(sc.apparmor.as_ref(), &sc.apparmor_profile)
        .map_err(|e| invalid("config.linux.security_context.apparmor", e))?;
    if let Some(crate::security::Profile::Localhost(name)) = &apparmor {
        text("config.linux.security_context.apparmor.localhost_ref", name)?;
    }
    if let Some(o) = &sc.selinux_options {
        for (field, value, colon_ok) in [
            ("user", &o.user, false),
            ("role", &o.role, false),
            ("type", &o.r#type, false),
            ("level", &o.level, true),
        ] {
            let field = format!("config.linux.security_context.selinux_options.{field}");
            // SELinux names are identifiers; levels add `:`, `,`, `-` and
            // `.` (`s0-s0:c0.c1023`).
            let allowed = |c: char| {
                c.is_ascii_alphanumeric()
                    || c == '_'
                    || c == '.'
                    || (colon_ok && matches!(c, ':' | ',' | '-'))
            };
            if !value.chars().all(allowed) {
                return Err(invalid(&field, format!("{value:?} is not an SELinux name")));
            }
        }
    }
    let ns = sc.namespace_options.as_ref();
    Ok(SecurityConfig {
        add_capabilities: caps.add_capabilities,
        drop_capabilities: caps.drop_capabilities,
        add_ambient_capabilities: caps.add_ambient_capabilities,
        readonly_rootfs: sc.readonly_rootfs,
        no_new_privs: sc.no_new_privs,
        masked_paths: sc.masked_paths.clone(),
        readonly_paths: sc.readonly_paths.clone(),
        seccomp,
        apparmor,
        pid_mode: ns.map(|n| ns_mode(n.pid)).unwrap_or_default(),
        target_id: ns.map(|n| n.target_id.clone()).unwrap_or_default(),
        strict_supplemental_groups: sc.supplemental_groups_policy
            == v1::SupplementalGroupsPolicy::Strict as i32,
        selinux_label: sc
            .selinux_options
            .as_ref()
            .filter(|o| {
                !(o.user.is_empty()
                    && o.role.is_empty()
                    && o.r#type.is_empty()
                    && o.level.is_empty())
            })
            .map(|o| format!("{}:{}:{}:{}", o.user, o.role, o.r#type, o.level))
            .unwrap_or_default(),
    })
}

/// CRI's `SecurityProfile`, or when it is absent the deprecated string
/// (`runtime/default`, `docker/default`, `unconfined`, `localhost/<ref>`);
/// `None` when the request names no profile at all (the kubelet's way of
/// leaving the choice to the runtime).
fn profile(
    structured: Option<&v1::SecurityProfile>,
    legacy: &str,
) -> Result<Option<crate::security::Profile>, String> {
    use crate::security::Profile;
    use v1::security_profile::ProfileType;
    if let Some(p) = structured {
        return match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::RuntimeDefault) => Ok(Some(Profile::RuntimeDefault)),
            Ok(ProfileType::Unconfined) => Ok(Some(Profile::Unconfined)),
            Ok(ProfileType::Localhost) if p.localhost_ref.is_empty() => {
                Err("a Localhost profile needs localhost_ref".to_owned())
            }
            // The legacy field's "localhost/" prefix is accepted here too
            // (critest sends it; containerd and CRI-O strip it).
            Ok(ProfileType::Localhost) => match p.localhost_ref.strip_prefix("localhost/") {
                Some("") => Err("a Localhost profile needs a name after localhost/".to_owned()),
                Some(name) => Ok(Some(Profile::Localhost(name.to_owned()))),
                None => Ok(Some(Profile::Localhost(p.localhost_ref.clone()))),
            },
            Err(_) => Err(format!("unknown profile type {}", p.profile_type)),
        };
    }
    match legacy {
        "" => Ok(None),
        "unconfined" => Ok(Some(Profile::Unconfined)),
        "runtime/default" | "docker/default" => Ok(Some(Profile::RuntimeDefault)),
        other => match other.strip_prefix("localhost/") {
            Some(r) if !r.is_empty() => Ok(Some(Profile::Localhost(r.to_owned()))),
            _ => Err(format!("unknown profile {other:?}")),
        },
    }
}

fn container_state(s: ContainerState) -> i32 {
    (match s {
        ContainerState::Created => v1::ContainerState::ContainerCreated,
        ContainerState::Running => v1::ContainerState::ContainerRunning,
        ContainerState::Exited => v1::ContainerState::ContainerExited,
        ContainerState::Unknown => v1::ContainerState::ContainerUnknown,
    }) as i32
}

pub(super) fn container_state_filter(s: i32) -> Option<ContainerState> {
    match v1::ContainerState::try_from(s).ok()? {
        v1::ContainerState::ContainerCreated => Some(ContainerState::Created),
        v1::ContainerState::ContainerRunning => Some(ContainerState::Running),
        v1::ContainerState::ContainerExited => Some(ContainerState::Exited),
        v1::ContainerState::ContainerUnknown => Some(ContainerState::Unknown),
    }
}

fn container_metadata(c: &ContainerRecord) -> v1::ContainerMetadata {
    v1::ContainerMetadata {
        name: c.config.name.clone(),
        attempt: c.config.attempt,
    }
}

/// The container's image as a name a user recognises: what they wrote in
/// the pod spec, else the image's tag, else the request's reference (the
/// kubelet copies this into the pod's status; the ID is in `image_ref` and
/// `image_id`).
fn image_spec(c: &ContainerRecord) -> v1::ImageSpec {
    let image = [&c.config.user_specified_image, &c.image_name]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or(&c.config.image);
    v1::ImageSpec {
        image: image.clone(),
        user_specified_image: c.config.user_specified_image.clone(),
        ..Default::default()
    }
}

pub(super) fn container_summary(c: &ContainerRecord) -> v1::Container {
    v1::Container {
        id: c.id.clone(),
        pod_sandbox_id: c.pod_id.clone(),
        metadata: Some(container_metadata(c)),
        image: Some(image_spec(c)),
        image_ref: c.image_ref.clone(),
        state: container_state(c.state),
        created_at: c.created_at_ns,
        labels: hash(&c.config.labels),
        annotations: hash(&c.config.annotations),
        image_id: c.image_id.clone(),
    }
}

pub(super) fn container_status(c: &ContainerRecord) -> v1::ContainerStatus {
    v1::ContainerStatus {
        id: c.id.clone(),
        metadata: Some(container_metadata(c)),
        state: container_state(c.state),
        created_at: c.created_at_ns,
        started_at: c.started_at_ns,
        finished_at: c.finished_at_ns,
        exit_code: c.exit_code,
        image: Some(image_spec(c)),
        image_ref: c.image_ref.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        labels: hash(&c.config.labels),
        annotations: hash(&c.config.annotations),
        mounts: c
            .config
            .mounts
            .iter()
            .map(|m| v1::Mount {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
                readonly: m.readonly,
                selinux_relabel: m.selinux_relabel,
                propagation: m.propagation.to_cri(),
                image: m.image.as_ref().map(|iv| v1::ImageSpec {
                    image: iv.image.clone(),
                    image_ref: iv.image_ref.clone(),
                    ..Default::default()
                }),
                image_sub_path: m
                    .image
                    .as_ref()
                    .map(|iv| iv.sub_path.clone())
                    .unwrap_or_default(),
                ..Default::default()
            })
            .collect(),
        log_path: c.log_file.clone(),
        resources: Some(v1::ContainerResources {
            linux: Some(resources_proto(&c.config.resources)),
            ..Default::default()
        }),
        image_id: c.image_id.clone(),
        user: c.user.as_ref().map(|u| v1::ContainerUser {
            linux: Some(v1::LinuxContainerUser {
                uid: i64::from(u.uid),
                gid: i64::from(u.gid),
                // The primary group counts, as `id -G` shows it.
                supplemental_groups: std::iter::once(u.gid)
                    .chain(u.groups.iter().copied().filter(|g| *g != u.gid))
                    .map(i64::from)
                    .collect(),
            }),
        }),
        ..Default::default()
    }
}

// ---- Stats and events (issue 8) ----

fn u64v(v: u64) -> Option<v1::UInt64Value> {
    Some(v1::UInt64Value { value: v })
}

pub(super) fn container_attributes(c: &ContainerRecord) -> v1::ContainerAttributes {
    v1::ContainerAttributes {
        id: c.id.clone(),
        metadata: Some(container_metadata(c)),
        labels: hash(&c.config.labels),
        annotations: hash(&c.config.annotations),
    }
}

pub(super) fn pod_attributes(p: &PodRecord) -> v1::PodSandboxAttributes {
    v1::PodSandboxAttributes {
        id: p.id.clone(),
        metadata: Some(pod_metadata(p)),
        labels: hash(&p.config.labels),
        annotations: hash(&p.config.annotations),
    }
}

fn cpu_usage(
    at_ns: i64,
    s: &crate::cgroups::stats::CgroupStats,
    nano_cores: Option<u64>,
) -> v1::CpuUsage {
    v1::CpuUsage {
        timestamp: at_ns,
        usage_core_nano_seconds: s.cpu_usage_ns.and_then(u64v),
        usage_nano_cores: nano_cores.and_then(u64v),
        psi: s.pressure.cpu.map(psi_stats),
    }
}

fn psi_stats(p: crate::cgroups::psi::Psi) -> v1::PsiStats {
    let data = |l: crate::cgroups::psi::PsiLine| v1::PsiData {
        total: l.total_us,
        avg10: l.avg10,
        avg60: l.avg60,
        avg300: l.avg300,
    };
    v1::PsiStats {
        full: p.full.map(data),
        some: Some(data(p.some)),
    }
}

fn io_usage(at_ns: i64, s: &crate::cgroups::stats::CgroupStats) -> Option<v1::IoUsage> {
    s.pressure.io.map(|p| v1::IoUsage {
        timestamp: at_ns,
        psi: Some(psi_stats(p)),
    })
}

fn memory_usage(at_ns: i64, s: &crate::cgroups::stats::CgroupStats) -> v1::MemoryUsage {
    match &s.memory {
        Some(m) => v1::MemoryUsage {
            timestamp: at_ns,
            working_set_bytes: u64v(m.working_set_bytes),
            available_bytes: m.available_bytes.and_then(u64v),
            usage_bytes: u64v(m.usage_bytes),
            rss_bytes: u64v(m.rss_bytes),
            page_faults: u64v(m.page_faults),
            major_page_faults: u64v(m.major_page_faults),
            psi: s.pressure.memory.map(psi_stats),
        },
        // The timestamp alone says "sampled, nothing charged" (a created
        // or exited container).
        None => v1::MemoryUsage {
            timestamp: at_ns,
            ..Default::default()
        },
    }
}

fn swap_usage(at_ns: i64, s: &crate::cgroups::stats::CgroupStats) -> v1::SwapUsage {
    let m = s.memory.as_ref();
    v1::SwapUsage {
        timestamp: at_ns,
        swap_available_bytes: m.and_then(|m| m.swap_available_bytes).and_then(u64v),
        swap_usage_bytes: m.and_then(|m| m.swap_usage_bytes).and_then(u64v),
    }
}

pub(super) fn container_stats(u: &crate::runtime::ContainerUsage) -> v1::ContainerStats {
    v1::ContainerStats {
        attributes: Some(container_attributes(&u.container)),
        cpu: Some(cpu_usage(u.at_ns, &u.cgroup, u.nano_cores)),
        memory: Some(memory_usage(u.at_ns, &u.cgroup)),
        writable_layer: u
            .writable_layer
            .as_ref()
            .map(|(usage, mountpoint)| v1::FilesystemUsage {
                timestamp: u.at_ns,
                fs_id: Some(v1::FilesystemIdentifier {
                    mountpoint: mountpoint.display().to_string(),
                }),
                used_bytes: u64v(usage.bytes),
                inodes_used: u64v(usage.inodes),
            }),
        swap: Some(swap_usage(u.at_ns, &u.cgroup)),
        io: io_usage(u.at_ns, &u.cgroup),
    }
}

fn interface_usage(i: &crate::stats::InterfaceStats) -> v1::NetworkInterfaceUsage {
    v1::NetworkInterfaceUsage {
        name: i.name.clone(),
        rx_bytes: u64v(i.rx_bytes),
        rx_errors: u64v(i.rx_errors),
        tx_bytes: u64v(i.tx_bytes),
        tx_errors: u64v(i.tx_errors),
    }
}

/// The pod's default interface is eth0 (what networking creates); the
/// others, loopback included, follow it in `interfaces`.
pub(super) fn pod_stats(u: &crate::runtime::PodUsage) -> v1::PodSandboxStats {
    let network = (!u.interfaces.is_empty()).then(|| v1::NetworkUsage {
        timestamp: u.at_ns,
        default_interface: u
            .interfaces
            .iter()
            .find(|i| i.name == "eth0")
            .map(interface_usage),
        interfaces: u
            .interfaces
            .iter()
            .filter(|i| i.name != "eth0")
            .map(interface_usage)
            .collect(),
    });
    v1::PodSandboxStats {
        attributes: Some(pod_attributes(&u.pod)),
        linux: Some(v1::LinuxPodSandboxStats {
            cpu: Some(cpu_usage(u.at_ns, &u.cgroup, u.nano_cores)),
            memory: Some(memory_usage(u.at_ns, &u.cgroup)),
            network,
            process: Some(v1::ProcessUsage {
                timestamp: u.at_ns,
                process_count: u.cgroup.pids.and_then(u64v),
            }),
            containers: u.containers.iter().map(container_stats).collect(),
            io: io_usage(u.at_ns, &u.cgroup),
        }),
        windows: None,
    }
}

pub(super) fn container_event(e: &crate::events::ContainerEvent) -> v1::ContainerEventResponse {
    use crate::events::EventKind;
    let kind = match e.kind {
        EventKind::Created => v1::ContainerEventType::ContainerCreatedEvent,
        EventKind::Started => v1::ContainerEventType::ContainerStartedEvent,
        EventKind::Stopped => v1::ContainerEventType::ContainerStoppedEvent,
        EventKind::Deleted => v1::ContainerEventType::ContainerDeletedEvent,
    };
    v1::ContainerEventResponse {
        container_id: e.container_id.clone(),
        container_event_type: kind as i32,
        created_at: e.at_ns,
        pod_sandbox_status: e.pod.as_ref().map(pod_status),
        containers_statuses: e.containers.iter().map(container_status).collect(),
    }
}

pub(super) fn metric_descriptors() -> Vec<v1::MetricDescriptor> {
    use crate::stats::cadvisor::{BASE_LABELS, DESCRIPTORS};
    DESCRIPTORS
        .iter()
        .map(|d| v1::MetricDescriptor {
            name: d.name.to_owned(),
            help: d.help.to_owned(),
            label_keys: BASE_LABELS
                .iter()
                .chain(d.extra_labels)
                .map(|l| l.to_string())
                .collect(),
        })
        .collect()
}

fn metric(at_ns: i64, labels: &[String], s: &crate::stats::cadvisor::Sample) -> v1::Metric {
    let kind = match s.kind {
        crate::stats::cadvisor::Kind::Counter => v1::MetricType::Counter,
        crate::stats::cadvisor::Kind::Gauge => v1::MetricType::Gauge,
    };
    v1::Metric {
        name: s.name.to_owned(),
        timestamp: at_ns,
        metric_type: kind as i32,
        label_values: labels
            .iter()
            .chain(&s.extra_label_values)
            .cloned()
            .collect(),
        value: u64v(s.value),
    }
}

pub(super) fn pod_sandbox_metrics(m: &crate::runtime::PodMetrics) -> v1::PodSandboxMetrics {
    v1::PodSandboxMetrics {
        pod_sandbox_id: m.pod_id.clone(),
        metrics: m.pod.iter().map(|(l, s)| metric(m.at_ns, l, s)).collect(),
        container_metrics: m
            .containers
            .iter()
            .map(|(id, samples)| v1::ContainerMetrics {
                container_id: id.clone(),
                metrics: samples.iter().map(|(l, s)| metric(m.at_ns, l, s)).collect(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn localhost_refs_may_carry_the_legacy_prefix() {
        use crate::security::Profile;
        use v1::security_profile::ProfileType;
        let local = |r: &str| v1::SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: r.into(),
        };
        assert_eq!(
            profile(Some(&local("localhost/p1")), "localhost/ignored").unwrap(),
            Some(Profile::Localhost("p1".into()))
        );
        assert_eq!(
            profile(Some(&local("/var/lib/kubelet/seccomp/a.json")), "").unwrap(),
            Some(Profile::Localhost("/var/lib/kubelet/seccomp/a.json".into()))
        );
        assert!(profile(Some(&local("localhost/")), "").is_err());
        assert!(profile(Some(&local("")), "").is_err());
    }

    use super::*;

    #[test]
    fn checkpoint_locations_must_be_absolute_normalised_files() {
        let req = |location: &str, timeout: i64| v1::CheckpointContainerRequest {
            container_id: "c1".into(),
            location: location.into(),
            timeout,
        };
        let ok = checkpoint_request(&req("/var/lib/kubelet/checkpoints/c.tar", 120)).unwrap();
        assert_eq!(
            ok.location,
            std::path::Path::new("/var/lib/kubelet/checkpoints/c.tar")
        );
        assert_eq!(ok.timeout, std::time::Duration::from_secs(120));
        for bad in [
            "",
            "c.tar",
            "/tmp/",
            "/tmp/../etc/c.tar",
            "/tmp//c.tar",
            "/tmp/./c",
            "/tmp/c\n.tar",
        ] {
            let err = checkpoint_request(&req(bad, 0)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}");
            assert!(err.message().starts_with("location: "), "{}", err.message());
        }
        let err = checkpoint_request(&req("/tmp/c.tar", -1)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn protocols_round_trip_through_their_cri_numbers() {
        for (cri, ours) in [
            (v1::Protocol::Tcp, Proto::Tcp),
            (v1::Protocol::Udp, Proto::Udp),
            (v1::Protocol::Sctp, Proto::Sctp),
        ] {
            assert_eq!(Proto::from_cri(cri as i32), Some(ours));
            assert_eq!(ours.to_cri(), cri as i32);
        }
        assert_eq!(Proto::from_cri(3), None);
        assert_eq!(Proto::from_cri(-1), None);
    }

    #[test]
    fn mount_propagations_round_trip_through_their_cri_numbers() {
        for (cri, ours) in [
            (
                v1::MountPropagation::PropagationPrivate,
                Propagation::Private,
            ),
            (
                v1::MountPropagation::PropagationHostToContainer,
                Propagation::Slave,
            ),
            (
                v1::MountPropagation::PropagationBidirectional,
                Propagation::Shared,
            ),
        ] {
            assert_eq!(Propagation::from_cri(cri as i32), Some(ours));
            assert_eq!(ours.to_cri(), cri as i32);
        }
        assert_eq!(Propagation::from_cri(3), None);
    }

    #[test]
    fn namespace_modes_and_states_round_trip() {
        for mode in [NsMode::Pod, NsMode::Container, NsMode::Node, NsMode::Target] {
            assert_eq!(ns_mode(ns_mode_proto(mode)), mode);
        }
        for state in [PodState::Ready, PodState::NotReady] {
            assert_eq!(pod_state_filter(pod_state(state)), Some(state));
        }
        for state in [
            ContainerState::Created,
            ContainerState::Running,
            ContainerState::Exited,
            ContainerState::Unknown,
        ] {
            assert_eq!(container_state_filter(container_state(state)), Some(state));
        }
        assert_eq!(pod_state_filter(9), None);
        assert_eq!(container_state_filter(9), None);
    }

    fn handlers() -> Vec<String> {
        vec![String::new(), "lxc".into(), "kata".into()]
    }

    #[test]
    fn runtime_handlers_outside_the_configured_names_are_refused() {
        for ok in ["", "lxc", "kata"] {
            let mut req = pod_request(Vec::new());
            req.runtime_handler = ok.into();
            assert_eq!(pod_config(&req, &handlers()).unwrap().runtime_handler, ok);
        }
        let mut req = pod_request(Vec::new());
        req.runtime_handler = "runc".into();
        let err = pod_config(&req, &handlers()).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("\"runc\" is not a runtime handler"),
            "{}",
            err.message()
        );
    }

    fn pod_request(ports: Vec<v1::PortMapping>) -> v1::RunPodSandboxRequest {
        v1::RunPodSandboxRequest {
            config: Some(v1::PodSandboxConfig {
                metadata: Some(v1::PodSandboxMetadata {
                    name: "p".into(),
                    uid: "u".into(),
                    namespace: "n".into(),
                    attempt: 0,
                }),
                port_mappings: ports,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn port_mapping_protocols_become_domain_values_and_unknown_ones_are_refused() {
        let udp = v1::PortMapping {
            protocol: v1::Protocol::Udp as i32,
            container_port: 53,
            host_port: 5353,
            host_ip: String::new(),
        };
        let pod = pod_config(&pod_request(vec![udp.clone()]), &handlers()).unwrap();
        assert_eq!(pod.port_mappings[0].protocol, Proto::Udp);

        let bogus = v1::PortMapping { protocol: 7, ..udp };
        let err = pod_config(&pod_request(vec![bogus]), &handlers()).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("config.port_mappings[0].protocol"),
            "{}",
            err.message()
        );
    }

    fn container_request(mount: v1::Mount) -> v1::ContainerConfig {
        v1::ContainerConfig {
            metadata: Some(v1::ContainerMetadata {
                name: "c".into(),
                attempt: 0,
            }),
            image: Some(v1::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            mounts: vec![mount],
            ..Default::default()
        }
    }

    #[test]
    fn mount_propagation_becomes_a_domain_value_and_unknown_ones_are_refused() {
        let shared = v1::Mount {
            container_path: "/data".into(),
            host_path: "/srv/data".into(),
            propagation: v1::MountPropagation::PropagationBidirectional as i32,
            ..Default::default()
        };
        let config = container_config(&container_request(shared.clone())).unwrap();
        assert_eq!(config.mounts[0].propagation, Propagation::Shared);

        let bogus = v1::Mount {
            propagation: 42,
            ..shared
        };
        let err = container_config(&container_request(bogus)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("config.mounts[0].propagation"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn cdi_devices_are_read_from_the_field_only_and_bad_names_are_refused() {
        let mut req = container_request(v1::Mount {
            container_path: "/data".into(),
            host_path: "/srv/data".into(),
            ..Default::default()
        });
        req.cdi_devices = vec![v1::CdiDevice {
            name: "vendor.com/gpu=0".into(),
        }];
        // The annotation a pod author could set is not a request.
        req.annotations
            .insert("cdi.k8s.io/pwn".into(), "vendor.com/gpu=all".into());
        let config = container_config(&req).unwrap();
        assert_eq!(config.cdi_devices, vec!["vendor.com/gpu=0".to_owned()]);

        for bad in [
            "gpu0",
            "vendor.com/gpu",
            "vendor.com/gpu=",
            "../../etc/cdi=x",
            "vendor.com/gpu=a/../../b",
            "vendor.com/gpu=x\nlxc.hook.pre-start=/bin/sh",
        ] {
            req.cdi_devices = vec![
                v1::CdiDevice {
                    name: "vendor.com/gpu=0".into(),
                },
                v1::CdiDevice { name: bad.into() },
            ];
            let err = container_config(&req).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}");
            assert!(
                err.message().contains("config.CDI_devices[1].name")
                    && err.message().contains(&format!("{bad:?}")),
                "{}",
                err.message()
            );
        }
    }
}
