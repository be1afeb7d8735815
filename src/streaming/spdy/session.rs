//! A server-side SPDY/3.1 session over one upgraded connection.
//!
//! One task reads frames and routes them: a peer's SYN_STREAM is answered
//! at once with a SYN_REPLY (the Kubernetes clients wait for it) and handed
//! to the handler as a [`Stream`]; DATA goes to that stream's queue; PING
//! is echoed. One task owns the write half and the header compressor, and
//! writes frames in the order they are queued. Flow control is not
//! enforced: the Kubernetes clients neither send nor honour WINDOW_UPDATE,
//! so windows are left at their defaults and updates ignored.

use crate::streaming::activity::Activity;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use super::frame::{self, Frame, FrameHead};
use super::headers::{self, Compressor, Decompressor, Headers};
use super::SpdyError;

/// Largest DATA payload this side sends; bigger writes are split.
const MAX_DATA: usize = 32 * 1024;
/// Largest frame accepted from the peer.
const MAX_FRAME_IN: usize = 16 << 20;

enum Out {
    Frame(Frame),
    /// Flush, shut the connection down and report back.
    Close(oneshot::Sender<()>),
}

/// Sends frames on the session; cheap to clone.
#[derive(Clone)]
pub struct Sender {
    tx: mpsc::Sender<Out>,
    activity: Arc<Activity>,
}

impl Sender {
    async fn send(&self, frame: Frame) -> Result<(), SpdyError> {
        self.activity.touch();
        self.tx
            .send(Out::Frame(frame))
            .await
            .map_err(|_| SpdyError::Closed)
    }
}

/// A stream the peer opened.
pub struct Stream {
    pub id: u32,
    pub headers: Headers,
    /// The peer's data; ends at its FIN, a reset or the connection's end.
    pub data: mpsc::UnboundedReceiver<Bytes>,
    pub writer: StreamWriter,
}

impl Stream {
    pub fn header(&self, name: &str) -> Option<&str> {
        headers::get(&self.headers, name)
    }
}

/// This side of a stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    sender: Sender,
}

impl StreamWriter {
    pub async fn write(&self, mut data: &[u8]) -> Result<(), SpdyError> {
        while !data.is_empty() {
            let n = data.len().min(MAX_DATA);
            self.sender
                .send(Frame::Data {
                    stream_id: self.id,
                    fin: false,
                    data: Bytes::copy_from_slice(&data[..n]),
                })
                .await?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Half-closes the stream: an empty DATA frame with FIN.
    pub async fn close(&self) -> Result<(), SpdyError> {
        self.sender
            .send(Frame::Data {
                stream_id: self.id,
                fin: true,
                data: Bytes::new(),
            })
            .await
    }

    pub async fn reset(&self, status: u32) -> Result<(), SpdyError> {
        self.sender
            .send(Frame::RstStream {
                stream_id: self.id,
                status,
            })
            .await
    }
}

pub struct Session {
    /// Streams as the peer opens them; ends when the connection does.
    pub incoming: mpsc::UnboundedReceiver<Stream>,
    sender: Sender,
    last_peer_stream: Arc<AtomicU64>,
    gone: watch::Receiver<()>,
}

impl Session {
    /// Starts serving a connection that has just switched to SPDY/3.1. The
    /// session ends when the peer closes, on a protocol error, or after
    /// `idle_timeout` without traffic either way.
    pub fn start<IO>(io: IO, idle_timeout: Duration) -> Self
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(io);
        let (tx, rx) = mpsc::channel(64);
        let activity = Arc::new(Activity::new());
        let sender = Sender { tx, activity };
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        let last_peer_stream = Arc::new(AtomicU64::new(0));
        let (gone_tx, gone) = watch::channel(());
        tokio::spawn(write_loop(write, rx));
        let reader = read_loop(
            read,
            sender.clone(),
            incoming_tx,
            idle_timeout,
            last_peer_stream.clone(),
        );
        tokio::spawn(async move {
            reader.await;
            drop(gone_tx);
        });
        Self {
            incoming,
            sender,
            last_peer_stream,
            gone,
        }
    }

    /// Resolves (`changed()` fails) once the peer has gone: closed, reset,
    /// idle past the timeout, or a protocol error.
    pub fn gone(&self) -> watch::Receiver<()> {
        self.gone.clone()
    }

    /// Next stream the peer opens, or `None` once the connection is gone.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.incoming.recv().await
    }

    /// Says GOAWAY, flushes everything queued before it and closes the
    /// connection.
    pub async fn close(self) {
        let last = self.last_peer_stream.load(Ordering::Relaxed) as u32;
        let _ = self
            .sender
            .send(Frame::GoAway {
                last_good_id: last,
                status: 0,
            })
            .await;
        let (done_tx, done_rx) = oneshot::channel();
        if self.sender.tx.send(Out::Close(done_tx)).await.is_ok() {
            let _ = done_rx.await;
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut write: W, mut rx: mpsc::Receiver<Out>) {
    let mut deflate = Compressor::new();
    let mut buf = Vec::with_capacity(MAX_DATA + 64);
    while let Some(out) = rx.recv().await {
        match out {
            Out::Frame(frame) => {
                buf.clear();
                if let Err(err) = frame::encode(&frame, &mut deflate, &mut buf) {
                    tracing::warn!(error = %err, "cannot encode a SPDY frame");
                    break;
                }
                // Batch whatever else is already queued into one write.
                while buf.len() < MAX_DATA {
                    match rx.try_recv() {
                        Ok(Out::Frame(frame)) => {
                            if frame::encode(&frame, &mut deflate, &mut buf).is_err() {
                                break;
                            }
                        }
                        Ok(Out::Close(done)) => {
                            let _ = write.write_all(&buf).await;
                            let _ = write.shutdown().await;
                            let _ = done.send(());
                            return;
                        }
                        Err(_) => break,
                    }
                }
                if write.write_all(&buf).await.is_err() || write.flush().await.is_err() {
                    break;
                }
            }
            Out::Close(done) => {
                let _ = write.shutdown().await;
                let _ = done.send(());
                return;
            }
        }
    }
    let _ = write.shutdown().await;
}

async fn read_frame<R: AsyncRead + Unpin>(
    read: &mut R,
) -> Result<Option<(FrameHead, Bytes)>, SpdyError> {
    let mut head = [0u8; 8];
    match read.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(SpdyError::Io(e)),
    }
    let head = FrameHead::parse(head);
    if head.length > MAX_FRAME_IN {
        return Err(SpdyError::Protocol("frame too large"));
    }
    let mut payload = vec![0u8; head.length];
    read.read_exact(&mut payload).await.map_err(SpdyError::Io)?;
    Ok(Some((head, Bytes::from(payload))))
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut read: R,
    sender: Sender,
    incoming: mpsc::UnboundedSender<Stream>,
    idle_timeout: Duration,
    last_peer_stream: Arc<AtomicU64>,
) {
    let mut inflate = Decompressor::new();
    let mut streams: HashMap<u32, mpsc::UnboundedSender<Bytes>> = HashMap::new();
    loop {
        let next = tokio::time::timeout(idle_timeout, read_frame(&mut read));
        let (head, payload) = match next.await {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => break,
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "SPDY connection ended");
                break;
            }
            Err(_) => {
                if sender.activity.idle_for() >= idle_timeout {
                    tracing::info!(?idle_timeout, "closing an idle streaming connection");
                    break;
                }
                continue;
            }
        };
        sender.activity.touch();
        let frame = match frame::decode(head, payload, &mut inflate) {
            Ok(Some(frame)) => frame,
            Ok(None) => continue,
            Err(err) => {
                tracing::warn!(error = %err, "SPDY protocol error");
                let _ = sender
                    .send(Frame::GoAway {
                        last_good_id: last_peer_stream.load(Ordering::Relaxed) as u32,
                        status: 1,
                    })
                    .await;
                break;
            }
        };
        match frame {
            Frame::SynStream {
                stream_id,
                fin,
                headers,
                ..
            } => {
                if stream_id == 0 || streams.contains_key(&stream_id) {
                    let _ = sender
                        .send(Frame::RstStream {
                            stream_id,
                            status: frame::RST_PROTOCOL_ERROR,
                        })
                        .await;
                    continue;
                }
                last_peer_stream.store(u64::from(stream_id), Ordering::Relaxed);
                let _ = sender
                    .send(Frame::SynReply {
                        stream_id,
                        fin: false,
                        headers: Vec::new(),
                    })
                    .await;
                let (data_tx, data) = mpsc::unbounded_channel();
                if !fin {
                    streams.insert(stream_id, data_tx);
                }
                let stream = Stream {
                    id: stream_id,
                    headers,
                    data,
                    writer: StreamWriter {
                        id: stream_id,
                        sender: sender.clone(),
                    },
                };
                if incoming.send(stream).is_err() {
                    let _ = sender
                        .send(Frame::RstStream {
                            stream_id,
                            status: frame::RST_REFUSED_STREAM,
                        })
                        .await;
                }
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                if let Some(tx) = streams.get(&stream_id) {
                    if !data.is_empty() {
                        let _ = tx.send(data);
                    }
                    if fin {
                        streams.remove(&stream_id);
                    }
                }
            }
            Frame::RstStream { stream_id, .. } => {
                streams.remove(&stream_id);
            }
            Frame::Ping(id) => {
                let _ = sender.send(Frame::Ping(id)).await;
            }
            Frame::GoAway { .. } => break,
            Frame::Headers {
                stream_id,
                fin: true,
                ..
            } => {
                streams.remove(&stream_id);
            }
            Frame::Headers { .. }
            | Frame::SynReply { .. }
            | Frame::Settings(_)
            | Frame::WindowUpdate { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn client_send(w: &mut (impl AsyncWrite + Unpin), c: &mut Compressor, f: Frame) {
        let mut buf = Vec::new();
        frame::encode(&f, c, &mut buf).unwrap();
        w.write_all(&buf).await.unwrap();
    }

    async fn client_recv(r: &mut (impl AsyncRead + Unpin), d: &mut Decompressor) -> Frame {
        let (head, payload) = read_frame(r).await.unwrap().unwrap();
        frame::decode(head, payload, d).unwrap().unwrap()
    }

    /// A peer's stream is answered with SYN_REPLY, its data arrives in
    /// order and ends at FIN, and this side's data and FIN reach the peer.
    #[tokio::test]
    async fn streams_are_replied_and_carry_data_both_ways() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut session = Session::start(server, Duration::from_secs(60));
        let (mut cr, mut cw) = tokio::io::split(client);
        let (mut c, mut d) = (Compressor::new(), Decompressor::new());
        client_send(
            &mut cw,
            &mut c,
            Frame::SynStream {
                stream_id: 1,
                associated_id: 0,
                priority: 0,
                fin: false,
                headers: vec![("streamtype".into(), "stdin".into())],
            },
        )
        .await;
        let mut stream = session.accept().await.unwrap();
        assert_eq!(stream.header("streamType"), Some("stdin"));
        assert!(matches!(
            client_recv(&mut cr, &mut d).await,
            Frame::SynReply { stream_id: 1, .. }
        ));
        client_send(
            &mut cw,
            &mut c,
            Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::from_static(b"abc"),
            },
        )
        .await;
        assert_eq!(
            stream.data.recv().await.unwrap(),
            Bytes::from_static(b"abc")
        );
        assert!(stream.data.recv().await.is_none());
        stream.writer.write(b"out").await.unwrap();
        stream.writer.close().await.unwrap();
        assert_eq!(
            client_recv(&mut cr, &mut d).await,
            Frame::Data {
                stream_id: 1,
                fin: false,
                data: Bytes::from_static(b"out")
            }
        );
        assert_eq!(
            client_recv(&mut cr, &mut d).await,
            Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::new()
            }
        );
        client_send(&mut cw, &mut c, Frame::Ping(3)).await;
        assert_eq!(client_recv(&mut cr, &mut d).await, Frame::Ping(3));
        session.close().await;
        assert!(matches!(
            client_recv(&mut cr, &mut d).await,
            Frame::GoAway {
                last_good_id: 1,
                ..
            }
        ));
    }
}
