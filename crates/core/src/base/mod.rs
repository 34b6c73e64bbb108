//! The vocabulary every part of reid-pipe shares, depending on nothing else in the crate:
//! modalities and stream ids, pixel formats and borrowed frame/crop views, backbones, device
//! choice, Python's random generator, row normalisation, error chains for logs and the rules for
//! output paths.

pub mod backbone;
pub mod chain;
pub mod device;
pub mod modality;
pub mod outputs;
pub mod pixels;
pub mod pyrandom;
pub mod rows;

pub use backbone::Backbone;
pub use chain::Chain;
pub use device::{Device, DeviceError, DeviceKind};
pub use modality::{Modality, StreamId};
pub use outputs::OutputError;
pub use pixels::{Crop, CropProblem, Image, ImageError, PixelFormat};
pub use pyrandom::PyRandom;
pub use rows::normalize_rows;
