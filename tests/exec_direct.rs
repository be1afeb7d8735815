//! The exec helper's direct path (`--init-pid`): entering a container from
//! its init alone, without liblxc, the way the daemon runs every exec into
//! a container whose init it recorded (and the only way into one restored
//! from a checkpoint: no liblxc monitor answers for it). The helper run
//! without `--init-pid` (liblxc's attach, kept for records without an init)
//! gives the reference: the command must land in the same namespaces,
//! cgroups, identity and confinement either way.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{
    busybox_env as env, container_config, create_container, require_containers as ready,
    BusyboxEnv as Env, BUSYBOX,
};
use pvecri::client::CriClient;
use pvecri::cri::v1;
use pvecri::testing::container::RunDir;
use pvecri::testing::exec::ExecHelperArgs;

/// A container as the direct path needs it: its ID and init.
struct Running {
    id: String,
    init_pid: i32,
    start_time: u64,
    hostname: String,
}

/// A pod with a PID namespace of its own per container (so the container's
/// init is PID 1 there) and `userns`, running a busybox `sleep` as uid 1000,
/// gid 2000.
async fn sleeper(e: &mut Env, name: &str, userns: Option<v1::UserNamespace>) -> Running {
    let hostname = format!("direct-{name}");
    let ns = v1::NamespaceOption {
        pid: v1::NamespaceMode::Container as i32,
        userns_options: userns,
        ..Default::default()
    };
    let sandbox = v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "exec-direct".into(),
            attempt: 0,
        }),
        hostname: hostname.clone(),
        log_directory: e.logs.path().join(name).display().to_string(),
        linux: Some(v1::LinuxPodSandboxConfig {
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(ns.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = common::run_pod_sandbox(&mut e.c, &sandbox).await.unwrap();
    let mut config = container_config("sleeper", BUSYBOX, &["sleep", "3600"]);
    config.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(v1::LinuxContainerSecurityContext {
            namespace_options: Some(ns),
            run_as_user: Some(v1::Int64Value { value: 1000 }),
            run_as_group: Some(v1::Int64Value { value: 2000 }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = create_container(&mut e.c, &pod, &sandbox, config)
        .await
        .unwrap();
    e.c.runtime
        .start_container(v1::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    let info =
        e.c.runtime
            .container_status(v1::ContainerStatusRequest {
                container_id: id.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner()
            .info;
    let v: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    let init_pid = v["pid"].as_i64().unwrap() as i32;
    Running {
        id,
        init_pid,
        start_time: start_time(init_pid),
        hostname,
    }
}

/// Field 22 of /proc/<pid>/stat.
fn start_time(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = stat.rsplit_once(')').unwrap().1;
    after_comm
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap()
}

/// `pvecri exec-helper` on the direct path, with the arguments the daemon
/// gives it for a restored container, and with `start_time` as the init's.
fn direct(e: &Env, r: &Running, start_time: u64, timeout: u64, argv: &[&str]) -> Output {
    helper(e, r, Some(start_time), timeout, argv)
}

/// The exec helper run as the daemon runs it: joining init directly with
/// `Some(start time)`, through liblxc's attach with `None`.
fn helper(e: &Env, r: &Running, start_time: Option<u64>, timeout: u64, argv: &[&str]) -> Output {
    let dir = e.d.dir.path();
    let args = ExecHelperArgs {
        id: r.id.clone(),
        lxcpath: dir.join("state/lxc"),
        spec: RunDir::new(&dir.join("run"), &r.id).unwrap().spec(),
        init: common::init_path(),
        timeout,
        tty: false,
        init_pid: start_time.map(|_| r.init_pid),
        init_start_time: start_time,
        argv: argv.iter().map(|s| s.to_string()).collect(),
    };
    Command::new(common::BIN)
        .args(args.to_args())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// (exit code, stdout) of `sh -c script` on the direct path; stderr is
/// shown when it fails.
fn direct_sh(e: &Env, r: &Running, script: &str) -> (i32, String) {
    let out = direct(e, r, r.start_time, 20, &["sh", "-c", script]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = out.status.code().unwrap_or(-1);
    if code != 0 {
        eprintln!(
            "direct exec of {script:?} exited {code}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (code, stdout)
}

/// What a command sees of where it runs: identity, host name, directory,
/// environment, cgroups, namespaces and confinement.
const REPORT: &str = r#"
id -u; id -g; id -G; hostname; pwd; env | sort
cat /proc/self/cgroup
for n in cgroup ipc mnt net pid user uts; do readlink /proc/self/ns/$n; done
grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status
"#;

/// The namespaces of the init as the host sees them, as REPORT prints them.
fn host_ns(pid: i32) -> Vec<String> {
    ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"]
        .iter()
        .map(|n| {
            std::fs::read_link(format!("/proc/{pid}/ns/{n}"))
                .unwrap()
                .display()
                .to_string()
        })
        .collect()
}

/// The direct path and liblxc's attach give the command the same world,
/// and it is the init's.
fn assert_same_as_attach(e: &Env, r: &Running) {
    let (code, direct_report) = direct_sh(e, r, REPORT);
    assert_eq!(code, 0);
    let attached = helper(e, r, None, 20, &["sh", "-c", REPORT]);
    let err = String::from_utf8_lossy(&attached.stderr);
    assert_eq!(attached.status.code(), Some(0), "{err}");
    let attach_report = String::from_utf8_lossy(&attached.stdout).into_owned();
    // liblxc attaches into a `.lxc` leaf below init's cgroup2 cgroup; the
    // direct path into init's own (checked below), a leaf as init is in it.
    let but_cgroup2 = |report: &str| -> Vec<String> {
        report
            .lines()
            .filter(|l| !l.starts_with("0::"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        but_cgroup2(&direct_report),
        but_cgroup2(&attach_report),
        "the direct path differs from liblxc's attach"
    );
    let lines: Vec<&str> = direct_report.lines().collect();
    assert_eq!(lines[..2], ["1000", "2000"], "the workload's user applies");
    // The shell holds stdio only (listed by a child of it).
    // (`; true`: busybox would exec a last command in the shell's place.)
    let (code, fds) = direct_sh(e, r, "ls /proc/$$/fd; true");
    assert_eq!(code, 0);
    assert_eq!(
        fds.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2"],
        "the command holds more than stdio"
    );
    assert!(
        lines.contains(&r.hostname.as_str()),
        "the pod's hostname: {direct_report}"
    );
    for ns in host_ns(r.init_pid) {
        assert!(
            lines.contains(&ns.as_str()),
            "{ns} of init is not the command's: {direct_report}"
        );
    }
    // The cgroups, as seen inside, are init's.
    let (code, out) = direct_sh(e, r, "cat /proc/self/cgroup; echo --; cat /proc/1/cgroup");
    assert_eq!(code, 0);
    let (own, init) = out.split_once("--\n").unwrap();
    assert_eq!(own, init, "the command is not in init's cgroups");
    assert!(!own.contains(".."), "a cgroup outside the namespace: {own}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_exec_joins_the_init() {
    if !ready("direct_exec_joins_the_init") {
        return;
    }
    let mut e = env().await;
    let r = sleeper(&mut e, "plain", None).await;
    assert_same_as_attach(&e, &r);

    // Init is PID 1 of the command's PID namespace, whose processes it
    // sees; its own parent (the helper) is outside.
    let (code, out) = direct_sh(
        &e,
        &r,
        "tr '\\0' ' ' </proc/1/cmdline; echo; echo $PPID; ls /proc | grep -c '^[0-9]'",
    );
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0].trim(), "sleep 3600", "{out}");
    assert_eq!(lines[1], "0", "the shell's parent is outside: {out}");
    let visible: usize = lines[2].parse().unwrap();
    assert!(
        (2..10).contains(&visible),
        "only the container's processes are visible: {out}"
    );

    // The command's exit code is the helper's.
    let out = direct(&e, &r, r.start_time, 20, &["sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));

    // The timeout kills the command and leaves nothing running.
    let started = Instant::now();
    let out = direct(&e, &r, r.start_time, 1, &["sleep", "31"]);
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let left: Vec<PathBuf> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .map(|d| d.path())
        .filter(|p| std::fs::read(p.join("cmdline")).is_ok_and(|c| c == b"sleep\x0031\x00"))
        .collect();
    assert!(left.is_empty(), "the timed-out command is left: {left:?}");

    // A wrong start time (a recycled pid) is refused before anything runs.
    let marker = "/tmp/direct-exec-ran";
    let out = direct(&e, &r, r.start_time + 1, 20, &["touch", marker]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not the container's init any more"),
        "{stderr}"
    );
    let (code, _, _) = common::exec_sh(&mut e.c, &r.id, &format!("test -e {marker}"), 20).await;
    assert_eq!(code, 1, "the refused command ran");
    // With the right one, the same command runs (the check above can fail).
    let out = direct(&e, &r, r.start_time, 20, &["touch", marker]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let (code, _, _) = common::exec_sh(&mut e.c, &r.id, &format!("test -e {marker}"), 20).await;
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_exec_joins_a_user_namespace() {
    if !ready("direct_exec_joins_a_user_namespace") {
        return;
    }
    if std::fs::read_to_string("/proc/sys/user/max_user_namespaces").is_ok_and(|n| n.trim() == "0")
    {
        eprintln!("skipping direct_exec_joins_a_user_namespace: user namespaces are disabled");
        return;
    }
    let mut e = env().await;
    // Not the ranges tests/security.rs and tests/escapes_exec.rs use, so
    // they may run at once.
    let ids = vec![v1::IdMapping {
        container_id: 0,
        host_id: 362_144,
        length: 65536,
    }];
    let userns = v1::UserNamespace {
        mode: v1::NamespaceMode::Pod as i32,
        uids: ids.clone(),
        gids: ids,
    };
    let r = sleeper(&mut e, "userns", Some(userns)).await;
    let user_ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap();
    assert_ne!(user_ns(&r.init_pid.to_string()), user_ns("self"));
    assert_same_as_attach(&e, &r);
    // uid 1000 inside is 363144 outside.
    let out = direct(&e, &r, r.start_time, 1, &["sleep", "32"]);
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    let (code, out) = direct_sh(&e, &r, "cat /proc/self/uid_map");
    assert_eq!(code, 0);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "362144", "65536"]
    );
}

/// ExecSync of `hostname` in `id`.
async fn hostname(
    c: &mut CriClient,
    id: &str,
    timeout: i64,
) -> Result<v1::ExecSyncResponse, tonic::Status> {
    c.runtime
        .exec_sync(v1::ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["hostname".into()],
            timeout,
        })
        .await
        .map(|r| r.into_inner())
}

/// The parent of `pid`.
fn parent_of(pid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// ExecSync joins the container's init directly, for a container liblxc
/// started as for one whose record says it was restored: it works while
/// liblxc's side of the container (the starter that ran liblxc's start,
/// init's parent, which answers liblxc's command socket) is stopped,
/// where liblxc's attach would hang until the daemon gave up on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_needs_no_liblxc() {
    if !ready("exec_sync_needs_no_liblxc") {
        return;
    }
    use nix::sys::signal::{kill, Signal};
    use pvecri::testing::container::ContainerRecord;
    let mut e = env().await;
    let r = sleeper(&mut e, "restored", None).await;
    let starter = nix::unistd::Pid::from_raw(parent_of(r.init_pid));

    kill(starter, Signal::SIGSTOP).unwrap();
    let started = hostname(&mut e.c, &r.id, 20).await;
    kill(starter, Signal::SIGCONT).unwrap();
    let started = started.unwrap();
    assert_eq!(started.exit_code, 0, "{started:?}");
    assert_eq!(String::from_utf8_lossy(&started.stdout).trim(), r.hostname);

    // The record says restored (changed while the daemon is down).
    e.d.stop();
    {
        let store =
            pvecri::testing::store::Store::open(&e.d.dir.path().join("state/pvecri.redb")).unwrap();
        let mut record: ContainerRecord = store.get(&r.id).unwrap().unwrap();
        assert_eq!(record.init_pid, r.init_pid);
        assert_eq!(record.init_start_time, r.start_time);
        record.restored = true;
        store.put(&record).unwrap();
    }
    e.d.restart();
    e.c = e.d.client().await;

    kill(starter, Signal::SIGSTOP).unwrap();
    let direct = hostname(&mut e.c, &r.id, 20).await;
    kill(starter, Signal::SIGCONT).unwrap();
    let direct = direct.unwrap();
    assert_eq!(direct.exit_code, 0, "{direct:?}");
    assert_eq!(String::from_utf8_lossy(&direct.stdout).trim(), r.hostname);
}
