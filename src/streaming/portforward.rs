//! Port-forward over SPDY (`portforward.k8s.io`): for every connection the
//! client forwards, it opens an `error` and a `data` stream with the same
//! `requestID` and the pod `port`. Once both are there the runtime connects
//! to the port inside the pod's network namespace and copies bytes both
//! ways; a failure is written as text on the error stream.

use std::collections::HashMap;
use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::channel::Sink;
use super::inbound::Inbound;
use super::spdy::{Session, Stream};

#[derive(Default)]
struct Pair {
    error: Option<Stream>,
    data: Option<Stream>,
}

/// Serves forwarded connections until the client closes the session.
pub(crate) async fn serve(mut session: Session, pod_id: String, net_ns: Option<PathBuf>) {
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    while let Some(stream) = session.accept().await {
        // Old clients sent no request ID; their streams pair by arrival,
        // which the stream ID order gives (error first, then data).
        let request = match stream.header("requestid") {
            Some(id) => id.to_owned(),
            None => ((stream.id + 1) / 4).to_string(),
        };
        let entry = pairs.entry(request.clone()).or_default();
        match stream.header("streamtype") {
            Some("error") => entry.error = Some(stream),
            Some("data") => entry.data = Some(stream),
            other => {
                tracing::debug!(stream_type = ?other, "refusing an unknown port-forward stream");
                let _ = stream
                    .writer
                    .reset(super::spdy::frame::RST_REFUSED_STREAM)
                    .await;
                continue;
            }
        }
        if entry.error.is_some() && entry.data.is_some() {
            let pair = pairs.remove(&request).expect("just filled");
            let (error, data) = (pair.error.expect("set"), pair.data.expect("set"));
            tokio::spawn(forward(error, data, pod_id.clone(), net_ns.clone()));
        }
    }
    session.close().await;
}

async fn forward(error: Stream, data: Stream, pod_id: String, net_ns: Option<PathBuf>) {
    let error_sink = Sink::Spdy(error.writer.clone());
    let port = data
        .header("port")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p != 0);
    let Some(port) = port else {
        let _ = error_sink
            .write(b"invalid or missing port header on the data stream")
            .await;
        let _ = error_sink.close().await;
        let _ = data.writer.close().await;
        return;
    };
    let result = copy(data.data, Sink::Spdy(data.writer.clone()), net_ns, port).await;
    if let Err(err) = result {
        tracing::debug!(pod_id, port, error = %err, "port-forward connection failed");
        let message = format!("error forwarding port {port} to pod {pod_id}: {err}");
        let _ = error_sink.write(message.as_bytes()).await;
    }
    let _ = error_sink.close().await;
}

/// Connects and copies until both directions are done. Only a failure to
/// connect is an error the client hears about.
pub(crate) async fn copy(
    mut from_client: Inbound,
    to_client: Sink,
    net_ns: Option<PathBuf>,
    port: u16,
) -> std::io::Result<()> {
    let conn = match crate::runtime::connect_in_netns(net_ns, port).await {
        Ok(conn) => conn,
        Err(err) => {
            let _ = to_client.close().await;
            return Err(err);
        }
    };
    let (mut rd, mut wr) = conn.into_split();
    let upstream = async move {
        while let Some(chunk) = from_client.recv().await {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to_client.write(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = to_client.close().await;
    };
    tokio::join!(upstream, downstream);
    Ok(())
}
