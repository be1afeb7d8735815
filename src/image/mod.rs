//! Images: references, registry pulls, the content store, layer unpacking
//! and the image records the ImageService reports.

pub mod auth_file;
pub mod content;
mod error;
pub mod import;
pub mod limits;
mod manager;
pub mod record;
pub mod reference;
pub mod registry;
pub mod spec;

pub use error::ImageError;
pub use manager::{resolve, FsUsage, ImageManager};
pub use record::ImageRecord;
