//! reid-model: the LbA model and everything researchers run on it (ARCHITECTURE.md).
//! - [`data`]: dataset layouts (SYSU-MM01, RegDB, Market/Duke).
//! - [`model`]: the LbA network, CMAlign, weights and the batched embedder.
//! - [`eval`]: the benchmarks' evaluation protocols and metrics.
//! - [`train`]: the LbA trainer.
//! - [`viz`]: figures (retrieval grids, co-attention, correspondences, training curves).

pub mod data;
pub mod eval;
pub mod model;
pub mod train;
pub mod viz;
