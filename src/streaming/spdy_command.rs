//! Exec and attach over SPDY: the client opens one stream per channel,
//! named by its `streamType` header (`error`, `stdin`, `stdout`, `stderr`,
//! `resize`); the command starts once every stream the request implies
//! has arrived.

use std::time::Duration;

use super::channel::Sink;
use super::remotecommand::{ClientChannels, Version};
use super::spdy::{frame, Session};
use super::tokens::Stdio;

/// How long the client has to open its streams (the kubelet's own limit).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a session ended before the client opened the streams it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum Abandoned {
    #[error("the client closed the connection")]
    Closed,
    #[error("timed out waiting for the client's streams")]
    TimedOut,
}

/// Waits for the streams `stdio` needs.
pub(super) async fn collect(
    session: &mut Session,
    version: Version,
    stdio: Stdio,
) -> Result<ClientChannels, Abandoned> {
    let mut channels = ClientChannels {
        stdin: None,
        stdout: None,
        stderr: None,
        error: None,
        resize: None,
        gone: Some(session.gone()),
    };
    let wants_resize = stdio.tty && version >= Version::V3;
    let complete = |c: &ClientChannels| {
        (c.error.is_some() || version == Version::V1)
            && (c.stdin.is_some() || !stdio.stdin)
            && (c.stdout.is_some() || !stdio.stdout)
            && (c.stderr.is_some() || !stdio.stderr || stdio.tty)
            && (c.resize.is_some() || !wants_resize)
    };
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    while !complete(&channels) {
        let stream = match tokio::time::timeout_at(deadline, session.accept()).await {
            Ok(Some(stream)) => stream,
            Ok(None) => return Err(Abandoned::Closed),
            Err(_) => return Err(Abandoned::TimedOut),
        };
        let kind = stream.header("streamtype").unwrap_or_default().to_owned();
        let sink = Sink::Spdy(stream.writer.clone());
        match kind.as_str() {
            "error" => channels.error = Some(sink),
            "stdin" => channels.stdin = Some(stream.data),
            "stdout" => channels.stdout = Some(sink),
            "stderr" => channels.stderr = Some(sink),
            "resize" => channels.resize = Some(stream.data),
            other => {
                tracing::debug!(stream_type = other, "refusing an unknown stream");
                let _ = stream.writer.reset(frame::RST_REFUSED_STREAM).await;
            }
        }
    }
    Ok(channels)
}
