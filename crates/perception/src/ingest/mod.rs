//! The source side of the live pipeline: GStreamer pipelines per camera and modality that hand
//! out owned, timestamped frames.

pub mod pairing;
pub mod source;
pub mod stream;
pub mod template;

pub use source::{Frame, IngestError, SourcePipeline};
