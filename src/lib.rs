//! reid-pipe: person re-identification across paired visible (RGB) and thermal (IR) cameras.
//!
//! This crate holds the live pipeline, the installation checks, site adaptation and the command
//! line; the layers below are the workspace crates of `crates/`, re-exported here so that one
//! path (`reid_pipe::model`, `reid_pipe::live`, …) names every module. Modules use only lower
//! layers (ARCHITECTURE.md; `tests/layers.rs` checks it).
//! - [`live`]: the live pipeline of `reid-pipe run`, and `harvest`.
//! - [`adapt`]: site adaptation (harvest, train, evaluate, report).
//! - [`doctor`]: installation checks.
//! - [`cli`]: the command line's types.

pub use reid_core::{atomic, base, config, libtorch, resample, runtime, safetensors};
pub use reid_index::{cluster, index};
pub use reid_model::{data, eval, model, train, viz};
pub use reid_perception::{detect, ingest, synth, track};

pub mod adapt;
pub mod cli;
pub mod doctor;
pub mod live;
