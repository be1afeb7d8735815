//! The security context on real containers, through the real daemon:
//! capabilities, users, read-only root, masked and read-only paths,
//! seccomp, no_new_privs, PID/IPC/network namespace modes, user namespaces
//! (hostUsers: false), bidirectional volumes, and refusal of bad paths and
//! names.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{
    container_config, create_container, mirror_config, pull_image, require_containers as ready,
    Daemon, BUSYBOX,
};
use pvecri::client::CriClient;
use pvecri::cri::v1;

const NONEWPRIVS: &str = "registry.k8s.io/e2e-test-images/nonewprivs:1.3";

struct Env {
    _d: Daemon,
    c: CriClient,
    logs: tempfile::TempDir,
}

async fn env(images: &[&str]) -> Env {
    let d = Daemon::start(&mirror_config());
    let mut c = d.client().await;
    for image in images {
        pull_image(&mut c, image).await;
    }
    Env {
        _d: d,
        c,
        logs: tempfile::tempdir().unwrap(),
    }
}

fn pod_config(
    e: &Env,
    name: &str,
    ns: v1::NamespaceOption,
    privileged: bool,
) -> v1::PodSandboxConfig {
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "security".into(),
            attempt: 0,
        }),
        log_directory: e.logs.path().join(name).display().to_string(),
        linux: Some(v1::LinuxPodSandboxConfig {
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(ns),
                privileged,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The kubelet's options for an ordinary pod.
fn pod_ns() -> v1::NamespaceOption {
    v1::NamespaceOption {
        pid: v1::NamespaceMode::Container as i32,
        ..Default::default()
    }
}

struct Pod {
    id: String,
    config: v1::PodSandboxConfig,
}

async fn run_pod(e: &mut Env, name: &str, ns: v1::NamespaceOption, privileged: bool) -> Pod {
    let config = pod_config(e, name, ns, privileged);
    let id = common::run_pod_sandbox(&mut e.c, &config).await.unwrap();
    Pod { id, config }
}

fn container(
    name: &str,
    image: &str,
    cmd: &[&str],
    sc: v1::LinuxContainerSecurityContext,
) -> v1::ContainerConfig {
    v1::ContainerConfig {
        linux: Some(v1::LinuxContainerConfig {
            security_context: Some(sc),
            ..Default::default()
        }),
        ..container_config(name, image, cmd)
    }
}

async fn create(
    e: &mut Env,
    pod: &Pod,
    config: v1::ContainerConfig,
) -> Result<String, tonic::Status> {
    create_container(&mut e.c, &pod.id, &pod.config, config).await
}

/// Creates and starts a long-running busybox container.
async fn running(
    e: &mut Env,
    pod: &Pod,
    name: &str,
    sc: v1::LinuxContainerSecurityContext,
) -> String {
    started(e, pod, container(name, BUSYBOX, &["sleep", "3600"], sc)).await
}

/// Creates and starts a container from `config`.
async fn started(e: &mut Env, pod: &Pod, config: v1::ContainerConfig) -> String {
    let id = create(e, pod, config).await.unwrap();
    e.c.runtime
        .start_container(v1::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    id
}

/// (exit code, stdout, stderr) of `sh -c script` in the container.
async fn sh(e: &mut Env, id: &str, script: &str) -> (i32, String, String) {
    common::exec_sh(&mut e.c, id, script, 10).await
}

fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

fn caps(add: &[&str], drop: &[&str]) -> Option<v1::Capability> {
    Some(v1::Capability {
        add_capabilities: add.iter().map(|s| s.to_string()).collect(),
        drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_and_users() {
    if !ready("capabilities_and_users") {
        return;
    }
    let mut e = env(&[BUSYBOX]).await;
    let pod = run_pod(&mut e, "caps", pod_ns(), false).await;

    // The Kubernetes default set: chown dac_override fowner fsetid kill
    // setgid setuid setpcap net_bind_service net_raw sys_chroot mknod
    // audit_write setfcap.
    let default = running(&mut e, &pod, "default", Default::default()).await;
    let (_, status, _) = sh(&mut e, &default, "cat /proc/self/status").await;
    assert_eq!(status_field(&status, "CapBnd:"), "00000000a80425fb");
    assert_eq!(status_field(&status, "CapEff:"), "00000000a80425fb");
    assert_eq!(status_field(&status, "CapInh:"), "0000000000000000");
    let (code, _, err) = sh(&mut e, &default, "ip addr add 127.0.0.9/32 dev lo").await;
    assert_ne!(code, 0, "NET_ADMIN is not in the default set: {err}");

    let admin = running(
        &mut e,
        &pod,
        "netadmin",
        v1::LinuxContainerSecurityContext {
            capabilities: caps(&["NET_ADMIN"], &["NET_RAW"]),
            ..Default::default()
        },
    )
    .await;
    let (code, _, err) = sh(
        &mut e,
        &admin,
        "ip addr add 127.0.0.9/32 dev lo && ip addr del 127.0.0.9/32 dev lo",
    )
    .await;
    assert_eq!(code, 0, "NET_ADMIN was added: {err}");
    let (code, _, err) = sh(&mut e, &admin, "ping -c1 -W1 127.0.0.1").await;
    assert_ne!(code, 0);
    assert!(
        err.contains("permission denied"),
        "NET_RAW was dropped: {err}"
    );

    let nobody = running(
        &mut e,
        &pod,
        "dropall",
        v1::LinuxContainerSecurityContext {
            capabilities: caps(&[], &["ALL"]),
            run_as_user: Some(v1::Int64Value { value: 1000 }),
            run_as_group: Some(v1::Int64Value { value: 2000 }),
            supplemental_groups: vec![3000],
            ..Default::default()
        },
    )
    .await;
    let (_, status, _) = sh(&mut e, &nobody, "cat /proc/self/status").await;
    assert_eq!(status_field(&status, "CapBnd:"), "0000000000000000");
    let (_, id, _) = sh(&mut e, &nobody, "id -u; id -g; id -G").await;
    let id: Vec<&str> = id.lines().collect();
    assert_eq!(id[0], "1000");
    assert_eq!(id[1], "2000");
    assert!(id[2].split(' ').any(|g| g == "3000"), "{id:?}");

    let all = running(
        &mut e,
        &pod,
        "addall",
        v1::LinuxContainerSecurityContext {
            capabilities: caps(&["ALL"], &[]),
            ..Default::default()
        },
    )
    .await;
    let (_, status, _) = sh(&mut e, &all, "cat /proc/self/status").await;
    let bnd = u64::from_str_radix(&status_field(&status, "CapBnd:"), 16).unwrap();
    assert!(bnd & (1 << 21) != 0, "CAP_SYS_ADMIN with ALL: {bnd:x}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_root_and_paths() {
    if !ready("read_only_root_and_paths") {
        return;
    }
    let mut e = env(&[BUSYBOX]).await;
    let pod = run_pod(&mut e, "paths", pod_ns(), false).await;
    let id = running(
        &mut e,
        &pod,
        "ro",
        v1::LinuxContainerSecurityContext {
            readonly_rootfs: true,
            masked_paths: vec!["/bin/ls".into(), "/etc/ssl".into()],
            readonly_paths: vec!["/tmp".into()],
            ..Default::default()
        },
    )
    .await;
    let (_, _, err) = sh(&mut e, &id, "touch /x").await;
    assert!(err.contains("Read-only file system"), "{err}");
    let (_, _, err) = sh(&mut e, &id, "touch /tmp/x").await;
    assert!(err.contains("Read-only file system"), "{err}");
    let (_, _, err) = sh(&mut e, &id, "ls /").await;
    assert!(err.contains("Permission denied"), "{err}");
    // Volumes and the pod files stay writable.
    let (code, _, err) = sh(&mut e, &id, "echo ok >> /etc/hosts").await;
    assert_eq!(code, 0, "{err}");

    // Defaults when the kubelet sends no lists: /proc/sys read-only.
    let default = running(&mut e, &pod, "defaults", Default::default()).await;
    let (_, _, err) = sh(&mut e, &default, "echo 1 > /proc/sys/kernel/printk").await;
    assert!(err.contains("Read-only file system"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seccomp_profiles() {
    if !ready("seccomp_profiles") {
        return;
    }
    let mut e = env(&[BUSYBOX]).await;
    let pod = run_pod(&mut e, "seccomp", pod_ns(), false).await;
    let profile = |t: v1::security_profile::ProfileType, r: &str| {
        Some(v1::SecurityProfile {
            profile_type: t as i32,
            localhost_ref: r.into(),
        })
    };
    use v1::security_profile::ProfileType;

    let default = running(
        &mut e,
        &pod,
        "default",
        v1::LinuxContainerSecurityContext {
            seccomp: profile(ProfileType::RuntimeDefault, ""),
            ..Default::default()
        },
    )
    .await;
    let (_, status, _) = sh(&mut e, &default, "cat /proc/self/status").await;
    assert_eq!(status_field(&status, "Seccomp:"), "2");
    // New user namespaces need no capability, but RuntimeDefault refuses
    // unshare without CAP_SYS_ADMIN.
    let (code, _, err) = sh(&mut e, &default, "unshare -U true").await;
    assert_ne!(code, 0);
    assert!(err.contains("Operation not permitted"), "{err}");

    let unconfined = running(
        &mut e,
        &pod,
        "unconfined",
        v1::LinuxContainerSecurityContext {
            seccomp: profile(ProfileType::Unconfined, ""),
            ..Default::default()
        },
    )
    .await;
    let (_, status, _) = sh(&mut e, &unconfined, "cat /proc/self/status").await;
    assert_eq!(status_field(&status, "Seccomp:"), "0");
    let (code, _, err) = sh(&mut e, &unconfined, "unshare -U true").await;
    assert_eq!(code, 0, "{err}");

    let dir = tempfile::tempdir().unwrap();
    let block = dir.path().join("block-mkdir.json");
    std::fs::write(
        &block,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let local = running(
        &mut e,
        &pod,
        "localhost",
        v1::LinuxContainerSecurityContext {
            seccomp: profile(ProfileType::Localhost, &block.display().to_string()),
            ..Default::default()
        },
    )
    .await;
    let (code, _, err) = sh(&mut e, &local, "mkdir /newdir").await;
    assert_ne!(code, 0);
    assert!(err.contains("Operation not permitted"), "{err}");

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"defaultAction": "SCMP_ACT_SOMETIMES"}"#).unwrap();
    let err = create(
        &mut e,
        &pod,
        container(
            "bad",
            BUSYBOX,
            &["true"],
            v1::LinuxContainerSecurityContext {
                seccomp: profile(ProfileType::Localhost, &bad.display().to_string()),
                ..Default::default()
            },
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("bad.json: defaultAction"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_new_privs_stops_setuid() {
    if !ready("no_new_privs_stops_setuid") {
        return;
    }
    let mut e = env(&[NONEWPRIVS]).await;
    let pod = run_pod(&mut e, "nnp", pod_ns(), false).await;
    for (name, nnp, want) in [
        ("nnp-on", true, "Effective uid: 1000"),
        ("nnp-off", false, "Effective uid: 0"),
    ] {
        let mut config = container(
            name,
            NONEWPRIVS,
            &[],
            v1::LinuxContainerSecurityContext {
                no_new_privs: nnp,
                run_as_user: Some(v1::Int64Value { value: 1000 }),
                ..Default::default()
            },
        );
        config.command.clear();
        let id = create(&mut e, &pod, config).await.unwrap();
        e.c.runtime
            .start_container(v1::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
        let log = e.logs.path().join("nnp").join(format!("{name}.log"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains(want) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: want {want:?} in {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn ns_link(pid: &str, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_modes() {
    if !ready("namespace_modes") {
        return;
    }
    let mut e = env(&[BUSYBOX]).await;

    // shareProcessNamespace: one PID namespace, PID 1 is the infra process.
    let shared = run_pod(
        &mut e,
        "sharedpid",
        v1::NamespaceOption {
            pid: v1::NamespaceMode::Pod as i32,
            ..Default::default()
        },
        false,
    )
    .await;
    let ns = v1::LinuxContainerSecurityContext {
        namespace_options: Some(v1::NamespaceOption {
            pid: v1::NamespaceMode::Pod as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let a = running(&mut e, &shared, "a", ns.clone()).await;
    let b = running(&mut e, &shared, "b", ns).await;
    let (_, cmdline, _) = sh(&mut e, &a, "tr '\\0' ' ' < /proc/1/cmdline").await;
    assert!(cmdline.contains("pause"), "{cmdline}");
    let (_, pids_a, _) = sh(&mut e, &a, "readlink /proc/self/ns/pid").await;
    let (_, pids_b, _) = sh(&mut e, &b, "readlink /proc/self/ns/pid").await;
    assert_eq!(pids_a, pids_b);
    assert_ne!(pids_a.trim(), ns_link("self", "pid"));

    // hostPID, hostIPC, hostNetwork: the host's namespaces.
    let host = run_pod(
        &mut e,
        "hostns",
        v1::NamespaceOption {
            network: v1::NamespaceMode::Node as i32,
            pid: v1::NamespaceMode::Node as i32,
            ipc: v1::NamespaceMode::Node as i32,
            ..Default::default()
        },
        false,
    )
    .await;
    let h = running(&mut e, &host, "h", Default::default()).await;
    for kind in ["pid", "ipc", "net"] {
        let (_, inside, _) = sh(&mut e, &h, &format!("readlink /proc/self/ns/{kind}")).await;
        assert_eq!(inside.trim(), ns_link("self", kind), "{kind}");
    }
    // The ordinary pod's own namespaces differ from the host's.
    let plain = run_pod(&mut e, "plain", pod_ns(), false).await;
    let p = running(&mut e, &plain, "p", Default::default()).await;
    for kind in ["pid", "ipc", "net"] {
        let (_, inside, _) = sh(&mut e, &p, &format!("readlink /proc/self/ns/{kind}")).await;
        assert_ne!(inside.trim(), ns_link("self", kind), "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidirectional_volume() {
    if !ready("bidirectional_volume") {
        return;
    }
    let mut e = env(&[BUSYBOX]).await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("mnt");
    std::fs::create_dir_all(&src).unwrap();
    let sh_host = |cmd: String| {
        let ok = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .status()
            .unwrap()
            .success();
        assert!(ok, "{cmd}");
    };
    let s = src.display().to_string();
    sh_host(format!("mount --bind {s} {s} && mount --make-rshared {s}"));
    let pod = run_pod(&mut e, "rshared", pod_ns(), true).await;
    let mut config = container(
        "vol",
        BUSYBOX,
        &["sleep", "3600"],
        v1::LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        },
    );
    config.mounts = vec![v1::Mount {
        container_path: "/vol".into(),
        host_path: s.clone(),
        propagation: v1::MountPropagation::PropagationBidirectional as i32,
        ..Default::default()
    }];
    let id = started(&mut e, &pod, config).await;
    // Host to container.
    std::fs::create_dir_all(src.join("from-host")).unwrap();
    let extra = dir.path().join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(extra.join("flag"), "x").unwrap();
    sh_host(format!("mount --bind {} {s}/from-host", extra.display()));
    let (_, out, _) = sh(&mut e, &id, "ls /vol/from-host").await;
    assert_eq!(out.trim(), "flag");
    // Container to host.
    let (code, _, err) = sh(
        &mut e,
        &id,
        "mkdir -p /vol/from-ctr && mount -t tmpfs none /vol/from-ctr && touch /vol/from-ctr/seen",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(src.join("from-ctr/seen").exists());
    sh_host(format!("umount -R {s}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_security_input_is_refused() {
    if !ready("bad_security_input_is_refused") {
        return;
    }
    let mut e = env(&[BUSYBOX]).await;
    let pod = run_pod(&mut e, "refuse", pod_ns(), false).await;
    let mount = |container_path: &str, host_path: &str| v1::Mount {
        container_path: container_path.into(),
        host_path: host_path.into(),
        ..Default::default()
    };
    let cases: Vec<(v1::ContainerConfig, &str)> = vec![
        (
            {
                let mut c = container("m1", BUSYBOX, &["true"], Default::default());
                c.mounts = vec![mount("/proc/sys", "/tmp")];
                c
            },
            "config.mounts[0].container_path",
        ),
        (
            {
                let mut c = container("m2", BUSYBOX, &["true"], Default::default());
                c.mounts = vec![mount("/data", "/tmp/../etc")];
                c
            },
            "config.mounts[0].host_path",
        ),
        (
            container(
                "p1",
                BUSYBOX,
                &["true"],
                v1::LinuxContainerSecurityContext {
                    masked_paths: vec!["proc/kcore".into()],
                    ..Default::default()
                },
            ),
            "masked_paths",
        ),
        (
            container(
                "c1",
                BUSYBOX,
                &["true"],
                v1::LinuxContainerSecurityContext {
                    capabilities: caps(&["NET_WIZARD"], &[]),
                    ..Default::default()
                },
            ),
            "capabilities.add_capabilities",
        ),
        (
            container(
                "s1",
                BUSYBOX,
                &["true"],
                v1::LinuxContainerSecurityContext {
                    seccomp: Some(v1::SecurityProfile {
                        profile_type: v1::security_profile::ProfileType::Localhost as i32,
                        localhost_ref: "profiles/../x.json".into(),
                    }),
                    ..Default::default()
                },
            ),
            "seccomp.localhost_ref",
        ),
    ];
    for (config, field) in cases {
        let err = create(&mut e, &pod, config).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
    // Nothing was left behind by the refusals.
    let list =
        e.c.runtime
            .list_containers(v1::ListContainersRequest { filter: None })
            .await
            .unwrap()
            .into_inner();
    assert!(list.containers.is_empty());
}

fn userns(mode: v1::NamespaceMode, mappings: &[(u32, u32, u32)]) -> v1::NamespaceOption {
    let ids: Vec<v1::IdMapping> = mappings
        .iter()
        .map(|&(container_id, host_id, length)| v1::IdMapping {
            container_id,
            host_id,
            length,
        })
        .collect();
    v1::NamespaceOption {
        pid: v1::NamespaceMode::Pod as i32,
        userns_options: Some(v1::UserNamespace {
            mode: mode as i32,
            uids: ids.clone(),
            gids: ids,
        }),
        ..Default::default()
    }
}

/// The mounts under the daemon's directory, from /proc/self/mountinfo.
fn mounts_under(dir: &std::path::Path) -> Vec<String> {
    let dir = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| m.starts_with(&dir))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_namespace_pod() {
    if !ready("user_namespace_pod") {
        return;
    }
    if std::fs::read_to_string("/proc/sys/user/max_user_namespaces").is_ok_and(|n| n.trim() == "0")
    {
        eprintln!("skipping user_namespace_pod: user namespaces are disabled (user.max_user_namespaces = 0)");
        return;
    }
    let mut e = env(&[BUSYBOX]).await;
    let status =
        e.c.runtime
            .status(v1::StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
    assert!(
        status.runtime_handlers[0]
            .features
            .as_ref()
            .unwrap()
            .user_namespaces,
        "this kernel supports idmapped mounts, yet user namespaces are not advertised:\n{}",
        e._d.log()
    );
    let mounts_before = mounts_under(e._d.dir.path());

    // A private volume owned by host root, as the kubelet's pod dirs are.
    let vol = tempfile::tempdir().unwrap();
    std::fs::create_dir(vol.path().join("d")).unwrap();
    std::fs::write(vol.path().join("d/secret"), "from-host\n").unwrap();
    for (path, mode) in [
        (vol.path().to_owned(), 0o700),
        (vol.path().join("d/secret"), 0o600),
    ] {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }

    const HOST: u32 = 231072;
    let pod = run_pod(
        &mut e,
        "userns",
        userns(v1::NamespaceMode::Pod, &[(0, HOST, 65536)]),
        false,
    )
    .await;
    let pod_status =
        e.c.runtime
            .pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: pod.id.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner();
    let reported = pod_status
        .status
        .unwrap()
        .linux
        .unwrap()
        .namespaces
        .unwrap()
        .options
        .unwrap();
    let reported = reported.userns_options.unwrap();
    assert_eq!(reported.mode, v1::NamespaceMode::Pod as i32);
    assert_eq!(reported.uids[0].host_id, HOST);

    let mut config = container("main", BUSYBOX, &["sleep", "3600"], Default::default());
    config.mounts = vec![v1::Mount {
        container_path: "/vol".into(),
        host_path: vol.path().display().to_string(),
        ..Default::default()
    }];
    let id = started(&mut e, &pod, config).await;
    let side = running(&mut e, &pod, "side", Default::default()).await;

    let (code, out, err) = sh(
        &mut e,
        &id,
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; \
         touch /etc/written && stat -c '%u %g' /etc/written /bin/sh; \
         cat /vol/d/secret && echo x > /vol/d/from-pod && stat -c '%u' /vol/d/secret; \
         ps -o comm | grep -c sleep",
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let host = HOST.to_string();
    let expected: Vec<Vec<&str>> = vec![
        vec!["0", &host, "65536"],
        vec!["0", &host, "65536"],
        vec!["0"],
        // The image's files and what the pod writes belong to its root.
        vec!["0", "0"],
        vec!["0", "0"],
        vec!["from-host"],
        vec!["0"],
        // Both containers' sleeps: one PID namespace for the pod.
        vec!["2"],
    ];
    assert_eq!(lines, expected, "{out}");

    // On the host: the workload runs as the mapped ID, and the volume file
    // it wrote has the unshifted owner.
    let host_uids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse::<u32>().ok())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter(|s| s.lines().any(|l| l == "Name:\tsleep"))
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|u| u.split_whitespace().next()?.parse().ok())
        })
        .collect();
    assert!(
        host_uids.contains(&HOST),
        "sleep processes run as {host_uids:?}"
    );
    let written = std::fs::metadata(vol.path().join("d/from-pod")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&written), 0);

    // Staged volumes and idmapped layer clones are gone once the
    // container runs; everything is gone with the pod.
    let leftovers: Vec<String> = mounts_under(e._d.dir.path())
        .into_iter()
        .filter(|m| m.contains("/staging/") || m.contains("/m/"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    for c in [&id, &side] {
        e.c.runtime
            .remove_container(v1::RemoveContainerRequest {
                container_id: c.to_string(),
            })
            .await
            .unwrap();
    }
    common::stop_remove_pod(&mut e.c, &pod.id).await;
    assert_eq!(mounts_under(e._d.dir.path()), mounts_before);

    // What critest and the kubelet must never get: a pod in a user
    // namespace it did not ask for, or one that silently ignores the ask.
    let refusals = [
        (
            userns(v1::NamespaceMode::Container, &[]),
            "userns_options.mode",
        ),
        (
            userns(v1::NamespaceMode::Target, &[]),
            "userns_options.mode",
        ),
        (
            userns(
                v1::NamespaceMode::Pod,
                &[(0, HOST, 1000), (1000, HOST + 5000, 1000)],
            ),
            "userns_options.uids",
        ),
        (
            userns(v1::NamespaceMode::Pod, &[(1, HOST, 1000)]),
            "userns_options.uids",
        ),
        (
            userns(v1::NamespaceMode::Pod, &[(0, u32::MAX - 10, 1000)]),
            "userns_options.uids",
        ),
        (
            v1::NamespaceOption {
                network: v1::NamespaceMode::Node as i32,
                ..userns(v1::NamespaceMode::Pod, &[(0, HOST, 65536)])
            },
            "namespace_options.network",
        ),
    ];
    for (n, (ns, field)) in refusals.into_iter().enumerate() {
        let config = pod_config(&e, &format!("bad-userns-{n}"), ns, false);
        let err =
            e.c.runtime
                .run_pod_sandbox(v1::RunPodSandboxRequest {
                    config: Some(config),
                    ..Default::default()
                })
                .await
                .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{n}: {err:?}");
        assert!(err.message().contains(field), "{n}: {}", err.message());
    }
    let pods =
        e.c.runtime
            .list_pod_sandbox(v1::ListPodSandboxRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .items;
    assert!(pods.is_empty(), "refused pods left records: {pods:?}");
}
