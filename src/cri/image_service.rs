//! `runtime.v1.ImageService`.

use std::sync::Arc;

use super::stub::{unimplemented, unimplemented_rpcs, NoStream};
use super::v1;
use crate::runtime::Runtime;

pub struct ImageService {
    #[allow(dead_code)] // used once images land
    runtime: Arc<Runtime>,
}

impl ImageService {
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Self { runtime }
    }

    pub fn into_server(self) -> v1::image_service_server::ImageServiceServer<Self> {
        v1::image_service_server::ImageServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl v1::image_service_server::ImageService for ImageService {
    type StreamImagesStream = NoStream<v1::StreamImagesResponse>;

    async fn stream_images(
        &self,
        _request: tonic::Request<v1::StreamImagesRequest>,
    ) -> Result<tonic::Response<Self::StreamImagesStream>, tonic::Status> {
        Err(unimplemented("stream_images"))
    }

    unimplemented_rpcs! {
        list_images(v1::ListImagesRequest) -> v1::ListImagesResponse;
        image_status(v1::ImageStatusRequest) -> v1::ImageStatusResponse;
        pull_image(v1::PullImageRequest) -> v1::PullImageResponse;
        remove_image(v1::RemoveImageRequest) -> v1::RemoveImageResponse;
        image_fs_info(v1::ImageFsInfoRequest) -> v1::ImageFsInfoResponse;
    }
}
