//! The cross-modal identity store: every track embedding is matched against the exemplars of
//! known identities (one index per modality) and joins the identity its neighbours agree on, or
//! starts a new one. Cross-modal matches have their own, larger threshold.
//!
//! hnsw_rs cannot delete points: exemplars that fall out of an identity's bounded set, or belong
//! to an expired identity, are marked dead and filtered from results; once the dead fraction
//! passes [`Settings::rebuild_dead_fraction`] a fresh index is built from the live points on a
//! background thread while queries keep using the old one, then swapped in.

use super::backend::{Backend, HnswParams, new_backend};
use reid_core::base::Modality;
use reid_core::config::site::IndexBackend;
use std::collections::{BTreeMap, VecDeque};
use std::thread::JoinHandle;
use tch::Device;

/// Assignment and index settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub dim: usize,
    pub backend: IndexBackend,
    pub hnsw: HnswParams,
    /// Largest cosine distance to join an identity seen in the same modality.
    pub same_modality_threshold: f32,
    /// Largest cosine distance to join an identity seen in the other modality.
    pub cross_modality_threshold: f32,
    /// Exemplars kept per identity and modality (oldest dropped first).
    pub max_exemplars: usize,
    /// Seconds without a sighting after which an identity expires.
    pub expiry_s: f64,
    /// Neighbours consulted per query and modality.
    pub neighbours: usize,
    /// Dead fraction of indexed points that triggers a background rebuild.
    pub rebuild_dead_fraction: f64,
    /// Other identities whose nearest exemplar lies within this share of their modality's
    /// threshold are reported in [`Decision::also`] (0: never; a cluster merges them).
    pub also_fraction: f32,
    pub device: Device,
}

impl Settings {
    /// The threshold for a match within one modality, or across the two.
    pub fn threshold(&self, cross_modal: bool) -> f32 {
        if cross_modal {
            self.cross_modality_threshold
        } else {
            self.same_modality_threshold
        }
    }
}

/// One stored exemplar.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Exemplar {
    pub identity: u64,
    pub modality: Modality,
    pub camera: String,
    /// Seconds (the caller's clock).
    pub time: f64,
    /// Shared, so that a frozen copy of the index for a snapshot costs no vector copies.
    #[serde(skip)]
    pub vector: std::sync::Arc<[f32]>,
    pub alive: bool,
}

/// An identity and its bookkeeping.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub id: u64,
    pub first_seen: f64,
    pub last_seen: f64,
    pub sightings: u64,
    /// Live exemplar numbers per modality, oldest first.
    pub visible: VecDeque<usize>,
    pub thermal: VecDeque<usize>,
}

/// A vector the index refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VectorError {
    #[error("a vector of dimension {found}, the index holds {expected}")]
    Dimension { found: usize, expected: usize },
    #[error("a vector with a non-finite value at position {position}")]
    NotFinite { position: usize },
}

/// The outcome of one assignment.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Decision {
    pub identity: u64,
    /// A new identity was created.
    pub created: bool,
    /// Distance to the nearest exemplar of the chosen identity (None for a new identity).
    pub distance: Option<f32>,
    /// The match came from the other modality.
    pub cross_modal: bool,
    /// Other identities about as close as the one chosen (see [`Settings::also_fraction`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<u64>,
}

/// A known identity a vector would join (see [`IdentityIndex::best_match`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    pub identity: u64,
    /// Distance to its nearest exemplar.
    pub distance: f32,
    /// That exemplar is of the other modality.
    pub cross_modal: bool,
}

/// One identity's votes in an assignment.
#[derive(Debug, Clone, Copy)]
struct Vote {
    /// Summed over its neighbours within the threshold, closer = heavier.
    weight: f32,
    /// Its nearest exemplar's distance.
    distance: f32,
    cross_modal: bool,
}

/// The identity with the most votes, ties to the closest.
fn strongest(votes: BTreeMap<u64, Vote>) -> Option<(u64, Vote)> {
    votes.into_iter().max_by(|a, b| {
        a.1.weight
            .total_cmp(&b.1.weight)
            .then(b.1.distance.total_cmp(&a.1.distance))
    })
}

struct Rebuild {
    handle: JoinHandle<[Box<dyn Backend>; 2]>,
    /// Exemplar numbers the new indices hold, in their new order (alive when the rebuild began).
    base: Vec<usize>,
    /// Exemplars added after the rebuild started, replayed into the new indices.
    pending: Vec<usize>,
}

/// The identity index.
pub struct IdentityIndex {
    settings: Settings,
    exemplars: Vec<Exemplar>,
    identities: BTreeMap<u64, Identity>,
    /// Per modality (visible, thermal).
    indices: [Box<dyn Backend>; 2],
    next_id: u64,
    dead: usize,
    rebuild: Option<Rebuild>,
    /// The model whose vectors these are, recorded in snapshots.
    model: Option<String>,
    /// Where this index stands in a cluster's shared stream, recorded in snapshots.
    replica: Option<Replica>,
}

/// A cluster node's position in the shared exemplar stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Replica {
    /// The node whose index this is.
    pub node: String,
    /// The last stream sequence number applied to the index.
    pub applied: u64,
}

/// Bits of an identity id below the node number in a cluster: ids are
/// `node_number << NODE_SHIFT | counter`, unique across nodes without coordination and exact in
/// JSON numbers (below 2^53 for node numbers below 4096).
pub const NODE_SHIFT: u32 = 40;

/// The node number an identity id was created under (0 outside a cluster).
pub fn origin(id: u64) -> u64 {
    id >> NODE_SHIFT
}

fn slot(m: Modality) -> usize {
    match m {
        Modality::Visible => 0,
        Modality::Thermal => 1,
    }
}

fn empty_indices(s: &Settings, capacity: usize) -> [Box<dyn Backend>; 2] {
    [
        new_backend(s.backend, s.dim, capacity, s.hnsw, s.device),
        new_backend(s.backend, s.dim, capacity, s.hnsw, s.device),
    ]
}

impl IdentityIndex {
    /// An empty index.
    pub fn new(settings: Settings) -> Self {
        Self {
            indices: empty_indices(&settings, 1024),
            settings,
            exemplars: Vec::new(),
            identities: BTreeMap::new(),
            next_id: 1,
            dead: 0,
            rebuild: None,
            model: None,
            replica: None,
        }
    }

    /// The same index, recorded as holding vectors of `model` (an id of the weights).
    pub fn with_model(mut self, model: String) -> Self {
        self.model = Some(model);
        self
    }

    /// The model whose vectors the index holds, when known.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Rebuilds an index from stored state (a snapshot).
    pub fn from_parts(
        settings: Settings,
        exemplars: Vec<Exemplar>,
        identities: BTreeMap<u64, Identity>,
        next_id: u64,
    ) -> Self {
        let dead = exemplars.iter().filter(|e| !e.alive).count();
        let indices = build_indices(&settings, &exemplars);
        Self {
            settings,
            exemplars,
            identities,
            indices,
            next_id,
            dead,
            rebuild: None,
            model: None,
            replica: None,
        }
    }

    /// The cluster position recorded with the index.
    pub fn replica(&self) -> Option<&Replica> {
        self.replica.as_ref()
    }

    /// Records the cluster position (saved in snapshots).
    pub fn set_replica(&mut self, replica: Replica) {
        self.replica = Some(replica);
    }

    /// Makes new identity ids those of cluster node `node` (`node << NODE_SHIFT | counter`);
    /// identities created before the node joined a cluster (ids below `1 << NODE_SHIFT`) are
    /// renamed into its range, so that they cannot collide with another node's. Returns the
    /// renamings.
    pub fn scope_ids(&mut self, node: u64) -> Vec<(u64, u64)> {
        let base = node << NODE_SHIFT;
        let renamed: Vec<(u64, u64)> = self
            .identities
            .keys()
            .filter(|&&id| origin(id) == 0)
            .map(|&id| (id, base | id))
            .collect();
        for &(old, new) in &renamed {
            if let Some(mut ident) = self.identities.remove(&old) {
                ident.id = new;
                for &i in ident.visible.iter().chain(&ident.thermal) {
                    self.exemplars[i].identity = new;
                }
                self.identities.insert(new, ident);
            }
        }
        let own_max = self.identities.keys().filter(|&&id| origin(id) == node).max().copied();
        let counter = if origin(self.next_id) == 0 { self.next_id } else { 1 };
        let next = (base | counter).max(own_max.map_or(0, |m| m + 1));
        if origin(self.next_id) != node || self.next_id < next {
            self.next_id = next;
        }
        renamed
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Every exemplar ever stored (dead ones have `alive == false`).
    pub fn exemplars(&self) -> &[Exemplar] {
        &self.exemplars
    }

    pub fn identities(&self) -> &BTreeMap<u64, Identity> {
        &self.identities
    }

    /// The id the next new identity gets.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Dead exemplars still in the indices.
    pub fn dead(&self) -> usize {
        self.dead
    }

    /// Nearest live exemplars of `modality`: (exemplar number, cosine distance).
    pub fn nearest(&self, vector: &[f32], modality: Modality, k: usize) -> Vec<(usize, f32)> {
        let ex = &self.exemplars;
        self.indices[slot(modality)].search(vector, k, &|i| ex.get(i).is_some_and(|e| e.alive))
    }

    /// Assigns an L2-normalised track embedding seen at `time` (seconds) by `camera`; refuses
    /// the vectors [`IdentityIndex::admit`] refuses.
    pub fn assign(
        &mut self,
        vector: &[f32],
        modality: Modality,
        camera: &str,
        time: f64,
    ) -> Result<Decision, VectorError> {
        self.assign_track(vector, modality, camera, time, None, &[])
    }

    /// Like [`IdentityIndex::assign`] for a track that already holds identity `current`: the
    /// tracker's evidence that it is the same person wins, so the track keeps `current` unless
    /// `current` got no vote at all and another identity did (the person was known before under
    /// that identity). Identities in `exclude` are never joined (those of other people: tracks
    /// of the same view seen at the same time). The embedding becomes an exemplar of the
    /// identity decided.
    pub fn assign_track(
        &mut self,
        vector: &[f32],
        modality: Modality,
        camera: &str,
        time: f64,
        current: Option<u64>,
        exclude: &[u64],
    ) -> Result<Decision, VectorError> {
        self.admit(vector)?;
        self.poll_rebuild();
        let s = self.settings;
        let votes = self.votes(vector, modality, exclude);
        let current = current.filter(|c| self.identities.contains_key(c));
        let near = |v: &Vote| v.distance <= s.also_fraction * s.threshold(v.cross_modal);
        let close: Vec<u64> = votes.iter().filter(|(_, v)| near(v)).map(|(k, _)| *k).collect();
        let best = match current {
            Some(c) if votes.contains_key(&c) || votes.is_empty() => Some((
                c,
                votes.get(&c).copied().unwrap_or(Vote {
                    weight: 0.0,
                    distance: f32::NAN,
                    cross_modal: false,
                }),
            )),
            _ => strongest(votes),
        };
        let decision = match best {
            Some((
                id,
                Vote {
                    distance: d,
                    cross_modal: cross,
                    ..
                },
            )) => Decision {
                identity: id,
                created: false,
                // A kept identity with no neighbour within the threshold has no distance.
                distance: (!d.is_nan()).then_some(d),
                cross_modal: cross,
                also: close.into_iter().filter(|&other| other != id).collect(),
            },
            None => {
                let id = self.next_id;
                self.next_id += 1;
                self.identities.insert(
                    id,
                    Identity {
                        id,
                        first_seen: time,
                        last_seen: time,
                        sightings: 0,
                        visible: VecDeque::new(),
                        thermal: VecDeque::new(),
                    },
                );
                Decision {
                    identity: id,
                    created: true,
                    distance: None,
                    cross_modal: false,
                    also: Vec::new(),
                }
            }
        };
        tracing::debug!(
            identity = decision.identity,
            created = decision.created,
            distance = ?decision.distance,
            cross_modal = decision.cross_modal,
            %camera,
            %modality,
            "assignment"
        );
        self.add_exemplar(decision.identity, vector, modality, camera, time, false);
        Ok(decision)
    }

    /// The identity, other than those in `exclude`, that `vector` would join (the most votes
    /// from neighbours within their modality's threshold, ties to the closest); `None` when no
    /// other identity is that close. Nothing is added: the caller decides (see
    /// `live::identity`, which settles a track's new identity with its whole life's mean).
    pub fn best_match(
        &self,
        vector: &[f32],
        modality: Modality,
        exclude: &[u64],
    ) -> Result<Option<Match>, VectorError> {
        self.admit(vector)?;
        Ok(
            strongest(self.votes(vector, modality, exclude)).map(|(identity, v)| Match {
                identity,
                distance: v.distance,
                cross_modal: v.cross_modal,
            }),
        )
    }

    /// Votes per identity from `vector`'s neighbours within their modality's threshold, closer =
    /// heavier; the exemplars of identities in `exclude` are left out of the search itself (they
    /// would crowd out the neighbours that may vote).
    fn votes(&self, vector: &[f32], modality: Modality, exclude: &[u64]) -> BTreeMap<u64, Vote> {
        let s = self.settings;
        let ex = &self.exemplars;
        let keep = |i: usize| ex.get(i).is_some_and(|e| e.alive && !exclude.contains(&e.identity));
        let mut votes: BTreeMap<u64, Vote> = BTreeMap::new();
        for m in [Modality::Visible, Modality::Thermal] {
            let cross = m != modality;
            let threshold = s.threshold(cross);
            for (i, d) in self.indices[slot(m)].search(vector, s.neighbours, &keep) {
                if d > threshold {
                    continue;
                }
                let v = votes.entry(self.exemplars[i].identity).or_insert(Vote {
                    weight: 0.0,
                    distance: f32::INFINITY,
                    cross_modal: cross,
                });
                v.weight += 1.0 - d / threshold.max(1e-6) + 1e-3;
                if d < v.distance {
                    v.distance = d;
                    v.cross_modal = cross;
                }
            }
        }
        votes
    }

    /// Adds an embedding to a known identity without matching (the caller knows who it is, e.g.
    /// from fused visible and thermal tracks); `false` when the identity does not exist (expired). Refuses the vectors [`IdentityIndex::admit`] refuses.
    pub fn extend(
        &mut self,
        identity: u64,
        vector: &[f32],
        modality: Modality,
        camera: &str,
        time: f64,
    ) -> Result<bool, VectorError> {
        self.admit(vector)?;
        self.poll_rebuild();
        if !self.identities.contains_key(&identity) {
            return Ok(false);
        }
        self.add_exemplar(identity, vector, modality, camera, time, false);
        Ok(true)
    }

    /// Adds an exemplar another node saw (replicated), creating its identity when unknown here;
    /// `false` when it is not added: the identity holds it already (the same modality and time:
    /// a message delivered again), or it is older than every exemplar kept while the list is
    /// full. Refuses the vectors [`IdentityIndex::admit`] refuses.
    pub fn add_replicated(
        &mut self,
        identity: u64,
        vector: &[f32],
        modality: Modality,
        camera: &str,
        time: f64,
    ) -> Result<bool, VectorError> {
        self.admit(vector)?;
        self.poll_rebuild();
        if let Some(ident) = self.identities.get(&identity) {
            let list = match modality {
                Modality::Visible => &ident.visible,
                Modality::Thermal => &ident.thermal,
            };
            let times = || list.iter().map(|&i| self.exemplars[i].time);
            let full = list.len() >= self.settings.max_exemplars.max(1);
            if times().any(|t| t == time) || (full && times().all(|t| time < t)) {
                return Ok(false);
            }
        }
        self.identities.entry(identity).or_insert_with(|| Identity {
            id: identity,
            first_seen: time,
            last_seen: time,
            sightings: 0,
            visible: VecDeque::new(),
            thermal: VecDeque::new(),
        });
        self.add_exemplar(identity, vector, modality, camera, time, true);
        Ok(true)
    }

    /// Joins identity `from` into `into` (created when unknown here): its exemplars and
    /// sightings move, the oldest exemplars beyond [`Settings::max_exemplars`] are dropped, and
    /// `from` is gone. `false` when `from` is not here or is `into`.
    pub fn merge(&mut self, from: u64, into: u64) -> bool {
        if from == into {
            return false;
        }
        let Some(gone) = self.identities.remove(&from) else {
            return false;
        };
        for &i in gone.visible.iter().chain(&gone.thermal) {
            self.exemplars[i].identity = into;
        }
        let target = self.identities.entry(into).or_insert_with(|| Identity {
            id: into,
            first_seen: gone.first_seen,
            last_seen: gone.last_seen,
            sightings: 0,
            visible: VecDeque::new(),
            thermal: VecDeque::new(),
        });
        target.first_seen = target.first_seen.min(gone.first_seen);
        target.last_seen = target.last_seen.max(gone.last_seen);
        target.sightings += gone.sightings;
        let max = self.settings.max_exemplars.max(1);
        let mut dropped = Vec::new();
        let exemplars = &self.exemplars;
        for (list, moved) in [(&mut target.visible, gone.visible), (&mut target.thermal, gone.thermal)] {
            list.extend(moved);
            // Oldest first, by the time each was seen (replicated ones arrive in any order).
            list.make_contiguous()
                .sort_by(|&a, &b| exemplars[a].time.total_cmp(&exemplars[b].time));
            // One exemplar held twice (received under both ids before the merge was known).
            let mut unique: VecDeque<usize> = VecDeque::with_capacity(list.len());
            for i in list.drain(..) {
                match unique.back() {
                    Some(&last) if exemplars[last].time == exemplars[i].time => dropped.push(i),
                    _ => unique.push_back(i),
                }
            }
            *list = unique;
            while list.len() > max {
                dropped.extend(list.pop_front());
            }
        }
        for i in dropped {
            self.kill(i);
        }
        self.maybe_rebuild();
        true
    }

    /// Refuses a vector of another dimension or with a NaN or infinite value: it would match
    /// nothing, or everything, and poison the identity it joined.
    pub fn admit(&self, vector: &[f32]) -> Result<(), VectorError> {
        if vector.len() != self.settings.dim {
            return Err(VectorError::Dimension {
                found: vector.len(),
                expected: self.settings.dim,
            });
        }
        match vector.iter().position(|v| !v.is_finite()) {
            Some(position) => Err(VectorError::NotFinite { position }),
            None => Ok(()),
        }
    }

    #[allow(clippy::too_many_arguments)] // the exemplar's fields, and where it came from
    fn add_exemplar(
        &mut self,
        identity: u64,
        vector: &[f32],
        modality: Modality,
        camera: &str,
        time: f64,
        replicated: bool,
    ) {
        let n = self.exemplars.len();
        self.exemplars.push(Exemplar {
            identity,
            modality,
            camera: camera.to_owned(),
            time,
            vector: vector.into(),
            alive: true,
        });
        self.indices[slot(modality)].insert(&[(vector, n)]);
        if let Some(r) = &mut self.rebuild {
            r.pending.push(n);
        }
        let max = self.settings.max_exemplars.max(1);
        let mut dropped = Vec::new();
        if let Some(ident) = self.identities.get_mut(&identity) {
            ident.last_seen = ident.last_seen.max(time);
            ident.sightings += 1;
            let list = match modality {
                Modality::Visible => &mut ident.visible,
                Modality::Thermal => &mut ident.thermal,
            };
            // Oldest first: a local exemplar is the newest and goes last (whatever the wall
            // clock did); a replicated one, which may be older than some kept, goes in its place.
            if replicated {
                let exemplars = &self.exemplars;
                let at = list
                    .iter()
                    .rposition(|&i| exemplars[i].time <= time)
                    .map_or(0, |p| p + 1);
                list.insert(at, n);
            } else {
                list.push_back(n);
            }
            while list.len() > max {
                dropped.extend(list.pop_front());
            }
        }
        for i in dropped {
            self.kill(i);
        }
        self.maybe_rebuild();
    }

    fn kill(&mut self, i: usize) {
        if let Some(e) = self.exemplars.get_mut(i)
            && e.alive
        {
            e.alive = false;
            e.vector = std::sync::Arc::default();
            self.dead += 1;
        }
    }

    /// Removes identities unseen since `now − expiry_s`; returns their ids.
    pub fn expire(&mut self, now: f64) -> Vec<u64> {
        let cutoff = now - self.settings.expiry_s;
        let gone: Vec<u64> = self
            .identities
            .values()
            .filter(|i| i.last_seen < cutoff)
            .map(|i| i.id)
            .collect();
        for id in &gone {
            if let Some(ident) = self.identities.remove(id) {
                for i in ident.visible.into_iter().chain(ident.thermal) {
                    self.kill(i);
                }
            }
        }
        self.maybe_rebuild();
        gone
    }

    fn maybe_rebuild(&mut self) {
        let total = self.indices[0].len() + self.indices[1].len();
        if self.rebuild.is_some()
            || total < 64
            || (self.dead as f64) < self.settings.rebuild_dead_fraction * total as f64
        {
            return;
        }
        // The new indices number the live exemplars from 0 again.
        let settings = self.settings;
        let base: Vec<usize> = (0..self.exemplars.len()).filter(|&i| self.exemplars[i].alive).collect();
        let live: Vec<Exemplar> = base.iter().map(|&i| self.exemplars[i].clone()).collect();
        let handle = std::thread::spawn(move || build_indices(&settings, &live));
        self.rebuild = Some(Rebuild {
            handle,
            base,
            pending: Vec::new(),
        });
    }

    /// Swaps in a finished background rebuild (never waits for one still running).
    pub fn poll_rebuild(&mut self) {
        if !self.rebuild.as_ref().is_some_and(|r| r.handle.is_finished()) {
            return;
        }
        let Some(r) = self.rebuild.take() else { return };
        let Ok(indices) = r.handle.join() else {
            tracing::error!("the background index rebuild failed; keeping the current index");
            return;
        };
        // Renumber: the exemplars the new indices were built from (some may have died since: they
        // stay, dead, and are filtered from results), then those added during the rebuild.
        let mut renumber = BTreeMap::new();
        let mut compact = Vec::with_capacity(r.base.len() + r.pending.len());
        for &old in &r.base {
            renumber.insert(old, compact.len());
            compact.push(self.exemplars[old].clone());
        }
        self.indices = indices;
        for old in r.pending {
            let e = self.exemplars[old].clone();
            let n = compact.len();
            if e.alive {
                self.indices[slot(e.modality)].insert(&[(&e.vector, n)]);
            }
            renumber.insert(old, n);
            compact.push(e);
        }
        for ident in self.identities.values_mut() {
            for list in [&mut ident.visible, &mut ident.thermal] {
                *list = list.iter().filter_map(|i| renumber.get(i).copied()).collect();
            }
        }
        self.exemplars = compact;
        self.dead = self.exemplars.iter().filter(|e| !e.alive).count();
        tracing::info!(exemplars = self.exemplars.len(), "identity index rebuilt");
    }

    /// Blocks until a running rebuild is done and swapped in (for shutdown and tests).
    pub fn finish_rebuild(&mut self) {
        while self.rebuild.is_some() {
            std::thread::sleep(std::time::Duration::from_millis(5));
            self.poll_rebuild();
        }
    }
}

fn build_indices(settings: &Settings, exemplars: &[Exemplar]) -> [Box<dyn Backend>; 2] {
    let mut indices = empty_indices(settings, exemplars.len());
    for m in [Modality::Visible, Modality::Thermal] {
        let points: Vec<(&[f32], usize)> = exemplars
            .iter()
            .enumerate()
            .filter(|(_, e)| e.alive && e.modality == m)
            .map(|(i, e)| (&e.vector[..], i))
            .collect();
        indices[slot(m)].insert(&points);
    }
    indices
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(also_fraction: f32) -> Settings {
        Settings {
            dim: 4,
            backend: IndexBackend::Exact,
            hnsw: HnswParams::default(),
            same_modality_threshold: 0.2,
            cross_modality_threshold: 0.4,
            max_exemplars: 3,
            expiry_s: 1e9,
            neighbours: 8,
            rebuild_dead_fraction: 0.9,
            also_fraction,
            device: Device::Cpu,
        }
    }

    fn unit(v: [f32; 4]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn scoped_ids_carry_the_node_and_earlier_ids_are_renamed() {
        let mut ix = IdentityIndex::new(settings(0.0));
        let old = ix
            .assign(&unit([1.0, 0.0, 0.0, 0.0]), Modality::Visible, "c", 0.0)
            .unwrap()
            .identity;
        assert_eq!(old, 1);
        let renamed = ix.scope_ids(7);
        assert_eq!(renamed, vec![(1, (7 << NODE_SHIFT) | 1)]);
        assert!(ix.exemplars().iter().all(|e| e.identity == (7 << NODE_SHIFT) | 1));
        let new = ix
            .assign(&unit([0.0, 1.0, 0.0, 0.0]), Modality::Visible, "c", 1.0)
            .unwrap()
            .identity;
        assert_eq!(new, (7 << NODE_SHIFT) | 2);
        assert_eq!(origin(new), 7);
        // Scoping again (a restart) renames nothing and keeps counting.
        assert!(ix.scope_ids(7).is_empty());
        assert_eq!(ix.next_id(), (7 << NODE_SHIFT) | 3);
    }

    #[test]
    fn close_other_identities_are_reported_only_when_asked() {
        for (fraction, expected) in [(0.0, 0), (0.8, 1)] {
            let mut ix = IdentityIndex::new(settings(fraction));
            ix.add_replicated(10, &unit([1.0, 0.0, 0.0, 0.0]), Modality::Visible, "c", 0.0)
                .unwrap();
            ix.add_replicated(20, &unit([1.0, 0.05, 0.0, 0.0]), Modality::Visible, "c", 0.0)
                .unwrap();
            // Far from both: never reported.
            ix.add_replicated(30, &unit([0.0, 0.0, 1.0, 0.0]), Modality::Visible, "c", 0.0)
                .unwrap();
            let d = ix
                .assign(&unit([1.0, 0.02, 0.0, 0.0]), Modality::Visible, "c", 1.0)
                .unwrap();
            assert!(!d.created);
            assert_eq!(d.also.len(), expected, "{d:?}");
            assert!(d.also.iter().all(|&o| o != d.identity && o != 30));
        }
    }

    #[test]
    fn a_replicated_exemplar_is_added_once_and_in_time_order() {
        let mut ix = IdentityIndex::new(settings(0.0));
        let v = unit([1.0, 0.0, 0.0, 0.0]);
        for t in [5.0, 3.0, 4.0] {
            assert!(ix.add_replicated(8, &v, Modality::Visible, "c", t).unwrap());
        }
        // Delivered again: not added.
        assert!(!ix.add_replicated(8, &v, Modality::Visible, "c", 3.0).unwrap());
        // Older than all three kept: it would be the first to go.
        assert!(!ix.add_replicated(8, &v, Modality::Visible, "c", 1.0).unwrap());
        // Newer than some: kept in its place, the oldest goes.
        assert!(ix.add_replicated(8, &v, Modality::Visible, "c", 3.5).unwrap());
        let times: Vec<f64> = ix.identities()[&8]
            .visible
            .iter()
            .map(|&i| ix.exemplars()[i].time)
            .collect();
        assert_eq!(times, [3.5, 4.0, 5.0]);
        assert_eq!(ix.exemplars().iter().filter(|e| e.alive).count(), 3);
    }

    #[test]
    fn a_merge_moves_exemplars_and_keeps_the_newest() {
        let mut ix = IdentityIndex::new(settings(0.0));
        let v = unit([1.0, 0.0, 0.0, 0.0]);
        for t in 0..2 {
            ix.add_replicated(5, &v, Modality::Visible, "c", f64::from(t)).unwrap();
        }
        for t in 2..4 {
            ix.add_replicated(9, &v, Modality::Visible, "c", f64::from(t)).unwrap();
        }
        ix.add_replicated(9, &v, Modality::Thermal, "c", 4.0).unwrap();
        assert!(ix.merge(9, 5));
        assert!(!ix.merge(9, 5), "already gone");
        assert!(!ix.identities().contains_key(&9));
        let kept = &ix.identities()[&5];
        assert_eq!((kept.first_seen, kept.last_seen, kept.sightings), (0.0, 4.0, 5));
        // Three visible exemplars at most: the oldest (time 0) went.
        let times: Vec<f64> = kept.visible.iter().map(|&i| ix.exemplars()[i].time).collect();
        assert_eq!(times, [1.0, 2.0, 3.0]);
        assert_eq!(kept.thermal.len(), 1);
        assert_eq!(ix.dead(), 1);
        let live: Vec<u64> = ix.exemplars().iter().filter(|e| e.alive).map(|e| e.identity).collect();
        assert_eq!(live, [5, 5, 5, 5]);
        // Queries find the merged identity.
        let d = ix.assign(&v, Modality::Thermal, "c", 5.0).unwrap();
        assert_eq!(d.identity, 5);
        // Into an identity not known here: created.
        assert!(ix.merge(5, 2));
        assert_eq!(ix.identities()[&2].sightings, 6);
        // One exemplar received under two ids (before the merge was known) is kept once.
        ix.add_replicated(11, &v, Modality::Thermal, "c", 4.0).unwrap();
        assert!(ix.merge(11, 2));
        assert_eq!(ix.identities()[&2].thermal.len(), 2, "thermal at 4.0 once, and at 5.0");
    }
}
