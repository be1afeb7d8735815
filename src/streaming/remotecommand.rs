//! The remote command protocol behind exec and attach, independent of the
//! transport: the client's stdin and resize messages come in, the
//! command's stdout and stderr go out, and at the end a status goes on the
//! error channel.
//!
//! Protocol versions: `channel.k8s.io` (v1) and `v2.channel.k8s.io` carry
//! a plain error message; v3 adds the resize channel; v4 and v5 write a
//! `Status` object, `NonZeroExitCode` with the code as an `ExitCode` cause.

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::channel::Sink;
use super::inbound::Inbound;

/// Resize bytes kept while waiting for the end of a size message; a
/// message never needs more, so anything longer is garbage and dropped.
const MAX_RESIZE_PENDING: usize = 4096;

/// The remote command protocol versions, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Version {
    V1,
    V2,
    V3,
    V4,
    V5,
}

impl Version {
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name.trim() {
            "channel.k8s.io" | "base64.channel.k8s.io" => Version::V1,
            "v2.channel.k8s.io" => Version::V2,
            "v3.channel.k8s.io" => Version::V3,
            "v4.channel.k8s.io" | "v4.base64.channel.k8s.io" => Version::V4,
            "v5.channel.k8s.io" => Version::V5,
            _ => return None,
        })
    }

    /// Whether the status is a JSON `Status` object.
    fn structured_status(self) -> bool {
        self >= Version::V4
    }
}

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Exited(i32),
    /// Attach: the container's output ended or the client left.
    Detached,
    Failed(String),
}

/// The client's side, already set up by the transport.
pub(crate) struct ClientChannels {
    pub stdin: Option<Inbound>,
    pub stdout: Option<Sink>,
    pub stderr: Option<Sink>,
    pub error: Option<Sink>,
    pub resize: Option<Inbound>,
    /// Fails `changed()` once the client's connection has ended.
    pub gone: Option<tokio::sync::watch::Receiver<()>>,
}

/// The command's side.
pub(crate) struct CommandIo {
    pub stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    pub stdout: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub stderr: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub resize: Option<Box<dyn Fn(u16, u16) + Send + Sync>>,
}

/// A terminal size message: JSON objects, one after another.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TerminalSize {
    pub width: u16,
    pub height: u16,
}

/// Splits complete size messages off the front of `buf`, leaving a
/// partial one there for the next chunk.
pub(crate) fn parse_sizes(buf: &mut Vec<u8>) -> Vec<TerminalSize> {
    let mut sizes = Vec::new();
    let mut iter = serde_json::Deserializer::from_slice(buf).into_iter::<TerminalSize>();
    let mut used = 0;
    loop {
        match iter.next() {
            Some(Ok(size)) => {
                used = iter.byte_offset();
                sizes.push(size);
            }
            Some(Err(e)) if e.is_eof() => break,
            Some(Err(_)) => {
                // Garbage: drop what is buffered rather than stall.
                used = buf.len();
                break;
            }
            None => {
                used = buf.len();
                break;
            }
        }
    }
    buf.drain(..used);
    sizes
}

/// Runs the data pumps until the command's output ends and `finished`
/// yields its outcome, then writes the status and closes every channel.
/// `abort` is called when the client can no longer be written to.
pub(crate) async fn run<F>(
    version: Version,
    client: ClientChannels,
    command: CommandIo,
    finished: F,
    abort: impl FnOnce() + Send,
) where
    F: std::future::Future<Output = Outcome>,
{
    if let (Some(rx), Some(w)) = (client.stdin, command.stdin) {
        tokio::spawn(copy_in(rx, w));
    }
    if let (Some(mut rx), Some(resize)) = (client.resize, command.resize) {
        tokio::spawn(async move {
            let mut buf = Vec::new();
            while let Some(chunk) = rx.recv().await {
                buf.extend_from_slice(&chunk);
                for size in parse_sizes(&mut buf) {
                    resize(size.width, size.height);
                }
                if buf.len() > MAX_RESIZE_PENDING {
                    buf.clear();
                }
            }
        });
    }
    let out = copy_out(command.stdout, client.stdout.as_ref());
    let err = copy_out(command.stderr, client.stderr.as_ref());
    tokio::pin!(out, err);
    let (mut out_done, mut err_done) = (false, false);
    let mut abort = Some(abort);
    let mut gone = client.gone;
    // A client that is gone, or cannot be written to any more, ends the
    // command at once, which also ends the copies.
    while !(out_done && err_done) {
        let ok = tokio::select! {
            ok = &mut out, if !out_done => { out_done = true; ok }
            ok = &mut err, if !err_done => { err_done = true; ok }
            _ = async { gone.as_mut().expect("armed").changed().await }, if gone.is_some() => {
                gone = None;
                false
            }
        };
        if !ok {
            if let Some(abort) = abort.take() {
                abort();
            }
        }
    }
    let outcome = finished.await;
    for sink in [&client.stdout, &client.stderr].into_iter().flatten() {
        let _ = sink.close().await;
    }
    if let Some(error) = &client.error {
        if let Some(message) = status_message(version, &outcome) {
            let _ = error.write(&message).await;
        }
        let _ = error.close().await;
    }
}

async fn copy_in(mut rx: Inbound, mut w: Box<dyn AsyncWrite + Send + Unpin>) {
    while let Some(chunk) = rx.recv().await {
        if w.write_all(&chunk).await.is_err() || w.flush().await.is_err() {
            return;
        }
    }
    // The client closed stdin: the command sees end of file.
    let _ = w.shutdown().await;
}

/// Copies until the command's end of output; false when the client could
/// not be written to.
async fn copy_out(from: Option<Box<dyn AsyncRead + Send + Unpin>>, to: Option<&Sink>) -> bool {
    let Some(mut from) = from else {
        return true;
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            Ok(n) => n,
        };
        if let Some(to) = to {
            if to.write(&buf[..n]).await.is_err() {
                return false;
            }
        }
    }
}

/// What goes on the error channel; `None` for success before v4.
pub(crate) fn status_message(version: Version, outcome: &Outcome) -> Option<Vec<u8>> {
    let structured = version.structured_status();
    match outcome {
        Outcome::Exited(0) | Outcome::Detached => structured.then(|| {
            serde_json::to_vec(&serde_json::json!({
                "metadata": {},
                "status": "Success",
            }))
            .expect("static JSON")
        }),
        Outcome::Exited(code) => {
            let message = format!("command terminated with non-zero exit code: exit status {code}");
            Some(if structured {
                serde_json::to_vec(&serde_json::json!({
                    "metadata": {},
                    "status": "Failure",
                    "message": message,
                    "reason": "NonZeroExitCode",
                    "details": {
                        "causes": [{"reason": "ExitCode", "message": code.to_string()}],
                    },
                }))
                .expect("static JSON")
            } else {
                message.into_bytes()
            })
        }
        Outcome::Failed(message) => Some(if structured {
            serde_json::to_vec(&serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": "InternalError",
            }))
            .expect("static JSON")
        } else {
            message.clone().into_bytes()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_recognised() {
        assert_eq!(Version::from_name("v4.channel.k8s.io"), Some(Version::V4));
        assert_eq!(Version::from_name("channel.k8s.io"), Some(Version::V1));
        assert_eq!(Version::from_name("v9.channel.k8s.io"), None);
    }

    #[test]
    fn v4_status_carries_the_exit_code_as_a_cause() {
        let msg = status_message(Version::V4, &Outcome::Exited(3)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&msg).unwrap();
        assert_eq!(v["status"], "Failure");
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
        let ok = status_message(Version::V4, &Outcome::Exited(0)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&ok).unwrap();
        assert_eq!(v["status"], "Success");
    }

    #[test]
    fn old_versions_send_nothing_on_success_and_text_on_failure() {
        assert_eq!(status_message(Version::V2, &Outcome::Exited(0)), None);
        let msg = status_message(Version::V2, &Outcome::Exited(1)).unwrap();
        assert!(String::from_utf8(msg).unwrap().contains("exit code"));
    }

    #[test]
    fn size_messages_split_across_chunks() {
        let mut buf = br#"{"Width":80,"Height":24}{"Width":100,"#.to_vec();
        assert_eq!(
            parse_sizes(&mut buf),
            vec![TerminalSize {
                width: 80,
                height: 24
            }]
        );
        buf.extend_from_slice(b"\"Height\":40}\n");
        assert_eq!(
            parse_sizes(&mut buf),
            vec![TerminalSize {
                width: 100,
                height: 40
            }]
        );
        assert!(buf.iter().all(u8::is_ascii_whitespace));
    }
}
