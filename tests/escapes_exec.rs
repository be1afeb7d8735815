//! Ways out of a pod through the exec path, inherited descriptors and the
//! shared PID namespace's PID 1, tried from inside real containers through
//! the real daemon (security issue 13):
//! - an exec'd command must hold no descriptor of the host's pvecri-init
//!   (runc's CVE-2019-5736) nor anything else above stderr, and nothing it
//!   can reach through `/proc` may write to that binary;
//! - the workload starts with stdin, stdout and stderr only;
//! - the PID 1 of a shareProcessNamespace pod shows the containers an empty
//!   root and holds no capability, also with a user namespace.
//!
//! The daemon runs a copy of pvecri-init, so a test that fails cannot damage
//! the binary other tests use.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    container_config, create_container, mirror_config, pull_image, require_containers as ready,
    Daemon, BUSYBOX,
};
use pvecri::client::CriClient;
use pvecri::cri::v1;
use sha2::{Digest, Sha256};

struct Env {
    // Declared first so the daemon (and the pods) go before the copy.
    d: Daemon,
    c: CriClient,
    logs: tempfile::TempDir,
    init: PathBuf,
    _init_dir: tempfile::TempDir,
}

/// A daemon running its own copy of pvecri-init, with busybox pulled.
async fn env() -> Env {
    let init_dir = tempfile::Builder::new()
        .prefix("pvecri-it-init-")
        .tempdir()
        .unwrap();
    // Traversable: liblxc binds the init into user-namespace pods as the
    // pod's unprivileged root.
    set_mode(init_dir.path(), 0o711);
    let init = init_dir.path().join("pvecri-init");
    std::fs::copy(common::init_path(), &init).unwrap();
    set_mode(&init, 0o755);
    // Top-level keys before the mirror config's tables.
    let d = Daemon::start(&format!(
        "init_path = \"{}\"\n{}",
        init.display(),
        mirror_config()
    ));
    let mut c = d.client().await;
    pull_image(&mut c, BUSYBOX).await;
    Env {
        d,
        c,
        logs: tempfile::tempdir().unwrap(),
        init,
        _init_dir: init_dir,
    }
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

struct Pod {
    id: String,
    config: v1::PodSandboxConfig,
}

async fn run_pod(e: &mut Env, name: &str, ns: v1::NamespaceOption) -> Pod {
    let config = v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "escapes".into(),
            attempt: 0,
        }),
        log_directory: e.logs.path().join(name).display().to_string(),
        linux: Some(v1::LinuxPodSandboxConfig {
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(ns),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = common::run_pod_sandbox(&mut e.c, &config).await.unwrap();
    Pod { id, config }
}

fn own_pid_ns() -> v1::NamespaceOption {
    v1::NamespaceOption {
        pid: v1::NamespaceMode::Container as i32,
        ..Default::default()
    }
}

fn shared_pid_ns() -> v1::NamespaceOption {
    v1::NamespaceOption {
        pid: v1::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// A shared PID namespace inside a user namespace (`hostUsers: false`).
fn shared_pid_userns(host: u32) -> v1::NamespaceOption {
    let ids = vec![v1::IdMapping {
        container_id: 0,
        host_id: host,
        length: 65536,
    }];
    v1::NamespaceOption {
        userns_options: Some(v1::UserNamespace {
            mode: v1::NamespaceMode::Pod as i32,
            uids: ids.clone(),
            gids: ids,
        }),
        ..shared_pid_ns()
    }
}

/// Creates and starts a root busybox `sleep` with `add` capabilities in the
/// container's namespace mode `pid`.
async fn sleeper(
    e: &mut Env,
    pod: &Pod,
    name: &str,
    pid: v1::NamespaceMode,
    add: &[&str],
) -> String {
    let mut config = container_config(name, BUSYBOX, &["sleep", "3600"]);
    config.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(v1::LinuxContainerSecurityContext {
            namespace_options: Some(v1::NamespaceOption {
                pid: pid as i32,
                ..Default::default()
            }),
            capabilities: Some(v1::Capability {
                add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = create_container(&mut e.c, &pod.id, &pod.config, config)
        .await
        .unwrap();
    e.c.runtime
        .start_container(v1::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    id
}

/// (exit code, stdout, stderr) of `cmd` run by ExecSync.
async fn exec(e: &mut Env, id: &str, cmd: &[&str]) -> (i32, String, String) {
    let r =
        e.c.runtime
            .exec_sync(v1::ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: 20,
            })
            .await
            .unwrap_or_else(|s| panic!("exec {cmd:?} in {id}: {s}"))
            .into_inner();
    (
        r.exit_code,
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    )
}

async fn sh(e: &mut Env, id: &str, script: &str) -> (i32, String, String) {
    exec(e, id, &["sh", "-c", script]).await
}

/// Every descriptor the exec'd shell holds and every executable of a
/// process it can see, opened for appending and for reading and writing;
/// prints each one that opened. Stdio is left out: the pipes to the
/// daemon are writable by design.
const WRITE_EVERYTHING: &str = r#"
for p in /proc/self/fd/* /proc/[0-9]*/exe; do
    case "$p" in /proc/self/fd/[012]) continue ;; esac
    (echo x >> "$p") 2>/dev/null && echo "appended $p -> $(readlink "$p")"
    (exec 3<>"$p") 2>/dev/null && echo "opened $p -> $(readlink "$p")"
done
ls /proc/self/fd | tr '\n' ' '
"#;

/// The descriptors an `ls -l` of a `/proc/<pid>/fd` lists, as
/// `<fd> -> <target>`. With `own_dir`, the listing is of `ls`'s own
/// descriptors and the one it holds on that directory is left out: its
/// link points at that directory, or is already gone when `ls` reads it.
fn fds(listing: &str, own_dir: bool) -> Vec<String> {
    let mut fds: Vec<(String, Option<String>)> = listing
        .lines()
        .filter(|l| l.starts_with('l'))
        .filter_map(|l| {
            let (name, target) = match l.split_once(" -> ") {
                Some((name, target)) => (name, Some(target.to_owned())),
                None => (l, None),
            };
            Some((name.split_whitespace().last()?.to_owned(), target))
        })
        .collect();
    if own_dir {
        let is_ls_dir = |t: &Option<String>| {
            t.as_ref()
                .is_none_or(|t| t.starts_with("/proc/") && t.ends_with("/fd"))
        };
        if let Some(i) = fds.iter().rposition(|(_, t)| is_ls_dir(t)) {
            fds.remove(i);
        }
    }
    fds.into_iter()
        .map(|(fd, t)| format!("{fd} -> {}", t.unwrap_or_default()))
        .collect()
}

fn stdio_only(fds: &[String]) -> bool {
    let numbers: Vec<&str> = fds.iter().filter_map(|f| f.split(' ').next()).collect();
    numbers == ["0", "1", "2"]
}

/// Asserts that an exec'd process in `id` holds stdio only and cannot
/// write to the host's pvecri-init through anything it can see.
async fn assert_exec_cannot_reach_init(e: &mut Env, id: &str, what: &str) {
    let before = sha256(&e.init);
    let (_, out, err) = sh(e, id, WRITE_EVERYTHING).await;
    let opened: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("appended") || l.starts_with("opened"))
        .collect();
    assert_eq!(
        sha256(&e.init),
        before,
        "{what}: an exec'd process changed the host's pvecri-init: {opened:?}"
    );
    assert!(
        opened.is_empty(),
        "{what}: an exec'd process could open for writing: {opened:?}\n{err}"
    );
    let (_, listing, err) = exec(e, id, &["ls", "-l", "/proc/self/fd"]).await;
    let held = fds(&listing, true);
    assert!(
        stdio_only(&held),
        "{what}: an exec'd process holds more than stdio: {held:?}\n{listing}{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_holds_no_descriptor_of_the_host_init() {
    if !ready("exec_holds_no_descriptor_of_the_host_init") {
        return;
    }
    let mut e = env().await;
    let pod = run_pod(&mut e, "exec-fds", own_pid_ns()).await;
    let plain = sleeper(&mut e, &pod, "plain", v1::NamespaceMode::Container, &[]).await;
    // Everything but privileged: CAP_SYS_PTRACE and CAP_DAC_OVERRIDE open
    // any process's descriptors and files.
    let all = sleeper(&mut e, &pod, "all", v1::NamespaceMode::Container, &["ALL"]).await;
    assert_exec_cannot_reach_init(&mut e, &plain, "default capabilities").await;
    assert_exec_cannot_reach_init(&mut e, &all, "ALL capabilities").await;

    // In a shared PID namespace an exec'd process also sees the pod's
    // PID 1 and the other containers' processes.
    let shared = run_pod(&mut e, "exec-fds-shared", shared_pid_ns()).await;
    let a = sleeper(&mut e, &shared, "a", v1::NamespaceMode::Pod, &["ALL"]).await;
    let _b = sleeper(&mut e, &shared, "b", v1::NamespaceMode::Pod, &[]).await;
    assert_exec_cannot_reach_init(&mut e, &a, "shared PID namespace").await;

    // Many execs at once, each looking at the others while they start:
    // nothing of a running exec's pvecri-init is writable either.
    let before = sha256(&e.init);
    let mut racers = Vec::new();
    for _ in 0..6 {
        let mut c = e.d.client().await;
        let id = a.clone();
        racers.push(tokio::spawn(async move {
            let r = c
                .runtime
                .exec_sync(v1::ExecSyncRequest {
                    container_id: id,
                    cmd: vec!["sh".into(), "-c".into(), WRITE_EVERYTHING.into()],
                    timeout: 20,
                })
                .await
                .unwrap()
                .into_inner();
            String::from_utf8_lossy(&r.stdout).into_owned()
        }));
    }
    for r in racers {
        let out = r.await.unwrap();
        assert!(
            !out.lines().any(|l| l.starts_with("appended")),
            "a racing exec wrote somewhere: {out}"
        );
    }
    assert_eq!(sha256(&e.init), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_starts_with_stdio_only() {
    if !ready("workload_starts_with_stdio_only") {
        return;
    }
    let mut e = env().await;
    let pod = run_pod(&mut e, "workload-fds", own_pid_ns()).await;
    let id = sleeper(&mut e, &pod, "w", v1::NamespaceMode::Container, &[]).await;
    // The workload is PID 1, root with the same capabilities as the exec,
    // so the exec may look at its descriptors.
    let (code, listing, err) = exec(&mut e, &id, &["ls", "-l", "/proc/1/fd"]).await;
    assert_eq!(code, 0, "{err}");
    let held = fds(&listing, false);
    assert!(
        stdio_only(&held),
        "the workload holds more than stdio: {held:?}\n{listing}"
    );
}

/// What a container in a shared PID namespace can see of its PID 1.
async fn assert_pid1_is_empty_and_powerless(e: &mut Env, id: &str, what: &str) {
    // The root of PID 1, and what lies above it: empty (or refused).
    for dir in [
        "/proc/1/root/",
        "/proc/1/root/..",
        "/proc/1/root/../..",
        "/proc/1/cwd/",
        "/proc/1/cwd/..",
    ] {
        let (code, out, err) = exec(e, id, &["ls", "-a", dir]).await;
        let names: Vec<&str> = out
            .split_whitespace()
            .filter(|n| *n != "." && *n != "..")
            .collect();
        assert!(
            code != 0 || names.is_empty(),
            "{what}: {dir} shows {names:?} {err}"
        );
    }
    for file in [
        "/proc/1/root/etc/hostname",
        "/proc/1/root/../etc/hostname",
        "/proc/1/root/proc/1/environ",
    ] {
        let (code, out, _) = exec(e, id, &["cat", file]).await;
        assert_ne!(code, 0, "{what}: {file} is readable: {out}");
    }
    let (code, status, err) = exec(e, id, &["cat", "/proc/1/status"]).await;
    assert_eq!(code, 0, "{err}");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    for set in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(field(set), "0000000000000000", "{what}: PID 1's {set}");
    }
    assert_eq!(field("NoNewPrivs:"), "1", "{what}");
    // Nothing but /dev/null behind its stdio.
    let (_, listing, _) = exec(e, id, &["ls", "-l", "/proc/1/fd"]).await;
    let held = fds(&listing, false);
    assert!(
        held.len() <= 3 && held.iter().all(|f| f.ends_with("/dev/null")),
        "{what}: PID 1 holds {held:?}"
    );
    // Its executable, where visible, is not the host's file.
    let (code, exe, _) = exec(e, id, &["readlink", "/proc/1/exe"]).await;
    assert!(
        code != 0 || exe.contains("memfd:"),
        "{what}: PID 1 runs {exe}"
    );
}

/// Host PID of the PID 1 of the namespace `pid` (a host PID) is in.
fn host_pid1(pid: i32) -> i32 {
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|p| {
            std::fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|n| n == ns)
                && std::fs::read_to_string(format!("/proc/{p}/status")).is_ok_and(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("NSpid:"))
                        .and_then(|v| v.split_whitespace().last().map(|x| x == "1"))
                        .unwrap_or(false)
                })
        })
        .expect("the namespace's PID 1")
}

async fn workload_host_pid(e: &mut Env, id: &str) -> i32 {
    let info =
        e.c.runtime
            .container_status(v1::ContainerStatusRequest {
                container_id: id.into(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner()
            .info;
    let v: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    v["pid"].as_i64().unwrap() as i32
}

/// The pod's PID 1 still reaps an orphan, and dies with the pod.
async fn assert_pid1_reaps_and_dies(e: &mut Env, pod: &Pod, id: &str) {
    // A background sleep outlives its shell and is handed to PID 1.
    let (code, out, err) = sh(e, id, "sleep 600 >/dev/null 2>&1 & echo $!").await;
    assert_eq!(code, 0, "{err}");
    let orphan = out.trim().to_owned();
    let (code, _, err) = exec(e, id, &["kill", "-9", &orphan]).await;
    assert_eq!(code, 0, "{err}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, _, _) = exec(e, id, &["test", "-e", &format!("/proc/{orphan}")]).await;
        if code != 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "orphan {orphan} was not reaped by the pod's PID 1"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid1 = host_pid1(workload_host_pid(e, id).await);
    common::stop_remove_pod(&mut e.c, &pod.id).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{pid1}/stat")).is_ok_and(|s| {
        !s.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    }) {
        assert!(
            Instant::now() < deadline,
            "the pod's PID 1 ({pid1}) outlived StopPodSandbox"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_pid_namespace_holder_shows_nothing_of_the_host() {
    if !ready("shared_pid_namespace_holder_shows_nothing_of_the_host") {
        return;
    }
    let mut e = env().await;
    let pod = run_pod(&mut e, "holder", shared_pid_ns()).await;
    let ptrace = sleeper(
        &mut e,
        &pod,
        "ptrace",
        v1::NamespaceMode::Pod,
        &["SYS_PTRACE"],
    )
    .await;
    let all = sleeper(&mut e, &pod, "all", v1::NamespaceMode::Pod, &["ALL"]).await;
    assert_pid1_is_empty_and_powerless(&mut e, &ptrace, "CAP_SYS_PTRACE").await;
    assert_pid1_is_empty_and_powerless(&mut e, &all, "ALL capabilities").await;
    assert_pid1_reaps_and_dies(&mut e, &pod, &all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_pid_namespace_holder_in_a_user_namespace() {
    if !ready("shared_pid_namespace_holder_in_a_user_namespace") {
        return;
    }
    if std::fs::read_to_string("/proc/sys/user/max_user_namespaces").is_ok_and(|n| n.trim() == "0")
    {
        eprintln!("skipping shared_pid_namespace_holder_in_a_user_namespace: user namespaces are disabled");
        return;
    }
    let mut e = env().await;
    // Not the range tests/security.rs uses, so both may run at once.
    let pod = run_pod(&mut e, "holder-userns", shared_pid_userns(296_608)).await;
    let all = sleeper(&mut e, &pod, "all", v1::NamespaceMode::Pod, &["ALL"]).await;
    assert_pid1_is_empty_and_powerless(&mut e, &all, "user namespace, ALL capabilities").await;
    assert_exec_cannot_reach_init(&mut e, &all, "user namespace").await;
    assert_pid1_reaps_and_dies(&mut e, &pod, &all).await;
}
