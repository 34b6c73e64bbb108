//! SORT tracker: one per stream. Tracks are born unconfirmed, confirmed after `min_hits` matched
//! frames, and end after `max_age` frames without a match. Ids count up from 1 and are never
//! reused.

use super::assign::assign;
use super::kalman::BoxFilter;
use crate::detect::{BBox, Detection};
use reid_core::config::site::Tracker as TrackerConfig;

struct Track {
    id: u64,
    filter: BoxFilter,
    hits: u32,
    missed: u32,
    confirmed: bool,
}

/// What the tracker says about one track after a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackUpdate {
    pub id: u64,
    /// The matched detection's index in this frame's input, or `None` if it went unmatched.
    pub detection: Option<usize>,
    /// The detection's box when matched, else the filter's prediction.
    pub bbox: BBox,
    /// True from the frame the track reaches `min_hits` on.
    pub confirmed: bool,
    /// True on the frame the track first becomes confirmed.
    pub born: bool,
}

/// A per-stream multi-object tracker.
pub struct Tracker {
    cfg: TrackerConfig,
    tracks: Vec<Track>,
    next_id: u64,
}

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Self {
        Self {
            cfg,
            tracks: Vec::new(),
            next_id: 1,
        }
    }

    /// Advances one frame with its detections. Returns the state of every live track, and the
    /// ids of confirmed tracks that ended on this frame.
    pub fn update(&mut self, detections: &[Detection]) -> (Vec<TrackUpdate>, Vec<u64>) {
        let predicted: Vec<BBox> = self.tracks.iter_mut().map(|t| t.filter.predict()).collect();
        let (nd, nt) = (detections.len(), self.tracks.len());
        let cost: Vec<f64> = detections
            .iter()
            .flat_map(|d| predicted.iter().map(move |p| 1.0 - f64::from(d.bbox.iou(p))))
            .collect();
        let mut track_of_det = assign(&cost, nd, nt);
        for (d, t) in track_of_det.iter_mut().enumerate() {
            if t.is_some_and(|t| detections[d].bbox.iou(&predicted[t]) < self.cfg.iou_threshold) {
                *t = None;
            }
        }
        let mut det_of_track = vec![None; nt];
        for (d, t) in track_of_det.iter().enumerate() {
            if let Some(t) = t {
                det_of_track[*t] = Some(d);
            }
        }
        let mut updates = Vec::with_capacity(nt + nd);
        for (t, track) in self.tracks.iter_mut().enumerate() {
            let mut born = false;
            let bbox = match det_of_track[t] {
                Some(d) => {
                    track.filter.update(&detections[d].bbox);
                    track.hits += 1;
                    track.missed = 0;
                    if !track.confirmed && track.hits >= self.cfg.min_hits {
                        track.confirmed = true;
                        born = true;
                    }
                    detections[d].bbox
                }
                None => {
                    track.missed += 1;
                    predicted[t]
                }
            };
            updates.push(TrackUpdate {
                id: track.id,
                detection: det_of_track[t],
                bbox,
                confirmed: track.confirmed,
                born,
            });
        }
        for (d, det) in detections.iter().enumerate() {
            if track_of_det[d].is_none() {
                let confirmed = self.cfg.min_hits <= 1;
                self.tracks.push(Track {
                    id: self.next_id,
                    filter: BoxFilter::new(&det.bbox),
                    hits: 1,
                    missed: 0,
                    confirmed,
                });
                updates.push(TrackUpdate {
                    id: self.next_id,
                    detection: Some(d),
                    bbox: det.bbox,
                    confirmed,
                    born: confirmed,
                });
                self.next_id += 1;
            }
        }
        let max_age = self.cfg.max_age;
        let mut ended = Vec::new();
        self.tracks.retain(|t| {
            let keep = t.missed <= max_age;
            if !keep && t.confirmed {
                ended.push(t.id);
            }
            keep
        });
        updates.retain(|u| !ended.contains(&u.id));
        (updates, ended)
    }

    /// Ends every track (end of stream); returns the confirmed ones' ids.
    pub fn finish(&mut self) -> Vec<u64> {
        self.tracks.drain(..).filter(|t| t.confirmed).map(|t| t.id).collect()
    }

    /// Live tracks (confirmed or not).
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }
}
