//! reid-pipe: person re-identification across paired visible (RGB) and thermal (IR) cameras.
//!
//! The library holds everything; the `reid-pipe` binary only parses the command line. Modules
//! form layers and use only lower ones (ARCHITECTURE.md; `tests/layers.rs` checks it).
//! - [`base`]: the shared vocabulary (modalities, stream ids, pixel views, devices, backbones).
//! - [`config`]: site and training files, validated with located errors.
//! - [`ingest`]: GStreamer sources rendered from `pipelines/` templates.
//! - [`detect`]: person detectors for visible and thermal frames, and their worker pool.
//! - [`track`]: per-stream SORT tracking and track embedding means.
//! - [`index`]: the cross-modal identity index.
//! - [`live`]: the live pipeline of `reid-pipe run`.
//! - [`data`]: dataset layouts (SYSU-MM01, RegDB, Market/Duke).
//! - [`eval`]: the benchmarks' evaluation protocols and metrics.
//! - [`model`]: the LbA network, CMAlign, weights and the batched embedder.
//! - [`train`]: the LbA trainer.
//! - [`viz`]: figures (retrieval grids, co-attention, correspondences, training curves).
//! - [`resample`]: Pillow-exact antialiased Lanczos resizing of 8-bit images.
//! - [`doctor`]: installation checks.
//! - [`libtorch`]: the few libtorch calls tch does not wrap (autocast type, pinned memory).

pub mod adapt;
pub mod atomic;
pub mod base;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod data;
pub mod detect;
pub mod doctor;
pub mod eval;
pub mod index;
pub mod ingest;
pub mod libtorch;
pub mod live;
pub mod model;
pub mod resample;
pub mod runtime;
pub mod safetensors;
pub mod synth;
pub mod track;
pub mod train;
pub mod viz;
