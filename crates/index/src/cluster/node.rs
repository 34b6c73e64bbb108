//! The identity stage's side of the cluster: scopes the index's ids to the node, publishes the
//! exemplars the stage adds, proposes merges, and applies what the stream and the bucket bring.

use super::link::{Incoming, Link, Outgoing, Start};
use super::merges::Merges;
use super::wire::{self, ExemplarMeta};
use super::{ClusterError, Counters, node_number};
use crate::index::identities::{Decision, IdentityIndex, Replica, origin};
use reid_core::base::Modality;
use reid_core::config::site::Cluster;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A merge applied here: tracks holding one of `merged_from` now hold `canonical`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub canonical: u64,
    pub merged_from: Vec<u64>,
}

/// One node of a cluster, as the identity stage sees it.
pub struct Node {
    link: Link,
    merges: Merges,
    name: String,
    number: u64,
    /// Random per process start: this run's own exemplars coming back are skipped.
    run: u64,
    model: String,
    subject: String,
    encoding: reid_core::config::site::VectorEncoding,
    flush: Duration,
    events: bool,
    /// The highest stream sequence applied (back only when the stream was created again).
    applied: u64,
    counters: Counters,
}

fn random_run() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

impl Node {
    /// Joins the cluster with `index` (vectors of `model`): its ids become the node's, and the
    /// stream is read from where the index's snapshot left it (from the start for a new node).
    pub fn start(
        cfg: &Cluster,
        index: &mut IdentityIndex,
        model: &str,
        counters: Counters,
    ) -> Result<Node, ClusterError> {
        let number = node_number(&cfg.node);
        let renamed = index.scope_ids(number);
        if !renamed.is_empty() {
            tracing::info!(
                "cluster: {} identities of this node's earlier, single-node runs renamed into node {number}'s ids",
                renamed.len()
            );
        }
        let start = match index.replica() {
            Some(r) if r.node == cfg.node => Start::After(r.applied),
            _ => Start::Everything,
        };
        let applied = match start {
            Start::After(seq) => seq,
            Start::Everything => 0,
        };
        let run = random_run();
        let link = Link::start(cfg, number, run, start, counters.clone())?;
        tracing::info!(node = %cfg.node, number, ?start, "cluster: joined");
        Ok(Node {
            link,
            merges: Merges::default(),
            name: cfg.node.clone(),
            number,
            run,
            model: model.to_owned(),
            subject: cfg.subject.clone(),
            encoding: cfg.vector,
            flush: Duration::from_secs_f64(cfg.flush_timeout_s),
            events: cfg.events_subject.is_some(),
            applied,
            counters,
        })
    }

    /// The node number this node's identity ids carry.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// What the stream and the bucket bring in (select on it beside the stage's input).
    pub fn incoming(&self) -> &crossbeam_channel::Receiver<Incoming> {
        self.link.incoming()
    }

    /// The canonical id of `id` after the merges known here.
    pub fn canonical(&self, id: u64) -> u64 {
        self.merges.canonical(id)
    }

    /// Publishes an exemplar the stage added to `identity`; `false` when it was dropped (queue
    /// full, counted).
    pub fn added(&self, identity: u64, vector: &[f32], modality: Modality, camera: &str, time: f64) -> bool {
        let meta = ExemplarMeta {
            node: self.name.clone(),
            run: self.run,
            identity,
            modality,
            camera: camera.to_owned(),
            time,
            model: self.model.clone(),
            encoding: self.encoding,
            scale: 1.0,
        };
        self.link.publish(Outgoing {
            subject: format!("{}.{}.{identity}.{modality}", self.subject, self.name),
            id: wire::message_id(&meta),
            payload: wire::encode(&meta, vector).into(),
            event: false,
        })
    }

    /// Proposes merging the identity `decision` chose with the other close ones that other
    /// nodes created (two nodes met one person independently). Two sets that hold identities
    /// created by one node are never merged, so a node's own identities stay apart, as they do
    /// when it works alone.
    pub fn propose_merges(&self, decision: &Decision) {
        let chosen = self.origins(decision.identity);
        for &other in &decision.also {
            if self.origins(other).is_disjoint(&chosen) {
                self.link.merge(decision.identity, other);
            }
        }
    }

    /// Proposes merging identity `from` into `into`: this node found they are one person (see
    /// `live::identity`). Applied here too when it comes back through [`Node::incoming`].
    pub fn merge(&self, from: u64, into: u64) {
        self.link.merge(from, into);
    }

    /// The nodes that created the identities of `id`'s merged set.
    fn origins(&self, id: u64) -> std::collections::BTreeSet<u64> {
        let canonical = self.merges.canonical(id);
        self.merges
            .merged_into(canonical)
            .iter()
            .chain([&canonical])
            .map(|&i| origin(i))
            .collect()
    }

    /// Whether identity events go to a JetStream subject too (`cluster.events_subject`).
    pub fn publishes_events(&self) -> bool {
        self.events
    }

    /// Publishes an identity event (JSON) on the events subject (nothing without one).
    pub fn event(&self, json: Vec<u8>) {
        if self.events {
            self.link.event(json.into());
        }
    }

    /// Applies one item from [`Node::incoming`] to `index`; returns the merge it caused, if any.
    pub fn apply(&mut self, index: &mut IdentityIndex, item: Incoming) -> Option<Merged> {
        match item {
            Incoming::Exemplar { sequence, meta, vector } => {
                self.apply_exemplar(index, &meta, &vector);
                self.advance(index, sequence);
                None
            }
            Incoming::Garbled { sequence, error } => {
                if self.counters.refused.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!("cluster: stream message {sequence} is not an exemplar: {error} (counted)");
                }
                self.advance(index, sequence);
                None
            }
            Incoming::Rewound { next } => {
                self.set_applied(index, next.saturating_sub(1));
                None
            }
            Incoming::Merge { from, into } => {
                let (canonical, gone) = self.merges.union(from, into);
                gone?;
                let merged_from: Vec<u64> = self
                    .merges
                    .merged_into(canonical)
                    .iter()
                    .copied()
                    .filter(|&id| index.merge(id, canonical))
                    .collect();
                self.counters.merges_applied.fetch_add(1, Ordering::Relaxed);
                Some(Merged { canonical, merged_from })
            }
        }
    }

    /// Records `sequence` as applied (saved with the next snapshot). The mark is the highest
    /// sequence seen: a redelivered older message is still applied (the index skips what it
    /// holds), but does not move the mark back.
    fn advance(&mut self, index: &mut IdentityIndex, sequence: u64) {
        if sequence > self.applied {
            self.set_applied(index, sequence);
        }
    }

    fn set_applied(&mut self, index: &mut IdentityIndex, sequence: u64) {
        self.applied = sequence;
        index.set_replica(Replica {
            node: self.name.clone(),
            applied: sequence,
        });
    }

    fn apply_exemplar(&mut self, index: &mut IdentityIndex, meta: &ExemplarMeta, vector: &[f32]) {
        // This run's own exemplars are in the index already; an earlier run's are there when
        // its snapshot held them (the index skips those) and not when they came after it.
        if meta.node == self.name && meta.run == self.run {
            return;
        }
        if meta.model != self.model {
            if self.counters.other_model.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    "cluster: node {} sends exemplars of model {}, this node runs {} (refused, counted)",
                    meta.node,
                    meta.model,
                    self.model
                );
            }
            return;
        }
        let identity = self.merges.canonical(meta.identity);
        match index.add_replicated(identity, vector, meta.modality, &meta.camera, meta.time) {
            Ok(true) => {
                self.counters.applied.fetch_add(1, Ordering::Relaxed);
            }
            // Held already (this node's own, from before its snapshot), or older than all kept.
            Ok(false) => {}
            Err(e) => {
                if self.counters.refused.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!("cluster: node {}'s exemplar refused: {e} (counted)", meta.node);
                }
            }
        }
    }

    /// Publishes what is still queued (up to `cluster.flush_timeout_s`) and leaves.
    pub fn finish(self) {
        self.link.finish(self.flush);
    }
}
