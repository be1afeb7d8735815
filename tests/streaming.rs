//! Exec, attach and port-forward through the streaming server, driven by
//! the real crictl over SPDY (its default) and WebSocket, against real LXC
//! containers through the real daemon.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{mirror_config, require_init, require_registry, require_root, Daemon};
use pvecri::cri::v1;

const CRICTL: &str = "/usr/local/bin/crictl";
const BUSYBOX: &str = "busybox:1.36";

fn ready(test: &str) -> bool {
    if !Path::new(CRICTL).exists() {
        return common::skip(
            test,
            &format!("needs {CRICTL} (scripts/install-cri-tools.sh)"),
        );
    }
    require_root(test) && require_registry(test) && require_init(test)
}

/// A daemon plus crictl pointed at it.
struct Env {
    d: Daemon,
    files: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self::with_config("")
    }

    /// With `extra` TOML after the test config.
    fn with_config(extra: &str) -> Self {
        let d = Daemon::start(&format!("{}\n{extra}", mirror_config()));
        let e = Self {
            d,
            files: tempfile::tempdir().unwrap(),
        };
        let pulled = e.crictl(&["pull", BUSYBOX]);
        assert!(pulled.status.success(), "pull: {}", stderr(&pulled));
        e
    }

    fn command(&self, args: &[&str]) -> Command {
        let endpoint = format!("unix://{}", self.d.socket.display());
        let mut c = Command::new(CRICTL);
        c.arg("--runtime-endpoint")
            .arg(&endpoint)
            .arg("--image-endpoint")
            .arg(&endpoint)
            .args(args);
        c
    }

    fn crictl(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run crictl")
    }

    /// crictl with `input` on its stdin.
    fn crictl_input(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run crictl");
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    fn write(&self, name: &str, json: serde_json::Value) -> PathBuf {
        let path = self.files.path().join(name);
        std::fs::write(&path, json.to_string()).unwrap();
        path
    }

    /// A pod and one started container running `cmd`; (pod, container).
    fn pod_with(&self, name: &str, cmd: &[&str], stdin: bool) -> (String, String) {
        self.pod_with_tty(name, cmd, stdin, false)
    }

    fn pod_with_tty(&self, name: &str, cmd: &[&str], stdin: bool, tty: bool) -> (String, String) {
        let pod = self.write(
            &format!("{name}-pod.json"),
            serde_json::json!({
                "metadata": {"name": name, "namespace": "test", "uid": format!("uid-{name}")},
                "log_directory": self.files.path().join(name).display().to_string(),
                "linux": {},
            }),
        );
        let ctr = self.write(
            &format!("{name}-ctr.json"),
            serde_json::json!({
                "metadata": {"name": "main"},
                "image": {"image": BUSYBOX},
                "command": cmd,
                "log_path": "main.log",
                "stdin": stdin,
                "stdin_once": stdin,
                "tty": tty,
                "linux": {},
            }),
        );
        let pod_id = self.ok(&["runp", pod.to_str().unwrap()]);
        let ctr_id = self.ok(&[
            "create",
            &pod_id,
            ctr.to_str().unwrap(),
            pod.to_str().unwrap(),
        ]);
        self.ok(&["start", &ctr_id]);
        (pod_id, ctr_id)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.crictl(args);
        assert!(
            out.status.success(),
            "crictl {args:?}: {}\n{}",
            stderr(&out),
            self.d.log()
        );
        stdout(&out).trim().to_owned()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A web server answering on 8080 inside the pod's network namespace.
const WEB: &[&str] = &[
    "sh",
    "-c",
    "mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www",
];

/// A running `crictl port-forward`, killed on drop.
struct Forward {
    child: Child,
    port: u16,
}

impl Forward {
    fn start(e: &Env, pod: &str, transport: &str) -> Self {
        let mut child = e
            .command(&["port-forward", "--transport", transport, pod, ":8080"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run crictl port-forward");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        // Keep reading: crictl dies of a closed stdout at its next line.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        // "Forwarding from 127.0.0.1:PORT -> 8080"
        let port = line
            .split_whitespace()
            .nth(2)
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected port-forward output {line:?}"));
        Self { child, port }
    }

    /// GET / through the forward, retried until the server answers.
    fn get_index(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match http_get(self.port, "/index.html") {
                Ok(body) if body.contains("200") => return body,
                other => assert!(
                    Instant::now() < deadline,
                    "no answer through the forward: {other:?}"
                ),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

#[test]
fn exec_carries_stdin_stdout_stderr_and_exit_code_over_both_transports() {
    if !ready("exec_carries_stdin_stdout_stderr_and_exit_code_over_both_transports") {
        return;
    }
    let e = Env::new();
    let (_pod, ctr) = e.pod_with("exec", &["sleep", "3600"], false);
    for transport in ["spdy", "websocket"] {
        let out = e.crictl_input(
            &[
                "exec",
                "--transport",
                transport,
                "-i",
                &ctr,
                "sh",
                "-c",
                "cat; echo to-stderr >&2; exit 3",
            ],
            b"from-stdin\n",
        );
        assert_eq!(stdout(&out), "from-stdin\n", "{transport}");
        assert!(
            stderr(&out).contains("to-stderr"),
            "{transport}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("exit code 3"),
            "{transport}: {}",
            stderr(&out)
        );
        assert!(!out.status.success());
        let ok = e.crictl(&["exec", "--transport", transport, &ctr, "echo", "fine"]);
        assert!(ok.status.success(), "{transport}: {}", stderr(&ok));
        assert_eq!(stdout(&ok), "fine\n");
    }
}

/// An exec whose connection moves nothing for the idle timeout is closed
/// and its process killed, over both transports.
#[test]
fn idle_exec_connections_are_closed() {
    if !ready("idle_exec_connections_are_closed") {
        return;
    }
    let e = Env::with_config("[streaming]\nidle_timeout_seconds = 2\n");
    let (_pod, ctr) = e.pod_with("idle", &["sleep", "3600"], false);
    for transport in ["spdy", "websocket"] {
        let started = std::time::Instant::now();
        let out = e.crictl_input(
            &["exec", "--transport", transport, "-i", &ctr, "sleep", "47"],
            b"",
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(40),
            "{transport}: an idle exec outlived the idle timeout: {}",
            stderr(&out)
        );
        let ps = e.ok(&["exec", &ctr, "ps", "-o", "args"]);
        assert!(!ps.contains("sleep 47"), "{transport}: {ps}");
    }
}

/// `crictl exec -it` under a scripted terminal: the command sees a
/// terminal of the client's size, and its output comes back.
#[test]
fn exec_with_a_tty_gets_the_client_terminal_size() {
    if !ready("exec_with_a_tty_gets_the_client_terminal_size") {
        return;
    }
    if !Path::new("/usr/bin/script").exists() {
        eprintln!("skipping exec_with_a_tty_gets_the_client_terminal_size: needs script(1)");
        return;
    }
    let e = Env::new();
    let (_pod, ctr) = e.pod_with("tty", &["sleep", "3600"], false);
    let endpoint = format!("unix://{}", e.d.socket.display());
    let inner = format!(
        "stty cols 91 rows 33; {CRICTL} --runtime-endpoint {endpoint} exec -it {ctr} sh -c 'stty size; test -t 0 && echo is-a-tty; tty'"
    );
    let out = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(text.contains("33 91"), "{text}");
    assert!(text.contains("is-a-tty"), "{text}");
    // The terminal is the container's own: tty(1) finds it in /dev/pts.
    assert!(text.contains("\n/dev/pts/"), "{text}");
}

/// Attach to a shell reading its stdin: what the client types runs, and
/// with stdin_once the container ends when the client's stdin does.
#[test]
fn attach_feeds_stdin_and_returns_output() {
    if !ready("attach_feeds_stdin_and_returns_output") {
        return;
    }
    let e = Env::new();
    let (_pod, ctr) = e.pod_with("attach", &["sh"], true);
    let out = e.crictl_input(
        &["attach", "-i", &ctr],
        b"echo attached-$((40+2))\necho oops >&2\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "attached-42\n");
    assert!(stderr(&out).contains("oops"), "{}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info: serde_json::Value =
            serde_json::from_str(&e.ok(&["inspect", "-o", "json", &ctr])).unwrap();
        let state = info["status"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if state == "CONTAINER_EXITED" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "container still {state} after stdin closed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A TTY container's main process runs on a terminal; `crictl attach
/// -it` under a scripted terminal reaches it and resizes it.
#[test]
fn attach_to_a_tty_container_gets_the_terminal() {
    if !ready("attach_to_a_tty_container_gets_the_terminal") {
        return;
    }
    if !Path::new("/usr/bin/script").exists() {
        eprintln!("skipping attach_to_a_tty_container_gets_the_terminal: needs script(1)");
        return;
    }
    let e = Env::new();
    let (_pod, ctr) = e.pod_with_tty("ttyattach", &["sh"], true, true);
    let endpoint = format!("unix://{}", e.d.socket.display());
    let inner =
        format!("stty cols 77 rows 22; {CRICTL} --runtime-endpoint {endpoint} attach -it {ctr}");
    let mut child = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    // The shell answers once the attach is up; keep asking until it does
    // (typed input before the attach exists would go nowhere).
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = e.files.path().join("ttyattach").join("main.log");
    loop {
        input
            .write_all(b"stty size; tty; echo tty-$((20+1))\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        if std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("tty-21")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the shell never answered");
    }
    input.write_all(b"exit 0\n").unwrap();
    drop(input);
    let _ = child.wait();
    let text = reader.join().unwrap();
    assert!(text.contains("22 77"), "{text}");
    assert!(text.contains("tty-21"), "{text}");
    // The container's terminal is reachable inside as its console.
    assert!(text.contains("\n/dev/console"), "{text}");
}

#[test]
fn port_forward_reaches_a_server_inside_the_pod_over_both_transports() {
    if !ready("port_forward_reaches_a_server_inside_the_pod_over_both_transports") {
        return;
    }
    let e = Env::new();
    let (pod, ctr) = e.pod_with("pf", WEB, false);
    // A refused connection ends crictl's whole forward (client-go closes
    // the session on a port error), so wait until the server listens.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let probe = e.crictl(&[
            "exec",
            &ctr,
            "wget",
            "-q",
            "-O-",
            "http://127.0.0.1:8080/index.html",
        ]);
        if stdout(&probe).contains("hello-from-pod") {
            break;
        }
        assert!(Instant::now() < deadline, "the web server never came up");
        std::thread::sleep(Duration::from_millis(200));
    }
    for transport in ["spdy", "websocket"] {
        let forward = Forward::start(&e, &pod, transport);
        let first = forward.get_index();
        assert!(first.contains("hello-from-pod"), "{transport}: {first}");
        // Every client connection is its own stream pair.
        let second = forward.get_index();
        assert!(second.contains("hello-from-pod"), "{transport}: {second}");
    }
}

/// Bad requests fail at the CRI call with the field named; URLs are
/// single-use and need an upgrade.
#[tokio::test]
async fn bad_requests_are_refused_and_urls_work_once() {
    if !ready("bad_requests_are_refused_and_urls_work_once") {
        return;
    }
    let e = Env::new();
    let (_pod, ctr) = e.pod_with("bad", &["sleep", "3600"], false);
    let mut c = e.d.client().await;
    let exec = |container_id: &str, cmd: &[&str], tty: bool, stderr: bool| v1::ExecRequest {
        container_id: container_id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin: false,
        stdout: true,
        stderr,
    };
    let err = c
        .runtime
        .exec(exec("nope", &["true"], false, true))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = c
        .runtime
        .exec(exec(&ctr, &[], false, true))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("cmd"), "{}", err.message());
    let err = c
        .runtime
        .exec(exec(&ctr, &["true"], true, true))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("stderr"), "{}", err.message());
    let err = c
        .runtime
        .port_forward(v1::PortForwardRequest {
            pod_sandbox_id: "nope".into(),
            port: vec![80],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    let url = c
        .runtime
        .exec(exec(&ctr, &["true"], false, true))
        .await
        .unwrap()
        .into_inner()
        .url;
    let (host, path) = url
        .strip_prefix("http://")
        .and_then(|r| r.split_once('/'))
        .expect("http URL");
    let request = |upgrade: bool| -> String {
        let mut s = std::net::TcpStream::connect(host).unwrap();
        let upgrade = if upgrade {
            "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
        } else {
            ""
        };
        write!(
            s,
            "POST /{path} HTTP/1.1\r\nHost: {host}\r\n{upgrade}Content-Length: 0\r\n\r\n"
        )
        .unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        line
    };
    assert!(request(false).contains(" 400 "), "a plain POST is refused");
    assert!(
        request(true).contains(" 101 "),
        "the first upgrade is served"
    );
    assert!(request(true).contains(" 404 "), "the token is spent");
}

/// A pod sandbox (no container) run through crictl; its ID.
fn bare_pod(e: &Env, name: &str) -> String {
    let pod = e.write(
        &format!("{name}-pod.json"),
        serde_json::json!({
            "metadata": {"name": name, "namespace": "test", "uid": format!("uid-{name}")},
            "log_directory": e.files.path().join(name).display().to_string(),
            "linux": {},
        }),
    );
    e.ok(&["runp", pod.to_str().unwrap()])
}

/// A fresh port-forward URL for `pod`: (host:port, path).
async fn port_forward_url(e: &Env, pod: &str) -> (String, String) {
    let mut c = e.d.client().await;
    let url = c
        .runtime
        .port_forward(v1::PortForwardRequest {
            pod_sandbox_id: pod.into(),
            port: vec![80],
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let (host, path) = url
        .strip_prefix("http://")
        .and_then(|r| r.split_once('/'))
        .expect("http URL");
    (host.to_owned(), format!("/{path}"))
}

/// Asks for the SPDY upgrade of a port-forward URL; the connection after
/// the response head, and the status line.
fn spdy_upgrade(host: &str, path: &str) -> (BufReader<std::net::TcpStream>, String) {
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
         X-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
    }
    (r, status)
}

/// A connection that sends half a request head and then nothing.
fn stalled(host: &str) -> (std::net::TcpStream, Instant) {
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(s, "POST /portforward/x HTTP/1.1\r\nHost: {host}\r\n").unwrap();
    (s, Instant::now())
}

/// How long after `since` the server closed `s` (end of file or reset);
/// `None` when it was still open after 15 s.
fn closed_after(s: &mut std::net::TcpStream, since: Instant) -> Option<Duration> {
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            // A 408 or similar may come first; the close is what counts.
            Ok(n) if n > 0 => continue,
            Ok(_) => return Some(since.elapsed()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(_) => return Some(since.elapsed()),
        }
    }
}

/// Connections that stall in their request head are closed after the
/// header read timeout; connections past max_connections are closed at
/// once; requests that behave are served before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_excess_streaming_connections_are_closed() {
    if !ready("slow_and_excess_streaming_connections_are_closed") {
        return;
    }
    let e = Env::with_config("[streaming]\nheader_read_timeout_seconds = 2\nmax_connections = 3\n");
    let pod = bare_pod(&e, "limits");
    let (host, path) = port_forward_url(&e, &pod).await;

    let mut slow = vec![stalled(&host)];
    // Served while a slow connection waits (two of three places taken).
    let (conn, status) = spdy_upgrade(&host, &path);
    assert!(status.contains(" 101 "), "{status}");
    drop(conn);
    // The session ends once the client has gone and gives its place back.
    tokio::time::sleep(Duration::from_millis(500)).await;

    slow.push(stalled(&host));
    slow.push(stalled(&host));
    let (mut over, at) = (std::net::TcpStream::connect(&host).unwrap(), Instant::now());
    let closed = closed_after(&mut over, at).expect("a connection past the limit stays open");
    assert!(
        closed < Duration::from_millis(1500),
        "a connection past the limit was closed only after {closed:?} (the header timeout, not the limit)"
    );

    for (mut s, opened) in slow {
        let closed = closed_after(&mut s, opened).expect("a stalled connection stays open");
        assert!(
            closed >= Duration::from_millis(1500) && closed < Duration::from_secs(6),
            "a stalled connection was closed after {closed:?}, with a 2 s header timeout"
        );
    }

    let (path_host, path) = port_forward_url(&e, &pod).await;
    let (_conn, status) = spdy_upgrade(&path_host, &path);
    assert!(
        status.contains(" 101 "),
        "served again once the slow ones are gone: {status}"
    );
}

/// A SPDY client opening more streams than a connection serves at once
/// gets REFUSED_STREAM for the extra one, the rest are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_streams_past_the_limit_are_refused() {
    use pvecri::testing::spdy::frame::{self, Frame, FrameHead};
    use pvecri::testing::spdy::MAX_STREAMS;
    use pvecri::testing::spdy::{Compressor, Decompressor};

    if !ready("spdy_streams_past_the_limit_are_refused") {
        return;
    }
    let e = Env::new();
    let pod = bare_pod(&e, "streams");
    let (host, path) = port_forward_url(&e, &pod).await;
    let (mut conn, status) = spdy_upgrade(&host, &path);
    assert!(status.contains(" 101 "), "{status}");
    let mut out = conn.get_ref().try_clone().unwrap();
    let (mut deflate, mut inflate) = (Compressor::new(), Decompressor::new());
    // Error streams whose data streams never come: each one stays open.
    let streams = MAX_STREAMS as u32 + 1;
    for i in 0..streams {
        let syn = Frame::SynStream {
            stream_id: 2 * i + 1,
            associated_id: 0,
            priority: 0,
            fin: false,
            headers: vec![
                ("streamtype".into(), "error".into()),
                ("port".into(), "80".into()),
                ("requestid".into(), i.to_string()),
            ],
        };
        let mut buf = Vec::new();
        frame::encode(&syn, &mut deflate, &mut buf).unwrap();
        out.write_all(&buf).unwrap();
    }
    let (mut replied, mut refused) = (Vec::new(), Vec::new());
    while replied.len() + refused.len() < streams as usize {
        let mut head = [0u8; 8];
        conn.read_exact(&mut head)
            .expect("an answer to every stream");
        let head = FrameHead::parse(head);
        let mut payload = vec![0u8; head.length];
        conn.read_exact(&mut payload).unwrap();
        match frame::decode(head, payload.into(), &mut inflate).unwrap() {
            Some(Frame::SynReply { stream_id, .. }) => replied.push(stream_id),
            Some(Frame::RstStream { stream_id, status }) => {
                assert_eq!(status, frame::RST_REFUSED_STREAM, "stream {stream_id}");
                refused.push(stream_id);
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert_eq!(replied.len(), MAX_STREAMS);
    assert_eq!(refused, [2 * MAX_STREAMS as u32 + 1]);
}

/// Stdin much larger than the bounded input queues arrives whole over
/// both transports: the queues slow the client down, they drop nothing.
#[test]
fn large_stdin_passes_the_bounded_queues_whole() {
    if !ready("large_stdin_passes_the_bounded_queues_whole") {
        return;
    }
    let e = Env::new();
    let (_pod, ctr) = e.pod_with("bigin", &["sleep", "3600"], false);
    let input = vec![b'x'; 8 << 20];
    for transport in ["spdy", "websocket"] {
        let out = e.crictl_input(
            &["exec", "--transport", transport, "-i", &ctr, "wc", "-c"],
            &input,
        );
        assert!(out.status.success(), "{transport}: {}", stderr(&out));
        assert_eq!(stdout(&out).trim(), "8388608", "{transport}");
    }
}
