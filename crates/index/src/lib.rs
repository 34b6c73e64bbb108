//! reid-index: who is who (ARCHITECTURE.md).
//! - [`index`]: the cross-modal identity index and its snapshots.
//! - [`cluster`]: the nodes' shared identity space on NATS JetStream.

pub mod cluster;
pub mod index;
