//! The WebSocket transports.
//!
//! Exec and attach use the channel protocols: every binary message starts
//! with a channel byte (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize);
//! the `base64.` variants send text messages whose first character is the
//! channel digit and whose rest is base64. In `v5.channel.k8s.io` the
//! client half-closes a channel with a message on channel 255 naming it.
//! Output channels end only when the connection does, so the server closes
//! it (normal closure) once the status is written.
//!
//! Port-forward tunnels SPDY: with `SPDY/3.1+portforward.k8s.io` binary
//! messages carry the bytes of an ordinary SPDY port-forward session.
//!
//! Messages are limited to [`inbound::MAX_MESSAGE`], like SPDY frames.
//! The reader hands stdin and resize data to bounded queues and waits for
//! room before it reads the next message, so a client typing faster than
//! the command reads is held back by TCP (the resize channel shares the
//! connection, so it waits behind a full stdin queue too).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine;
use bytes::Bytes;
use futures_util::{Sink as _, SinkExt, Stream as _, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::channel::Sink;
use super::inbound::{self, InboundTx};
use super::remotecommand::{ClientChannels, Version};
use super::server::{negotiate, ConnectionSlot, StreamingServer};
use super::tokens::{Pending, Stdio};

const TUNNELED_PORT_FORWARD: &str = "SPDY/3.1+portforward.k8s.io";

pub(super) const STDIN: u8 = 0;
pub(super) const STDOUT: u8 = 1;
pub(super) const STDERR: u8 = 2;
pub(super) const ERROR: u8 = 3;
pub(super) const RESIZE: u8 = 4;
/// v5: "the channel named in the next byte is closed".
pub(super) const CLOSE: u8 = 255;

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, message: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(message)));
    *r.status_mut() = status;
    r
}

/// Framing of a channel protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Binary,
    Base64,
}

fn protocol_encoding(name: &str) -> Encoding {
    if name.contains("base64.") {
        Encoding::Base64
    } else {
        Encoding::Binary
    }
}

/// Answers the WebSocket handshake and runs the session once upgraded.
pub(super) fn upgrade(
    server: Arc<StreamingServer>,
    slot: ConnectionSlot,
    mut req: Request<Incoming>,
    pending: Pending,
    port_forward: bool,
) -> Reply {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return reply(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key".into());
    };
    let offered: Vec<String> = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect();
    let known = |p: &str| {
        if port_forward {
            p == TUNNELED_PORT_FORWARD
        } else {
            Version::from_name(p)
                .is_some_and(|v| v == Version::V5 || v == Version::V4 || v == Version::V1)
        }
    };
    let chosen = match negotiate(&offered, &known) {
        Some(p) => Some(p.to_owned()),
        None if offered.is_empty() && !port_forward => None,
        None => {
            return reply(
                StatusCode::FORBIDDEN,
                format!("unable to negotiate a stream protocol from {offered:?}"),
            )
        }
    };
    let upgrade = hyper::upgrade::on(&mut req);
    let protocol = chosen.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let io = match upgrade.await {
            Ok(io) => TokioIo::new(io),
            Err(err) => {
                tracing::debug!(error = %err, "WebSocket upgrade failed");
                return;
            }
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(inbound::MAX_MESSAGE))
            .max_frame_size(Some(inbound::MAX_MESSAGE));
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        run(server, ws, protocol.as_deref(), pending).await;
    });
    let mut r = reply(StatusCode::SWITCHING_PROTOCOLS, String::new());
    let h = r.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert("sec-websocket-accept", v);
    }
    if let Some(p) = chosen.and_then(|p| HeaderValue::from_str(&p).ok()) {
        h.insert("sec-websocket-protocol", p);
    }
    r
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

async fn run(server: Arc<StreamingServer>, ws: Ws, protocol: Option<&str>, pending: Pending) {
    match pending {
        Pending::PortForward { pod_id, net_ns } => {
            let session = super::spdy::Session::start(Tunnel::new(ws), server.idle_timeout());
            super::portforward::serve(session, pod_id, net_ns).await;
        }
        Pending::Exec {
            container_id,
            cmd,
            stdio,
        } => {
            let version = protocol.and_then(Version::from_name).unwrap_or(Version::V1);
            let encoding = protocol.map_or(Encoding::Binary, protocol_encoding);
            let (channels, closer) = channels(ws, stdio, encoding, server.idle_timeout());
            super::session::exec(&server, &container_id, &cmd, stdio, version, channels).await;
            closer.close().await;
        }
        Pending::Attach {
            container_id,
            stdio,
        } => {
            let version = protocol.and_then(Version::from_name).unwrap_or(Version::V1);
            let encoding = protocol.map_or(Encoding::Binary, protocol_encoding);
            let (channels, closer) = channels(ws, stdio, encoding, server.idle_timeout());
            super::session::attach(&server, &container_id, stdio, version, channels).await;
            closer.close().await;
        }
    }
}

/// What the writer task sends.
pub(super) enum WsOut {
    Data { channel: u8, data: Bytes },
    Close(tokio::sync::oneshot::Sender<()>),
}

/// An outgoing channel of a WebSocket session.
#[derive(Clone)]
pub(crate) struct WsSink {
    tx: mpsc::Sender<WsOut>,
    channel: u8,
}

impl WsSink {
    pub(crate) async fn write(&self, data: &[u8]) -> Result<(), super::channel::ChannelClosed> {
        for chunk in data.chunks(32 * 1024) {
            self.tx
                .send(WsOut::Data {
                    channel: self.channel,
                    data: Bytes::copy_from_slice(chunk),
                })
                .await
                .map_err(|_| super::channel::ChannelClosed)?;
        }
        Ok(())
    }
}

/// Closes the connection once the session is done.
pub(super) struct Closer(mpsc::Sender<WsOut>);

impl Closer {
    async fn close(self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.0.send(WsOut::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// One message on `channel` in the session's framing.
pub(super) fn encode(encoding: Encoding, channel: u8, data: &[u8]) -> Message {
    match encoding {
        Encoding::Binary => {
            let mut m = Vec::with_capacity(data.len() + 1);
            m.push(channel);
            m.extend_from_slice(data);
            Message::Binary(m.into())
        }
        Encoding::Base64 => {
            let text = format!(
                "{}{}",
                char::from(b'0' + channel),
                base64::engine::general_purpose::STANDARD.encode(data)
            );
            Message::Text(text.into())
        }
    }
}

/// The channel and payload of a client message; `None` for anything that
/// is not a channel message.
pub(super) fn decode(encoding: Encoding, message: &Message) -> Option<(u8, Bytes)> {
    match (encoding, message) {
        (Encoding::Binary, Message::Binary(b)) if !b.is_empty() => Some((b[0], b.slice(1..))),
        (Encoding::Base64, Message::Text(t)) if !t.is_empty() => {
            let t = t.as_str();
            let channel = t.as_bytes()[0].checked_sub(b'0')?;
            let data = base64::engine::general_purpose::STANDARD
                .decode(&t[1..])
                .ok()?;
            Some((channel, data.into()))
        }
        _ => None,
    }
}

/// Splits the connection into the remote command channels `stdio` needs.
/// A connection that moves no data either way for `idle` ends as if the
/// client had gone (as SPDY connections do).
fn channels(
    ws: Ws,
    stdio: Stdio,
    encoding: Encoding,
    idle: std::time::Duration,
) -> (ClientChannels, Closer) {
    let (mut write, mut read) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<WsOut>(64);
    let activity = Arc::new(super::activity::Activity::new());
    let written = activity.clone();
    tokio::spawn(async move {
        while let Some(out) = out_rx.recv().await {
            match out {
                WsOut::Data { channel, data } => {
                    if write.send(encode(encoding, channel, &data)).await.is_err() {
                        break;
                    }
                    written.touch();
                }
                WsOut::Close(done) => {
                    let frame = CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    };
                    let _ = write.send(Message::Close(Some(frame))).await;
                    let _ = write.close().await;
                    let _ = done.send(());
                    break;
                }
            }
        }
    });
    let (stdin_tx, stdin_rx) = inbound::queue();
    let (resize_tx, resize_rx) = inbound::queue();
    let (gone_tx, gone) = tokio::sync::watch::channel(());
    tokio::spawn(async move {
        // Dropped when the client's side ends: the session's "gone".
        let _gone_tx = gone_tx;
        let mut stdin_tx = Some(stdin_tx);
        loop {
            let wait = idle.saturating_sub(activity.idle_for());
            let message = match tokio::time::timeout(wait, read.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(_) => break,
                // Output may have kept the connection busy meanwhile.
                Err(_) if activity.idle_for() < idle => continue,
                Err(_) => {
                    tracing::info!(idle_timeout = ?idle, "closing an idle WebSocket streaming connection");
                    break;
                }
            };
            activity.touch();
            if matches!(message, Message::Close(_)) {
                break;
            }
            let Some((channel, data)) = decode(encoding, &message) else {
                continue;
            };
            let queue = match channel {
                STDIN => stdin_tx.as_ref(),
                RESIZE => Some(&resize_tx),
                CLOSE if data.first() == Some(&STDIN) => {
                    stdin_tx = None;
                    None
                }
                _ => None,
            };
            if let Some(queue) = queue.filter(|_| !data.is_empty()) {
                if !deliver(queue, data, &activity, idle).await {
                    tracing::info!(idle_timeout = ?idle, "closing a WebSocket streaming connection whose input consumer stopped");
                    break;
                }
            }
        }
    });
    let sink = |channel| {
        Some(Sink::Ws(WsSink {
            tx: out_tx.clone(),
            channel,
        }))
    };
    let channels = ClientChannels {
        stdin: stdio.stdin.then_some(stdin_rx),
        stdout: if stdio.stdout { sink(STDOUT) } else { None },
        stderr: if stdio.stderr && !stdio.tty {
            sink(STDERR)
        } else {
            None
        },
        error: sink(ERROR),
        resize: stdio.tty.then_some(resize_rx),
        gone: Some(gone),
    };
    (channels, Closer(out_tx))
}

/// Queues client input, waiting for room while the connection moves
/// something either way; false once it has been idle for `idle`. Input
/// nobody reads any more is dropped.
async fn deliver(
    queue: &InboundTx,
    data: Bytes,
    activity: &super::activity::Activity,
    idle: std::time::Duration,
) -> bool {
    tokio::select! {
        _ = queue.send(data) => true,
        () = activity.expired(idle) => false,
    }
}

/// A WebSocket carrying a byte stream in binary messages, for SPDY.
pub(super) struct Tunnel {
    ws: Ws,
    pending: Bytes,
}

impl Tunnel {
    fn new(ws: Ws) -> Self {
        Self {
            ws,
            pending: Bytes::new(),
        }
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                let chunk = self.pending.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.ws).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) | Poll::Ready(Some(Ok(Message::Close(_)))) => {
                    return Poll::Ready(Ok(()))
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(std::io::Error::other(e))),
                Poll::Ready(Some(Ok(Message::Binary(b)))) => self.pending = b,
                Poll::Ready(Some(Ok(_))) => {}
            }
        }
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.ws).poll_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
            Poll::Ready(Ok(())) => {}
        }
        let message = Message::Binary(Bytes::copy_from_slice(data));
        match Pin::new(&mut self.ws).start_send(message) {
            Ok(()) => Poll::Ready(Ok(data.len())),
            Err(e) => Poll::Ready(Err(std::io::Error::other(e))),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.ws)
            .poll_flush(cx)
            .map_err(std::io::Error::other)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.ws)
            .poll_close(cx)
            .map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_messages_lead_with_the_channel() {
        let m = encode(Encoding::Binary, STDOUT, b"hi");
        assert_eq!(m, Message::Binary(Bytes::from_static(&[1, b'h', b'i'])));
        assert_eq!(
            decode(Encoding::Binary, &m),
            Some((STDOUT, Bytes::from_static(b"hi")))
        );
    }

    #[test]
    fn base64_messages_lead_with_the_channel_digit() {
        let m = encode(Encoding::Base64, STDERR, b"hi");
        assert_eq!(m, Message::Text("2aGk=".into()));
        assert_eq!(
            decode(Encoding::Base64, &Message::Text("0aGk=".into())),
            Some((STDIN, Bytes::from_static(b"hi")))
        );
    }

    #[test]
    fn other_messages_are_not_channel_data() {
        assert_eq!(decode(Encoding::Binary, &Message::Text("1x".into())), None);
        assert_eq!(
            decode(Encoding::Binary, &Message::Binary(Bytes::new())),
            None
        );
    }
}
