//! What the operator's view shows, kept up to date by the pipeline: each camera pair's latest
//! annotated frame (JPEG), the identities seen (first and last sighting, cameras, modalities,
//! tracks alive, recent sightings, a few exemplar thumbnails) and the latest events. The stages
//! write into it (events from the output stage, frames from the video stage, thumbnails from the
//! disk writer); the HTTP server reads it. Everything is bounded: events, sightings and thumbnails
//! per identity are capped, and identities not seen for `index.expiry_s` are forgotten, as the
//! index forgets them.

use super::events::{Event, EventKind};
use crate::base::Modality;
use axum::body::Bytes;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;

/// Events kept for `/api/events` and the page.
pub const EVENTS_KEPT: usize = 1000;
/// Sightings kept per identity.
pub const SIGHTINGS_KEPT: usize = 200;
/// Exemplar thumbnails kept per identity.
pub const THUMBNAILS_KEPT: usize = 6;
/// Seconds between two thumbnails of one identity.
const THUMBNAIL_SPACING_S: f64 = 2.0;

/// A camera pair's latest annotated frame.
#[derive(Clone)]
pub struct LatestFrame {
    pub jpeg: Bytes,
    /// Unix time it was drawn.
    pub time: f64,
    pub width: u32,
    pub height: u32,
}

/// One match (or the end) of a track of an identity.
#[derive(Debug, Clone, Serialize)]
pub struct Sighting {
    pub time: f64,
    pub camera: String,
    pub modality: Modality,
    pub track_id: u64,
    #[serde(rename = "type")]
    pub kind: EventKind,
    #[serde(rename = "box")]
    pub bbox: Option<[f32; 4]>,
    pub distance: Option<f32>,
    pub cross_modal: bool,
}

/// An exemplar thumbnail of an identity.
#[derive(Clone)]
pub struct Thumbnail {
    pub time: f64,
    pub camera: String,
    pub modality: Modality,
    pub jpeg: Bytes,
}

/// What is known of one identity.
#[derive(Clone, Default)]
pub struct IdentityRecord {
    pub first_seen: f64,
    pub last_seen: f64,
    pub cameras: BTreeSet<String>,
    /// `"visible"`, `"thermal"`.
    pub modalities: BTreeSet<&'static str>,
    /// Matched across modalities at least once (or fused from a visible and a thermal track).
    pub cross_modal: bool,
    /// Tracks that carry this identity now: (camera, modality, track id).
    pub live_tracks: BTreeSet<(String, &'static str, u64)>,
    /// Times a track took this identity (a track that leaves and comes back counts twice).
    pub tracks_seen: usize,
    /// The latest sightings, oldest first.
    pub sightings: VecDeque<Sighting>,
    pub thumbnails: Vec<Thumbnail>,
    /// When the last thumbnail was asked for (wall clock).
    thumbnail_asked: Option<f64>,
}

impl IdentityRecord {
    /// A track of the identity is alive.
    pub fn present(&self) -> bool {
        !self.live_tracks.is_empty()
    }

    /// A copy with no sightings (the bulk of a record).
    fn clone_without_sightings(&self) -> Self {
        Self {
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            cameras: self.cameras.clone(),
            modalities: self.modalities.clone(),
            cross_modal: self.cross_modal,
            live_tracks: self.live_tracks.clone(),
            tracks_seen: self.tracks_seen,
            sightings: VecDeque::new(),
            thumbnails: self.thumbnails.clone(),
            thumbnail_asked: self.thumbnail_asked,
        }
    }
}

#[derive(Default)]
struct State {
    identities: BTreeMap<u64, IdentityRecord>,
    /// The latest events, oldest first.
    events: VecDeque<Event>,
    /// The identity each live track carries: (camera, modality, track) → identity.
    tracks: BTreeMap<(String, &'static str, u64), u64>,
    last_pruned: f64,
}

/// The operator's view of a run.
pub struct Board {
    cameras: Vec<String>,
    /// Identities not seen for this long are forgotten (`index.expiry_s`).
    expiry_s: f64,
    /// The device the embedder runs on, as shown in `/api/stats`.
    pub device: String,
    /// Unix time the run started.
    pub started: f64,
    state: Mutex<State>,
    frames: Vec<Mutex<Option<LatestFrame>>>,
}

impl Board {
    pub fn new(cameras: Vec<String>, expiry_s: f64, device: String, started: f64) -> Self {
        let frames = cameras.iter().map(|_| Mutex::new(None)).collect();
        Self {
            cameras,
            expiry_s,
            device,
            started,
            state: Mutex::default(),
            frames,
        }
    }

    /// The camera pairs' names, in site-file order.
    pub fn cameras(&self) -> &[String] {
        &self.cameras
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one event: kept among the latest, and applied to its identity.
    pub fn record(&self, event: &Event) {
        let mut s = self.state();
        if s.events.len() == EVENTS_KEPT {
            s.events.pop_front();
        }
        s.events.push_back(event.clone());
        let track = (event.camera.clone(), event.modality.as_str(), event.track_id);
        // The track leaves the identity it carried before (a switch, or its end).
        let before = s.tracks.get(&track).copied();
        if let Some(old) = before
            && (event.kind == EventKind::End || event.identity != Some(old))
        {
            s.tracks.remove(&track);
            if let Some(r) = s.identities.get_mut(&old) {
                r.live_tracks.remove(&track);
            }
        }
        if let Some(id) = event.identity {
            let r = s.identities.entry(id).or_default();
            if r.first_seen == 0.0 {
                r.first_seen = event.time;
            }
            r.last_seen = r.last_seen.max(event.time);
            r.cameras.insert(event.camera.clone());
            r.modalities.insert(event.modality.as_str());
            r.cross_modal |= event.cross_modal || r.modalities.len() == 2;
            if before != Some(id) {
                r.tracks_seen += 1;
            }
            if r.sightings.len() == SIGHTINGS_KEPT {
                r.sightings.pop_front();
            }
            r.sightings.push_back(Sighting {
                time: event.time,
                camera: event.camera.clone(),
                modality: event.modality,
                track_id: event.track_id,
                kind: event.kind,
                bbox: event.bbox,
                distance: event.distance,
                cross_modal: event.cross_modal,
            });
            if event.kind != EventKind::End {
                r.live_tracks.insert(track.clone());
                s.tracks.insert(track, id);
            }
        }
        if event.time - s.last_pruned >= 1.0 {
            s.last_pruned = event.time;
            let horizon = event.time - self.expiry_s;
            s.identities.retain(|_, r| r.present() || r.last_seen >= horizon);
        }
    }

    /// Whether the identity stage should have a thumbnail of `identity` made now (the identity
    /// has fewer than [`THUMBNAILS_KEPT`] and none was asked for in the last two seconds). Asking
    /// counts as the request.
    pub fn wants_thumbnail(&self, identity: u64, now: f64) -> bool {
        let mut s = self.state();
        let r = s.identities.entry(identity).or_default();
        let due =
            r.thumbnails.len() < THUMBNAILS_KEPT && r.thumbnail_asked.is_none_or(|t| now - t >= THUMBNAIL_SPACING_S);
        if due {
            r.thumbnail_asked = Some(now);
        }
        due
    }

    /// Adds an exemplar thumbnail (from the disk writer).
    pub fn add_thumbnail(&self, identity: u64, thumbnail: Thumbnail) {
        let mut s = self.state();
        let r = s.identities.entry(identity).or_default();
        if r.thumbnails.len() < THUMBNAILS_KEPT {
            r.thumbnails.push(thumbnail);
        }
    }

    /// Replaces camera pair `camera`'s latest frame.
    pub fn set_frame(&self, camera: usize, frame: LatestFrame) {
        if let Some(slot) = self.frames.get(camera) {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(frame);
        }
    }

    /// Camera pair `camera`'s latest frame, if one was drawn.
    pub fn frame(&self, camera: usize) -> Option<LatestFrame> {
        self.frames
            .get(camera)?
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The identities, most recently seen first, at most `limit`, only those `present` (or not)
    /// when given; without their sightings (see [`Board::identity`]). Only the identities returned
    /// are copied, so the stages wait little for the lock.
    pub fn identities(&self, limit: usize, present: Option<bool>) -> Vec<(u64, IdentityRecord)> {
        let s = self.state();
        let mut order: Vec<(f64, u64)> = s
            .identities
            .iter()
            .filter(|(_, r)| r.last_seen > 0.0 && present.is_none_or(|p| r.present() == p))
            .map(|(id, r)| (r.last_seen, *id))
            .collect();
        order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        order
            .into_iter()
            .take(limit)
            .map(|(_, id)| (id, s.identities[&id].clone_without_sightings()))
            .collect()
    }

    /// Identities known, and those present now.
    pub fn counts(&self) -> (usize, usize) {
        let s = self.state();
        let known = s.identities.values().filter(|r| r.last_seen > 0.0);
        let present = known.clone().filter(|r| r.present()).count();
        (known.count(), present)
    }

    /// One identity.
    pub fn identity(&self, id: u64) -> Option<IdentityRecord> {
        self.state().identities.get(&id).filter(|r| r.last_seen > 0.0).cloned()
    }

    /// Identities with a live track, and live tracks, per camera pair.
    pub fn present(&self) -> BTreeMap<String, (usize, usize)> {
        let s = self.state();
        let mut out: BTreeMap<String, (BTreeSet<u64>, usize)> =
            self.cameras.iter().map(|c| (c.clone(), (BTreeSet::new(), 0))).collect();
        for ((camera, _, _), id) in &s.tracks {
            if let Some((ids, tracks)) = out.get_mut(camera) {
                ids.insert(*id);
                *tracks += 1;
            }
        }
        out.into_iter()
            .map(|(c, (ids, tracks))| (c, (ids.len(), tracks)))
            .collect()
    }

    /// Identities with a live track anywhere.
    pub fn identities_present(&self) -> usize {
        self.state().tracks.values().collect::<BTreeSet<_>>().len()
    }

    /// The latest events matching `filter`, newest first, at most `limit`.
    pub fn events(&self, filter: &EventFilter, limit: usize) -> Vec<Event> {
        let s = self.state();
        s.events
            .iter()
            .rev()
            .filter(|e| filter.after.is_none_or(|t| e.time > t))
            .filter(|e| filter.camera.as_ref().is_none_or(|c| &e.camera == c))
            .filter(|e| filter.identity.is_none_or(|id| e.identity == Some(id)))
            .take(limit)
            .cloned()
            .collect()
    }
}

/// Which events `/api/events` returns.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    /// Only events later than this Unix time.
    pub after: Option<f64>,
    pub camera: Option<String>,
    pub identity: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, time: f64, modality: Modality, track: u64, identity: Option<u64>) -> Event {
        Event {
            identity,
            ..Event::of_track(kind, time, "gate".into(), modality, track)
        }
    }

    #[test]
    fn identities_follow_their_tracks() {
        let b = Board::new(vec!["gate".into()], 100.0, "cpu".into(), 0.0);
        b.record(&event(EventKind::New, 1.0, Modality::Visible, 1, None));
        b.record(&event(EventKind::Update, 2.0, Modality::Visible, 1, Some(7)));
        b.record(&event(EventKind::Update, 3.0, Modality::Thermal, 4, Some(7)));
        let r = b.identity(7).expect("identity 7");
        assert_eq!((r.first_seen, r.last_seen), (2.0, 3.0));
        assert!(r.cross_modal && r.present());
        assert_eq!(r.live_tracks.len(), 2);
        assert_eq!(b.present()["gate"], (1, 2));
        assert_eq!(b.identities_present(), 1);
        // The thermal track switches to identity 9: it leaves 7.
        b.record(&event(EventKind::Update, 4.0, Modality::Thermal, 4, Some(9)));
        assert_eq!(b.identity(7).expect("7").live_tracks.len(), 1);
        b.record(&event(EventKind::End, 5.0, Modality::Visible, 1, Some(7)));
        assert!(!b.identity(7).expect("7").present());
        assert_eq!(
            b.identities(10, None).iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            [7, 9]
        );
        assert_eq!(
            b.identities(10, Some(true))
                .iter()
                .map(|(id, _)| *id)
                .collect::<Vec<_>>(),
            [9]
        );
        assert!(
            b.identities(10, None)[0].1.sightings.is_empty(),
            "lists carry no sightings"
        );
        assert_eq!(b.counts(), (2, 1));
        // Not seen for longer than the expiry and no live track: forgotten.
        b.record(&event(EventKind::End, 200.0, Modality::Thermal, 4, Some(9)));
        assert!(b.identity(7).is_none());
        assert!(b.identity(9).is_some());
        let filter = EventFilter {
            identity: Some(7),
            ..EventFilter::default()
        };
        assert_eq!(b.events(&filter, 10).len(), 3, "events of identity 7, newest first");
        let filter = EventFilter {
            after: Some(3.5),
            ..EventFilter::default()
        };
        assert_eq!(
            b.events(&filter, 10).iter().map(|e| e.time).collect::<Vec<_>>(),
            [200.0, 5.0, 4.0]
        );
    }

    #[test]
    fn thumbnails_are_spaced_and_capped() {
        let b = Board::new(vec!["gate".into()], 100.0, "cpu".into(), 0.0);
        assert!(b.wants_thumbnail(3, 10.0));
        assert!(!b.wants_thumbnail(3, 11.0), "two seconds apart");
        let mut asked = 1;
        for t in 0..40 {
            if b.wants_thumbnail(3, 12.0 + t as f64) {
                asked += 1;
                b.add_thumbnail(
                    3,
                    Thumbnail {
                        time: 0.0,
                        camera: "gate".into(),
                        modality: Modality::Visible,
                        jpeg: Bytes::new(),
                    },
                );
            }
        }
        assert_eq!(asked, THUMBNAILS_KEPT + 1);
        assert_eq!(b.state().identities[&3].thumbnails.len(), THUMBNAILS_KEPT);
    }
}
