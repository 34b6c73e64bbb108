//! The identity stage: keeps each track's quality-weighted embedding mean and matches it against
//! the cross-modal identity index once per `tracker.embed_interval_ms` of stream time (the first
//! time as soon as three crops are in), turning track notes and matches into events. A track
//! keeps its identity while it lives (see [`IdentityIndex::assign_track`]); a visible and a
//! thermal track fused by the tracking stage share one identity, the older of theirs. It expires
//! identities, and hands a frozen copy of the index to the disk writer ([`super::writer`]) every
//! `index.snapshot_interval_s` and at the end; thumbnails go to the writer too.

use super::board::Board;
use super::events::{Event, EventKind, unix_now as now};
use super::metrics::Metrics;
use super::types::{Pixels, ToIdentity, TrackKey, TrackNote};
use super::writer::{DiskWriter, Exemplar, ThumbnailJob, Written};
use crate::cluster::{Merged, Node};
use crate::config::SiteConfig;
use crate::detect::BBox;
use crate::index::identities::{Decision, IdentityIndex};
use crate::index::snapshot;
use crate::track::EmbeddingMean;
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Identities of live tracks, for the annotated video.
pub type Labels = Arc<Mutex<HashMap<TrackKey, u64>>>;

/// Crops averaged before a new track's first match.
const FIRST_MATCH_CROPS: usize = 3;

#[derive(Default)]
struct TrackState {
    mean: EmbeddingMean,
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
    let mut tracks: HashMap<TrackKey, TrackState> = HashMap::new();
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
    // `hint`: the fused partner's identity, for a track that has none yet.
    let matched = |index: &mut IdentityIndex,
                   cluster: Option<&Node>,
                   key: TrackKey,
                   state: &mut TrackState,
                   hint: Option<u64>|
     -> Option<(Event, Instant)> {
        let (vector, count) = state.mean.take()?;
        let camera = &cfg.cameras[key.camera].name;
        let time = now();
        // A fused track's identity is settled by the fusion: its embeddings extend it.
        let assigned = match (state.partner, state.identity.or(hint)) {
            (Some(_), Some(id)) => match index.extend(id, &vector, key.modality, camera, time) {
                Ok(true) => Ok(Decision {
                    identity: id,
                    created: false,
                    distance: None,
                    cross_modal: false,
                    also: Vec::new(),
                }),
                Ok(false) => index.assign_track(&vector, key.modality, camera, time, Some(id)),
                Err(e) => Err(e),
            },
            (_, current) => index.assign_track(&vector, key.modality, camera, time, current),
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
                    (Ok(item), Some(node)) => Step::Cluster(node.apply(&mut index, item)),
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
                let hint = partner_identity(&tracks, key);
                let state = tracks.entry(key).or_default();
                state.mean.add(&vector, quality);
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
                    matched(&mut index, cluster.as_ref(), key, state, hint)
                        .into_iter()
                        .collect()
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
                let hint = partner_identity(&tracks, key);
                let mut state = tracks.remove(&key).unwrap_or_default();
                let mut out: Vec<_> = matched(&mut index, cluster.as_ref(), key, &mut state, hint)
                    .into_iter()
                    .collect();
                if let Some(p) = state.partner.and_then(|p| tracks.get_mut(&p)) {
                    p.partner = None;
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
                arrived,
            })) => {
                tracks.entry(visible).or_default().partner = Some(thermal);
                tracks.entry(thermal).or_default().partner = Some(visible);
                let ids = (tracks[&visible].identity, tracks[&thermal].identity);
                // The older identity (smaller id) wins; the other track switches to it.
                let (winner, switching) = match ids {
                    (Some(v), Some(t)) if v == t => (None, None),
                    (Some(v), Some(t)) => (Some(v.min(t)), Some(if v < t { thermal } else { visible })),
                    (Some(v), None) => (Some(v), Some(thermal)),
                    (None, Some(t)) => (Some(t), Some(visible)),
                    (None, None) => (None, None),
                };
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
                        vec![(e, arrived)]
                    }
                    _ => Vec::new(),
                }
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
            index.expire(now());
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

fn partner_identity(tracks: &HashMap<TrackKey, TrackState>, key: TrackKey) -> Option<u64> {
    let partner = tracks.get(&key)?.partner?;
    tracks.get(&partner)?.identity
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::Modality;

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
