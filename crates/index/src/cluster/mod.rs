//! Many nodes, one identity space: each node keeps its own identity index (queries stay local),
//! publishes every exemplar it adds to a NATS JetStream stream, and applies the other nodes'
//! exemplars from it. Identity ids carry the node's number ([`crate::index::identities::NODE_SHIFT`]),
//! so nodes create identities without asking anyone. A person first seen at two nodes gets two
//! identities; when a later sighting matches both, the node records a merge in a key-value
//! bucket (compare-and-set) and every node applies it: a union-find whose canonical id is the
//! smallest ([`merges::Merges`]), so all nodes agree whatever order merges reach them in.
//!
//! Consistency is eventual: another node's exemplar is queryable here once it has travelled
//! through the stream (milliseconds on a LAN), and a merge takes effect when its record arrives.

pub mod link;
pub mod merges;
pub mod node;
pub mod wire;

pub use link::{Incoming, Link, Start};
pub use node::{Merged, Node};

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};

/// Why the cluster cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{key}: environment variable {var} is not set")]
    MissingSecret { key: &'static str, var: String },
    #[error("cannot start the cluster link's thread")]
    Runtime(#[source] std::io::Error),
    #[error("NATS: {what}")]
    Nats {
        what: &'static str,
        #[source]
        source: async_nats::Error,
    },
    #[error("cluster.node {node:?} has node number {number}, already claimed by node {holder:?}: rename one of them")]
    NodeNumberTaken { node: String, number: u64, holder: String },
}

/// What the cluster counts (shared with `/metrics`).
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Exemplars queued for publication.
    pub queued: Arc<AtomicU64>,
    /// Exemplars the stream stored.
    pub published: Arc<AtomicU64>,
    /// Publications the stream recognised as already stored (a retry whose first try arrived).
    pub duplicates: Arc<AtomicU64>,
    /// Publications sent again after an error or a missing acknowledgement.
    pub publish_retries: Arc<AtomicU64>,
    /// Exemplars dropped because the outgoing queue was full.
    pub dropped_outbox: Arc<AtomicU64>,
    /// Exemplars (and events) not confirmed stored when the run ended and its flush time ran out.
    pub unsent_at_exit: Arc<AtomicU64>,
    /// Other nodes' exemplars (and this node's from an earlier run) added to the index.
    pub applied: Arc<AtomicU64>,
    /// Exemplars refused: another model's vectors.
    pub other_model: Arc<AtomicU64>,
    /// Exemplars refused: unreadable, or vectors the index refuses.
    pub refused: Arc<AtomicU64>,
    /// Merges this node recorded in the bucket.
    pub merges_recorded: Arc<AtomicU64>,
    /// Merges applied to the index (anyone's).
    pub merges_applied: Arc<AtomicU64>,
    /// Merge requests dropped because their queue was full.
    pub dropped_merges: Arc<AtomicU64>,
    /// Events dropped because their queue was full.
    pub dropped_events: Arc<AtomicU64>,
    /// 1 while connected to a NATS server.
    pub connected: Arc<AtomicI64>,
}

/// FNV-1a, 64 bits: a stable hash of a node name (not randomised per process).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Largest node number: ids stay below 2^52, exact in JSON numbers.
pub const MAX_NODE_NUMBER: u64 = 4095;

/// The number a node's identity ids carry, from its name (1 to [`MAX_NODE_NUMBER`]); two names
/// that map to one number are refused when the second claims it.
pub fn node_number(node: &str) -> u64 {
    fnv1a(node) % MAX_NODE_NUMBER + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_numbers_are_stable_and_in_range() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        // FNV-1a test vector.
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        for name in ["gate-a", "gate-b", "n", "a-very-long-node-name_with_digits_0123456789"] {
            let n = node_number(name);
            assert!((1..=MAX_NODE_NUMBER).contains(&n), "{name}: {n}");
            assert_eq!(n, node_number(name));
        }
        assert_ne!(node_number("gate-a"), node_number("gate-b"));
    }
}
