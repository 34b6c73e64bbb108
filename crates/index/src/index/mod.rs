//! The cross-modal identity index of the live pipeline: HNSW or exact search over normalised
//! track embeddings, identity assignment with per-modality thresholds, expiry, background
//! rebuilds and crash-safe snapshots.

pub mod backend;
pub mod distance;
pub mod identities;
pub mod inspect;
pub mod snapshot;

pub use identities::{Decision, IdentityIndex, Settings};
