//! Ways out of a pod, tried as an attacker would, against the real daemon
//! and real LXC containers: each test asserts that the host is untouched.
//!
//! - LXC config injection through a newline in any request string;
//! - block devices: a root container may `mknod` the node's disk but not
//!   open it; CRI devices open exactly what was asked;
//! - image symlinks that point mount targets and image-volume sub-paths at
//!   host paths;
//! - an image whose /etc/passwd is a FIFO, which would hang the daemon's
//!   user lookup;
//! - unknown runtime handlers.
//!
//! The exec path (host binaries and descriptors) and the shared PID
//! namespace holder are tried in `tests/escapes_exec.rs`, loopback services
//! in `tests/network.rs`.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    container_config, create_container, mirror_config, pull_image, require_containers as ready,
    require_root, Daemon, BUSYBOX,
};
use pvecri::client::CriClient;
use pvecri::cri::v1;

struct Env {
    _d: Daemon,
    c: CriClient,
    logs: tempfile::TempDir,
}

async fn env() -> Env {
    let d = Daemon::start(&mirror_config());
    let mut c = d.client().await;
    pull_image(&mut c, BUSYBOX).await;
    Env {
        _d: d,
        c,
        logs: tempfile::tempdir().unwrap(),
    }
}

fn pod_config(e: &Env, name: &str) -> v1::PodSandboxConfig {
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "escapes".into(),
            attempt: 0,
        }),
        log_directory: e.logs.path().join(name).display().to_string(),
        linux: Some(v1::LinuxPodSandboxConfig {
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(v1::NamespaceOption {
                    pid: v1::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct Pod {
    id: String,
    config: v1::PodSandboxConfig,
}

async fn run_pod(e: &mut Env, name: &str) -> Pod {
    let config = pod_config(e, name);
    let id = common::run_pod_sandbox(&mut e.c, &config).await.unwrap();
    Pod { id, config }
}

async fn create(
    e: &mut Env,
    pod: &Pod,
    config: v1::ContainerConfig,
) -> Result<String, tonic::Status> {
    create_container(&mut e.c, &pod.id, &pod.config, config).await
}

async fn start(e: &mut Env, id: &str) {
    e.c.runtime
        .start_container(v1::StartContainerRequest {
            container_id: id.into(),
        })
        .await
        .unwrap();
}

/// A running `sleep` container from `config` (its command is replaced).
async fn running(e: &mut Env, pod: &Pod, mut config: v1::ContainerConfig) -> String {
    config.command = vec!["sleep".into(), "3600".into()];
    let id = create(e, pod, config).await.unwrap();
    start(e, &id).await;
    id
}

/// (exit code, stdout, stderr) of `sh -c script` in the container.
async fn sh(e: &mut Env, id: &str, script: &str) -> (i32, String, String) {
    common::exec_sh(&mut e.c, id, script, 20).await
}

fn assert_invalid(result: Result<impl std::fmt::Debug, tonic::Status>, field: &str) {
    let err = result.expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains(field),
        "the error names {field}: {}",
        err.message()
    );
}

/// Files the injection makes at the host's root when it works: the hook
/// runs with the rest of the mount entry, and liblxc's container name,
/// section and hook type, as arguments (seen against the code before the
/// fix).
const INJECTION_TRACES: &[&str] = &[
    "/none",
    "/0",
    "/lxc",
    "/pre-start",
    "/rbind,create=dir,rprivate",
    "/pvecri-injected",
];

#[tokio::test]
async fn config_injection_through_any_string_is_refused() {
    if !ready("config_injection_through_any_string_is_refused") {
        return;
    }
    for trace in INJECTION_TRACES {
        assert!(!Path::new(trace).exists(), "{trace} exists before the test");
    }
    let mut e = env().await;
    let pod = run_pod(&mut e, "inject").await;
    let hook = "\nlxc.hook.pre-start = /usr/bin/touch /pvecri-injected";
    let volume = tempfile::tempdir().unwrap();
    let mount = |container_path: String, host_path: String| v1::Mount {
        container_path,
        host_path,
        ..Default::default()
    };
    let with_mount = |m: v1::Mount| v1::ContainerConfig {
        mounts: vec![m],
        ..container_config("c", BUSYBOX, &["true"])
    };
    let host = volume.path().display().to_string();
    let attempts: Vec<(&str, v1::ContainerConfig)> = vec![
        (
            "config.mounts[0].container_path",
            with_mount(mount(
                "/x\nlxc.hook.pre-start=/usr/bin/touch".into(),
                host.clone(),
            )),
        ),
        (
            "config.mounts[0].host_path",
            with_mount(mount("/x".into(), format!("{host}{hook}"))),
        ),
        (
            "config.mounts[0].image_sub_path",
            with_mount(v1::Mount {
                container_path: "/iv".into(),
                image: Some(v1::ImageSpec {
                    image: BUSYBOX.into(),
                    ..Default::default()
                }),
                image_sub_path: format!("etc{hook}"),
                readonly: true,
                ..Default::default()
            }),
        ),
        (
            "config.linux.security_context.selinux_options.level",
            v1::ContainerConfig {
                linux: Some(v1::LinuxContainerConfig {
                    security_context: Some(v1::LinuxContainerSecurityContext {
                        selinux_options: Some(v1::SeLinuxOption {
                            level: format!("s0{hook}"),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..container_config("c", BUSYBOX, &["true"])
            },
        ),
        (
            "config.linux.resources.unified",
            v1::ContainerConfig {
                linux: Some(v1::LinuxContainerConfig {
                    resources: Some(v1::LinuxContainerResources {
                        unified: [("memory.high".to_owned(), format!("max{hook}"))].into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..container_config("c", BUSYBOX, &["true"])
            },
        ),
        (
            // Not an injection but the same door: a device rule.
            "config.linux.resources.unified",
            v1::ContainerConfig {
                linux: Some(v1::LinuxContainerConfig {
                    resources: Some(v1::LinuxContainerResources {
                        unified: [("devices.allow".to_owned(), "a *:* rwm".to_owned())].into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..container_config("c", BUSYBOX, &["true"])
            },
        ),
        (
            "config.linux.resources.cpuset_cpus",
            v1::ContainerConfig {
                linux: Some(v1::LinuxContainerConfig {
                    resources: Some(v1::LinuxContainerResources {
                        cpuset_cpus: format!("0{hook}"),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..container_config("c", BUSYBOX, &["true"])
            },
        ),
        (
            "config.envs[0].key",
            v1::ContainerConfig {
                envs: vec![v1::KeyValue {
                    key: format!("A{hook}"),
                    value: b"1".to_vec(),
                }],
                ..container_config("c", BUSYBOX, &["true"])
            },
        ),
        (
            "config.metadata.name",
            container_config(&format!("c{hook}"), BUSYBOX, &["true"]),
        ),
    ];
    for (field, config) in attempts {
        assert_invalid(create(&mut e, &pod, config).await, field);
    }
    // The pod's own strings.
    let mut bad_pod = pod_config(&e, "inject-pod");
    bad_pod.linux.as_mut().unwrap().cgroup_parent = format!("kubepods{hook}");
    assert_invalid(
        common::run_pod_sandbox(&mut e.c, &bad_pod).await,
        "config.linux.cgroup_parent",
    );
    let mut bad_pod = pod_config(&e, "inject-pod");
    bad_pod.linux.as_mut().unwrap().cgroup_parent = "../../escape".into();
    assert_invalid(
        common::run_pod_sandbox(&mut e.c, &bad_pod).await,
        "config.linux.cgroup_parent",
    );
    let mut bad_pod = pod_config(&e, "inject-pod");
    bad_pod.hostname = format!("h{hook}");
    assert_invalid(
        common::run_pod_sandbox(&mut e.c, &bad_pod).await,
        "config.hostname",
    );
    // An ExecSync argument may span lines, but not hold a NUL.
    let id = running(&mut e, &pod, container_config("ok", BUSYBOX, &[])).await;
    let (code, out, _) = sh(&mut e, &id, "echo a\necho b").await;
    assert_eq!((code, out.as_str()), (0, "a\nb\n"));
    assert_invalid(
        e.c.runtime
            .exec_sync(v1::ExecSyncRequest {
                container_id: id.clone(),
                cmd: vec!["echo".into(), "a\0b".into()],
                timeout: 5,
            })
            .await,
        "cmd[1]",
    );
    // Nothing was half-made: the one good container is all there is, and
    // the pod is still ready.
    let list =
        e.c.runtime
            .list_containers(v1::ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
    assert_eq!(list.len(), 1, "{list:?}");
    let status =
        e.c.runtime
            .pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: pod.id.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner();
    assert_eq!(
        status.status.unwrap().state,
        v1::PodSandboxState::SandboxReady as i32
    );
    for trace in INJECTION_TRACES {
        assert!(
            !Path::new(trace).exists(),
            "{trace} was created on the host"
        );
    }
    common::stop_remove_pod(&mut e.c, &pod.id).await;
}

/// A loop device backed by a file that starts with [`DISK_MARKER`]: a disk
/// of the node with known content. Detached on drop.
struct LoopDisk {
    path: PathBuf,
    _file: tempfile::NamedTempFile,
}

const DISK_MARKER: &[u8] = b"PVECRI-NODE-DISK";

impl LoopDisk {
    fn new() -> Self {
        let mut file = tempfile::NamedTempFile::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let mut content = DISK_MARKER.to_vec();
        content.resize(1 << 20, 0);
        std::io::Write::write_all(&mut file, &content).unwrap();
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file.path())
            .output()
            .expect("losetup (util-linux)");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        LoopDisk { path, _file: file }
    }

    fn numbers(&self) -> (u32, u32) {
        use std::os::unix::fs::MetadataExt;
        let rdev = std::fs::metadata(&self.path).unwrap().rdev();
        (libc::major(rdev), libc::minor(rdev))
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}

#[tokio::test]
async fn a_root_container_cannot_open_the_node_s_disks() {
    if !ready("a_root_container_cannot_open_the_node_s_disks") {
        return;
    }
    let disk = LoopDisk::new();
    let (major, minor) = disk.numbers();
    // The host itself reads the disk.
    let mut first = vec![0u8; DISK_MARKER.len()];
    std::io::Read::read_exact(&mut std::fs::File::open(&disk.path).unwrap(), &mut first)
        .expect("the host can read its own disk");
    assert_eq!(first, DISK_MARKER);

    let mut e = env().await;
    let pod = run_pod(&mut e, "devices").await;
    let id = running(&mut e, &pod, container_config("c", BUSYBOX, &[])).await;
    // CAP_MKNOD is in the default set: making the node works...
    let (code, _, err) = sh(&mut e, &id, &format!("mknod /tmp/disk b {major} {minor}")).await;
    assert_eq!(code, 0, "mknod: {err}");
    // ...opening it does not, for reading or writing.
    for script in [
        "head -c 16 /tmp/disk",
        "dd if=/dev/zero of=/tmp/disk bs=512 count=0 conv=notrunc",
    ] {
        let (code, _, err) = sh(&mut e, &id, script).await;
        assert_ne!(code, 0, "{script} worked");
        assert!(err.contains("Operation not permitted"), "{script}: {err}");
    }
    // A character device outside the allow-list: the same.
    let (code, _, err) = sh(
        &mut e,
        &id,
        "mknod /tmp/lc c 10 237 && dd if=/tmp/lc of=/dev/null count=0",
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("Operation not permitted"), "{err}");
    // The allow-list itself works.
    let (code, out, err) = sh(
        &mut e,
        &id,
        "echo x > /dev/null && head -c 4 /dev/urandom | wc -c && head -c 2 /dev/zero | wc -c",
    )
    .await;
    assert_eq!(
        (code, out.split_whitespace().collect::<Vec<_>>()),
        (0, vec!["4", "2"]),
        "{err}"
    );

    // A CRI device is opened as asked, under the path asked.
    let with_device = |name: &str, host: &str| v1::ContainerConfig {
        devices: vec![v1::Device {
            container_path: "/dev/ctl".into(),
            host_path: host.into(),
            permissions: "rw".into(),
        }],
        ..container_config(name, BUSYBOX, &[])
    };
    let id2 = running(&mut e, &pod, with_device("dev", "/dev/loop-control")).await;
    let (code, _, err) = sh(&mut e, &id2, "dd if=/dev/ctl of=/dev/null count=0").await;
    assert_eq!(code, 0, "the asked-for device opens: {err}");
    // ...and nothing else.
    let (code, _, _) = sh(
        &mut e,
        &id2,
        &format!("mknod /tmp/disk b {major} {minor} && dd if=/tmp/disk of=/dev/null count=1"),
    )
    .await;
    assert_ne!(code, 0);
    // A device missing on the node is refused, naming it.
    let err = create(
        &mut e,
        &pod,
        with_device("gone", "/dev/pvecri-no-such-device"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("/dev/pvecri-no-such-device"),
        "{err:?}"
    );

    // A privileged container has the node's devices.
    let privileged = v1::ContainerConfig {
        linux: Some(v1::LinuxContainerConfig {
            security_context: Some(v1::LinuxContainerSecurityContext {
                privileged: true,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..container_config("priv", BUSYBOX, &[])
    };
    let mut priv_pod_config = pod_config(&e, "devices-priv");
    priv_pod_config
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .privileged = true;
    let priv_pod = Pod {
        id: common::run_pod_sandbox(&mut e.c, &priv_pod_config)
            .await
            .unwrap(),
        config: priv_pod_config,
    };
    let id3 = running(&mut e, &priv_pod, privileged).await;
    let (code, out, err) = sh(
        &mut e,
        &id3,
        &format!("head -c {} {}", DISK_MARKER.len(), disk.path.display()),
    )
    .await;
    assert_eq!((code, out.as_bytes()), (0, DISK_MARKER), "{err}");
    common::stop_remove_pod(&mut e.c, &pod.id).await;
    common::stop_remove_pod(&mut e.c, &priv_pod.id).await;
}

/// A directory on the host that a hostile image's symlinks point at.
struct HostTarget(PathBuf);

impl HostTarget {
    fn new() -> Self {
        let path = PathBuf::from(format!("/tmp/pvecri-escape-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("marker"), b"host\n").unwrap();
        HostTarget(path)
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for HostTarget {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Pushes busybox plus one layer of symlinks (`name -> target`) to the
/// fixture registry; returns the image name to pull.
fn hostile_image(links: &[(&str, &Path)]) -> String {
    hostile_layer_image("hostile-links", |root| {
        for (name, target) in links {
            std::os::unix::fs::symlink(target, root.join(name)).unwrap();
        }
    })
}

/// Pushes busybox plus one layer made by `fill` in an empty directory to
/// the fixture registry as `pvecri-test/<repo>`; returns the image name.
fn hostile_layer_image(repo: &str, fill: impl FnOnce(&Path)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    fill(&root);
    let layer = dir.path().join("layer.tar");
    let tar = Command::new("tar")
        .args(["-C"])
        .arg(&root)
        .arg("-cf")
        .arg(&layer)
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success());
    let name = format!("127.0.0.1:5000/pvecri-test/{repo}:{}", std::process::id());
    let out = Command::new("crane")
        .args([
            "append",
            "--insecure",
            "-b",
            &format!("127.0.0.1:5000/{BUSYBOX}"),
            "-t",
            &name,
            "-f",
        ])
        .arg(&layer)
        .output()
        .expect("crane (scripts/install-cri-tools.sh)");
    assert!(
        out.status.success(),
        "crane append: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    name
}

#[tokio::test]
async fn image_symlinks_cannot_point_mounts_at_the_host() {
    if !ready("image_symlinks_cannot_point_mounts_at_the_host") {
        return;
    }
    let host = HostTarget::new();
    // etc -> host dir: the pod's hosts, hostname and resolv.conf files are
    // bound under /etc; data -> host dir: a volume's target; iv -> host
    // dir: an image volume's sub-path.
    let image = hostile_image(&[("etc", &host.0), ("data", &host.0), ("iv", &host.0)]);
    let mut e = env().await;
    pull_image(&mut e.c, &image).await;
    let pod = run_pod(&mut e, "links").await;
    let volume = tempfile::tempdir().unwrap();
    std::fs::write(volume.path().join("in-volume"), b"v").unwrap();
    let config = v1::ContainerConfig {
        mounts: vec![v1::Mount {
            container_path: "/data/vol".into(),
            host_path: volume.path().display().to_string(),
            ..Default::default()
        }],
        ..container_config("c", &image, &[])
    };
    let id = running(&mut e, &pod, config).await;
    // Inside, the links lead where the container sees them lead: into its
    // own root, where pvecri made the targets.
    let (code, out, err) = sh(
        &mut e,
        &id,
        &format!(
            "cat {0}/hosts >/dev/null && cat {0}/hostname && ls /data/vol && ls {0}",
            host.0.display()
        ),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("in-volume"), "{out}");
    assert!(
        !out.contains("marker"),
        "the host dir is not the container's: {out}"
    );
    // And on the host nothing appeared.
    assert_eq!(host.entries(), vec!["marker".to_owned()]);
    assert_eq!(
        std::fs::read_dir(volume.path()).unwrap().count(),
        1,
        "nothing created in the volume either"
    );

    // An image volume whose sub-path is the link: resolved inside the
    // image, where the host dir does not exist.
    let iv = v1::ContainerConfig {
        mounts: vec![v1::Mount {
            container_path: "/iv".into(),
            image: Some(v1::ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            image_sub_path: "iv".into(),
            readonly: true,
            ..Default::default()
        }],
        ..container_config("iv", BUSYBOX, &[])
    };
    let err = create(&mut e, &pod, iv).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("image_sub_path"), "{err:?}");
    // A sub-path that is a link inside the image works, read-only.
    let iv = v1::ContainerConfig {
        mounts: vec![v1::Mount {
            container_path: "/iv".into(),
            image: Some(v1::ImageSpec {
                image: BUSYBOX.into(),
                ..Default::default()
            }),
            image_sub_path: "bin".into(),
            readonly: true,
            ..Default::default()
        }],
        ..container_config("iv2", BUSYBOX, &[])
    };
    let id2 = running(&mut e, &pod, iv).await;
    let (code, out, err) = sh(&mut e, &id2, "ls /iv | head -1; touch /iv/x").await;
    assert_ne!(code, 0, "the image volume is read-only: {out}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert_eq!(host.entries(), vec!["marker".to_owned()]);
    common::stop_remove_pod(&mut e.c, &pod.id).await;
}

#[tokio::test]
async fn a_fifo_for_etc_passwd_fails_create_instead_of_hanging_it() {
    if !ready("a_fifo_for_etc_passwd_fails_create_instead_of_hanging_it") {
        return;
    }
    let image = hostile_layer_image("passwd-fifo", |root| {
        std::fs::create_dir(root.join("etc")).unwrap();
        let fifo = root.join("etc/passwd");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    });
    let mut e = env().await;
    pull_image(&mut e.c, &image).await;
    let pod = run_pod(&mut e, "fifo").await;
    let config = v1::ContainerConfig {
        linux: Some(v1::LinuxContainerConfig {
            security_context: Some(v1::LinuxContainerSecurityContext {
                run_as_username: "nobody".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..container_config("fifo", &image, &["sleep", "3600"])
    };
    let started = std::time::Instant::now();
    let created = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        create(&mut e, &pod, config),
    )
    .await
    .expect("CreateContainer answers instead of blocking on the FIFO");
    let err = created.expect_err("a FIFO is no passwd file");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message()
            .contains("the image's /etc/passwd is a FIFO, not a regular file"),
        "{}",
        err.message()
    );
    // The daemon still serves, containers of sound images included.
    let id = running(&mut e, &pod, container_config("fine", BUSYBOX, &[])).await;
    let (code, out, err) = sh(&mut e, &id, "id -u").await;
    assert_eq!((code, out.trim()), (0, "0"), "{err}");
    common::stop_remove_pod(&mut e.c, &pod.id).await;
}

#[tokio::test]
async fn unknown_runtime_handlers_are_refused() {
    if !require_root("unknown_runtime_handlers_are_refused") {
        return;
    }
    let d = Daemon::start("");
    let mut c = d.client().await;
    let status = c
        .runtime
        .status(v1::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = status
        .runtime_handlers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(names, vec!["", "lxc"]);
    let config = v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: "kata".into(),
            uid: "uid-kata".into(),
            namespace: "escapes".into(),
            attempt: 0,
        }),
        ..Default::default()
    };
    let err = c
        .runtime
        .run_pod_sandbox(v1::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: "kata".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("runtime_handler"), "{err:?}");
    let pods = c
        .runtime
        .list_pod_sandbox(v1::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(pods.is_empty());
}
