//! reid-perception: from camera to tracks (ARCHITECTURE.md).
//! - [`ingest`]: GStreamer sources rendered from `pipelines/` templates, and their pairing.
//! - [`detect`]: person detectors for visible and thermal frames, and their worker pool.
//! - [`track`]: per-stream SORT tracking.
//! - [`synth`]: generated datasets and scenes with ground truth.

pub mod detect;
pub mod ingest;
pub mod synth;
pub mod track;
