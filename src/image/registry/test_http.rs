//! Bare HTTP/1.x over loopback for the registry tests: a client to probe
//! and seed the local registry independently of the code under test, and a
//! scripted server for the failures a real registry will not produce
//! (stalls, corrupted blobs, obsolete manifests, endless bodies) and for
//! the authentication a local registry does not ask for.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub(super) const LOCAL_REGISTRY: &str = "127.0.0.1:5000";

pub(super) struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// One request with `Connection: close`; `None` if nothing answers.
pub(super) async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Response> {
    let exchange = async {
        let mut conn = TcpStream::connect(addr).await.ok()?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        conn.write_all(head.as_bytes()).await.ok()?;
        conn.write_all(body).await.ok()?;
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).await.ok()?;
        parse_response(&raw, method == "HEAD")
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
}

fn parse_response(raw: &[u8], head_only: bool) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body)?;
    }
    if head_only {
        body.clear();
    }
    Some(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Whether the local test registry answers; tests skip loudly otherwise.
pub(super) async fn local_registry_up() -> bool {
    request(LOCAL_REGISTRY, "GET", "/v2/", &[], &[])
        .await
        .is_some_and(|r| r.status == 200)
}

/// What the scripted server does for one request path.
#[derive(Clone)]
pub(super) enum Reply {
    Ok {
        content_type: &'static str,
        body: Vec<u8>,
    },
    Status(u16),
    /// Announces `length` bytes, sends `body` (shorter), then goes silent.
    Stall {
        length: usize,
        body: Vec<u8>,
    },
    /// Accepts the request and never answers.
    Hang,
    /// `body` with `Transfer-Encoding: chunked` (no length announced).
    Chunked {
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// Chunked 64 KiB chunks of `x`, forever (or until the client leaves).
    Endless,
    /// `reply` for requests whose `Authorization` header is `expected`;
    /// 401 with `WWW-Authenticate: challenge` for the rest. `{addr}` in the
    /// challenge is this server's address.
    Guarded {
        expected: &'static str,
        challenge: &'static str,
        reply: Box<Reply>,
    },
    /// The n-th request gets `replies[n]`, the last one all after it;
    /// `served` counts them.
    Sequence {
        served: Arc<std::sync::atomic::AtomicUsize>,
        replies: Vec<Reply>,
    },
    /// `status` with `Location: location` (`{addr}` as in `Guarded`).
    Redirect {
        status: u16,
        location: String,
    },
    /// `status` with `body` as text.
    Error {
        status: u16,
        body: Vec<u8>,
    },
    /// A token endpoint taking only a `POST` refresh-token grant whose
    /// form has `refresh_token=refresh`, a scope and a client_id; it
    /// answers `{"token": token}`, anything else 401.
    RefreshGrant {
        refresh: &'static str,
        token: &'static str,
    },
}

/// Serves `routes` (path -> reply; unknown paths get 404) on an ephemeral
/// loopback port until the test's runtime shuts down.
pub(super) async fn serve(routes: HashMap<String, Reply>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = Arc::new(routes);
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(answer(conn, routes.clone()));
        }
    });
    addr
}

async fn answer(mut conn: TcpStream, routes: Arc<HashMap<String, Reply>>) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&raw).into_owned();
    let method = head.split(' ').next().unwrap_or("").to_owned();
    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
    let path = path.split('?').next().unwrap_or("").to_owned();
    let authorization = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.trim().to_owned());
    let mut reply = match (path.as_str(), routes.get(&path)) {
        (_, Some(reply)) => reply.clone(),
        ("/v2/", None) => Reply::Ok {
            content_type: "application/json",
            body: b"{}".to_vec(),
        },
        _ => Reply::Status(404),
    };
    if let Reply::Sequence { served, replies } = reply {
        let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        reply = replies[n.min(replies.len() - 1)].clone();
    }
    while let Reply::Guarded {
        expected,
        challenge,
        reply: inner,
    } = reply
    {
        if authorization.as_deref() == Some(expected) {
            reply = *inner;
            continue;
        }
        let addr = conn.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let challenge = challenge.replace("{addr}", &addr);
        let out = format!(
            "HTTP/1.1 401 X\r\nWWW-Authenticate: {challenge}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let _ = conn.write_all(out.as_bytes()).await;
        return;
    }
    let head_of = |status: u16, content_type: &str, length: usize| {
        format!(
            "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
        )
    };
    let _ = match reply {
        Reply::Ok { content_type, body } => {
            let mut out = head_of(200, content_type, body.len()).into_bytes();
            out.extend_from_slice(&body);
            conn.write_all(&out).await
        }
        Reply::Redirect { status, location } => {
            let addr = conn.local_addr().map(|a| a.to_string()).unwrap_or_default();
            let location = location.replace("{addr}", &addr);
            let out = format!(
                "HTTP/1.1 {status} X\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            conn.write_all(out.as_bytes()).await
        }
        Reply::Error { status, body } => {
            let mut out = head_of(status, "text/plain", body.len()).into_bytes();
            out.extend_from_slice(&body);
            conn.write_all(&out).await
        }
        Reply::Status(status) => {
            conn.write_all(head_of(status, "text/plain", 0).as_bytes())
                .await
        }
        Reply::Stall { length, body } => {
            let mut out = head_of(200, "application/octet-stream", length).into_bytes();
            out.extend_from_slice(&body);
            let _ = conn.write_all(&out).await;
            std::future::pending::<()>().await;
            Ok(())
        }
        Reply::Hang => {
            std::future::pending::<()>().await;
            Ok(())
        }
        Reply::Chunked { content_type, body } => {
            let mut out = chunked_head(content_type).into_bytes();
            for piece in body.chunks(16 << 10) {
                out.extend_from_slice(&chunk(piece));
            }
            out.extend_from_slice(b"0\r\n\r\n");
            conn.write_all(&out).await
        }
        Reply::Endless => {
            let piece = chunk(&[b'x'; 64 << 10]);
            let mut result = conn
                .write_all(chunked_head("application/octet-stream").as_bytes())
                .await;
            while result.is_ok() {
                result = conn.write_all(&piece).await;
            }
            result
        }
        Reply::RefreshGrant { refresh, token } => {
            let length: usize = head
                .split("\r\n")
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            let start = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
            let mut body = raw[start..].to_vec();
            while body.len() < length {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => body.extend_from_slice(&buf[..n]),
                }
            }
            let form = String::from_utf8_lossy(&body).into_owned();
            let fields: Vec<&str> = form.split('&').collect();
            let granted = method == "POST"
                && fields.contains(&"grant_type=refresh_token")
                && fields.contains(&format!("refresh_token={refresh}").as_str())
                && fields.iter().any(|f| f.starts_with("scope=repository%3A"))
                && fields.iter().any(|f| f.starts_with("client_id="));
            if granted {
                let body = format!("{{\"token\":\"{token}\"}}");
                let mut out = head_of(200, "application/json", body.len()).into_bytes();
                out.extend_from_slice(body.as_bytes());
                conn.write_all(&out).await
            } else {
                conn.write_all(head_of(401, "text/plain", 0).as_bytes())
                    .await
            }
        }
        Reply::Guarded { .. } | Reply::Sequence { .. } => unreachable!("unwrapped above"),
    };
}

fn chunked_head(content_type: &str) -> String {
    format!(
        "HTTP/1.1 200 X\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
}

fn chunk(piece: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", piece.len()).into_bytes();
    out.extend_from_slice(piece);
    out.extend_from_slice(b"\r\n");
    out
}
