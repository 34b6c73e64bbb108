//! reid-pipe: person re-identification across paired visible (RGB) and thermal (IR) cameras.
//!
//! The library holds everything; the `reid-pipe` binary only parses the command line.
//! - [`config`]: site and training files, validated with located errors.
//! - [`ingest`]: GStreamer sources rendered from `pipelines/` templates.
//! - [`live`]: the live pipeline of `reid-pipe run`.
//! - [`doctor`]: installation checks.

pub mod cli;
pub mod config;
pub mod doctor;
pub mod ingest;
pub mod live;
