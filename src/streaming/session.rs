//! Runs one upgraded connection: the parked request decides what it does.

use std::sync::Arc;

use super::remotecommand::{self, ClientChannels, CommandIo, Outcome, Version};
use super::server::StreamingServer;
use super::spdy::Session;
use super::tokens::{Pending, Stdio};

/// Serves a SPDY session for `pending` with the negotiated `protocol`.
pub(super) async fn run_spdy(
    server: Arc<StreamingServer>,
    mut session: Session,
    protocol: &str,
    pending: Pending,
) {
    match pending {
        Pending::PortForward { pod_id, net_ns } => {
            super::portforward::serve(session, pod_id, net_ns).await;
        }
        Pending::Exec {
            container_id,
            cmd,
            stdio,
        } => {
            let version = Version::from_name(protocol).unwrap_or(Version::V1);
            match super::spdy_command::collect(&mut session, version, stdio).await {
                Ok(channels) => exec(&server, &container_id, &cmd, stdio, version, channels).await,
                Err(why) => tracing::info!(container_id, message = %why, "exec session abandoned"),
            }
            session.close().await;
        }
        Pending::Attach {
            container_id,
            stdio,
        } => {
            let version = Version::from_name(protocol).unwrap_or(Version::V1);
            match super::spdy_command::collect(&mut session, version, stdio).await {
                Ok(channels) => attach(&server, &container_id, stdio, version, channels).await,
                Err(why) => {
                    tracing::info!(container_id, message = %why, "attach session abandoned")
                }
            }
            session.close().await;
        }
    }
}

/// Runs the command for a client whose channels are ready.
pub(super) async fn exec(
    server: &StreamingServer,
    container_id: &str,
    cmd: &[String],
    stdio: Stdio,
    version: Version,
    channels: ClientChannels,
) {
    let runtime = server.runtime();
    let mut process = match runtime.spawn_exec(container_id, cmd, stdio) {
        Ok(p) => p,
        Err(err) => {
            fail(version, channels, err.to_string()).await;
            return;
        }
    };
    let terminal = process.terminal.take().map(Arc::new);
    let io = CommandIo {
        stdin: process.stdin.take(),
        stdout: process.stdout.take(),
        stderr: process.stderr.take(),
        resize: terminal
            .clone()
            .map(|t| Box::new(move |w, h| t.resize(w, h)) as Box<dyn Fn(u16, u16) + Send + Sync>),
    };
    let process = Arc::new(tokio::sync::Mutex::new(process));
    let killer = process.clone();
    let finished = async move {
        let mut p = process.lock().await;
        match p.wait().await {
            Ok(code) => Outcome::Exited(code),
            Err(err) => Outcome::Failed(format!("waiting for the exec helper: {err}")),
        }
    };
    let abort = move || {
        if let Ok(mut p) = killer.try_lock() {
            p.kill();
        }
    };
    remotecommand::run(version, channels, io, finished, abort).await;
    drop(terminal);
}

/// Attaches the client to the container's main process through its
/// monitor (`crate::monitor::attach` has the framing): output frames are
/// split into stdout and stderr, the client's stdin and terminal sizes go
/// to the monitor as frames.
pub(super) async fn attach(
    server: &StreamingServer,
    container_id: &str,
    stdio: Stdio,
    version: Version,
    channels: ClientChannels,
) {
    let conn = match server.runtime().connect_attach(container_id).await {
        Ok(conn) => conn,
        Err(err) => {
            fail(version, channels, err.to_string()).await;
            return;
        }
    };
    let (from_monitor, to_monitor) = conn.into_split();
    let (out_w, out_r) = tokio::io::duplex(64 * 1024);
    let (err_w, err_r) = tokio::io::duplex(64 * 1024);
    let (cancel_tx, cancel_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(demux(from_monitor, out_w, err_w, cancel_rx));
    let (stdin_w, stdin_r) = tokio::io::duplex(64 * 1024);
    // Only the latest size matters: a burst of resizes collapses into one.
    let (resize_tx, resize_rx) = tokio::sync::watch::channel(None);
    let upstream = tokio::spawn(mux(stdin_r, resize_rx, to_monitor, stdio.stdin));
    let io = CommandIo {
        stdin: stdio
            .stdin
            .then(|| Box::new(stdin_w) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>),
        stdout: stdio
            .stdout
            .then(|| Box::new(out_r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        stderr: (stdio.stderr && !stdio.tty)
            .then(|| Box::new(err_r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        resize: stdio.tty.then(|| {
            Box::new(move |w, h| {
                resize_tx.send_replace(Some((w, h)));
            }) as Box<dyn Fn(u16, u16) + Send + Sync>
        }),
    };
    let abort = move || {
        let _ = cancel_tx.send(());
    };
    remotecommand::run(version, channels, io, async { Outcome::Detached }, abort).await;
    upstream.abort();
}

/// Frames the client's stdin and terminal sizes for the monitor. The end
/// of stdin shuts the connection's sending side down (the monitor's "stdin
/// closed"); without stdin it stays open, or the monitor would take it for
/// a closed stdin.
async fn mux(
    mut stdin: tokio::io::DuplexStream,
    mut resizes: tokio::sync::watch::Receiver<Option<(u16, u16)>>,
    mut to: tokio::net::unix::OwnedWriteHalf,
    has_stdin: bool,
) {
    use crate::monitor::attach::{frame, RESIZE, STDIN};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 32 * 1024];
    let mut stdin_open = has_stdin;
    if has_stdin && to.write_all(&frame(STDIN, &[])).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            n = stdin.read(&mut buf), if stdin_open => match n {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    let _ = to.shutdown().await;
                }
                Ok(n) => {
                    if to.write_all(&frame(STDIN, &buf[..n])).await.is_err() {
                        return;
                    }
                }
            },
            changed = resizes.changed() => match changed.ok().map(|()| *resizes.borrow_and_update()) {
                Some(None) => {}
                Some(Some((w, h))) => {
                    let mut body = w.to_be_bytes().to_vec();
                    body.extend_from_slice(&h.to_be_bytes());
                    if stdin_open || !has_stdin {
                        let _ = to.write_all(&frame(RESIZE, &body)).await;
                    }
                }
                // No terminal: wait on stdin alone (or forever, holding
                // the connection open, until the session aborts this).
                None if stdin_open => {
                    while let Ok(n) = stdin.read(&mut buf).await {
                        if n == 0 || to.write_all(&frame(STDIN, &buf[..n])).await.is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown().await;
                    std::future::pending::<()>().await;
                }
                None => std::future::pending::<()>().await,
            },
        }
    }
}

/// Splits the monitor's output frames (stream byte, 32-bit length, bytes)
/// into the two pipes, until the monitor closes or the session is
/// cancelled.
async fn demux(
    mut from: tokio::net::unix::OwnedReadHalf,
    mut out: tokio::io::DuplexStream,
    mut err: tokio::io::DuplexStream,
    mut cancel: tokio::sync::oneshot::Receiver<()>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let frame = async move {
        loop {
            let mut head = [0u8; 5];
            if from.read_exact(&mut head).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut data = vec![0u8; len];
            if from.read_exact(&mut data).await.is_err() {
                return;
            }
            let to = if head[0] == crate::monitor::attach::STDERR {
                &mut err
            } else {
                &mut out
            };
            // A side nobody reads (not requested) is simply dropped.
            let _ = to.write_all(&data).await;
        }
    };
    tokio::select! {
        _ = frame => {}
        _ = &mut cancel => {}
    }
}

/// Reports a failure before anything ran.
async fn fail(version: Version, channels: ClientChannels, message: String) {
    let io = CommandIo {
        stdin: None,
        stdout: None,
        stderr: None,
        resize: None,
    };
    remotecommand::run(
        version,
        channels,
        io,
        async { Outcome::Failed(message) },
        || {},
    )
    .await;
}
