//! Images: references, registry pulls, the content store, layer unpacking
//! and the image records the ImageService reports.

pub(crate) mod auth_file;
pub(crate) mod content;
pub(crate) mod credential_helper;
mod error;
pub(crate) mod import;
pub(crate) mod limits;
mod manager;
pub(crate) mod record;
pub(crate) mod reference;
pub(crate) mod registry;
pub(crate) mod signature;
pub(crate) mod spec;

pub(crate) use error::ImageError;
pub(crate) use manager::ImageManager;
pub(crate) use record::ImageRecord;
