//! Integration harness: runs the real `pvecri daemon` binary on a private
//! socket and state directory, and talks to it with the generated CRI client.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pvecri::client::CriClient;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_pvecri");

/// A test that cannot run here: prints a loud skip line and returns
/// `false`, except in CI (`CI=true`), where every precondition is
/// installed by the scripts and a missing one must fail the run instead of
/// passing it silently.
pub(crate) fn skip(test: &str, reason: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} cannot run in CI: {reason}");
    }
    eprintln!("skipping {test}: {reason}");
    false
}

/// True when the test may run; prints a loud skip line otherwise.
pub(crate) fn require_root(test: &str) -> bool {
    nix::unistd::geteuid().is_root()
        || skip(
            test,
            "needs root (the daemon manages namespaces, cgroups and LXC containers)",
        )
}

/// A running daemon with its own temporary directories. Stopped on drop.
pub(crate) struct Daemon {
    child: Option<Child>,
    /// `PVECRI_FAILPOINTS` for the next (re)start; see `pvecri::testing::failpoint`.
    pub failpoints: Option<String>,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub config: PathBuf,
}

impl Daemon {
    /// Starts a daemon with the default config plus `extra` TOML lines.
    pub(crate) fn start(extra: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pvecri-it-")
            .tempdir()
            .expect("temp dir");
        // Traversable like /var/lib: a user-namespace pod's root (an
        // unprivileged host ID) walks into it while liblxc sets up.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o711),
        )
        .expect("chmod the temp dir");
        let config = write_config(dir.path(), extra);
        let mut d = Self {
            child: None,
            failpoints: None,
            socket: dir.path().join("run/pvecri.sock"),
            config,
            dir,
        };
        d.spawn();
        d
    }

    /// Stops the daemon (if running) and starts it again on the same
    /// config and state.
    pub(crate) fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }

    /// Starts a second daemon process on this daemon's config.
    pub(crate) fn spawn_again(&self) -> Child {
        spawn_daemon(&self.config, &self.dir.path().join("daemon2.log"), None)
    }

    fn spawn(&mut self) {
        let log = self.dir.path().join("daemon.log");
        let mut child = spawn_daemon(&self.config, &log, self.failpoints.as_deref());
        let deadline = Instant::now() + Duration::from_secs(20);
        // A killed daemon leaves its socket file behind: wait until the new
        // one accepts connections, not just until the file exists.
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "daemon exited early ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not create its socket in time"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    pub(crate) async fn client(&self) -> CriClient {
        CriClient::connect(&self.socket)
            .await
            .expect("connect to the daemon socket")
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Waits (bounded) for a daemon that is expected to die by itself
    /// (a failure point's crash); its exit status.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends SIGTERM and waits for the exit status.
    pub(crate) fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("daemon ignored SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            // Containers outlive the daemon by design: remove what a test
            // (or a failed assertion) left running, so no test leaks
            // processes, mounts or addresses into the next.
            let _ = Command::new("crictl")
                .arg(format!(
                    "--runtime-endpoint=unix://{}",
                    self.socket.display()
                ))
                .args(["--timeout=30s", "rmp", "--all", "--force"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            self.stop();
        }
        // The daemon keeps run/ns as a private bind mount across restarts;
        // the test's temporary directory can only go once it is unmounted.
        let _ = nix::mount::umount2(
            &self.dir.path().join("run/ns"),
            nix::mount::MntFlags::MNT_DETACH,
        );
    }
}

fn spawn_daemon(config: &Path, log: &Path, failpoints: Option<&str>) -> Child {
    let log = std::fs::File::create(log).expect("daemon log file");
    let mut cmd = Command::new(BIN);
    match failpoints {
        Some(f) => cmd.env("PVECRI_FAILPOINTS", f),
        None => cmd.env_remove("PVECRI_FAILPOINTS"),
    };
    cmd.args(["daemon", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn pvecri daemon")
}

/// Writes a config that keeps every path inside `dir`.
pub(crate) fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("config.toml");
    let init = if extra.contains("init_path") {
        String::new()
    } else {
        format!("init_path = \"{}\"\n", init_path().display())
    };
    let text = format!(
        "socket = \"{d}/run/pvecri.sock\"\nstate_dir = \"{d}/state\"\nruntime_dir = \"{d}/run\"\nlog_level = \"debug\"\n{init}{extra}\n",
        d = dir.display(),
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// Runs `pvecri ARGS` to completion.
pub(crate) fn pvecri(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run pvecri")
}

/// Daemon config lines that resolve upstream image names through the local
/// fixture registry (the same mirrors the critest run uses).
pub(crate) fn mirror_config() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/critest/pvecri.toml");
    std::fs::read_to_string(path).expect("tests/critest/pvecri.toml")
}

/// True when the fixture registry answers; prints a loud skip line otherwise.
pub(crate) fn require_registry(test: &str) -> bool {
    let up = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:5000".parse().unwrap(),
        Duration::from_secs(1),
    )
    .is_ok();
    up || skip(
        test,
        "no fixture registry on 127.0.0.1:5000 (run scripts/registry.sh start && scripts/build-fixture-images.sh)",
    )
}

/// The static pvecri-init that scripts/build-init.sh builds.
pub(crate) fn init_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/x86_64-unknown-linux-gnu/release/pvecri-init")
}

/// True when pvecri-init is built; prints a loud skip line otherwise.
pub(crate) fn require_init(test: &str) -> bool {
    init_path().exists() || skip(test, "pvecri-init is not built (run scripts/build-init.sh)")
}

/// True when a test that runs containers may: root, the fixture registry
/// and pvecri-init; prints a loud skip line otherwise.
pub(crate) fn require_containers(test: &str) -> bool {
    require_root(test) && require_registry(test) && require_init(test)
}

/// The image most container tests run.
pub(crate) const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";

/// A daemon on the fixture registry's mirrors with [`BUSYBOX`] pulled, its
/// client, and a directory for the containers' logs.
pub(crate) struct BusyboxEnv {
    pub d: Daemon,
    pub c: CriClient,
    pub logs: tempfile::TempDir,
}

pub(crate) async fn busybox_env() -> BusyboxEnv {
    let d = Daemon::start(&mirror_config());
    let mut c = d.client().await;
    pull_image(&mut c, BUSYBOX).await;
    BusyboxEnv {
        d,
        c,
        logs: tempfile::tempdir().unwrap(),
    }
}

/// An ImageSpec naming `image`.
pub(crate) fn image_spec(image: &str) -> Option<pvecri::cri::v1::ImageSpec> {
    Some(pvecri::cri::v1::ImageSpec {
        image: image.to_owned(),
        ..Default::default()
    })
}

/// PullImage of `image` with `auth`: the image ref, or the status.
pub(crate) async fn try_pull(
    d: &Daemon,
    image: &str,
    auth: Option<pvecri::cri::v1::AuthConfig>,
) -> Result<String, tonic::Status> {
    d.client()
        .await
        .image
        .pull_image(pvecri::cri::v1::PullImageRequest {
            image: image_spec(image),
            auth,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

/// ImageStatus of `image`: `None` when the daemon does not know it.
pub(crate) async fn image_status(d: &Daemon, image: &str) -> Option<pvecri::cri::v1::Image> {
    d.client()
        .await
        .image
        .image_status(pvecri::cri::v1::ImageStatusRequest {
            image: image_spec(image),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
}

/// A docker-registry of the test's own on a free loopback port, wanting
/// basic auth as alice:s3cret; `dir` holds its storage and a docker config
/// with that login (for crane, through `DOCKER_CONFIG`). Stopped on drop.
pub(crate) struct AuthRegistry {
    child: Child,
    pub dir: tempfile::TempDir,
    pub addr: String,
}

impl AuthRegistry {
    /// `None` (after a loud skip) without Debian's docker-registry.
    pub(crate) fn start() -> Option<Self> {
        let bin = Path::new("/usr/bin/docker-registry");
        if !bin.exists() {
            skip(
                "the authenticated registry test",
                "/usr/bin/docker-registry is not installed",
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", "alice", "s3cret"])
            .output()
            .unwrap();
        assert!(htpasswd.status.success());
        std::fs::write(dir.path().join("htpasswd"), htpasswd.stdout).unwrap();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\nhttp:\n  addr: {addr}\nauth:\n  htpasswd:\n    realm: pvecri-test\n    path: {d}/htpasswd\n",
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // "alice:s3cret", base64, for crane's docker config.
        std::fs::write(
            dir.path().join("config.json"),
            format!("{{\"auths\":{{\"{addr}\":{{\"auth\":\"YWxpY2U6czNjcmV0\"}}}}}}"),
        )
        .unwrap();
        Some(AuthRegistry { child, dir, addr })
    }
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// Removes `name` (a test's cgroup tree) from every cgroup hierarchy,
/// children first.
pub(crate) fn remove_cgroup_tree(name: &str) {
    fn rm(dir: &std::path::Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rm(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        rm(&hierarchy.path().join(name));
    }
    rm(&std::path::Path::new("/sys/fs/cgroup").join(name));
}

/// A container config the way the tests mostly need one: `cmd` in `image`,
/// logging to `<name>.log`.
pub(crate) fn container_config(
    name: &str,
    image: &str,
    cmd: &[&str],
) -> pvecri::cri::v1::ContainerConfig {
    use pvecri::cri::v1;
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(v1::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

/// CreateContainer in `pod`, whose RunPodSandbox config was `sandbox`.
pub(crate) async fn create_container(
    c: &mut CriClient,
    pod: &str,
    sandbox: &pvecri::cri::v1::PodSandboxConfig,
    config: pvecri::cri::v1::ContainerConfig,
) -> Result<String, tonic::Status> {
    c.runtime
        .create_container(pvecri::cri::v1::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config),
            sandbox_config: Some(sandbox.clone()),
        })
        .await
        .map(|r| r.into_inner().container_id)
}

/// The status of container `id` once it has exited (bounded: 20 s).
pub(crate) async fn wait_exited(c: &mut CriClient, id: &str) -> pvecri::cri::v1::ContainerStatus {
    wait_exited_within(c, id, Duration::from_secs(20)).await
}

/// The status of container `id` once it has exited, waiting at most
/// `limit`.
pub(crate) async fn wait_exited_within(
    c: &mut CriClient,
    id: &str,
    limit: Duration,
) -> pvecri::cri::v1::ContainerStatus {
    use pvecri::cri::v1;
    let deadline = Instant::now() + limit;
    loop {
        let s = c
            .runtime
            .container_status(v1::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        if s.state == v1::ContainerState::ContainerExited as i32 {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} did not exit: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (exit code, stdout, stderr) of `sh -c script` run by ExecSync in the
/// container, with the given timeout in seconds; fails the test when the
/// call itself fails.
pub(crate) async fn exec_sh(
    c: &mut CriClient,
    id: &str,
    script: &str,
    timeout: i64,
) -> (i32, String, String) {
    let r = c
        .runtime
        .exec_sync(pvecri::cri::v1::ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            timeout,
        })
        .await
        .unwrap_or_else(|e| panic!("ExecSync {script:?} in {id}: {e}"))
        .into_inner();
    (
        r.exit_code,
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    )
}

/// PullImage, failing the test when it fails.
pub(crate) async fn pull_image(c: &mut CriClient, image: &str) {
    c.image
        .pull_image(pvecri::cri::v1::PullImageRequest {
            image: Some(pvecri::cri::v1::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("pull {image}: {e}"));
}

/// StopPodSandbox then RemovePodSandbox, failing the test on an error.
pub(crate) async fn stop_remove_pod(c: &mut CriClient, pod: &str) {
    use pvecri::cri::v1;
    c.runtime
        .stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: pod.into(),
        })
        .await
        .unwrap();
    c.runtime
        .remove_pod_sandbox(v1::RemovePodSandboxRequest {
            pod_sandbox_id: pod.into(),
        })
        .await
        .unwrap();
}

/// Removes a test's cgroup tree (see [`remove_cgroup_tree`]) when dropped,
/// also when the test fails half-way. Declare it before the daemon, so the
/// daemon (and with it the test's containers) goes first.
pub(crate) struct CgroupTreeGuard(pub String);

impl Drop for CgroupTreeGuard {
    fn drop(&mut self) {
        remove_cgroup_tree(&self.0);
    }
}

/// RunPodSandbox with `config`; the pod ID.
pub(crate) async fn run_pod_sandbox(
    c: &mut CriClient,
    config: &pvecri::cri::v1::PodSandboxConfig,
) -> Result<String, tonic::Status> {
    c.runtime
        .run_pod_sandbox(pvecri::cri::v1::RunPodSandboxRequest {
            config: Some(config.clone()),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().pod_sandbox_id)
}

/// `pvecri census --json` of the daemon's state dir (plus `args`), parsed;
/// and whether it exited 0.
pub(crate) fn census(d: &Daemon, args: &[&str]) -> (serde_json::Value, bool) {
    let config = d.config.display().to_string();
    let mut all = vec!["--config", config.as_str(), "census", "--json"];
    all.extend_from_slice(args);
    let out = pvecri(&all);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "census printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (report, out.status.success())
}

/// The count of one kind in a census report.
pub(crate) fn census_count(report: &serde_json::Value, kind: &str) -> u64 {
    report["sections"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["kind"] == kind))
        .and_then(|s| s["count"].as_u64())
        .unwrap_or_else(|| panic!("no {kind} in the census: {report:#}"))
}

/// How many pods' namespace dirs are under `ns_root` (a daemon's `run/ns`):
/// its spare network namespaces (`.spare-net-<n>`) are its own, not a
/// pod's.
pub(crate) fn pod_ns_dirs(ns_root: &std::path::Path) -> usize {
    std::fs::read_dir(ns_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with(".spare-net-"))
        .count()
}

/// What the pods and containers `ids` (and the daemon's dirs) left on the
/// node while the daemon may still run: every live census item except
/// those of the kinds in `skip` (the daemon itself, and what a running
/// daemon keeps: its bridge and nftables table). Empty means clean.
pub(crate) fn census_leftovers(
    d: &Daemon,
    ids: &std::collections::HashSet<String>,
    skip: &[&str],
) -> Vec<String> {
    let mut args = Vec::new();
    for id in ids {
        args.extend(["--id", id.as_str()]);
    }
    let (report, _) = census(d, &args);
    let mut left = Vec::new();
    for s in report["sections"].as_array().into_iter().flatten() {
        let kind = s["kind"].as_str().unwrap_or_default();
        if s["live"] != true || skip.contains(&kind) {
            continue;
        }
        if let Some(err) = s.get("error") {
            left.push(format!("{kind}: unreadable: {err}"));
        }
        for item in s["items"].as_array().into_iter().flatten() {
            left.push(format!("{kind}: {}", item.as_str().unwrap_or_default()));
        }
    }
    left
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
