//! A CRI client over the daemon's unix socket, for the CLI and the tests.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::cri::v1::image_service_client::ImageServiceClient;
use crate::cri::v1::runtime_service_client::RuntimeServiceClient;

/// Connects a gRPC channel to a CRI unix socket.
pub async fn channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket: PathBuf = socket.to_owned();
    // The URI is only a placeholder: every connection goes to the socket.
    Endpoint::from_static("http://pvecri.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
}

/// The largest response accepted: the kubelet's limit, so the CLI and the
/// tests see what the kubelet would.
const MAX_RESPONSE: usize = 16 << 20;

/// Both CRI service clients over one connection.
#[derive(Clone)]
pub struct CriClient {
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
}

impl CriClient {
    pub async fn connect(socket: &Path) -> Result<Self, tonic::transport::Error> {
        let ch = channel(socket).await?;
        Ok(Self {
            runtime: RuntimeServiceClient::new(ch.clone()).max_decoding_message_size(MAX_RESPONSE),
            image: ImageServiceClient::new(ch).max_decoding_message_size(MAX_RESPONSE),
        })
    }
}
