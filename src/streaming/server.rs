//! The streaming HTTP server: `/{exec,attach,portforward}/<token>`.
//!
//! A request presents a token from a CRI call and asks to switch
//! protocols: `Upgrade: SPDY/3.1` with the sub-protocols it speaks in
//! `X-Stream-Protocol-Version`, or a WebSocket handshake with them in
//! `Sec-WebSocket-Protocol`. The server picks the newest one it knows,
//! answers 101 and runs the session on the upgraded connection.
//!
//! Limits: a connection must send its request head within
//! `header_read_timeout_seconds` (hyper's header timer), and at most
//! `max_connections` connections are served at once. A connection holds
//! its slot until it closes, through the upgrade and the session that runs
//! on it; a connection accepted past the limit is closed at once, without
//! reading from it, so a flood of idle sockets costs nothing but the
//! accept.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::remotecommand::Version;
use super::throttle::Throttle;
use super::tokens::{Pending, Tokens};
use super::{session, websocket};
use crate::runtime::Runtime;

const SPDY_UPGRADE: &str = "SPDY/3.1";
const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// The running server: parks requests and hands out their URLs.
pub(crate) struct StreamingServer {
    addr: SocketAddr,
    tokens: Tokens,
    runtime: Arc<Runtime>,
    idle_timeout: Duration,
    header_read_timeout: Duration,
    connections: Arc<Semaphore>,
}

/// A connection's place under `max_connections`, held by whatever still
/// serves it: the HTTP connection, then the session on the upgraded one.
pub(crate) type ConnectionSlot = Arc<OwnedSemaphorePermit>;

impl StreamingServer {
    /// Binds the configured address and serves in the background.
    pub(crate) async fn start(runtime: Arc<Runtime>) -> anyhow::Result<Arc<Self>> {
        use anyhow::Context;
        let config = runtime.config().streaming.clone();
        let listener = tokio::net::TcpListener::bind((config.address, config.port))
            .await
            .with_context(|| {
                format!(
                    "cannot listen for streaming on {}:{}",
                    config.address, config.port
                )
            })?;
        let addr = listener
            .local_addr()
            .context("streaming listener address")?;
        let idle_timeout = match config.idle_timeout_seconds {
            // "Never": a hundred years keeps tokio's timer arithmetic sane.
            0 => Duration::from_secs(100 * 365 * 24 * 3600),
            s => Duration::from_secs(s),
        };
        let server = Arc::new(Self {
            addr,
            tokens: Tokens::default(),
            runtime,
            idle_timeout,
            header_read_timeout: Duration::from_secs(config.header_read_timeout_seconds),
            connections: Arc::new(Semaphore::new(config.max_connections)),
        });
        tracing::info!(%addr, "serving exec, attach and port-forward");
        tokio::spawn(accept_loop(server.clone(), listener));
        Ok(server)
    }

    /// Parks a validated request; its single-use URL, or `None` when too
    /// many requests are pending.
    pub(crate) fn url_for(&self, request: Pending) -> Option<String> {
        let kind = request.kind();
        let token = self.tokens.insert(request)?;
        Some(format!("http://{}/{kind}/{token}", self.addr))
    }

    pub(crate) fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }
}

async fn accept_loop(server: Arc<StreamingServer>, listener: tokio::net::TcpListener) {
    let mut refusals = Throttle::default();
    loop {
        let (conn, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(error = %err, "streaming accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = server.connections.clone().try_acquire_owned() else {
            if let Some(refused) = refusals.event() {
                tracing::warn!(
                    %peer,
                    refused,
                    "closing streaming connections past max_connections"
                );
            }
            drop(conn);
            continue;
        };
        let slot: ConnectionSlot = Arc::new(slot);
        let _ = conn.set_nodelay(true);
        let server = server.clone();
        tokio::spawn(async move {
            let header_read_timeout = server.header_read_timeout;
            let service = hyper::service::service_fn(move |req| {
                let server = server.clone();
                let slot = slot.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(server, slot, req)) }
            });
            let result = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .serve_connection(TokioIo::new(conn), service)
                .with_upgrades()
                .await;
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "streaming connection ended");
            }
        });
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, message: impl Into<String>) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(message.into())));
    *r.status_mut() = status;
    r
}

/// Every value of a possibly repeated, comma-separated header.
fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

/// The transport a request asked for.
pub(crate) enum Transport {
    Spdy,
    WebSocket,
}

fn transport_of(headers: &HeaderMap) -> Option<Transport> {
    let upgrade = header_values(headers, "upgrade");
    if upgrade.iter().any(|u| u.eq_ignore_ascii_case(SPDY_UPGRADE)) {
        Some(Transport::Spdy)
    } else if upgrade.iter().any(|u| u.eq_ignore_ascii_case("websocket")) {
        Some(Transport::WebSocket)
    } else {
        None
    }
}

/// Picks the protocol to speak: the client's offers in its order of
/// preference, first one this server knows.
pub(crate) fn negotiate<'a>(
    offered: &'a [String],
    known: &dyn Fn(&str) -> bool,
) -> Option<&'a str> {
    offered.iter().map(String::as_str).find(|p| known(p))
}

fn handle(server: Arc<StreamingServer>, slot: ConnectionSlot, mut req: Request<Incoming>) -> Reply {
    let path = req.uri().path().trim_matches('/').to_owned();
    let Some((kind, token)) = path.split_once('/') else {
        return reply(StatusCode::NOT_FOUND, "not found");
    };
    if !matches!(kind, "exec" | "attach" | "portforward") {
        return reply(StatusCode::NOT_FOUND, "not found");
    }
    let Some(transport) = transport_of(req.headers()) else {
        return reply(
            StatusCode::BAD_REQUEST,
            "this endpoint needs an Upgrade to SPDY/3.1 or websocket",
        );
    };
    let Some(pending) = server.tokens.take(token) else {
        return reply(StatusCode::NOT_FOUND, "unknown or expired streaming token");
    };
    if pending.kind() != kind {
        return reply(StatusCode::NOT_FOUND, "token is for another endpoint");
    }
    let is_port_forward = matches!(pending, Pending::PortForward { .. });
    match transport {
        Transport::Spdy => {
            let offered = header_values(req.headers(), PROTOCOL_HEADER);
            let known = |p: &str| {
                if is_port_forward {
                    p == PORT_FORWARD_PROTOCOL
                } else {
                    Version::from_name(p).is_some_and(|v| v <= Version::V4)
                }
            };
            let chosen = match negotiate(&offered, &known) {
                Some(p) => p.to_owned(),
                None if offered.is_empty() && is_port_forward => PORT_FORWARD_PROTOCOL.to_owned(),
                None if offered.is_empty() => "channel.k8s.io".to_owned(),
                None => {
                    return reply(
                        StatusCode::FORBIDDEN,
                        format!("unable to negotiate a stream protocol from {offered:?}"),
                    )
                }
            };
            let upgrade = hyper::upgrade::on(&mut req);
            let idle = server.idle_timeout;
            let header = HeaderValue::from_str(&chosen).ok();
            tokio::spawn(async move {
                let _slot = slot;
                match upgrade.await {
                    Ok(io) => {
                        let session = super::spdy::Session::start(TokioIo::new(io), idle);
                        session::run_spdy(server, session, &chosen, pending).await;
                    }
                    Err(err) => tracing::debug!(error = %err, "SPDY upgrade failed"),
                }
            });
            let mut r = reply(StatusCode::SWITCHING_PROTOCOLS, "");
            let h = r.headers_mut();
            h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
            h.insert(UPGRADE, HeaderValue::from_static(SPDY_UPGRADE));
            if let Some(v) = header {
                h.insert(PROTOCOL_HEADER, v);
            }
            r
        }
        Transport::WebSocket => websocket::upgrade(server, slot, req, pending, is_port_forward),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_takes_the_first_known_offer() {
        let offered: Vec<String> = [
            "v5.channel.k8s.io",
            "v4.channel.k8s.io",
            "v3.channel.k8s.io",
        ]
        .map(String::from)
        .to_vec();
        let known = |p: &str| Version::from_name(p).is_some_and(|v| v <= Version::V4);
        assert_eq!(negotiate(&offered, &known), Some("v4.channel.k8s.io"));
        assert_eq!(negotiate(&["x".to_owned()], &known), None);
    }

    #[test]
    fn repeated_and_comma_separated_headers_are_all_read() {
        let mut h = HeaderMap::new();
        h.append(
            PROTOCOL_HEADER,
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        h.append(
            PROTOCOL_HEADER,
            HeaderValue::from_static("v3.channel.k8s.io, v2.channel.k8s.io"),
        );
        assert_eq!(
            header_values(&h, PROTOCOL_HEADER),
            [
                "v4.channel.k8s.io",
                "v3.channel.k8s.io",
                "v2.channel.k8s.io"
            ]
        );
    }
}
