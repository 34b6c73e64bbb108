//! reid-core: what every part of reid-pipe shares — the lowest layers (ARCHITECTURE.md).
//! - [`base`]: the shared vocabulary (modalities, stream ids, pixel views, devices, backbones).
//! - [`atomic`]: files written atomically.
//! - [`runtime`]: process-wide settings (threads).
//! - [`libtorch`]: the few libtorch calls tch does not wrap (autocast type, pinned memory).
//! - [`resample`]: Pillow-exact antialiased Lanczos resizing of 8-bit images.
//! - [`safetensors`]: the weight and feature file format.
//! - [`config`]: site and training files, validated with located errors.

pub mod atomic;
pub mod base;
pub mod config;
pub mod libtorch;
pub mod resample;
pub mod runtime;
pub mod safetensors;
