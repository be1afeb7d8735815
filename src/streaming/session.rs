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

/// Attaches the client to the container's main process.
pub(super) async fn attach(
    _server: &StreamingServer,
    _container_id: &str,
    _stdio: Stdio,
    version: Version,
    channels: ClientChannels,
) {
    fail(version, channels, "attach is not supported yet".into()).await;
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
