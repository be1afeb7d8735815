//! A one-node Kubernetes cluster whose node runs on pvecri
//! (scripts/cluster.sh: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler, the kubelet and a pvecri daemon of its own), driven with
//! kubectl the way users drive a cluster. Each scenario works in its own
//! namespace and asserts what a user would see; they share one cluster,
//! which takes about 15 s to bring up. A failing scenario does not stop
//! the others: all run, then the test fails naming every one that failed.
//!
//! Needs root, the local registry (scripts/registry.sh), pvecri-init and
//! the Kubernetes binaries scripts/install-cri-tools.sh builds.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// scenario, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{require_init, require_registry, require_root};

const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";
const NODE: &str = "pvecri-node";
const TOOLS: [&str; 6] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kubectl",
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn ready(test: &str) -> bool {
    for tool in TOOLS {
        let path = Path::new("/usr/local/bin").join(tool);
        if !path.exists() {
            return common::skip(
                test,
                &format!("needs {} (scripts/install-cri-tools.sh)", path.display()),
            );
        }
    }
    require_root(test) && require_registry(test) && require_init(test)
}

/// The cluster of scripts/cluster.sh, in a directory of its own; `down`
/// on drop, also when a scenario panicked.
struct Cluster {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Cluster {
    /// Brings a cluster up; `kubelet_config` is YAML added to the
    /// kubelet's configuration.
    fn up(name: &str, kubelet_config: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("pvecri-cluster-{name}-{}", std::process::id()));
        let cluster = Cluster {
            kubeconfig: dir.join("admin.kubeconfig"),
            dir,
        };
        let out = Command::new("bash")
            .arg(repo().join("scripts/cluster.sh"))
            .arg("up")
            .arg(&cluster.dir)
            .env("PVECRI_BIN", env!("CARGO_BIN_EXE_pvecri"))
            .env("KUBELET_EXTRA_CONFIG", kubelet_config)
            .output()
            .expect("run scripts/cluster.sh up");
        if !out.status.success() {
            let logs = cluster.log_tails();
            panic!(
                "scripts/cluster.sh up failed:\n{}\n{logs}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        cluster
    }

    /// The last lines of every component's log, for failure messages.
    fn log_tails(&self) -> String {
        let mut text = String::new();
        let Ok(entries) = std::fs::read_dir(self.dir.join("logs")) else {
            return text;
        };
        for e in entries.flatten() {
            let body = std::fs::read_to_string(e.path()).unwrap_or_default();
            let lines: Vec<&str> = body.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            text.push_str(&format!("--- {}\n{tail}\n", e.path().display()));
        }
        text
    }

    fn kubectl(&self) -> Command {
        let mut cmd = Command::new("/usr/local/bin/kubectl");
        cmd.env("KUBECONFIG", &self.kubeconfig);
        cmd
    }

    /// kubectl ARGS, its output; panics naming the command when it fails.
    fn run(&self, args: &[&str]) -> String {
        let out = self.try_run(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn try_run(&self, args: &[&str]) -> Output {
        self.kubectl()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    /// kubectl ARGS with `input` on its stdin.
    fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .kubectl()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    fn apply(&self, yaml: &str) {
        let out = self.run_with_stdin(&["apply", "-f", "-"], yaml.as_bytes());
        assert!(
            out.status.success(),
            "kubectl apply failed: {}\n{yaml}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `kubectl get -o jsonpath=PATH` of one object.
    fn jsonpath(&self, ns: &str, object: &str, path: &str) -> String {
        let out = self.try_run(&["-n", ns, "get", object, "-o", &format!("jsonpath={path}")]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls `f` until it returns Some, for at most `secs` seconds.
    fn wait<T>(&self, what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                let events = self.try_run(&["get", "events", "-A", "--sort-by=.lastTimestamp"]);
                panic!(
                    "timed out waiting for {what}\nevents:\n{}\n{}",
                    String::from_utf8_lossy(&events.stdout),
                    self.log_tails()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits until the pod's phase is `phase`.
    fn wait_phase(&self, ns: &str, pod: &str, phase: &str, secs: u64) {
        self.wait(&format!("pod {ns}/{pod} {phase}"), secs, || {
            (self.jsonpath(ns, &format!("pod/{pod}"), "{.status.phase}") == phase).then_some(())
        });
    }

    fn wait_ready(&self, ns: &str, pod: &str) {
        self.wait(&format!("pod {ns}/{pod} Ready"), 120, || {
            (self.jsonpath(
                ns,
                &format!("pod/{pod}"),
                "{.status.conditions[?(@.type==\"Ready\")].status}",
            ) == "True")
                .then_some(())
        });
    }

    fn namespace(&self, ns: &str) {
        self.run(&["create", "namespace", ns]);
        self.wait(
            &format!("namespace {ns}'s default ServiceAccount"),
            60,
            || {
                self.try_run(&["-n", ns, "get", "serviceaccount", "default"])
                    .status
                    .success()
                    .then_some(())
            },
        );
    }

    /// The pvecri container ID of a container of a pod, from its status.
    fn container_id(&self, ns: &str, pod: &str, container: &str) -> String {
        let id = self.jsonpath(
            ns,
            &format!("pod/{pod}"),
            &format!("{{.status.containerStatuses[?(@.name==\"{container}\")].containerID}}"),
        );
        id.strip_prefix("pvecri://")
            .unwrap_or_else(|| panic!("container ID {id:?} of {ns}/{pod}/{container}"))
            .to_owned()
    }

    /// crictl against the cluster's pvecri daemon.
    fn crictl(&self, args: &[&str]) -> String {
        let out = Command::new("/usr/local/bin/crictl")
            .arg("--runtime-endpoint")
            .arg(format!(
                "unix://{}",
                self.dir.join("pvecri/run/pvecri.sock").display()
            ))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "crictl {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The daemon's log.
    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/pvecri.log")).unwrap_or_default()
    }

    /// `pvecri inspect` of a container through the cluster's daemon.
    fn inspect(&self, id: &str) -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_pvecri"))
            .arg("--config")
            .arg(self.dir.join("pvecri/config.toml"))
            .args(["inspect", id])
            .output()
            .unwrap();
        assert!(out.status.success(), "pvecri inspect {id}: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let out = Command::new("bash")
            .arg(repo().join("scripts/cluster.sh"))
            .arg("down")
            .arg(&self.dir)
            .output();
        if let Ok(out) = out {
            if !out.status.success() {
                eprintln!(
                    "scripts/cluster.sh down failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

/// Kills a background kubectl when dropped.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------- scenarios

/// A Deployment whose pod has an httpGet readiness probe, a tcpSocket and
/// an exec liveness probe; failing the exec probe restarts that container,
/// and `logs --previous` shows the old one's output.
fn probes_and_restarts(c: &Cluster) {
    let ns = "probes";
    c.namespace(ns);
    c.apply(&format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: {BUSYBOX}
        command: ["sh", "-c", "mkdir -p /tmp/www && echo pvecri-web > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"]
        readinessProbe:
          httpGet: {{path: /index.html, port: 8080}}
          periodSeconds: 1
        livenessProbe:
          tcpSocket: {{port: 8080}}
          periodSeconds: 2
      - name: worker
        image: {BUSYBOX}
        command: ["sh", "-c", "echo worker-started-$(cat /proc/sys/kernel/random/uuid); touch /tmp/alive; trap 'exit 0' TERM; while true; do sleep 1; done"]
        livenessProbe:
          exec: {{command: ["cat", "/tmp/alive"]}}
          periodSeconds: 1
          failureThreshold: 1
"#
    ));
    c.run(&[
        "-n",
        ns,
        "rollout",
        "status",
        "deployment/web",
        "--timeout=180s",
    ]);
    let pod = c.run(&[
        "-n",
        ns,
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    c.wait_ready(ns, &pod);
    let first = c.run(&["-n", ns, "logs", &pod, "-c", "worker"]);
    assert!(first.contains("worker-started-"), "worker log: {first:?}");

    c.run(&[
        "-n",
        ns,
        "exec",
        &pod,
        "-c",
        "worker",
        "--",
        "rm",
        "/tmp/alive",
    ]);
    c.wait(
        "the worker's restart after its liveness probe failed",
        120,
        || {
            let n = c.jsonpath(
                ns,
                &format!("pod/{pod}"),
                "{.status.containerStatuses[?(@.name==\"worker\")].restartCount}",
            );
            (n.parse::<u32>().unwrap_or(0) >= 1).then_some(())
        },
    );
    let previous = c.run(&["-n", ns, "logs", &pod, "-c", "worker", "--previous"]);
    assert_eq!(
        previous.trim(),
        first.trim(),
        "logs --previous shows the restarted container's output"
    );
    c.wait_ready(ns, &pod);
    let current = c.run(&["-n", ns, "logs", &pod, "-c", "worker"]);
    assert!(
        current.contains("worker-started-") && current.trim() != first.trim(),
        "the new container logs afresh: {current:?}"
    );
    // The web container was never restarted: its probes kept passing.
    let web_restarts = c.jsonpath(
        ns,
        &format!("pod/{pod}"),
        "{.status.containerStatuses[?(@.name==\"web\")].restartCount}",
    );
    assert_eq!(web_restarts, "0");
    c.run(&["delete", "namespace", ns, "--wait=false"]);
}

/// exec (stdin, exit code, tty with a size), attach, logs -f,
/// port-forward and cp both ways, all through the API server.
fn streaming(c: &Cluster) {
    let ns = "streaming";
    c.namespace(ns);
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: shell, namespace: {ns}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {BUSYBOX}
    command: ["sh", "-c", "mkdir -p /tmp/www && echo pvecri-forwarded > /tmp/www/index.html && httpd -p 8080 -h /tmp/www && i=0; trap 'exit 0' TERM; while true; do echo tick-$i; i=$((i+1)); sleep 0.5; done"]
---
apiVersion: v1
kind: Pod
metadata: {{name: reader, namespace: {ns}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  containers:
  - name: reader
    image: {BUSYBOX}
    stdin: true
    stdinOnce: true
    command: ["sh", "-c", "while read line; do echo got:$line; done; echo reader-done"]
"#
    ));
    c.wait_ready(ns, "shell");
    c.wait_ready(ns, "reader");

    // exec with stdin.
    let out = c.run_with_stdin(
        &[
            "-n",
            ns,
            "exec",
            "-i",
            "shell",
            "--",
            "sh",
            "-c",
            "cat; echo; echo end",
        ],
        b"from-stdin",
    );
    assert!(out.status.success(), "exec -i: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-stdin\nend\n");

    // The exit code comes back.
    let out = c.try_run(&["-n", ns, "exec", "shell", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "exec exit code: {out:?}");

    // A tty with the size of the terminal kubectl runs in (`script` gives
    // it one; `stty size` inside reports what the runtime set).
    let line = format!(
        "stty rows 33 cols 77; KUBECONFIG={} /usr/local/bin/kubectl -n {ns} exec -it shell -- stty size",
        c.kubeconfig.display()
    );
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("33 77"), "exec -it tty size: {text:?}");

    // attach: stdin reaches the container's main process; when kubectl's
    // stdin ends, the container's does too (stdinOnce) and it exits.
    let out = c.run_with_stdin(
        &["-n", ns, "attach", "-i", "reader", "-c", "reader"],
        b"ping\npong\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("got:ping") && text.contains("got:pong"),
        "attach: {out:?}"
    );
    c.wait_phase(ns, "reader", "Succeeded", 60);
    let logs = c.run(&["-n", ns, "logs", "reader"]);
    assert!(
        logs.contains("got:pong") && logs.contains("reader-done"),
        "{logs:?}"
    );

    // logs -f streams lines as they are written.
    let mut follow = Background(
        c.kubectl()
            .args(["-n", ns, "logs", "-f", "shell"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdout = follow.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut seen = String::new();
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if tx.send(seen.clone()).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("logs -f output");
    let last_tick = |s: &str| {
        s.lines()
            .filter_map(|l| l.strip_prefix("tick-")?.trim().parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    };
    let start = last_tick(&first);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut latest = first;
    while last_tick(&latest) < start + 4 {
        let left = deadline.saturating_duration_since(Instant::now());
        latest = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("logs -f stopped at {latest:?}"));
    }
    drop(follow);

    // port-forward to the container's web server.
    let port = common::free_port();
    let _forward = Background(
        c.kubectl()
            .args([
                "-n",
                ns,
                "port-forward",
                "pod/shell",
                &format!("{port}:8080"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let body = c.wait("a response through port-forward", 30, || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        body.contains("pvecri-forwarded").then_some(body)
    });
    assert!(body.starts_with("HTTP/1."), "{body:?}");

    // cp both ways (kubectl runs tar in the container).
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("in.txt");
    std::fs::write(&src, "copied-in\n").unwrap();
    let target = format!("{ns}/shell:/tmp/in.txt");
    c.run(&["cp", src.to_str().unwrap(), &target]);
    let inside = c.run(&["-n", ns, "exec", "shell", "--", "cat", "/tmp/in.txt"]);
    assert_eq!(inside, "copied-in\n");
    c.run(&[
        "-n",
        ns,
        "exec",
        "shell",
        "--",
        "sh",
        "-c",
        "echo copied-out > /tmp/out.txt",
    ]);
    let dst = local.path().join("out.txt");
    c.run(&[
        "cp",
        &format!("{ns}/shell:/tmp/out.txt"),
        dst.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(&dst).unwrap(), "copied-out\n");
    c.run(&["delete", "namespace", ns, "--wait=false"]);
}

/// A Job that completes, restartPolicy OnFailure and Never, an init
/// container, and resource limits that reach the container's cgroup.
fn jobs_restart_policies_init_and_limits(c: &Cluster) {
    let ns = "jobs";
    c.namespace(ns);
    c.apply(&format!(
        r#"apiVersion: batch/v1
kind: Job
metadata: {{name: done, namespace: {ns}}}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: job
        image: {BUSYBOX}
        command: ["sh", "-c", "echo job-ran"]
---
apiVersion: v1
kind: Pod
metadata: {{name: onfailure, namespace: {ns}}}
spec:
  restartPolicy: OnFailure
  volumes: [{{name: data, emptyDir: {{}}}}]
  containers:
  - name: main
    image: {BUSYBOX}
    command: ["sh", "-c", "if [ -e /data/once ]; then echo second-run; exit 0; fi; touch /data/once; echo first-run; exit 3"]
    volumeMounts: [{{name: data, mountPath: /data}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: never, namespace: {ns}}}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: {BUSYBOX}
    command: ["sh", "-c", "echo failing; exit 2"]
---
apiVersion: v1
kind: Pod
metadata: {{name: init, namespace: {ns}}}
spec:
  terminationGracePeriodSeconds: 2
  volumes: [{{name: shared, emptyDir: {{}}}}]
  initContainers:
  - name: prepare
    image: {BUSYBOX}
    command: ["sh", "-c", "echo prepared-by-init > /shared/note"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  containers:
  - name: main
    image: {BUSYBOX}
    command: ["sh", "-c", "cat /shared/note; trap 'exit 0' TERM; while true; do sleep 1; done"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: limits, namespace: {ns}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {BUSYBOX}
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    resources:
      requests: {{cpu: 100m, memory: 32Mi}}
      limits: {{cpu: 250m, memory: 64Mi}}
"#
    ));
    c.run(&[
        "-n",
        ns,
        "wait",
        "--for=condition=complete",
        "job/done",
        "--timeout=120s",
    ]);
    let logs = c.run(&["-n", ns, "logs", "job/done"]);
    assert_eq!(logs.trim(), "job-ran");

    c.wait_phase(ns, "onfailure", "Succeeded", 120);
    let restarts = c.jsonpath(
        ns,
        "pod/onfailure",
        "{.status.containerStatuses[0].restartCount}",
    );
    assert_eq!(
        restarts, "1",
        "OnFailure restarted the failed container once"
    );
    let logs = c.run(&["-n", ns, "logs", "onfailure"]);
    assert_eq!(logs.trim(), "second-run");

    c.wait_phase(ns, "never", "Failed", 120);
    let code = c.jsonpath(
        ns,
        "pod/never",
        "{.status.containerStatuses[0].state.terminated.exitCode}",
    );
    assert_eq!(code, "2");
    let restarts = c.jsonpath(
        ns,
        "pod/never",
        "{.status.containerStatuses[0].restartCount}",
    );
    assert_eq!(restarts, "0", "Never does not restart");

    c.wait_ready(ns, "init");
    let logs = c.run(&["-n", ns, "logs", "init", "-c", "main"]);
    assert_eq!(logs.trim(), "prepared-by-init");

    c.wait_ready(ns, "limits");
    assert_eq!(
        c.jsonpath(ns, "pod/limits", "{.status.qosClass}"),
        "Burstable"
    );
    let id = c.container_id(ns, "limits", "main");
    let info = c.inspect(&id);
    let cgroup = info["cgroup"].as_str().expect("inspect names the cgroup");
    let cgroup = cgroup.trim_start_matches('/');
    assert!(
        cgroup.contains("kubepods"),
        "the container is under the kubelet's cgroups: {cgroup}"
    );
    let (memory, cpu) = limits_of(cgroup);
    assert_eq!(memory, 64 << 20, "memory limit of {cgroup}");
    assert_eq!(cpu, (25_000, 100_000), "cpu quota of {cgroup}");
    c.run(&["delete", "namespace", ns, "--wait=false"]);
}

/// The memory limit in bytes and the cpu (quota, period) of a cgroup, from
/// cgroup2 or the cgroup1 controllers, whichever the host has.
fn limits_of(cgroup: &str) -> (u64, (i64, u64)) {
    let root = Path::new("/sys/fs/cgroup");
    let unified = root.join(cgroup);
    if unified.join("memory.max").exists() {
        let memory = std::fs::read_to_string(unified.join("memory.max")).unwrap();
        let cpu = std::fs::read_to_string(unified.join("cpu.max")).unwrap();
        let mut parts = cpu.split_whitespace();
        return (
            memory.trim().parse().unwrap(),
            (
                parts.next().unwrap().parse().unwrap(),
                parts.next().unwrap().parse().unwrap(),
            ),
        );
    }
    let read = |ctl: &str, file: &str| {
        std::fs::read_to_string(root.join(ctl).join(cgroup).join(file))
            .unwrap_or_else(|e| panic!("{ctl}/{cgroup}/{file}: {e}"))
            .trim()
            .to_owned()
    };
    (
        read("memory", "memory.limit_in_bytes").parse().unwrap(),
        (
            read("cpu", "cpu.cfs_quota_us").parse().unwrap(),
            read("cpu", "cpu.cfs_period_us").parse().unwrap(),
        ),
    )
}

/// In-place resize (`kubectl patch --subresource resize`): the running
/// container gets its new cpu and memory limits without a restart, and the
/// kubelet tells pvecri the pod's new size (UpdatePodSandboxResources).
fn in_place_resize(c: &Cluster) {
    let ns = "resize";
    c.namespace(ns);
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: sized, namespace: {ns}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {BUSYBOX}
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    resizePolicy:
    - {{resourceName: cpu, restartPolicy: NotRequired}}
    - {{resourceName: memory, restartPolicy: NotRequired}}
    resources:
      requests: {{cpu: 100m, memory: 32Mi}}
      limits: {{cpu: 200m, memory: 64Mi}}
"#
    ));
    c.wait_ready(ns, "sized");
    let id = c.container_id(ns, "sized", "main");
    let info = c.inspect(&id);
    let cgroup = info["cgroup"]
        .as_str()
        .unwrap()
        .trim_start_matches('/')
        .to_owned();
    let pod_id = info["pod_id"].as_str().unwrap().to_owned();
    assert_eq!(limits_of(&cgroup), (64 << 20, (20_000, 100_000)));

    c.run(&[
        "-n",
        ns,
        "patch",
        "pod",
        "sized",
        "--subresource",
        "resize",
        "-p",
        r#"{"spec":{"containers":[{"name":"main","resources":{"requests":{"cpu":"150m","memory":"48Mi"},"limits":{"cpu":"300m","memory":"96Mi"}}}]}}"#,
    ]);
    c.wait("the resize to reach the container's status", 120, || {
        let limits = c.jsonpath(
            ns,
            "pod/sized",
            "{.status.containerStatuses[0].resources.limits.cpu} {.status.containerStatuses[0].resources.limits.memory}",
        );
        (limits == "300m 96Mi").then_some(())
    });
    assert_eq!(
        limits_of(&cgroup),
        (96 << 20, (30_000, 100_000)),
        "the live cgroup of {cgroup} after the resize"
    );
    assert_eq!(c.container_id(ns, "sized", "main"), id, "same container");
    assert_eq!(
        c.jsonpath(
            ns,
            "pod/sized",
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );
    let pod = c.wait("the pod's recorded size", 60, || {
        let record = c.inspect(&pod_id)["resources"].clone();
        (!record.is_null()).then_some(record)
    });
    assert!(
        pod["resources"]["memory_limit_in_bytes"].as_i64() >= Some(96 << 20),
        "the pod's size as the kubelet announced it: {pod}"
    );
    c.run(&["delete", "namespace", ns, "--wait=false"]);
}

/// `kubectl debug` adds an ephemeral container to a running pod, in the
/// PID namespace of its target container.
fn ephemeral_debug_container(c: &Cluster) {
    let ns = "debug";
    c.namespace(ns);
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: target, namespace: {ns}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: {BUSYBOX}
    command: ["sleep", "31337"]
"#
    ));
    c.wait_ready(ns, "target");
    c.run(&[
        "-n",
        ns,
        "debug",
        "target",
        "--image",
        BUSYBOX,
        "--target",
        "app",
        "--container",
        "dbg",
        "--profile",
        "general",
        "--",
        "sh",
        "-c",
        "ps -o pid,args",
    ]);
    c.wait("the ephemeral container to finish", 120, || {
        let code = c.jsonpath(
            ns,
            "pod/target",
            "{.status.ephemeralContainerStatuses[?(@.name==\"dbg\")].state.terminated.exitCode}",
        );
        (!code.is_empty()).then_some(())
    });
    let ps = c.run(&["-n", ns, "logs", "target", "-c", "dbg"]);
    assert!(
        ps.contains("sleep 31337"),
        "the debug container sees its target's processes: {ps:?}"
    );
    c.run(&["delete", "namespace", ns, "--wait=false"]);
}

/// The kubelet's checkpoint API, reached through the API server's node
/// proxy. Where `criu check` passes, the kubelet gets an archive; where it
/// does not (Debian 12's criu on kernels >= 6.13, such as this host's), it
/// reports pvecri's FailedPrecondition naming criu. Either way the
/// container keeps running.
fn checkpoint_api(c: &Cluster) {
    let ns = "checkpoint";
    c.namespace(ns);
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: counter, namespace: {ns}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {BUSYBOX}
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
"#
    ));
    c.wait_ready(ns, "counter");
    let url = format!("/api/v1/nodes/{NODE}/proxy/checkpoint/{ns}/counter/main");
    let empty = tempfile::NamedTempFile::new().unwrap();
    let out = c.try_run(&[
        "create",
        "--raw",
        &url,
        "-f",
        empty.path().to_str().unwrap(),
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let criu_works = Command::new("criu")
        .arg("check")
        .output()
        .is_ok_and(|o| o.status.success());
    if criu_works {
        assert!(out.status.success(), "checkpoint failed: {text}");
        assert!(
            text.contains("checkpoint-counter_"),
            "no archive named: {text}"
        );
    } else {
        assert!(!out.status.success(), "checkpoint succeeded: {text}");
        assert!(
            text.contains("criu"),
            "the kubelet reports the runtime's refusal naming criu: {text}"
        );
    }
    // The container kept running.
    assert_eq!(c.jsonpath(ns, "pod/counter", "{.status.phase}"), "Running");
    c.run(&["delete", "namespace", ns, "--wait=false"]);
}

/// The kubelet frees disk space through pvecri: a node whose image
/// filesystem is "full" (an eviction threshold above its real use) is under
/// disk pressure, and the kubelet's image garbage collection removes the
/// images no container uses, through ImageFsInfo, ListImages and
/// RemoveImage. Its own cluster: disk pressure taints the node. (The
/// kubelet reads a zero `imageMinimumGCAge` as unset, i.e. two minutes.)
fn image_garbage_collection() {
    let c = Cluster::up(
        "gc",
        "evictionHard:\n  memory.available: 50Mi\n  nodefs.available: 99%\n  imagefs.available: 99%\n\
         evictionPressureTransitionPeriod: 5s\nimageMinimumGCAge: 1s\n",
    );
    const UNUSED: &str = "gcr.io/k8s-staging-cri-tools/test-image-2:latest";
    c.crictl(&["pull", UNUSED]);
    assert!(c.crictl(&["images"]).contains("test-image-2"));
    c.wait("the node's DiskPressure condition", 120, || {
        (c.jsonpath(
            "default",
            &format!("node/{NODE}"),
            "{.status.conditions[?(@.type==\"DiskPressure\")].status}",
        ) == "True")
            .then_some(())
    });
    c.wait("the kubelet to remove the unused image", 120, || {
        (!c.crictl(&["images"]).contains("test-image-2")).then_some(())
    });
    let log = c.daemon_log();
    assert!(
        log.contains("image removed") && log.contains("test-image-2"),
        "pvecri logged the kubelet's RemoveImage"
    );
}

#[test]
fn a_cluster_runs_its_workloads_on_pvecri() {
    let test = "a_cluster_runs_its_workloads_on_pvecri";
    if !ready(test) {
        return;
    }
    // The kubelet makes its device plugin directory there whatever its
    // root; down must take away what up made.
    let kubelet_dir = Path::new("/var/lib/kubelet");
    let had_kubelet_dir = kubelet_dir.exists();
    let cluster = Cluster::up("workloads", "");
    let node = cluster.run(&[
        "get",
        "node",
        NODE,
        "-o",
        "jsonpath={.status.nodeInfo.containerRuntimeVersion}",
    ]);
    assert!(
        node.starts_with("pvecri://"),
        "the node's runtime: {node:?}"
    );

    type Scenario = fn(&Cluster);
    let scenarios: [(&str, Scenario); 6] = [
        ("probes_and_restarts", probes_and_restarts),
        ("streaming", streaming),
        (
            "jobs_restart_policies_init_and_limits",
            jobs_restart_policies_init_and_limits,
        ),
        ("in_place_resize", in_place_resize),
        ("ephemeral_debug_container", ephemeral_debug_container),
        ("checkpoint_api", checkpoint_api),
    ];
    let mut failed = Vec::new();
    for (name, scenario) in scenarios {
        let started = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&cluster)));
        match result {
            Ok(()) => eprintln!(
                "scenario {name}: ok ({:.1} s)",
                started.elapsed().as_secs_f64()
            ),
            Err(_) => {
                eprintln!("scenario {name}: FAILED");
                failed.push(name);
            }
        }
    }
    drop(cluster);

    // After the shared cluster is gone: this one runs its node out of disk.
    let started = Instant::now();
    match std::panic::catch_unwind(image_garbage_collection) {
        Ok(()) => eprintln!(
            "scenario image_garbage_collection: ok ({:.1} s)",
            started.elapsed().as_secs_f64()
        ),
        Err(_) => {
            eprintln!("scenario image_garbage_collection: FAILED");
            failed.push("image_garbage_collection");
        }
    }
    assert!(failed.is_empty(), "failed scenarios: {failed:?}");
    assert!(
        had_kubelet_dir || !kubelet_dir.exists(),
        "{} was left behind",
        kubelet_dir.display()
    );
}
