//! Offline training of the LbA model (`reid-pipe train`).

pub mod amp;
pub mod dataset;
pub mod loader;
pub mod losses;
pub mod preflight;
pub mod sampler;
pub mod sgd;
pub mod step;
pub mod trainer;

pub use preflight::{Ready, preflight};
pub use trainer::{Options, RunResult, TrainError, train};
