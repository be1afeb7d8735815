//! A server-side SPDY/3.1 session over one upgraded connection.
//!
//! One task reads frames and routes them: a peer's SYN_STREAM is answered
//! at once with a SYN_REPLY (the Kubernetes clients wait for it) and handed
//! to the handler as a [`Stream`]; DATA goes to that stream's queue; PING
//! is echoed. One task owns the write half and the header compressor, and
//! writes frames in the order they are queued. Flow control is not
//! enforced: the Kubernetes clients neither send nor honour WINDOW_UPDATE,
//! so windows are left at their defaults and updates ignored.
//!
//! Bounds: at most [`MAX_STREAMS`] streams are served at once (a stream
//! counts until the handler has dropped every part of it); a SYN_STREAM
//! past that is answered with RST_STREAM `REFUSED_STREAM`. Each stream's
//! data goes through a bounded queue ([`crate::streaming::inbound`]) and
//! the reader awaits room in it before reading the next frame. Without
//! flow control that is the only backpressure there is, and it is
//! per connection: while one stream's consumer is behind (a command not
//! reading its stdin, a pod socket not draining), the other streams of the
//! same connection wait too. The alternatives, buffering without bound or
//! dropping data, are worse; a port-forward client that needs independent
//! connections can open several sessions. A wait that lasts the idle
//! timeout with nothing moving either way ends the connection, like any
//! idle one, so a stuck consumer cannot pin it forever.

use crate::streaming::activity::Activity;
use crate::streaming::inbound::{self, Inbound, InboundTx};
use crate::streaming::throttle::Throttle;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

use super::frame::{self, Frame, FrameHead};
use super::headers::{self, Compressor, Decompressor, Headers};
use super::SpdyError;

/// Largest DATA payload this side sends; bigger writes are split.
const MAX_DATA: usize = 32 * 1024;
/// Largest frame accepted from the peer.
const MAX_FRAME_IN: usize = inbound::MAX_MESSAGE;
/// Streams served at once on one connection. Exec and attach need five at
/// most, a port-forward two per forwarded connection.
pub const MAX_STREAMS: usize = 16;

enum Out {
    Frame(Frame),
    /// Flush, shut the connection down and report back.
    Close(oneshot::Sender<()>),
}

/// Sends frames on the session; cheap to clone.
#[derive(Clone)]
pub(crate) struct Sender {
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
pub(crate) struct Stream {
    pub id: u32,
    pub headers: Headers,
    /// The peer's data; ends at its FIN, a reset or the connection's end.
    pub data: Inbound,
    pub writer: StreamWriter,
}

impl Stream {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        headers::get(&self.headers, name)
    }
}

/// This side of a stream.
#[derive(Clone)]
pub(crate) struct StreamWriter {
    id: u32,
    sender: Sender,
    /// The stream's place under [`MAX_STREAMS`], shared with its data.
    _slot: Arc<OwnedSemaphorePermit>,
}

impl StreamWriter {
    pub(crate) async fn write(&self, mut data: &[u8]) -> Result<(), SpdyError> {
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
    pub(crate) async fn close(&self) -> Result<(), SpdyError> {
        self.sender
            .send(Frame::Data {
                stream_id: self.id,
                fin: true,
                data: Bytes::new(),
            })
            .await
    }

    pub(crate) async fn reset(&self, status: u32) -> Result<(), SpdyError> {
        self.sender
            .send(Frame::RstStream {
                stream_id: self.id,
                status,
            })
            .await
    }
}

pub(crate) struct Session {
    /// Streams as the peer opens them; ends when the connection does.
    pub incoming: mpsc::Receiver<Stream>,
    sender: Sender,
    last_peer_stream: Arc<AtomicU64>,
    gone: watch::Receiver<()>,
}

impl Session {
    /// Starts serving a connection that has just switched to SPDY/3.1. The
    /// session ends when the peer closes, on a protocol error, or after
    /// `idle_timeout` without traffic either way.
    pub(crate) fn start<IO>(io: IO, idle_timeout: Duration) -> Self
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(io);
        let (tx, rx) = mpsc::channel(64);
        let activity = Arc::new(Activity::new());
        let sender = Sender { tx, activity };
        // Every queued stream holds one of the MAX_STREAMS slots, so
        // this queue never fills.
        let (incoming_tx, incoming) = mpsc::channel(MAX_STREAMS);
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
    pub(crate) fn gone(&self) -> watch::Receiver<()> {
        self.gone.clone()
    }

    /// Next stream the peer opens, or `None` once the connection is gone.
    pub(crate) async fn accept(&mut self) -> Option<Stream> {
        self.incoming.recv().await
    }

    /// Says GOAWAY, flushes everything queued before it and closes the
    /// connection.
    pub(crate) async fn close(self) {
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
    incoming: mpsc::Sender<Stream>,
    idle_timeout: Duration,
    last_peer_stream: Arc<AtomicU64>,
) {
    let mut inflate = Decompressor::new();
    let slots = Arc::new(Semaphore::new(MAX_STREAMS));
    let mut refusals = Throttle::default();
    let mut streams: HashMap<u32, InboundTx> = HashMap::new();
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
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    if let Some(refused) = refusals.event() {
                        tracing::warn!(
                            stream_id,
                            refused,
                            max_streams = MAX_STREAMS,
                            "refusing SPDY streams past the per-connection limit"
                        );
                    }
                    let _ = sender
                        .send(Frame::RstStream {
                            stream_id,
                            status: frame::RST_REFUSED_STREAM,
                        })
                        .await;
                    continue;
                };
                let slot = Arc::new(slot);
                last_peer_stream.store(u64::from(stream_id), Ordering::Relaxed);
                let _ = sender
                    .send(Frame::SynReply {
                        stream_id,
                        fin: false,
                        headers: Vec::new(),
                    })
                    .await;
                let (data_tx, data) = inbound::queue();
                if !fin {
                    streams.insert(stream_id, data_tx);
                }
                let stream = Stream {
                    id: stream_id,
                    headers,
                    data: data.guarded(slot.clone()),
                    writer: StreamWriter {
                        id: stream_id,
                        sender: sender.clone(),
                        _slot: slot,
                    },
                };
                if incoming.try_send(stream).is_err() {
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
                        tokio::select! {
                            sent = tx.send(data) => {
                                // Nobody reads it any more: later data is
                                // dropped here instead of waited for.
                                if sent.is_err() {
                                    streams.remove(&stream_id);
                                }
                            }
                            () = sender.activity.expired(idle_timeout) => {
                                tracing::info!(
                                    ?idle_timeout,
                                    stream_id,
                                    "closing a streaming connection whose stream consumer stopped"
                                );
                                break;
                            }
                        }
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

    fn syn(stream_id: u32) -> Frame {
        Frame::SynStream {
            stream_id,
            associated_id: 0,
            priority: 0,
            fin: false,
            headers: vec![("streamtype".into(), "data".into())],
        }
    }

    /// Past MAX_STREAMS open streams a new one is refused with
    /// REFUSED_STREAM; once the handler lets go of one, there is room again.
    #[tokio::test]
    async fn streams_past_the_limit_are_refused_until_one_ends() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut session = Session::start(server, Duration::from_secs(60));
        let (mut cr, mut cw) = tokio::io::split(client);
        let (mut c, mut d) = (Compressor::new(), Decompressor::new());
        let mut held = Vec::new();
        for i in 0..MAX_STREAMS as u32 {
            let id = 2 * i + 1;
            client_send(&mut cw, &mut c, syn(id)).await;
            assert!(matches!(
                client_recv(&mut cr, &mut d).await,
                Frame::SynReply { stream_id, .. } if stream_id == id
            ));
            held.push(session.accept().await.unwrap());
        }
        let over = 2 * MAX_STREAMS as u32 + 1;
        client_send(&mut cw, &mut c, syn(over)).await;
        assert_eq!(
            client_recv(&mut cr, &mut d).await,
            Frame::RstStream {
                stream_id: over,
                status: frame::RST_REFUSED_STREAM
            }
        );
        // The writer alone keeps a stream's place: data ends, writing goes on.
        let Stream { writer, .. } = held.remove(0);
        client_send(&mut cw, &mut c, syn(over + 2)).await;
        assert!(matches!(
            client_recv(&mut cr, &mut d).await,
            Frame::RstStream {
                status: frame::RST_REFUSED_STREAM,
                ..
            }
        ));
        drop(writer);
        client_send(&mut cw, &mut c, syn(over + 4)).await;
        assert!(matches!(
            client_recv(&mut cr, &mut d).await,
            Frame::SynReply { stream_id, .. } if stream_id == over + 4
        ));
        assert_eq!(session.accept().await.unwrap().id, over + 4);
    }

    /// A stream whose consumer does not read stops the session reading
    /// the connection, so the peer's writes stall instead of piling up
    /// here; nothing is lost once the consumer catches up.
    #[tokio::test]
    async fn a_consumer_that_falls_behind_stalls_the_peer() {
        const FRAMES: usize = 64;
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut session = Session::start(server, Duration::from_secs(60));
        let (mut cr, mut cw) = tokio::io::split(client);
        let (mut c, mut d) = (Compressor::new(), Decompressor::new());
        client_send(&mut cw, &mut c, syn(1)).await;
        let mut stream = session.accept().await.unwrap();
        client_recv(&mut cr, &mut d).await;
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let writer = tokio::spawn(async move {
            for _ in 0..FRAMES {
                let data = Bytes::from(vec![7u8; inbound::MAX_CHUNK]);
                client_send(
                    &mut cw,
                    &mut c,
                    Frame::Data {
                        stream_id: 1,
                        fin: false,
                        data,
                    },
                )
                .await;
                counter.fetch_add(1, Ordering::Relaxed);
            }
            cw
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = sent.load(Ordering::Relaxed) as usize;
        assert!(
            before < FRAMES,
            "the peer wrote everything although nothing was consumed"
        );
        // Queue plus socket buffers, not the whole transfer.
        assert!(before <= inbound::QUEUE_CHUNKS + 4, "{before} frames taken");
        let mut total = 0;
        while total < FRAMES * inbound::MAX_CHUNK {
            total += stream.data.recv().await.unwrap().len();
        }
        writer.await.unwrap();
        assert_eq!(total, FRAMES * inbound::MAX_CHUNK);
    }
}
