//! The CRI v1 gRPC layer: validates requests, converts proto <-> domain
//! types, and maps domain errors to gRPC status codes. No logic lives here.

mod convert;
mod filters;
#[cfg(test)]
mod hostile_tests;
mod image_service;
mod list_stream;
mod runtime_service;
mod status;

pub(crate) use image_service::ImageService;
pub(crate) use runtime_service::RuntimeService;

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}
