//! The real kubelet (v1.37, built by scripts/install-cri-tools.sh) running
//! standalone against the daemon: static pods from a manifest directory,
//! with no API server. It exercises what critest does not: the kubelet's own
//! cgroup tree (`kubepods/...` made before CreateContainer), pod-level
//! volumes shared between an init container and a non-root container, a
//! `hostUsers: false` pod with the kubelet's own ID range, restarts with
//! back-off, and pod removal when the manifest goes.
//!
//! The kubelet changes node state this test puts back: three kernel
//! tunables it insists on (vm.overcommit_memory, kernel.panic,
//! kernel.panic_on_oops), its iptables marker chains, its bind-mounted root
//! dir and its `kubepods` cgroups.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{mirror_config, require_init, require_registry, require_root, Daemon};
use pvecri::client::CriClient;
use pvecri::cri::v1;

const KUBELET: &str = "/usr/local/bin/kubelet";
const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";
const NODE: &str = "pvecri-e2e";
const TUNABLES: [&str; 3] = [
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
];

fn ready(test: &str) -> bool {
    if !Path::new(KUBELET).exists() {
        return common::skip(
            test,
            &format!("needs {KUBELET} (scripts/install-cri-tools.sh)"),
        );
    }
    require_root(test) && require_registry(test) && require_init(test)
}

/// The iptables chains that exist now, per tool and table.
fn chains() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for tool in ["iptables", "ip6tables"] {
        for table in ["filter", "nat", "mangle"] {
            let Ok(o) = Command::new(tool).args(["-t", table, "-S"]).output() else {
                continue;
            };
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                if let Some(chain) = line.strip_prefix("-N ") {
                    out.push((tool.to_owned(), table.to_owned(), chain.to_owned()));
                }
            }
        }
    }
    out
}

/// Where the kubelet keeps state whatever its `--root-dir`.
const KUBELET_DIR: &str = "/var/lib/kubelet";

/// Puts back what the kubelet changes on the node, also when the test
/// fails half-way.
struct NodeGuard {
    tunables: Vec<(PathBuf, String)>,
    chains: Vec<(String, String, String)>,
    dir: PathBuf,
    kubelet: Option<Child>,
    /// Dropped (its pods removed) once the kubelet is gone, before the
    /// kubelet's cgroups can be removed.
    daemon: Option<Daemon>,
    /// Whether `/var/lib/kubelet` existed before: the kubelet makes its
    /// `device-plugins` (and without `--cert-dir`, `pki`) there whatever
    /// its `--root-dir`.
    had_kubelet_dir: bool,
}

impl NodeGuard {
    fn new(dir: &Path) -> Self {
        Self {
            tunables: TUNABLES
                .iter()
                .map(|t| {
                    let path = Path::new("/proc/sys").join(t);
                    let value = std::fs::read_to_string(&path).unwrap();
                    (path, value)
                })
                .collect(),
            chains: chains(),
            dir: dir.to_owned(),
            kubelet: None,
            daemon: None,
            had_kubelet_dir: Path::new(KUBELET_DIR).exists(),
        }
    }
}

impl Drop for NodeGuard {
    fn drop(&mut self) {
        if let Some(mut kubelet) = self.kubelet.take() {
            let pid = nix::unistd::Pid::from_raw(kubelet.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while kubelet.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = kubelet.kill();
            let _ = kubelet.wait();
        }
        drop(self.daemon.take());
        if !self.had_kubelet_dir {
            let _ = std::fs::remove_dir_all(KUBELET_DIR);
        }
        for (path, value) in &self.tunables {
            let _ = std::fs::write(path, value);
        }
        for (tool, table, chain) in chains() {
            if self
                .chains
                .contains(&(tool.clone(), table.clone(), chain.clone()))
            {
                continue;
            }
            // Rules jumping to it first, then the chain itself.
            let rules = Command::new(&tool)
                .args(["-t", &table, "-S"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for rule in rules
                .lines()
                .filter(|r| r.ends_with(&format!("-j {chain}")))
            {
                let args: Vec<&str> = rule.split_whitespace().skip(1).collect();
                let _ = Command::new(&tool)
                    .args(["-t", &table, "-D"])
                    .args(&args)
                    .status();
            }
            for op in ["-F", "-X"] {
                let _ = Command::new(&tool)
                    .args(["-t", &table, op, &chain])
                    .status();
            }
        }
        // The kubelet bind-mounts its root dir onto itself.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let here = self.dir.display().to_string();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&here))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
        common::remove_cgroup_tree("kubepods");
    }
}

fn kubelet_config(dir: &Path, socket: &Path) -> PathBuf {
    let text = format!(
        "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: {manifests}
fileCheckFrequency: 2s
syncFrequency: 5s
containerRuntimeEndpoint: unix://{socket}
imageServiceEndpoint: unix://{socket}
cgroupDriver: cgroupfs
# The CI and dev VMs run the v1+v2 hybrid layout.
failCgroupV1: false
failSwapOn: false
address: 127.0.0.1
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
podLogsDir: {logs}
# Test machines have small, busy disks: keep eviction and image GC away.
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
",
        manifests = dir.join("manifests").display(),
        socket = socket.display(),
        port = common::free_port(),
        healthz = common::free_port(),
        logs = dir.join("pod-logs").display(),
    );
    let path = dir.join("kubelet.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// An init container writes into an emptyDir as root; the main container,
/// running as uid 1000, must be able to read it.
fn web_manifest() -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: default
spec:
  terminationGracePeriodSeconds: 2
  volumes:
  - name: shared
    emptyDir: {{}}
  initContainers:
  - name: init
    image: {BUSYBOX}
    command: [\"sh\", \"-c\", \"echo from-init > /shared/init.txt\"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  containers:
  - name: main
    image: {BUSYBOX}
    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]
    securityContext: {{runAsUser: 1000, runAsGroup: 1000}}
    volumeMounts: [{{name: shared, mountPath: /shared}}]
    resources: {{limits: {{cpu: 200m, memory: 64Mi}}}}
"
    )
}

/// A pod in its own user namespace; the kubelet picks the ID range.
fn userns_manifest() -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: userns
  namespace: default
spec:
  terminationGracePeriodSeconds: 2
  hostUsers: false
  containers:
  - name: mapped
    image: {BUSYBOX}
    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]
"
    )
}

fn crashy_manifest() -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: crashy
  namespace: default
spec:
  terminationGracePeriodSeconds: 2
  restartPolicy: Always
  containers:
  - name: crashy
    image: {BUSYBOX}
    command: [\"sh\", \"-c\", \"echo started; exit 3\"]
"
    )
}

async fn containers(c: &mut CriClient) -> Vec<v1::Container> {
    c.runtime
        .list_containers(v1::ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .containers
}

async fn ready_pods(c: &mut CriClient, name: &str) -> usize {
    c.runtime
        .list_pod_sandbox(v1::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items
        .iter()
        .filter(|p| {
            p.state == v1::PodSandboxState::SandboxReady as i32
                && p.metadata.as_ref().is_some_and(|m| m.name == name)
        })
        .count()
}

/// Waits for a running container named `name`.
async fn running(c: &CriClient, name: &str, limit: Duration, log: &Path) -> v1::Container {
    let what = format!("a running container {name}");
    eventually(limit, &what, log, || {
        let mut c = c.clone();
        async move {
            containers(&mut c).await.into_iter().find(|x| {
                x.state == v1::ContainerState::ContainerRunning as i32
                    && x.metadata.as_ref().is_some_and(|m| m.name == name)
            })
        }
    })
    .await
}

/// Polls `check` once a second until it gives a value or `limit` passes.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, log: &Path, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            panic!(
                "timed out waiting for {what}; kubelet log tail:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pods_run_restart_and_go_away() {
    if !ready("static_pods_run_restart_and_go_away") {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("pvecri-kubelet-")
        .tempdir()
        .unwrap();
    let mut guard = NodeGuard::new(dir.path());
    let d = guard.daemon.insert(Daemon::start(&mirror_config()));
    let socket = d.socket.clone();
    let mut c = d.client().await;
    for sub in ["manifests", "root", "pod-logs"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let manifests = dir.path().join("manifests");
    std::fs::write(manifests.join("web.yaml"), web_manifest()).unwrap();
    std::fs::write(manifests.join("crashy.yaml"), crashy_manifest()).unwrap();
    std::fs::write(manifests.join("userns.yaml"), userns_manifest()).unwrap();
    let config = kubelet_config(dir.path(), &socket);
    let log = dir.path().join("kubelet.log");
    let out = std::fs::File::create(&log).unwrap();
    guard.kubelet = Some(
        Command::new(KUBELET)
            .arg(format!("--config={}", config.display()))
            .arg(format!("--root-dir={}", dir.path().join("root").display()))
            .arg(format!("--hostname-override={NODE}"))
            .arg("--v=2")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap(),
    );

    // The main container runs, after its init container, under the
    // kubelet's cgroups, and reads the init container's file as uid 1000.
    let main = running(&c, "main", Duration::from_secs(180), &log).await;
    let r = c
        .runtime
        .exec_sync(v1::ExecSyncRequest {
            container_id: main.id.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "id -u; cat /shared/init.txt".into(),
            ],
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        "1000\nfrom-init\n",
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(
        main.image.as_ref().map(|i| i.image.as_str()),
        Some(BUSYBOX),
        "status names the image, not its ID"
    );

    // hostUsers: false: the kubelet's mapping reaches the container.
    let mapped = running(&c, "mapped", Duration::from_secs(120), &log).await;
    let r = c
        .runtime
        .exec_sync(v1::ExecSyncRequest {
            container_id: mapped.id.clone(),
            cmd: vec!["cat".into(), "/proc/self/uid_map".into()],
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    let map = String::from_utf8_lossy(&r.stdout);
    let fields: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "{map}");
    assert_eq!(fields[0], "0", "{map}");
    assert_ne!(
        fields[1], "0",
        "root inside must not be root outside: {map}"
    );
    eprintln!(
        "the kubelet's mapping for a hostUsers: false pod: {}",
        map.trim()
    );

    // A container that exits is restarted (after the kubelet's back-off).
    eventually(
        Duration::from_secs(120),
        "a restart of crashy",
        &log,
        || {
            let mut c = c.clone();
            async move {
                containers(&mut c)
                    .await
                    .into_iter()
                    .any(|x| {
                        x.metadata
                            .as_ref()
                            .is_some_and(|m| m.name == "crashy" && m.attempt >= 1)
                    })
                    .then_some(())
            }
        },
    )
    .await;

    // Removing a manifest stops its pod.
    let web = format!("web-{NODE}");
    assert_eq!(ready_pods(&mut c, &web).await, 1);
    std::fs::remove_file(manifests.join("web.yaml")).unwrap();
    eventually(Duration::from_secs(90), "the web pod to stop", &log, || {
        let mut c = c.clone();
        let web = web.clone();
        async move { (ready_pods(&mut c, &web).await == 0).then_some(()) }
    })
    .await;
    let had_kubelet_dir = guard.had_kubelet_dir;
    drop(guard);
    assert!(
        had_kubelet_dir || !Path::new(KUBELET_DIR).exists(),
        "{KUBELET_DIR} was left behind"
    );
}
