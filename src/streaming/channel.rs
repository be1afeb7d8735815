//! Where outgoing bytes of one logical channel (stdout, stderr, error,
//! port data) go, whichever transport carries the session.

use super::spdy::StreamWriter;
use super::websocket::WsSink;

/// The client can no longer be written to.
#[derive(Debug, thiserror::Error)]
#[error("the streaming client is gone")]
pub(crate) struct ChannelClosed;

/// One outgoing channel.
#[derive(Clone)]
pub(crate) enum Sink {
    /// A SPDY stream the client opened.
    Spdy(StreamWriter),
    /// A channel number on a WebSocket connection.
    Ws(WsSink),
}

impl Sink {
    pub(crate) async fn write(&self, data: &[u8]) -> Result<(), ChannelClosed> {
        match self {
            Sink::Spdy(w) => w.write(data).await.map_err(|_| ChannelClosed),
            Sink::Ws(w) => w.write(data).await,
        }
    }

    /// Ends the channel. WebSocket channels end with the connection, which
    /// the session closes at the very end.
    pub(crate) async fn close(&self) -> Result<(), ChannelClosed> {
        match self {
            Sink::Spdy(w) => w.close().await.map_err(|_| ChannelClosed),
            Sink::Ws(_) => Ok(()),
        }
    }
}
