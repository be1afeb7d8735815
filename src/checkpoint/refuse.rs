//! What a checkpoint cannot take, decided before anything is frozen.
//!
//! Each answer names the setting, so the caller's error says what to
//! change. The reasons, and which of them may go away, are in
//! `docs/checkpoint.md`.

use crate::container::{ContainerRecord, Propagation};
use crate::pod::{NsMode, PodRecord};
use crate::snapshot::BackendKind;

/// Why `c` in `pod` cannot be checkpointed, or `None`.
pub(crate) fn refusal(
    c: &ContainerRecord,
    pod: &PodRecord,
    backend: BackendKind,
) -> Option<String> {
    let cfg = &c.config;
    let reason = if pod.config.network == NsMode::Node {
        "the pod uses the host's network namespace (hostNetwork): its sockets cannot be \
         restored anywhere else"
    } else if pod.config.pid == NsMode::Node || cfg.security.pid_mode == NsMode::Node {
        "the pod uses the host's PID namespace (hostPID): restored PIDs would collide"
    } else if pod.config.ipc == NsMode::Node {
        "the pod uses the host's IPC namespace (hostIPC)"
    } else if cfg.security.pid_mode == NsMode::Target
        || (cfg.security.pid_mode == NsMode::Pod && pod.pid_ns.is_some())
    {
        "the container shares a PID namespace (shareProcessNamespace or a target \
         container): not supported yet"
    } else if pod.config.userns.is_some() {
        "the pod has a user namespace (hostUsers: false): not supported yet"
    } else if cfg.tty {
        "the container has a terminal (tty: true): not supported yet"
    } else if cfg.privileged {
        "the container is privileged: it holds the host's devices"
    } else if !cfg.devices.is_empty() || !cfg.cdi_devices.is_empty() {
        "the container has host devices, whose state CRIU cannot save"
    } else if cfg
        .mounts
        .iter()
        .any(|m| m.propagation == Propagation::Shared)
    {
        "the container has a bidirectional (rshared) mount"
    } else if backend != BackendKind::Overlay {
        "the writable layer is only saved with the overlay snapshotter"
    } else if pod.net_ns.is_none() || pod.ipc_ns.is_none() || pod.uts_ns.is_none() {
        "the pod has no pinned network, IPC and UTS namespaces"
    } else {
        return None;
    };
    Some(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::MountSpec;

    fn pair() -> (ContainerRecord, PodRecord) {
        let c: ContainerRecord = serde_json::from_value(serde_json::json!({
            "id": "c1", "pod_id": "p1",
            "config": serde_json::to_value(crate::container::ContainerConfig {
                security: crate::container::SecurityConfig {
                    pid_mode: NsMode::Container,
                    ..Default::default()
                },
                ..Default::default()
            }).unwrap(),
            "image_id": "", "image_ref": "", "top_layer": null, "state": "Running",
            "created_at_ns": 0, "started_at_ns": 0, "finished_at_ns": 0, "exit_code": 0,
            "reason": "", "message": "", "log_file": "", "cgroup": "k/c1",
            "init_pid": 42, "init_start_time": 1, "stop_signal": "",
        }))
        .unwrap();
        let pod: PodRecord = serde_json::from_value(serde_json::json!({
            "id": "p1", "config": serde_json::to_value(crate::pod::PodConfig::default()).unwrap(),
            "state": "Ready", "created_at_ns": 0, "ns_dir": "/run/pvecri/ns/p1",
            "net_ns": "/n", "ipc_ns": "/i", "uts_ns": "/u", "files_dir": "",
        }))
        .unwrap();
        (c, pod)
    }

    #[test]
    fn a_plain_container_passes_and_each_setting_is_named() {
        let (c, pod) = pair();
        assert_eq!(refusal(&c, &pod, BackendKind::Overlay), None);
        assert!(refusal(&c, &pod, BackendKind::Zfs)
            .unwrap()
            .contains("overlay"));

        let mut host_net = pod.clone();
        host_net.config.network = NsMode::Node;
        assert!(refusal(&c, &host_net, BackendKind::Overlay)
            .unwrap()
            .contains("hostNetwork"));
        let mut host_pid = pod.clone();
        host_pid.config.pid = NsMode::Node;
        assert!(refusal(&c, &host_pid, BackendKind::Overlay)
            .unwrap()
            .contains("hostPID"));
        let mut host_ipc = pod.clone();
        host_ipc.config.ipc = NsMode::Node;
        assert!(refusal(&c, &host_ipc, BackendKind::Overlay)
            .unwrap()
            .contains("hostIPC"));

        let mut tty = c.clone();
        tty.config.tty = true;
        assert!(refusal(&tty, &pod, BackendKind::Overlay)
            .unwrap()
            .contains("tty"));
        // POD mode without a pod PID namespace is a namespace of its own.
        let mut pod_mode = c.clone();
        pod_mode.config.security.pid_mode = NsMode::Pod;
        assert_eq!(refusal(&pod_mode, &pod, BackendKind::Overlay), None);
        let mut shared_pod = pod.clone();
        shared_pod.pid_ns = Some("/run/pvecri/ns/p1/pid".into());
        assert!(refusal(&pod_mode, &shared_pod, BackendKind::Overlay)
            .unwrap()
            .contains("shareProcessNamespace"));
        let mut rshared = c.clone();
        rshared.config.mounts.push(MountSpec {
            propagation: Propagation::Shared,
            ..Default::default()
        });
        assert!(refusal(&rshared, &pod, BackendKind::Overlay)
            .unwrap()
            .contains("bidirectional"));
        let mut privileged = c;
        privileged.config.privileged = true;
        assert!(refusal(&privileged, &pod, BackendKind::Overlay)
            .unwrap()
            .contains("privileged"));
    }
}
