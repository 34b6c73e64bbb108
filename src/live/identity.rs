//! The identity stage: keeps each track's quality-weighted embedding mean and matches it against
//! the cross-modal identity index once per `tracker.embed_interval_ms` of stream time (the first
//! time as soon as three crops are in), turning track notes and matches into events. A track
//! keeps its identity while it lives (see [`IdentityIndex::assign_track`]); a visible and a
//! thermal track fused by the tracking stage share one identity (a known person's over a
//! provisional one, else the older), and a further visible track fused with a thermal track whose
//! first partner lives (a fragment of the same person) takes the thermal track's (or gives its
//! own, when that is a known person's and the thermal track's is provisional). It expires identities, and hands a frozen copy of the
//! index to the disk writer ([`super::writer`]) every `index.snapshot_interval_s` and at the end;
//! thumbnails go to the writer too.
//!
//! Three things the tracks say about people are used beside the embeddings:
//! - tracks of one view (camera and modality) seen in the same frame with boxes apart are
//!   different people: a track never joins the identity of such a track, by appearance or by
//!   fusion. Boxes that overlap say nothing: two people passing, or one person a detector boxed
//!   twice (a motion detector's trail, a body split in two), which the index may join;
//! - a new identity rests on the first few crops of one track. Until another track joins it, it
//!   is *provisional*: at every later match, and when the track ends, the mean of all the track's
//!   crops so far is matched again, and when that finds another identity the two merge into the
//!   older, smaller id (an update event with `merged_from`; in a cluster the merge is also
//!   proposed to every node),
//!   so a returning person whose first crops were poor still gets their identity back;
//! - where `cameras.new_identities = "fused"`, only a fused track starts an identity (at the
//!   fusion itself, from all its crops so far, unless it joins a known one): an unfused one
//!   without a live identity (none yet, or expired) matches its whole life's mean against the
//!   known identities and joins the one it finds, or waits (its events carry no identity).

use super::board::Board;
use super::events::{Event, EventKind, unix_now as now};
use super::metrics::Metrics;
use super::tracking::APART_IOU;
use super::types::{Pixels, ToIdentity, TrackKey, TrackNote};
use super::writer::{DiskWriter, Exemplar, ThumbnailJob, Written};
use crate::base::Modality;
use crate::cluster::{Merged, Node};
use crate::config::SiteConfig;
use crate::config::site::NewIdentities;
use crate::detect::BBox;
use crate::index::identities::{Decision, IdentityIndex};
use crate::index::snapshot;
use crate::track::EmbeddingMean;
use crossbeam_channel::{Receiver, Sender};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Identities of live tracks, for the annotated video.
pub type Labels = Arc<Mutex<HashMap<TrackKey, u64>>>;

/// Crops averaged before a new track's first match.
const FIRST_MATCH_CROPS: usize = 3;

#[derive(Default)]
struct TrackState {
    /// The crops since the last match.
    mean: EmbeddingMean,
    /// Every crop of the track.
    life: EmbeddingMean,
    /// Live tracks of the same view seen in one frame with this one, boxes apart: other people.
    apart: HashSet<TrackKey>,
    /// Identities of tracks seen apart from this one (or from its fused partner), remembered for
    /// the track's life: other people.
    others: BTreeSet<u64>,
    identity: Option<u64>,
    /// The fused track of the other modality.
    partner: Option<TrackKey>,
    /// The latest crop, for a thumbnail.
    crop: Option<(Pixels, BBox)>,
    last_match_pts: Option<f64>,
    last: Option<(BBox, f32, f64, Instant)>,
}

/// What the stage leaves behind.
pub struct IdentityOutcome {
    pub index: IdentityIndex,
    /// The snapshots written, and the last error.
    pub written: Written,
}

/// Runs until `input` closes; `writer` writes the snapshots and thumbnails (exemplar thumbnails
/// go to `board` when the operator's view runs). The last snapshot is written (waited for) before
/// it returns.
#[allow(clippy::too_many_arguments)] // the stage's inputs, outputs and shared views
pub fn run(
    cfg: &SiteConfig,
    mut index: IdentityIndex,
    writer: DiskWriter,
    input: &Receiver<ToIdentity>,
    events: &Sender<(Event, Instant)>,
    labels: &Labels,
    board: Option<&Arc<Board>>,
    metrics: &Metrics,
    mut cluster: Option<Node>,
) -> IdentityOutcome {
    let interval = cfg.tracker.embed_interval_ms as f64 / 1000.0;
    let snapshot_every = Duration::from_secs_f64(cfg.index.snapshot_interval_s.max(1.0));
    let identities = metrics.gauge("reid_identities", &[]);
    let refused = metrics.counter("reid_dropped_total", &[("stage", "identity"), ("reason", "refused")]);
    let settled = metrics.counter("reid_identities_settled_total", &[]);
    let mut tracks: HashMap<TrackKey, TrackState> = HashMap::new();
    // Provisional identities and the track that created them (see the module's notes).
    let mut provisional: HashMap<u64, TrackKey> = HashMap::new();
    let mut last_snapshot = Instant::now();
    let mut last_expiry = Instant::now();
    let event = |kind, key: TrackKey, state: &TrackState| Event {
        stream_time_s: state.last.map(|l| l.2),
        identity: state.identity,
        partner_track_id: state.partner.map(|p| p.track),
        ..Event::of_track(
            kind,
            now(),
            cfg.cameras[key.camera].name.clone(),
            key.modality,
            key.track,
        )
    };
    // `hint`: the fused partner's identity, for a track that has none yet; `exclude`: the
    // identities of other people.
    let matched = |index: &mut IdentityIndex,
                   cluster: Option<&Node>,
                   key: TrackKey,
                   state: &mut TrackState,
                   hint: Option<u64>,
                   exclude: &[u64]|
     -> Option<(Event, Instant)> {
        let camera = &cfg.cameras[key.camera].name;
        let time = now();
        // The track's identity, else its fused partner's, while the index holds it.
        let live = |id: &u64| index.identities().contains_key(id);
        let current = state.identity.filter(live).or(hint.filter(live));
        // Where only fused tracks start identities, a track without a live identity is matched
        // with the mean of all its crops: an unfused one joins a known identity or waits (it
        // starts none); a fused one joins one or starts its person's from every crop so far.
        let waiting = cfg.cameras[key.camera].new_identities == NewIdentities::Fused && current.is_none();
        if waiting && state.identity.take().is_some() {
            // It expired: the track has none until it joins or starts one.
            if let Ok(mut l) = labels.lock() {
                l.remove(&key);
            }
        }
        let (vector, count) = if waiting {
            state.mean = EmbeddingMean::default();
            state.life.mean()?
        } else {
            state.mean.take()?
        };
        let joins_only = waiting && state.partner.is_none();
        if joins_only {
            state.last_match_pts = state.last.map(|l| l.2);
        }
        // A fused track's identity is settled by the fusion: its embeddings extend it.
        let assigned = match (state.partner, current) {
            // The same votes: the identity found (or, after an index rebuild, the one the votes
            // now favour), never a new one.
            _ if joins_only => match index.best_match(&vector, key.modality, exclude) {
                Ok(Some(m)) => index.assign_track(&vector, key.modality, camera, time, Some(m.identity), exclude),
                Ok(None) => return None,
                Err(e) => Err(e),
            },
            (Some(_), Some(id)) => match index.extend(id, &vector, key.modality, camera, time) {
                Ok(true) => Ok(Decision {
                    identity: id,
                    created: false,
                    distance: None,
                    cross_modal: false,
                    also: Vec::new(),
                }),
                Ok(false) => index.assign_track(&vector, key.modality, camera, time, Some(id), exclude),
                Err(e) => Err(e),
            },
            (_, current) => index.assign_track(&vector, key.modality, camera, time, current, exclude),
        };
        let decision = match assigned {
            Ok(d) => d,
            Err(e) => {
                if refused.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(
                        "the index refused {key:?}'s embedding: {e} (counted in reid_dropped_total, stage \"identity\")"
                    );
                }
                return None;
            }
        };
        if let Some(node) = cluster {
            node.added(decision.identity, &vector, key.modality, camera, time);
            node.propose_merges(&decision);
        }
        let previous = state.identity.replace(decision.identity);
        state.last_match_pts = state.last.map(|l| l.2);
        if let Ok(mut l) = labels.lock() {
            l.insert(key, decision.identity);
        }
        let (bbox, score, _, arrived) = state.last?;
        let mut e = event(EventKind::Update, key, state).with_box(bbox, score);
        e.previous_identity = previous;
        e.identity_changed = previous != Some(decision.identity);
        e.new_identity = decision.created;
        e.distance = decision.distance;
        e.cross_modal = decision.cross_modal;
        e.embeddings = count;
        if let Some((pixels, crop)) = &state.crop {
            let file = match &cfg.outputs.thumbnails {
                Some(dir) if decision.created => Some(dir.join(format!("identity-{}.jpg", decision.identity))),
                _ => None,
            };
            let exemplar = board
                .filter(|b| writer.has_spare_room() && b.wants_thumbnail(decision.identity, e.time))
                .map(|b| Exemplar {
                    board: Arc::clone(b),
                    identity: decision.identity,
                    camera: camera.clone(),
                    modality: key.modality,
                    time: e.time,
                });
            if file.is_some() || exemplar.is_some() {
                let shown = file.as_ref().map(|p| p.display().to_string());
                let job = ThumbnailJob {
                    pixels: pixels.clone(),
                    crop: *crop,
                    file,
                    exemplar,
                };
                if writer.thumbnail(job) {
                    e.thumbnail = shown;
                }
            }
        }
        Some((e, arrived))
    };
    // Identity `from` is `into`'s person: merged here at once and, in a cluster, proposed to
    // every node (into the canonical id of `into`'s set there, the smallest; when the merge comes
    // back, this node's index holds it already).
    let join = |index: &mut IdentityIndex,
                cluster: Option<&Node>,
                tracks: &mut HashMap<TrackKey, TrackState>,
                from: u64,
                into: u64|
     -> Vec<(Event, Instant)> {
        settled.fetch_add(1, Ordering::Relaxed);
        let into = cluster.map_or(into, |node| node.canonical(into));
        tracing::debug!(from, into, "provisional identity settled");
        if let Some(node) = cluster {
            node.merge(from, into);
        }
        index.merge(from, into);
        let merged = Merged {
            canonical: into,
            merged_from: vec![from],
        };
        relabel(tracks, &merged, labels, &event)
    };
    // Matches `key`'s latest crops, then settles its identity if it is provisional: the mean of
    // all its crops, matched again, merges it with another identity it finds.
    let match_track = |index: &mut IdentityIndex,
                       cluster: Option<&Node>,
                       tracks: &mut HashMap<TrackKey, TrackState>,
                       provisional: &mut HashMap<u64, TrackKey>,
                       key: TrackKey|
     -> Vec<(Event, Instant)> {
        let hint = partner_identity(tracks, key);
        // Other people for the fused partner are other people for this track too.
        let partner = tracks.get(&key).and_then(|s| s.partner);
        let mut exclude = other_people(tracks, key);
        if let Some(p) = partner {
            exclude.extend(other_people(tracks, p));
        }
        let Some(state) = tracks.get_mut(&key) else {
            return Vec::new();
        };
        let mut out: Vec<_> = matched(index, cluster, key, state, hint, &exclude)
            .into_iter()
            .collect();
        if let Some((e, _)) = out.first()
            && let Some(id) = e.identity
        {
            note_assignment(provisional, tracks, key, e.previous_identity, id, e.new_identity);
        }
        let Some(state) = tracks.get(&key) else { return out };
        let Some(own) = state.identity.filter(|id| {
            provisional
                .get(id)
                .is_some_and(|&creator| same_fusion(tracks, key, creator))
        }) else {
            return out;
        };
        let Some((life, _)) = state.life.mean() else { return out };
        exclude.push(own);
        if let Ok(Some(found)) = index.best_match(&life, key.modality, &exclude) {
            provisional.remove(&own);
            provisional.remove(&found.identity);
            let (from, into) = (own.max(found.identity), own.min(found.identity));
            let relabelled = join(index, cluster, tracks, from, into);
            let kept = !relabelled
                .iter()
                .any(|(e, _)| e.track_id == key.track && e.modality == key.modality);
            // Events leave in the order they were stamped (the operator view lists them by time).
            out.extend(relabelled);
            // The track keeps its identity when the other merged into it: say so all the same.
            if kept && let Some(state) = tracks.get(&key) {
                let mut e = event(EventKind::Update, key, state);
                if let Some((bbox, score, _, _)) = state.last {
                    e = e.with_box(bbox, score);
                }
                e.previous_identity = state.identity;
                e.merged_from = vec![from];
                out.push((e, Instant::now()));
            }
        }
        out
    };
    let latency = metrics.latency("reid_stage_seconds", &[("stage", "identity")]);
    let mut incoming = cluster
        .as_ref()
        .map_or_else(crossbeam_channel::never, |c| c.incoming().clone());
    loop {
        let msg = crossbeam_channel::select! {
            recv(input) -> msg => match msg {
                Ok(msg) => Step::Track(msg),
                Err(_) => break,
            },
            recv(incoming) -> item => {
                match (item, cluster.as_mut()) {
                    (Ok(item), Some(node)) => {
                        let merged = node.apply(&mut index, item);
                        // A merged identity rests on more than one track: none is provisional.
                        if let Some(m) = &merged {
                            for id in m.merged_from.iter().chain([&m.canonical]) {
                                provisional.remove(id);
                            }
                        }
                        Step::Cluster(merged)
                    }
                    _ => {
                        // The link ended: go on alone.
                        incoming = crossbeam_channel::never();
                        Step::Cluster(None)
                    }
                }
            }
        };
        let started = Instant::now();
        let tracked = matches!(msg, Step::Track(_));
        let out = match msg {
            Step::Cluster(merged) => merged
                .map(|m| relabel(&mut tracks, &m, labels, &event))
                .unwrap_or_default(),
            Step::Track(ToIdentity::Embedded {
                key,
                pixels,
                crop,
                vector,
                quality,
                bbox,
                score,
                pts_s,
                arrived,
            }) => {
                let apart: Vec<TrackKey> = tracks
                    .iter()
                    .filter(|(k, s)| {
                        **k != key
                            && same_view(**k, key)
                            && s.last
                                .is_some_and(|(b, _, t, _)| t == pts_s && b.iou(&bbox) < APART_IOU)
                    })
                    .map(|(k, _)| *k)
                    .collect();
                for k in &apart {
                    if let Some(s) = tracks.get_mut(k) {
                        s.apart.insert(key);
                    }
                }
                let state = tracks.entry(key).or_default();
                state.apart.extend(apart);
                state.mean.add(&vector, quality);
                state.life.add(&vector, quality);
                state.last = Some((bbox, score, pts_s, arrived));
                if cfg.outputs.thumbnails.is_some() || board.is_some() {
                    state.crop = Some((pixels, crop));
                }
                let due = match state.last_match_pts {
                    None => state.mean.count() >= FIRST_MATCH_CROPS,
                    // A stream whose timestamps restarted (a reconnected live source) counts as due.
                    Some(t) => pts_s - t >= interval || pts_s < t,
                };
                if due {
                    match_track(&mut index, cluster.as_ref(), &mut tracks, &mut provisional, key)
                } else {
                    Vec::new()
                }
            }
            Step::Track(ToIdentity::Note(TrackNote::New {
                key,
                bbox,
                score,
                pts_s,
                arrived,
            })) => {
                let state = tracks.entry(key).or_default();
                state.last = Some((bbox, score, pts_s, arrived));
                vec![(event(EventKind::New, key, state).with_box(bbox, score), arrived)]
            }
            Step::Track(ToIdentity::Note(TrackNote::End { key, pts_s, arrived })) => {
                let mut out = match_track(&mut index, cluster.as_ref(), &mut tracks, &mut provisional, key);
                let mut state = tracks.remove(&key).unwrap_or_default();
                // Those seen apart from it remember it; its partner remembers them.
                for k in &state.apart {
                    if let Some(s) = tracks.get_mut(k) {
                        s.apart.remove(&key);
                        s.others.extend(state.identity);
                        state.others.extend(s.identity);
                    }
                }
                // The tracks fused with it: its partner, and those whose partner it is (a thermal
                // track's first and further visible partners).
                let mut linked: Vec<TrackKey> = state.partner.into_iter().collect();
                linked.extend(
                    tracks
                        .iter()
                        .filter(|(k, s)| s.partner == Some(key) && Some(**k) != state.partner)
                        .map(|(k, _)| *k),
                );
                linked.sort_by_key(|k| (k.modality == Modality::Thermal, k.track));
                // A provisional identity outlives its track in a fused track that holds it.
                if let Some(id) = state.identity
                    && provisional.get(&id) == Some(&key)
                {
                    match linked
                        .iter()
                        .find(|k| tracks.get(k).is_some_and(|s| s.identity == Some(id)))
                    {
                        Some(k) => provisional.insert(id, *k),
                        None => provisional.remove(&id),
                    };
                }
                for k in &linked {
                    let Some(s) = tracks.get_mut(k) else { continue };
                    s.others.extend(&state.others);
                    if s.partner == Some(key) {
                        s.partner = None;
                        // A thermal track whose first partner ended takes its oldest further
                        // partner as the first, as the tracking stage does.
                        if k.modality == Modality::Thermal {
                            let partners = tracks.iter().filter_map(|(v, s)| Some((v, s.partner.as_ref()?)));
                            let next = super::tracking::oldest_partner(partners, *k);
                            if let Some(s) = tracks.get_mut(k) {
                                s.partner = next;
                            }
                        }
                    }
                }
                if let Ok(mut l) = labels.lock() {
                    l.remove(&key);
                }
                let mut end = event(EventKind::End, key, &state);
                end.stream_time_s = Some(pts_s);
                if let Some((bbox, score, _, _)) = state.last {
                    end = end.with_box(bbox, score);
                }
                out.push((end, arrived));
                out
            }
            Step::Track(ToIdentity::Note(TrackNote::Fuse {
                visible,
                thermal,
                further,
                arrived,
            })) => {
                tracks.entry(visible).or_default();
                tracks.entry(thermal).or_default();
                if !further {
                    tracks.entry(visible).or_default().partner = Some(thermal);
                    tracks.entry(thermal).or_default().partner = Some(visible);
                }
                // Where only fused tracks start identities, a first fusion of two tracks without
                // one gives the visible track its person's now (joined or started from all its
                // crops so far); the thermal track switches to it below.
                let mut first_match = if !further
                    && tracks[&visible].identity.is_none()
                    && tracks[&thermal].identity.is_none()
                    && cfg.cameras[visible.camera].new_identities == NewIdentities::Fused
                {
                    match_track(&mut index, cluster.as_ref(), &mut tracks, &mut provisional, visible)
                } else {
                    Vec::new()
                };
                let mut others = other_people(&mut tracks, visible);
                others.extend(other_people(&mut tracks, thermal));
                // A further partner joins the thermal track's person: the first partner's identity
                // when the thermal track has none yet.
                let vid = tracks[&visible].identity;
                let tid = tracks[&thermal]
                    .identity
                    .or_else(|| further.then(|| partner_identity(&tracks, thermal)).flatten());
                // An identity that rests on more than its own tracks' first crops (a known
                // person) wins over a provisional one, which merges into it below; between two
                // of a kind the older, smaller id wins. The other track switches to the winner.
                // A further visible partner (a fragment of the thermal track's person, see
                // `tracking`) takes the thermal track's identity, unless its own is a known
                // person's and the thermal track's provisional: then that merges into its own.
                let known = |id: u64| !provisional.contains_key(&id);
                let (winner, switching) = match (vid, tid) {
                    (Some(v), Some(t)) if v == t => (None, None),
                    // Unless the fragment was seen apart from a track of the thermal track's person.
                    (Some(v), Some(t)) if further && known(v) && !known(t) && !others.contains(&t) => (Some(v), None),
                    (_, Some(t)) if further => (Some(t), Some(visible)),
                    (Some(v), Some(t)) if (known(v), t) > (known(t), v) => (Some(v), Some(thermal)),
                    (Some(_), Some(t)) => (Some(t), Some(visible)),
                    (Some(v), None) => (Some(v), Some(thermal)),
                    (None, Some(t)) => (Some(t), Some(visible)),
                    (None, None) => (None, None),
                };
                // Where either view saw the winner apart from its track, they are two people after
                // all: the fusion changes no identity (and a further partner stays unfused).
                let winner = winner.filter(|id| !others.contains(id));
                if further && (winner.is_some() || vid == tid) {
                    tracks.entry(visible).or_default().partner = Some(thermal);
                    // The thermal track's first partner ended before the tracking stage's next
                    // one was accepted here: this one takes its place.
                    let ts = tracks.entry(thermal).or_default();
                    if ts.partner.is_none() {
                        ts.partner = Some(visible);
                    }
                }
                let fused = if let (Some(v), None, Some(t)) = (winner, switching, tid) {
                    // A fragment's known identity takes in the thermal track's provisional one
                    // (and the thermal track's first partner with it).
                    provisional.remove(&t);
                    join(&mut index, cluster.as_ref(), &mut tracks, t, v)
                } else {
                    match (winner, switching) {
                        (Some(id), Some(key)) => {
                            let state = tracks.entry(key).or_default();
                            let previous = state.identity.replace(id);
                            if let Ok(mut l) = labels.lock() {
                                l.insert(key, id);
                            }
                            let mut e = event(EventKind::Update, key, state);
                            if let Some((bbox, score, _, _)) = state.last {
                                e = e.with_box(bbox, score);
                            }
                            e.previous_identity = previous;
                            e.identity_changed = previous != Some(id);
                            e.cross_modal = true;
                            let mut out = vec![(e, arrived)];
                            // The identity the switching track made for itself is the winner's
                            // person too (the fusion says so): merged into it, or into the smaller id
                            // when both are provisional.
                            let winner_known = !provisional.contains_key(&id);
                            if let Some(made) = previous.filter(|p| provisional.get(p) == Some(&key)) {
                                provisional.remove(&made);
                                out[0].0.merged_from = vec![made];
                                let (from, into) = if winner_known {
                                    (made, id)
                                } else {
                                    (made.max(id), made.min(id))
                                };
                                out.extend(join(&mut index, cluster.as_ref(), &mut tracks, from, into));
                            }
                            out
                        }
                        _ => Vec::new(),
                    }
                };
                first_match.extend(fused);
                first_match
            }
        };
        if !send_all(events, cluster.as_ref(), out) {
            break;
        }
        identities.store(index.identities().len() as i64, Ordering::Relaxed);
        if tracked {
            latency.observe(started.elapsed().as_secs_f64());
        }
        if last_expiry.elapsed() >= Duration::from_secs(1) {
            for id in index.expire(now()) {
                provisional.remove(&id);
            }
            last_expiry = Instant::now();
        }
        // Due until the writer takes it: a snapshot still in flight delays the next one.
        if last_snapshot.elapsed() >= snapshot_every && writer.snapshot(|| snapshot::freeze(&index)) {
            last_snapshot = Instant::now();
        }
    }
    index.finish_rebuild();
    if let Some(node) = cluster {
        node.finish();
    }
    let written = writer.finish(snapshot::freeze(&index));
    IdentityOutcome { index, written }
}

/// What the stage does next: a message of the tracking stage, or an item from the cluster (with
/// the merge it caused, if any).
enum Step {
    Track(ToIdentity),
    Cluster(Option<Merged>),
}

/// Sends `out` on (and to the cluster's events subject, when it has one); `false` when the
/// events stage is gone.
fn send_all(events: &Sender<(Event, Instant)>, cluster: Option<&Node>, out: Vec<(Event, Instant)>) -> bool {
    out.into_iter().all(|e| {
        if let Some(node) = cluster.filter(|c| c.publishes_events())
            && let Ok(json) = serde_json::to_vec(&e.0)
        {
            node.event(json);
        }
        events.send(e).is_ok()
    })
}

/// Moves the live tracks of merged-away identities to the canonical one: an update event each,
/// naming the identities merged.
fn relabel(
    tracks: &mut HashMap<TrackKey, TrackState>,
    merged: &Merged,
    labels: &Labels,
    event: &impl Fn(EventKind, TrackKey, &TrackState) -> Event,
) -> Vec<(Event, Instant)> {
    let mut out = Vec::new();
    for state in tracks.values_mut() {
        if merged.merged_from.iter().any(|id| state.others.contains(id)) {
            state.others.insert(merged.canonical);
        }
    }
    for (key, state) in tracks.iter_mut() {
        let Some(previous) = state.identity.filter(|id| merged.merged_from.contains(id)) else {
            continue;
        };
        state.identity = Some(merged.canonical);
        if let Ok(mut l) = labels.lock() {
            l.insert(*key, merged.canonical);
        }
        let mut e = event(EventKind::Update, *key, state);
        if let Some((bbox, score, _, _)) = state.last {
            e = e.with_box(bbox, score);
        }
        e.previous_identity = Some(previous);
        e.identity_changed = true;
        e.merged_from.clone_from(&merged.merged_from);
        out.push((e, Instant::now()));
    }
    out
}

/// Records `key`'s assignment to `identity` (`created`: new; `previous`: the one it held) in
/// `provisional`: a new identity is provisional; one that another track joined (not its
/// creator's fused partner) no longer is, nor one its creator left.
fn note_assignment(
    provisional: &mut HashMap<u64, TrackKey>,
    tracks: &HashMap<TrackKey, TrackState>,
    key: TrackKey,
    previous: Option<u64>,
    identity: u64,
    created: bool,
) {
    if let Some(left) = previous.filter(|&p| p != identity && provisional.get(&p) == Some(&key)) {
        provisional.remove(&left);
    }
    if created {
        provisional.insert(identity, key);
    } else if let Some(&creator) = provisional.get(&identity)
        && !same_fusion(tracks, key, creator)
    {
        provisional.remove(&identity);
    }
}

/// Whether tracks `a` and `b` are one track or fused: partners, or further visible partners of
/// one thermal track.
fn same_fusion(tracks: &HashMap<TrackKey, TrackState>, a: TrackKey, b: TrackKey) -> bool {
    let partner = |k: TrackKey| tracks.get(&k).and_then(|s| s.partner);
    a == b || partner(a) == Some(b) || partner(b) == Some(a) || partner(a).is_some() && partner(a) == partner(b)
}

/// The identities of other people for `key`: those of the tracks seen apart from it, remembered
/// for its life (see [`TrackState::others`]).
fn other_people(tracks: &mut HashMap<TrackKey, TrackState>, key: TrackKey) -> Vec<u64> {
    let Some(state) = tracks.get(&key) else {
        return Vec::new();
    };
    let seen: Vec<u64> = state.apart.iter().filter_map(|k| tracks.get(k)?.identity).collect();
    let Some(state) = tracks.get_mut(&key) else {
        return Vec::new();
    };
    state.others.extend(seen);
    state
        .others
        .iter()
        .copied()
        .filter(|&id| Some(id) != state.identity)
        .collect()
}

fn same_view(a: TrackKey, b: TrackKey) -> bool {
    a.camera == b.camera && a.modality == b.modality
}

fn partner_identity(tracks: &HashMap<TrackKey, TrackState>, key: TrackKey) -> Option<u64> {
    let partner = tracks.get(&key)?.partner?;
    tracks.get(&partner)?.identity
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SiteConfig;

    const SITE: &str = r#"[[cameras]]
name = "gate"
[cameras.visible]
kind = "test"
pattern = "ball"
[cameras.thermal]
kind = "test"
pattern = "ball"
[detector]
kind = "hog"
[model]
backbone = "mobilenetv2"
weights = "w.safetensors"
[index]
same_modality_threshold = 0.2
cross_modality_threshold = 0.4
"#;

    const BOX: BBox = BBox {
        x: 0.0,
        y: 0.0,
        w: 20.0,
        h: 40.0,
    };

    fn visible(track: u64) -> TrackKey {
        TrackKey {
            camera: 0,
            modality: Modality::Visible,
            track,
        }
    }

    fn thermal(track: u64) -> TrackKey {
        TrackKey {
            modality: Modality::Thermal,
            ..visible(track)
        }
    }

    fn unit(v: [f32; 4]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.map(|x| x / n).to_vec()
    }

    fn new(track: u64, pts_s: f64) -> ToIdentity {
        ToIdentity::Note(TrackNote::New {
            key: visible(track),
            bbox: BOX,
            score: 1.0,
            pts_s,
            arrived: Instant::now(),
        })
    }

    fn end(track: u64, pts_s: f64) -> ToIdentity {
        ToIdentity::Note(TrackNote::End {
            key: visible(track),
            pts_s,
            arrived: Instant::now(),
        })
    }

    fn fuse(visible_track: u64, thermal_track: u64) -> ToIdentity {
        ToIdentity::Note(TrackNote::Fuse {
            visible: visible(visible_track),
            thermal: thermal(thermal_track),
            further: false,
            arrived: Instant::now(),
        })
    }

    /// A fusion of a further visible partner (a fragment) with a thermal track.
    fn fuse_further(visible_track: u64, thermal_track: u64) -> ToIdentity {
        ToIdentity::Note(TrackNote::Fuse {
            visible: visible(visible_track),
            thermal: thermal(thermal_track),
            further: true,
            arrived: Instant::now(),
        })
    }

    fn crop(track: u64, pts_s: f64, vector: Vec<f32>) -> ToIdentity {
        crop_of(visible(track), pts_s, vector)
    }

    fn crop_of(key: TrackKey, pts_s: f64, vector: Vec<f32>) -> ToIdentity {
        crop_in(key, pts_s, vector, BOX)
    }

    /// A crop of `key` boxed at `bbox` in the frame of `pts_s`.
    fn crop_in(key: TrackKey, pts_s: f64, vector: Vec<f32>, bbox: BBox) -> ToIdentity {
        ToIdentity::Embedded {
            key,
            pixels: Pixels::Grey {
                data: Arc::new(vec![0; 4]),
                width: 2,
                height: 2,
            },
            crop: bbox,
            vector,
            quality: 1.0,
            bbox,
            score: 1.0,
            pts_s,
            arrived: Instant::now(),
        }
    }

    /// Runs the stage on `messages` (one camera; thresholds 0.2 / 0.4, a match at most once a
    /// second of stream time): the events, and the index left behind.
    fn stage(messages: Vec<ToIdentity>) -> (Vec<Event>, IdentityIndex) {
        stage_at(SITE, messages)
    }

    /// [`stage`] at the site `site`.
    fn stage_at(site: &str, messages: Vec<ToIdentity>) -> (Vec<Event>, IdentityIndex) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = SiteConfig::from_bytes(&dir.path().join("site.toml"), site.as_bytes()).expect("site");
        let metrics = Metrics::default();
        let index = IdentityIndex::new(super::super::index_settings(&cfg, 4));
        let writer = DiskWriter::start(&dir.path().join("index"), &metrics).expect("writer");
        let (tx, rx) = crossbeam_channel::unbounded();
        let (events_tx, events_rx) = crossbeam_channel::unbounded();
        messages.into_iter().for_each(|m| tx.send(m).expect("send"));
        drop(tx);
        let labels: Labels = Arc::default();
        let out = run(&cfg, index, writer, &rx, &events_tx, &labels, None, &metrics, None);
        drop(events_tx);
        (events_rx.iter().map(|(e, _)| e).collect(), out.index)
    }

    /// The last identity each track's events gave it.
    fn last_identities(events: &[Event]) -> HashMap<u64, u64> {
        events.iter().filter_map(|e| Some((e.track_id, e.identity?))).collect()
    }

    #[test]
    fn a_new_identity_merges_into_the_older_one_its_whole_track_finds() {
        let person = unit([1.0, 0.0, 0.0, 0.0]);
        // 40° either side of the person: each alone is 0.23 from them (beyond 0.2) and 0.41 from
        // the other; three of each average to 0.14 from them.
        let (c, s) = (40f32.to_radians().cos(), 40f32.to_radians().sin());
        let (left, right) = (unit([c, s, 0.0, 0.0]), unit([c, 0.0, s, 0.0]));
        let mut messages = vec![new(1, 0.0)];
        messages.extend((1..=3).map(|i| crop(1, f64::from(i) * 0.1, person.clone())));
        messages.extend([end(1, 1.0), new(2, 10.0)]);
        messages.extend((1..=3).map(|i| crop(2, 10.0 + f64::from(i) * 0.1, left.clone())));
        // Within a second of the first match: the track's last crops are matched when it ends.
        messages.extend((4..=6).map(|i| crop(2, 10.0 + f64::from(i) * 0.1, right.clone())));
        messages.push(end(2, 10.7));
        let (events, index) = stage(messages);
        let ids = last_identities(&events);
        assert_eq!(ids[&1], 1);
        assert_eq!(
            ids[&2], 1,
            "the second track ends with the first one's identity: {events:#?}"
        );
        let merge = events
            .iter()
            .find(|e| e.track_id == 2 && !e.merged_from.is_empty())
            .expect("a merge event");
        assert_eq!((merge.previous_identity, merge.identity), (Some(2), Some(1)));
        assert_eq!(merge.merged_from, [2]);
        assert_eq!(index.identities().keys().copied().collect::<Vec<_>>(), [1]);
        // Every match of both tracks: the first track's, the left crops' and the right crops'.
        assert_eq!(index.identities()[&1].visible.len(), 3);
    }

    #[test]
    fn the_identity_a_fused_track_made_for_itself_merges_into_its_partners() {
        let (seen, warm) = (unit([1.0, 0.0, 0.0, 0.0]), unit([0.0, 1.0, 0.0, 0.0]));
        let mut messages: Vec<ToIdentity> = (1..=3).map(|i| crop(1, f64::from(i) * 0.1, seen.clone())).collect();
        messages.extend((1..=3).map(|i| crop_of(thermal(7), 0.05 + f64::from(i) * 0.1, warm.clone())));
        messages.push(fuse(1, 7));
        let (events, index) = stage(messages);
        let fused = events.last().expect("the fusion's event");
        assert_eq!(
            (fused.track_id, fused.previous_identity, fused.identity),
            (7, Some(2), Some(1))
        );
        assert_eq!(fused.merged_from, [2]);
        assert_eq!(index.identities().keys().copied().collect::<Vec<_>>(), [1]);
        assert_eq!(
            index.identities()[&1].thermal.len(),
            1,
            "the thermal track's exemplar moved"
        );
    }

    #[test]
    fn a_fusion_takes_the_known_persons_identity_over_a_provisional_one() {
        let (p, q) = (unit([1.0, 0.0, 0.0, 0.0]), unit([0.0, 1.0, 0.0, 0.0]));
        // Thermal track 7 makes identity 1 (provisional while it lives).
        let mut messages: Vec<ToIdentity> = (1..=3)
            .map(|i| crop_of(thermal(7), f64::from(i) * 0.1, q.clone()))
            .collect();
        // Visible track 1 makes identity 2 and ends: a known person.
        messages.extend((1..=3).map(|i| crop(1, 0.5 + f64::from(i) * 0.1, p.clone())));
        messages.push(end(1, 1.0));
        // Visible track 2, later, looks like them and joins 2; then it fuses with 7.
        messages.extend((1..=3).map(|i| crop(2, 5.0 + f64::from(i) * 0.1, p.clone())));
        messages.push(fuse(2, 7));
        let (events, index) = stage(messages);
        let fused = events.last().expect("the fusion's event");
        assert_eq!(
            (fused.track_id, fused.previous_identity, fused.identity),
            (7, Some(1), Some(2)),
            "{events:#?}"
        );
        assert_eq!(fused.merged_from, [1], "the thermal track's own identity merges in");
        assert_eq!(index.identities().keys().copied().collect::<Vec<_>>(), [2]);
    }

    /// `BOX` moved `dx` pixels to the right.
    fn shifted(dx: f32) -> BBox {
        BBox { x: dx, ..BOX }
    }

    /// Track 1 with three crops of `person`, then track 2, alike, seen in three frames with
    /// track 1, its box `dx` pixels to the right.
    fn side_by_side(person: &[f32], dx: f32) -> Vec<ToIdentity> {
        let mut messages = vec![new(1, 0.0)];
        messages.extend((1..=3).map(|i| crop(1, f64::from(i) * 0.1, person.to_vec())));
        messages.push(new(2, 0.5));
        for i in 1..=3 {
            let t = 0.5 + f64::from(i) * 0.1;
            messages.push(crop(1, t, person.to_vec()));
            messages.push(crop_in(visible(2), t, person.to_vec(), shifted(dx)));
        }
        messages
    }

    #[test]
    fn a_track_never_joins_a_track_seen_apart_from_it() {
        let person = unit([0.0, 0.0, 0.0, 1.0]);
        // 100 pixels apart: another person, however alike.
        let mut messages = side_by_side(&person, 100.0);
        messages.push(end(1, 2.0));
        // Nor once track 1 has ended.
        messages.extend((1..=3).map(|i| crop(2, 2.0 + f64::from(i), person.clone())));
        messages.push(end(2, 6.0));
        // A track that begins after both ended may be either of them.
        messages.push(new(3, 20.0));
        messages.extend((1..=3).map(|i| crop(3, 20.0 + f64::from(i) * 0.1, person.clone())));
        let (events, _) = stage(messages);
        let ids = last_identities(&events);
        assert_eq!((ids[&1], ids[&2]), (1, 2), "{events:#?}");
        assert!([1, 2].contains(&ids[&3]), "{events:#?}");
        assert!(events.iter().all(|e| e.merged_from.is_empty()), "{events:#?}");
    }

    #[test]
    fn a_track_boxed_over_another_may_join_it() {
        // A detector boxes one person twice (overlapping boxes, IoU 0.6): the second track joins
        // the first one's identity. The same frames with the boxes apart keep them two people.
        let person = unit([0.0, 0.0, 0.0, 1.0]);
        let run = |dx: f32| last_identities(&stage(side_by_side(&person, dx)).0);
        let overlapping = run(5.0);
        assert_eq!((overlapping[&1], overlapping[&2]), (1, 1));
        let apart = run(30.0);
        assert_eq!((apart[&1], apart[&2]), (1, 2));
    }

    #[test]
    fn a_further_visible_track_of_a_fused_thermal_track_takes_its_identity() {
        let (seen, other, warm) = (
            unit([1.0, 0.0, 0.0, 0.0]),
            unit([0.0, 0.0, 1.0, 0.0]),
            unit([0.0, 1.0, 0.0, 0.0]),
        );
        // Visible 1 and thermal 7 fuse (identity 1); visible 2, which looks like no one known,
        // is seen in the same frames as 1, boxed `dx` pixels to the right, then fuses with 7 too.
        let run = |dx: f32| {
            let mut messages: Vec<ToIdentity> = (1..=3).map(|i| crop(1, f64::from(i) * 0.1, seen.clone())).collect();
            messages.extend((1..=3).map(|i| crop_of(thermal(7), 0.05 + f64::from(i) * 0.1, warm.clone())));
            messages.push(fuse(1, 7));
            for i in 1..=3 {
                let t = 0.5 + f64::from(i) * 0.1;
                messages.push(crop(1, t, seen.clone()));
                messages.push(crop_in(visible(2), t, other.clone(), shifted(dx)));
            }
            messages.push(fuse_further(2, 7));
            messages.push(crop(2, 1.2, other.clone()));
            // Visible 2 ends; thermal 7 is still fused with visible 1.
            messages.push(end(2, 1.5));
            messages.push(crop_of(thermal(7), 2.0, warm.clone()));
            stage(messages).0
        };
        let events = run(5.0);
        let ids = last_identities(&events);
        assert_eq!((ids[&1], ids[&2]), (1, 1), "{events:#?}");
        let later = events
            .iter()
            .rfind(|e| e.track_id == 2 && e.modality == Modality::Visible && e.kind == EventKind::Update)
            .expect("visible 2's later match");
        assert_eq!(later.partner_track_id, Some(7), "{events:#?}");
        let merge = events
            .iter()
            .find(|e| e.track_id == 2 && !e.merged_from.is_empty())
            .expect("visible 2's own identity merges into the thermal track's");
        // (Identity 2 was the thermal track's own, merged into 1 when it fused.)
        assert_eq!((merge.previous_identity, merge.identity), (Some(3), Some(1)));
        let last_thermal = events
            .iter()
            .rfind(|e| e.modality == Modality::Thermal)
            .expect("thermal events");
        assert_eq!(
            (last_thermal.identity, last_thermal.partner_track_id),
            (Some(1), Some(1)),
            "the thermal track keeps its first partner"
        );
        // Boxed apart from visible 1 in one frame, visible 2 is someone else: the fusion changes
        // nothing, and visible 2 stays unfused.
        let events = run(100.0);
        let ids = last_identities(&events);
        assert_eq!((ids[&1], ids[&2]), (1, 3));
        let later = events
            .iter()
            .rfind(|e| e.track_id == 2 && e.modality == Modality::Visible && e.kind == EventKind::Update)
            .expect("visible 2's later match");
        assert_eq!(later.partner_track_id, None, "{events:#?}");
    }

    #[test]
    fn fused_tracks_hand_on_their_partners_when_one_ends() {
        let (seen, warm) = (unit([1.0, 0.0, 0.0, 0.0]), unit([0.0, 1.0, 0.0, 0.0]));
        let mut messages: Vec<ToIdentity> = (1..=3).map(|i| crop(1, f64::from(i) * 0.1, seen.clone())).collect();
        messages.extend((1..=3).map(|i| crop_of(thermal(7), 0.05 + f64::from(i) * 0.1, warm.clone())));
        messages.push(fuse(1, 7));
        messages.extend((1..=3).map(|i| crop(3, 0.5 + f64::from(i) * 0.1, seen.clone())));
        messages.push(fuse_further(3, 7));
        // The first partner ends: the further one (3) becomes thermal 7's partner.
        messages.push(end(1, 1.0));
        messages.push(crop_of(thermal(7), 2.0, warm.clone()));
        // The thermal track ends: visible 3 is fused with no one.
        messages.push(ToIdentity::Note(TrackNote::End {
            key: thermal(7),
            pts_s: 2.5,
            arrived: Instant::now(),
        }));
        messages.push(crop(3, 3.0, seen.clone()));
        let (events, _) = stage(messages);
        let last = |modality| {
            events
                .iter()
                .rfind(|e| e.modality == modality && e.kind == EventKind::Update)
                .expect("an update")
        };
        assert_eq!(last(Modality::Thermal).partner_track_id, Some(3), "{events:#?}");
        let visible = last(Modality::Visible);
        assert_eq!((visible.track_id, visible.partner_track_id), (3, None), "{events:#?}");
        assert_eq!(visible.identity, Some(1), "it keeps the person's identity");
    }

    #[test]
    fn a_fragment_of_a_known_person_takes_in_the_thermal_tracks_provisional_identity() {
        let (p, r, warm) = (
            unit([1.0, 0.0, 0.0, 0.0]),
            unit([0.0, 0.0, 1.0, 0.0]),
            unit([0.0, 1.0, 0.0, 0.0]),
        );
        // Visible 1 makes identity 1 and ends: a known person.
        let mut messages: Vec<ToIdentity> = (1..=3).map(|i| crop(1, f64::from(i) * 0.1, p.clone())).collect();
        messages.push(end(1, 0.5));
        // Thermal 7 (identity 2) fuses with visible 3 (identity 3, merged into 2: both provisional).
        messages.extend((1..=3).map(|i| crop_of(thermal(7), 1.0 + f64::from(i) * 0.1, warm.clone())));
        messages.extend((1..=3).map(|i| crop(3, 1.05 + f64::from(i) * 0.1, r.clone())));
        messages.push(fuse(3, 7));
        // Visible 2 looks like person 1 and joins 1; then it fuses with 7 as a fragment.
        messages.extend((1..=3).map(|i| crop(2, 2.0 + f64::from(i) * 0.1, p.clone())));
        messages.push(fuse_further(2, 7));
        let (events, index) = stage(messages);
        let last: HashMap<(bool, u64), u64> = events
            .iter()
            .filter_map(|e| Some(((e.modality == Modality::Thermal, e.track_id), e.identity?)))
            .collect();
        assert_eq!(
            (last[&(false, 2)], last[&(false, 3)], last[&(true, 7)]),
            (1, 1, 1),
            "{events:#?}"
        );
        assert_eq!(index.identities().keys().copied().collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn where_only_fused_tracks_start_identities_an_unfused_track_joins_one_or_waits() {
        let site = SITE.replace("name = \"gate\"\n", "name = \"gate\"\nnew_identities = \"fused\"\n");
        let (p, warm, q) = (
            unit([1.0, 0.0, 0.0, 0.0]),
            unit([0.0, 1.0, 0.0, 0.0]),
            unit([0.0, 0.0, 1.0, 0.0]),
        );
        // Visible track 1 alone (a shadow, say): no identity, though the index is empty.
        let mut messages: Vec<ToIdentity> = (1..=3).map(|i| crop(1, f64::from(i) * 0.1, q.clone())).collect();
        messages.push(end(1, 0.5));
        // Visible 2 and thermal 7 fuse: the person's identity 1 starts at the fusion, for both
        // (no crop of either follows). Visible 4, unfused, looks like them: it waits, then joins
        // at its next match.
        messages.extend((1..=3).map(|i| crop(2, 1.0 + f64::from(i) * 0.1, p.clone())));
        messages.extend((1..=3).map(|i| crop(4, 1.0 + f64::from(i) * 0.1, p.clone())));
        messages.extend((1..=3).map(|i| crop_of(thermal(7), 1.05 + f64::from(i) * 0.1, warm.clone())));
        messages.push(fuse(2, 7));
        messages.push(crop(4, 2.6, p.clone()));
        messages.push(end(2, 3.0));
        // Unfused visible 3 looks like them and joins 1; unfused thermal 8 is nobody known.
        messages.extend((1..=3).map(|i| crop(3, 5.0 + f64::from(i) * 0.1, p.clone())));
        messages.extend((1..=3).map(|i| crop_of(thermal(8), 5.05 + f64::from(i) * 0.1, q.clone())));
        let (events, index) = stage_at(&site, messages);
        let ids = last_identities(&events);
        assert!(
            !ids.contains_key(&1),
            "the unfused first track has no identity: {events:#?}"
        );
        assert_eq!((ids.get(&2), ids.get(&7)), (Some(&1), Some(&1)), "{events:#?}");
        let first = |track| events.iter().position(|e| e.track_id == track && e.identity.is_some());
        assert!(first(2) < first(4), "visible 4 waited for the person's identity");
        assert_eq!(ids.get(&4), Some(&1));
        assert_eq!(ids.get(&3), Some(&1), "an unfused track joins a known identity");
        assert!(!ids.contains_key(&8), "an unfused stranger waits: {events:#?}");
        assert_eq!(index.identities().keys().copied().collect::<Vec<_>>(), [1]);
        // Where any track starts identities (the default), the first track made one.
        let (events, _) = stage((1..=3).map(|i| crop(1, f64::from(i) * 0.1, q.clone())).collect());
        assert_eq!(last_identities(&events).get(&1), Some(&1));
    }

    #[test]
    fn a_merge_moves_live_tracks_to_the_canonical_identity() {
        let key = |track| TrackKey {
            camera: 0,
            modality: Modality::Visible,
            track,
        };
        let mut tracks: HashMap<TrackKey, TrackState> = HashMap::new();
        for (track, identity) in [(1, Some(9)), (2, Some(4)), (3, Some(7)), (4, None)] {
            tracks.insert(
                key(track),
                TrackState {
                    identity,
                    ..TrackState::default()
                },
            );
        }
        let labels: Labels = Arc::default();
        let event = |kind, k: TrackKey, s: &TrackState| Event {
            identity: s.identity,
            ..Event::of_track(kind, 0.0, "gate".into(), k.modality, k.track)
        };
        let merged = Merged {
            canonical: 4,
            merged_from: vec![7, 9],
        };
        let out = relabel(&mut tracks, &merged, &labels, &event);
        let mut moved: Vec<(u64, Option<u64>, Option<u64>)> = out
            .iter()
            .map(|(e, _)| (e.track_id, e.previous_identity, e.identity))
            .collect();
        moved.sort_unstable();
        assert_eq!(moved, [(1, Some(9), Some(4)), (3, Some(7), Some(4))]);
        assert!(out.iter().all(|(e, _)| e.identity_changed && e.merged_from == [7, 9]));
        assert_eq!(tracks[&key(1)].identity, Some(4));
        assert_eq!(
            tracks[&key(2)].identity,
            Some(4),
            "the canonical identity's own track stays"
        );
        assert_eq!(tracks[&key(4)].identity, None);
        let l = labels.lock().unwrap();
        assert_eq!(
            (l.get(&key(1)), l.get(&key(3)), l.get(&key(2))),
            (Some(&4), Some(&4), None)
        );
    }
}
