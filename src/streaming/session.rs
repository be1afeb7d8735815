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
                Err(message) => tracing::info!(container_id, message, "exec session abandoned"),
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
                Err(message) => tracing::info!(container_id, message, "attach session abandoned"),
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
/// monitor: output frames are split into stdout and stderr, the client's
/// stdin goes to the monitor as is.
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
    // Without stdin the write half is kept, unused, to the end: dropping it
    // would tell the monitor that stdin closed.
    let (stdin, _held) = if stdio.stdin {
        (
            Some(Box::new(to_monitor) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>),
            None,
        )
    } else {
        (None, Some(to_monitor))
    };
    let io = CommandIo {
        stdin,
        stdout: stdio
            .stdout
            .then(|| Box::new(out_r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        stderr: (stdio.stderr && !stdio.tty)
            .then(|| Box::new(err_r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        resize: None,
    };
    let abort = move || {
        let _ = cancel_tx.send(());
    };
    remotecommand::run(version, channels, io, async { Outcome::Detached }, abort).await;
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
