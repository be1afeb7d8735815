//! End-to-end tests of `pvecri monitor` with real LXC containers: the real
//! binary detaches, starts a busybox container through liblxc, writes the
//! CRI log, answers on its control socket and records the exit.
//!
//! Needs root (liblxc starts privileged containers). The containers run
//! scripts through `lxc.init.cmd` (pvecri-init is not involved); each script
//! starts with a short sleep standing in for pvecri-init's wait on its start
//! FIFO, so the monitor sees the container running before the script ends.
//! liblxc 5.0 splits `lxc.init.cmd` on spaces without honouring quotes, so
//! the scripts are files in the rootfs rather than `/bin/sh -c "..."`.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pvecri::testing::cgroups::tree;
use pvecri::testing::container::RunDir;
use pvecri::testing::monitor::{
    self, Assignment, ExitReason, ExitRecord, MonitorArgs, Readiness, SpareArgs,
};

const BIN: &str = env!("CARGO_BIN_EXE_pvecri");
const TIMEOUT: Duration = Duration::from_secs(20);
/// The cgroup (on every hierarchy) the test containers and their monitors
/// are made in.
const CGROUP_PARENT: &str = "pvecri-test";
/// What each script runs first (see the module docs).
const SETTLE: &str = "sleep 0.2";

fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let reason = "needs root (liblxc starts privileged containers)";
    // In CI every precondition is installed: a skip there would hide a gap.
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "{test} cannot run in CI: {reason}"
    );
    eprintln!("skipping {test}: {reason}");
    false
}

/// A container definition in its own temp dir: rootfs, lxcpath, run dir.
struct Fixture {
    dir: tempfile::TempDir,
    name: String,
}

impl Fixture {
    /// A busybox container running `script` (a /bin/sh script body) as init,
    /// with extra LXC config lines.
    fn new(script: &str, extra_config: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = tempfile::Builder::new()
            .prefix("pvecri-mon-")
            .tempdir()
            .unwrap();
        let name = format!(
            "mon-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let rootfs = dir.path().join("rootfs");
        build_rootfs(&rootfs);
        let init = rootfs.join("init.sh");
        std::fs::write(&init, format!("#!/bin/sh\n{SETTLE}\n{script}\n")).unwrap();
        set_mode(&init, 0o755);
        std::fs::create_dir_all(dir.path().join("run")).unwrap();
        let lxc_dir = dir.path().join("lxc").join(&name);
        std::fs::create_dir_all(&lxc_dir).unwrap();
        let config = format!(
            "lxc.rootfs.path = dir:{rootfs}\n\
             lxc.uts.name = t\n\
             lxc.init.cmd = /init.sh\n\
             lxc.console.path = none\n\
             lxc.tty.max = 0\n\
             lxc.pty.max = 0\n\
             lxc.autodev = 1\n\
             lxc.mount.auto = proc:mixed sys:mixed\n\
             lxc.apparmor.profile = unconfined\n\
             lxc.net.0.type = empty\n\
             lxc.cgroup.dir.container = {CGROUP_PARENT}/{name}\n\
             lxc.cgroup.dir.monitor = {CGROUP_PARENT}/{name}.monitor\n\
             lxc.log.level = ERROR\n\
             lxc.log.file = {log}\n\
             {extra_config}\n",
            rootfs = rootfs.display(),
            log = dir.path().join("lxc.log").display(),
        );
        std::fs::write(lxc_dir.join("config"), config).unwrap();
        Self { dir, name }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn run_dir(&self) -> RunDir {
        RunDir::at(self.path("run"))
    }

    fn log(&self) -> PathBuf {
        self.path("container.log")
    }

    /// The monitor's arguments for this container, without a log or a
    /// ready fd.
    fn args(&self) -> MonitorArgs {
        MonitorArgs {
            id: self.name.clone(),
            lxcpath: self.path("lxc"),
            run_dir: self.run_dir().path().to_owned(),
            cgroup: None,
            log: None,
            ready_fd: None,
            max_log_line: monitor::DEFAULT_MAX_LINE,
            stdin: false,
            stdin_once: false,
            tty: false,
            restore: None,
        }
    }

    /// Runs `pvecri monitor` with a ready pipe on fd 3 and waits for the
    /// launcher to exit (the monitor itself stays detached).
    fn start(&self, extra_args: &[&str]) -> Readiness {
        let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let args = MonitorArgs {
            log: Some(self.log()),
            ready_fd: Some(3),
            ..self.args()
        };
        let mut cmd = Command::new(BIN);
        cmd.args(args.to_args())
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        pass_as_fd3(&mut cmd, &ready_w);
        let child = cmd.spawn().expect("spawn pvecri monitor");
        drop(ready_w);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "launcher failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let line = read_with_timeout(ready_r);
        Readiness::parse(&line).unwrap_or_else(|| {
            panic!(
                "bad ready line {line:?}; monitor.log:\n{}\nlxc.log:\n{}",
                self.read("run/monitor.log"),
                self.read("lxc.log")
            )
        })
    }

    fn start_running(&self, extra_args: &[&str]) -> i32 {
        match self.start(extra_args) {
            Readiness::Running { init_pid } => init_pid,
            other => panic!(
                "container did not start: {other:?}\nmonitor.log:\n{}\nlxc.log:\n{}",
                self.read("run/monitor.log"),
                self.read("lxc.log")
            ),
        }
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    /// Waits for the monitor to write exit.json and to exit.
    fn wait_exit(&self) -> ExitRecord {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(rec) = ExitRecord::read(&self.run_dir()).unwrap() {
                // The monitor removes its pid file last.
                while self.run_dir().monitor_pid().exists() {
                    assert!(Instant::now() < deadline, "monitor did not exit");
                    std::thread::sleep(Duration::from_millis(10));
                }
                return rec;
            }
            assert!(
                Instant::now() < deadline,
                "no exit record; monitor.log:\n{}",
                self.read("run/monitor.log")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The (stream, tag, text) of each CRI log record in `path`, checking
    /// the timestamp shape.
    fn records(path: &Path) -> Vec<(String, String, String)> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .map(|line| {
                let mut parts = line.splitn(4, ' ');
                let ts = parts.next().unwrap();
                assert!(
                    ts.len() >= 20 && ts.as_bytes()[10] == b'T' && ts.ends_with('Z'),
                    "not an RFC3339Nano UTC timestamp in {line:?}"
                );
                let stream = parts.next().unwrap_or_default().to_owned();
                let tag = parts.next().unwrap_or_default().to_owned();
                (stream, tag, parts.next().unwrap_or_default().to_owned())
            })
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // liblxc removes the container's cgroups when it ends normally; a
        // failed test may leave them (and the monitor's). Then the shared
        // parent goes on every hierarchy once no other test's fixture is
        // in it (a busy one is left to the last fixture to drop).
        let Ok(h) = tree::hierarchies() else {
            return;
        };
        for rel in [
            format!("{CGROUP_PARENT}/{}", self.name),
            format!("{CGROUP_PARENT}/{}.monitor", self.name),
        ] {
            let _ = tree::kill_and_wait(&h, &rel, TIMEOUT);
            let _ = tree::remove(&h, &rel, TIMEOUT);
        }
        for (_, dir) in tree::dirs(&h, CGROUP_PARENT) {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn line(stream: &str, tag: &str, text: &str) -> (String, String, String) {
    (stream.into(), tag.into(), text.into())
}

/// Gives the child (only) `fd` as its fd 3, without CLOEXEC; the test's
/// copy stays CLOEXEC so concurrently spawned children do not inherit it.
/// `fd` must stay open until the child is spawned.
fn pass_as_fd3(cmd: &mut Command, fd: &OwnedFd) {
    let raw = fd.as_raw_fd();
    // SAFETY: the closure only calls dup2, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn read_with_timeout(fd: OwnedFd) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::fs::File::from(fd).read_to_string(&mut text);
        let _ = tx.send(text);
    });
    rx.recv_timeout(TIMEOUT)
        .expect("no readiness report in time")
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A minimal rootfs: Debian's dynamically linked busybox, its libraries and
/// loader, and the applets the scripts use.
fn build_rootfs(root: &Path) {
    for d in ["bin", "proc", "sys", "dev", "tmp", ".pvecri"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let busybox = root.join("bin/busybox");
    std::fs::copy("/bin/busybox", &busybox)
        .expect("this test needs /bin/busybox (apt-get install busybox)");
    for applet in ["sh", "sleep", "head", "tr", "cat", "test", "["] {
        std::fs::hard_link(&busybox, root.join("bin").join(applet)).unwrap();
    }
    let ldd = Command::new("ldd")
        .arg("/bin/busybox")
        .output()
        .expect("ldd");
    for word in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
        if word.starts_with('/') {
            let dest = root.join(word.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(word, &dest).unwrap();
        }
    }
}

#[test]
fn exit_code_and_both_streams_reach_the_cri_log() {
    if !require_root("exit_code_and_both_streams_reach_the_cri_log") {
        return;
    }
    let f = Fixture::new("echo out; echo err >&2; exit 3", "");
    let pid = f.start_running(&[]);
    assert!(pid > 1);
    let rec = f.wait_exit();
    assert_eq!(
        (rec.exit_code, rec.signal, rec.reason),
        (3, None, ExitReason::Error),
        "{rec:?}"
    );
    assert!(!rec.oom_killed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert!(rec.finished_at_ns > 0 && rec.finished_at_ns <= now);
    let mut records = Fixture::records(&f.log());
    records.sort();
    assert_eq!(
        records,
        vec![line("stderr", "F", "err"), line("stdout", "F", "out")]
    );
    assert!(
        !f.run_dir().control_socket().exists(),
        "monitor.sock is removed"
    );
}

#[test]
fn exit_zero_is_completed_and_long_lines_are_split() {
    if !require_root("exit_zero_is_completed_and_long_lines_are_split") {
        return;
    }
    let f = Fixture::new("echo 0123456789abcdef; printf tail", "");
    f.start_running(&["--max-log-line", "8"]);
    let rec = f.wait_exit();
    assert_eq!(
        (rec.exit_code, rec.reason),
        (0, ExitReason::Completed),
        "{rec:?}"
    );
    assert_eq!(
        Fixture::records(&f.log()),
        vec![
            line("stdout", "P", "01234567"),
            line("stdout", "F", "89abcdef"),
            // A last line without newline stays partial, as in containerd.
            line("stdout", "P", "tail"),
        ]
    );
}

#[test]
fn sigkill_of_init_gives_137_and_the_monitor_is_detached() {
    if !require_root("sigkill_of_init_gives_137_and_the_monitor_is_detached") {
        return;
    }
    let f = Fixture::new("exec sleep 100", "");
    let pid = f.start_running(&[]);
    // The launcher has exited; the detached monitor runs in its own session.
    let monitor_pid: i32 = f
        .read("run/monitor.pid")
        .trim()
        .parse()
        .expect("monitor.pid");
    let monitor_pid = nix::unistd::Pid::from_raw(monitor_pid);
    assert!(
        nix::sys::signal::kill(monitor_pid, None).is_ok(),
        "monitor alive"
    );
    assert_ne!(
        nix::unistd::getsid(Some(monitor_pid)).unwrap(),
        nix::unistd::getsid(None).unwrap()
    );
    assert!(f.run_dir().control_socket().exists());
    assert!(ExitRecord::read(&f.run_dir()).unwrap().is_none());

    // A second monitor for the same run dir is refused before it touches
    // anything of the first.
    let second = Command::new(BIN).args(f.args().to_args()).output().unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another monitor"), "{stderr}");
    assert_eq!(f.read("run/monitor.pid").trim(), monitor_pid.to_string());
    assert!(f.run_dir().control_socket().exists());
    // The reported pid is the container's init (still the script, or the
    // sleep it execs).
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<&[u8]> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    assert!(
        args == [&b"/bin/sh"[..], b"/init.sh"] || args == [&b"sleep"[..], b"100"],
        "{args:?}"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let rec = f.wait_exit();
    assert_eq!(
        (rec.exit_code, rec.signal, rec.reason),
        (137, Some(9), ExitReason::Error),
        "{rec:?}"
    );
}

#[test]
fn reopen_moves_further_output_to_a_new_file() {
    if !require_root("reopen_moves_further_output_to_a_new_file") {
        return;
    }
    let f = Fixture::new(
        "echo before\nwhile [ ! -e /tmp/go ]; do sleep 0.05; done\necho after",
        "",
    );
    f.start_running(&[]);
    let deadline = Instant::now() + TIMEOUT;
    while Fixture::records(&f.log()).is_empty() {
        assert!(Instant::now() < deadline, "no output logged");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rotated = f.path("container.log.1");
    std::fs::rename(f.log(), &rotated).unwrap();
    monitor::request_reopen(&f.run_dir(), Duration::from_secs(5)).expect("reopen");
    assert!(f.log().exists(), "reopen creates the new file at once");

    // An unknown command is refused without upsetting the monitor.
    let mut s = std::os::unix::net::UnixStream::connect(f.run_dir().control_socket()).unwrap();
    std::io::Write::write_all(&mut s, b"dance\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "err unknown command\n");

    std::fs::write(f.path("rootfs/tmp/go"), "").unwrap();
    let rec = f.wait_exit();
    assert_eq!(rec.reason, ExitReason::Completed, "{rec:?}");
    assert_eq!(
        Fixture::records(&rotated),
        vec![line("stdout", "F", "before")]
    );
    assert_eq!(
        Fixture::records(&f.log()),
        vec![line("stdout", "F", "after")]
    );
}

#[test]
fn start_error_file_from_the_run_dir_sets_the_reason() {
    if !require_root("start_error_file_from_the_run_dir_sets_the_reason") {
        return;
    }
    // The run dir is bind-mounted at /.pvecri as in the lifecycle contract;
    // the script plays pvecri-init failing to exec.
    let f = Fixture::new(
        "echo 'StartError: exec /nope: no such file or directory' > /.pvecri/start-error\nexit 127",
        "",
    );
    let mount = format!(
        "lxc.mount.entry = {} .pvecri none bind 0 0\n",
        f.run_dir().path().display()
    );
    let config = f.path(&format!("lxc/{}/config", f.name));
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&mount);
    std::fs::write(&config, text).unwrap();

    f.start_running(&[]);
    let rec = f.wait_exit();
    assert_eq!(
        (rec.exit_code, rec.reason),
        (127, ExitReason::StartError),
        "{rec:?}"
    );
    assert_eq!(
        rec.message,
        "StartError: exec /nope: no such file or directory"
    );
}

#[test]
fn liblxc_start_failure_reports_err_and_a_start_error_record() {
    if !require_root("liblxc_start_failure_reports_err_and_a_start_error_record") {
        return;
    }
    let f = Fixture::new("exit 0", "");
    std::fs::remove_dir_all(f.path("rootfs")).unwrap();
    match f.start(&[]) {
        Readiness::Failed { message } => {
            // liblxc's own ERROR lines from lxc.log.file say why.
            assert!(message.contains("start failed"), "{message}");
            assert!(message.contains("Failed to open"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let rec = f.wait_exit();
    assert_eq!(
        (rec.exit_code, rec.reason),
        (128, ExitReason::StartError),
        "{rec:?}"
    );
    assert!(rec.message.contains("Failed to open"), "{}", rec.message);
}

/// The monitor forks the starter before it binds its sockets (they are made
/// while liblxc works): when one cannot be made, the start is abandoned,
/// with nothing of the container left running.
#[test]
fn a_socket_that_cannot_be_bound_ends_the_start_it_overlapped() {
    if !require_root("a_socket_that_cannot_be_bound_ends_the_start_it_overlapped") {
        return;
    }
    let f = Fixture::new("sleep 1000", "");
    // A directory where monitor.sock goes: the stale-socket removal and
    // the bind both fail.
    std::fs::create_dir(f.run_dir().control_socket()).unwrap();
    match f.start(&[]) {
        Readiness::Failed { message } => {
            assert!(message.contains("monitor.sock"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let rec = f.wait_exit();
    assert_eq!(rec.reason, ExitReason::StartError, "{rec:?}");
    let h = tree::hierarchies().unwrap();
    for (_, dir) in tree::dirs(&h, &format!("{CGROUP_PARENT}/{}", f.name)) {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        assert!(
            procs.trim().is_empty(),
            "left in {}: {procs}",
            dir.display()
        );
    }
}

#[test]
fn oom_kill_is_reported() {
    if !require_root("oom_kill_is_reported") {
        return;
    }
    let v2_memory = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
        .map(|c| c.split_whitespace().any(|c| c == "memory"))
        .unwrap_or(false);
    let limit = if v2_memory {
        "lxc.cgroup2.memory.max = 33554432\nlxc.cgroup2.memory.swap.max = 0"
    } else if Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
        "lxc.cgroup.memory.limit_in_bytes = 33554432"
    } else {
        eprintln!("skipping oom_kill_is_reported: no memory controller");
        return;
    };
    // Holding 200 MB in a shell variable under a 32 MiB limit.
    let f = Fixture::new(
        "echo start\nx=$(head -c 200000000 /dev/zero | tr '\\0' a)\necho survived",
        limit,
    );
    f.start_running(&[]);
    let rec = f.wait_exit();
    assert!(rec.oom_killed, "{rec:?}\n{}", f.read("run/monitor.log"));
    assert_eq!(rec.reason, ExitReason::OomKilled);
}

const HELPER: &str = env!("CARGO_BIN_EXE_pvecri-helper");

/// A spare monitor started as the daemon starts one: its pid, and the
/// daemon's end of its socket.
fn start_spare(lxcpath: &Path) -> (i32, OwnedFd) {
    let (ours, theirs) = monitor::spare_socket_pair().unwrap();
    let args = SpareArgs {
        lxcpath: lxcpath.to_owned(),
        socket_fd: 3,
    };
    let mut cmd = Command::new(HELPER);
    cmd.args(args.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    pass_as_fd3(&mut cmd, &theirs);
    let out = cmd.output().unwrap();
    drop(theirs);
    assert!(
        out.status.success(),
        "spare launcher failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut buf = [0u8; 64];
    let n = nix::unistd::read(&ours, &mut buf).unwrap();
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    let pid = line
        .strip_prefix("ready ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("bad spare greeting {line:?}"));
    (pid, ours)
}

fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn wait_gone(pid: i32) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err()
            || tree::is_zombie(pid);
        if gone {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn a_spare_monitor_takes_a_container_and_then_looks_started_for_it() {
    if !require_root("a_spare_monitor_takes_a_container_and_then_looks_started_for_it") {
        return;
    }
    let f = Fixture::new("echo from-a-spare\nexec sleep 100", "");
    let (spare, socket) = start_spare(&f.path("lxc"));
    // Detached, and showing what it is until it has a container.
    assert_ne!(
        nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(spare))).unwrap(),
        nix::unistd::getsid(None).unwrap()
    );
    let lxcpath = f.path("lxc").display().to_string();
    assert_eq!(
        cmdline(spare),
        [
            HELPER,
            "monitor-spare",
            "--lxcpath",
            &lxcpath,
            "--socket-fd",
            "3"
        ]
    );
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let args = MonitorArgs {
        log: Some(f.log()),
        ..f.args()
    };
    Assignment { args: args.clone() }
        .send(&socket, &ready_w)
        .unwrap();
    drop(ready_w);
    let init_pid = match Readiness::parse(&read_with_timeout(ready_r)) {
        Some(Readiness::Running { init_pid }) => init_pid,
        other => panic!(
            "{other:?}\nmonitor.log:\n{}\nlxc.log:\n{}",
            f.read("run/monitor.log"),
            f.read("lxc.log")
        ),
    };
    // It is that container's monitor now, by every sign the daemon, the
    // census and the scripts go by; and it let go of the daemon's socket.
    assert_eq!(f.read("run/monitor.pid").trim(), spare.to_string());
    let expected: Vec<String> = std::iter::once(HELPER.to_owned())
        .chain(
            args.to_args()
                .iter()
                .map(|a| a.to_string_lossy().into_owned()),
        )
        .collect();
    assert_eq!(cmdline(spare), expected);
    let mut buf = [0u8; 8];
    assert_eq!(
        nix::unistd::read(&socket, &mut buf).unwrap(),
        0,
        "socket closed"
    );
    // And it supervises as any monitor: the log, then the exit.
    let deadline = Instant::now() + TIMEOUT;
    while !f.read("container.log").contains("from-a-spare") {
        assert!(Instant::now() < deadline, "no container log line");
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let rec = f.wait_exit();
    assert_eq!(rec.exit_code, 137, "{rec:?}");
    assert!(wait_gone(spare), "the monitor ended with its container");
}

#[test]
fn a_spare_ends_with_its_socket_and_refuses_a_bad_assignment() {
    if !require_root("a_spare_ends_with_its_socket_and_refuses_a_bad_assignment") {
        return;
    }
    let f = Fixture::new("exec sleep 100", "");
    // The daemon goes away: the spare goes too.
    let (spare, socket) = start_spare(&f.path("lxc"));
    drop(socket);
    assert!(wait_gone(spare), "spare {spare} outlived its socket");

    // A container it cannot have (no run dir): refused on the ready fd,
    // nothing started, nothing written, and the spare is gone.
    let (spare, socket) = start_spare(&f.path("lxc"));
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let args = MonitorArgs {
        run_dir: f.path("no-such-dir"),
        ..f.args()
    };
    Assignment { args }.send(&socket, &ready_w).unwrap();
    drop(ready_w);
    match Readiness::parse(&read_with_timeout(ready_r)) {
        Some(Readiness::Failed { message }) => {
            assert!(message.contains("no-such-dir"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(wait_gone(spare));
    assert!(!f.run_dir().monitor_pid().exists());
    assert!(!f.path("lxc.log").exists() || f.read("lxc.log").is_empty());
}
