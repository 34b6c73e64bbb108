//! The tracking stage: takes detections in frame order from the detection pool, runs one SORT
//! tracker per stream, and hands the embedder a crop of every confirmed, matched track, with
//! the tracks' birth and end notes in between.

use super::metrics::Metrics;
use super::types::{CropJob, Pixels, PixelsError, ToEmbed, TrackKey, TrackNote};
use super::video::{Annotated, VideoFrame};
use crate::base::{Image, Modality, PixelFormat, StreamId};
use crate::config::SiteConfig;
use crate::detect::pool::Done;
use crate::detect::thermal::to_u8;
use crate::detect::{BBox, Detection};
use crate::track::{Tracker, crop_quality};
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

/// What travels with each frame through the detection pool.
#[derive(Debug, Clone, Copy)]
pub struct Tag {
    pub camera: usize,
    /// Whether the other half of the pair follows right behind (visible first).
    pub paired: bool,
    pub arrived: Instant,
}

/// °C range shown in 8-bit renderings of calibrated 16-bit thermal frames.
const CELSIUS_RANGE: (f64, f64) = (10.0, 40.0);

/// Paired frames in which a visible and a thermal track must overlap before they are fused.
const FUSE_FRAMES: u32 = 5;

/// Two boxes of one frame that overlap less than this (IoU) are two people.
pub(super) const APART_IOU: f32 = 0.1;

/// Confirmed track boxes of one frame: camera pair, boxes, frame size.
type FrameBoxes = (usize, Vec<(TrackKey, BBox)>, (u32, u32));

/// Votes for fusing the visible and thermal tracks of each camera pair.
///
/// A thermal track fuses first with one visible track (its *first partner*; a harvest takes only
/// such pairs). While that partner lives, other visible tracks that overlap the thermal track
/// more than any other thermal box, for as many frames, fuse with it too as *further* partners,
/// unless they were ever boxed apart from one of its partners in a frame (IoU below
/// [`APART_IOU`]: another person beside them, refused for good): the fragments a visible detector makes of one person (a motion detector's trail, a
/// track cut short and restarted) while the thermal track goes on. When the first partner ends,
/// the further partner with the smallest track id (the oldest) takes its place. A visible track
/// fuses with one thermal track.
#[derive(Default)]
struct Fusion {
    /// The last paired visible frame's confirmed boxes.
    visible: Option<FrameBoxes>,
    votes: HashMap<(TrackKey, TrackKey), u32>,
    /// Each fused visible track's thermal track.
    thermal_of: HashMap<TrackKey, TrackKey>,
    /// Each fused thermal track's first partner while it lives.
    first_partner: HashMap<TrackKey, TrackKey>,
    /// (visible, thermal) pairs refused as further partners: seen beside a partner.
    refused: std::collections::HashSet<(TrackKey, TrackKey)>,
}

/// A fusion the tracking stage decided: (visible, thermal, further).
type Fused = (TrackKey, TrackKey, bool);

impl Fusion {
    /// Counts the overlaps of a paired thermal frame with the visible frame before it; returns
    /// the pairs that just reached [`FUSE_FRAMES`], each marked further or not.
    fn thermal(&mut self, camera: usize, boxes: &[(TrackKey, BBox)], size: (u32, u32), iou: f32) -> Vec<Fused> {
        let Some((c, visible, vsize)) = self.visible.take() else {
            return Vec::new();
        };
        if c != camera || iou <= 0.0 {
            return Vec::new();
        }
        let (sx, sy) = (vsize.0 as f32 / size.0 as f32, vsize.1 as f32 / size.1 as f32);
        let scaled: Vec<(TrackKey, BBox)> = boxes
            .iter()
            .map(|(t, b)| (*t, BBox::new(b.x * sx, b.y * sy, b.w * sx, b.h * sy)))
            .collect();
        // Each visible box's most overlapping thermal box.
        let best: HashMap<TrackKey, TrackKey> = visible
            .iter()
            .filter_map(|(v, vb)| {
                scaled
                    .iter()
                    .map(|(t, tb)| (*t, vb.iou(tb)))
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(t, _)| (*v, t))
            })
            .collect();
        let mut out = Vec::new();
        for (t, tb) in &scaled {
            for (v, vb) in &visible {
                if vb.iou(tb) < iou || self.thermal_of.contains_key(v) || self.refused.contains(&(*v, *t)) {
                    continue;
                }
                // A further partner: only where the thermal box is its best, and never once beside
                // one of the thermal track's partners.
                let first = self.first_partner.get(t).copied();
                if first.is_some() {
                    let beside = visible
                        .iter()
                        .any(|(k, kb)| self.thermal_of.get(k) == Some(t) && kb.iou(vb) < APART_IOU);
                    if beside {
                        self.refused.insert((*v, *t));
                        self.votes.remove(&(*v, *t));
                        continue;
                    }
                    if best.get(v) != Some(t) {
                        continue;
                    }
                }
                let n = self.votes.entry((*v, *t)).or_default();
                *n += 1;
                if *n >= FUSE_FRAMES {
                    self.thermal_of.insert(*v, *t);
                    if first.is_none() {
                        self.first_partner.insert(*t, *v);
                    }
                    // Overlaps counted before count no more: a later fusion needs its own.
                    self.votes.retain(|(a, b), _| a != v && (b != t || first.is_some()));
                    out.push((*v, *t, first.is_some()));
                }
            }
        }
        out
    }

    /// Forgets an ended track. A thermal track whose first partner ended takes its oldest further
    /// partner as the first, or, without one, may fuse first again: with the next track of the
    /// same person in the other view (a visible track cut short by an occlusion, say, while the
    /// thermal one went on), which then takes the person's identity. The visible partners of an
    /// ended thermal track may fuse again.
    fn end(&mut self, key: &TrackKey) {
        if let Some(t) = self.thermal_of.remove(key)
            && self.first_partner.get(&t) == Some(key)
        {
            match oldest_partner(&self.thermal_of, t) {
                Some(next) => self.first_partner.insert(t, next),
                None => self.first_partner.remove(&t),
            };
        }
        self.first_partner.remove(key);
        self.thermal_of.retain(|_, t| t != key);
        self.votes.retain(|(v, t), _| v != key && t != key);
        self.refused.retain(|(v, t)| v != key && t != key);
    }
}

/// The live visible partner of thermal track `thermal` with the smallest track id, among
/// `partners` (each visible track's thermal track).
pub(super) fn oldest_partner<'a>(
    partners: impl IntoIterator<Item = (&'a TrackKey, &'a TrackKey)>,
    thermal: TrackKey,
) -> Option<TrackKey> {
    partners
        .into_iter()
        .filter(|(_, t)| **t == thermal)
        .map(|(v, _)| *v)
        .min_by_key(|v| v.track)
}

/// The stage's metrics, looked up once: no label is formatted and no lock taken per frame.
struct StageCounters {
    streams: HashMap<StreamId, StreamCounters>,
    /// Per camera pair.
    active_tracks: Vec<Arc<AtomicI64>>,
    detect_failed: Arc<AtomicU64>,
    video_dropped: Arc<AtomicU64>,
}

struct StreamCounters {
    processed: Arc<AtomicU64>,
    detections: Arc<AtomicU64>,
}

impl StageCounters {
    fn new(cfg: &SiteConfig, metrics: &Metrics) -> Self {
        let mut streams = HashMap::new();
        for (i, cam) in cfg.cameras.iter().enumerate() {
            for modality in [Modality::Visible, Modality::Thermal] {
                let labels = [("camera", cam.name.as_str()), ("modality", modality.as_str())];
                streams.insert(
                    StreamId::new(i, modality),
                    StreamCounters {
                        processed: metrics.counter("reid_frames_processed_total", &labels),
                        detections: metrics.counter("reid_detections_total", &labels),
                    },
                );
            }
        }
        StageCounters {
            streams,
            active_tracks: cfg
                .cameras
                .iter()
                .map(|c| metrics.gauge("reid_active_tracks", &[("camera", &c.name)]))
                .collect(),
            detect_failed: metrics.counter("reid_dropped_total", &[("stage", "detect"), ("reason", "failed")]),
            video_dropped: metrics.counter("reid_dropped_total", &[("stage", "video"), ("reason", "queue_full")]),
        }
    }
}

/// Runs until the pool's results end; then ends every track.
pub fn run(
    cfg: &SiteConfig,
    results: &Receiver<Done<Tag>>,
    to_embed: &Sender<ToEmbed>,
    video: Option<&Sender<VideoFrame>>,
    metrics: &Metrics,
) {
    let mut trackers: HashMap<StreamId, Tracker> = HashMap::new();
    let input_h = cfg
        .model
        .input_size
        .map_or(crate::model::weights::RECIPE_INPUT_SIZE.0 as f32, |s| s.0 as f32);
    let mut waiting_visible: Option<(usize, Annotated)> = None;
    let mut last_pts = HashMap::new();
    let started = Instant::now();
    let mut last_arrival = started;
    let mut fusion = Fusion::default();
    let counters = StageCounters::new(cfg, metrics);
    for done in results.iter() {
        let tag = done.tag;
        let cam = &cfg.cameras[tag.camera];
        let frame = done.frame;
        let modality = frame.modality;
        let stream = &counters.streams[&StreamId::new(tag.camera, modality)];
        stream.processed.fetch_add(1, Ordering::Relaxed);
        let detections: Vec<Detection> = match done.detections {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("{}", crate::base::Chain(&e));
                counters.detect_failed.fetch_add(1, Ordering::Relaxed);
                Vec::new()
            }
        };
        stream.detections.fetch_add(detections.len() as u64, Ordering::Relaxed);
        // Stream time; frames without a timestamp use the time since the run started.
        let pts_s = frame.pts_ns.map_or_else(
            || tag.arrived.saturating_duration_since(started).as_secs_f64(),
            |p| p as f64 / 1e9,
        );
        last_pts.insert(StreamId::new(tag.camera, modality), pts_s);
        last_arrival = tag.arrived;
        let margin = match modality {
            Modality::Visible => cam.detector.crop_margin,
            Modality::Thermal => cam.thermal_detector.crop_margin,
        };
        let pixels = if frame.format == PixelFormat::Gray16 {
            match grey_rendering(&frame, cam.calibration) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("{}", crate::base::Chain(&e));
                    continue;
                }
            }
        } else {
            Pixels::Frame(frame.clone())
        };
        let tracker = trackers
            .entry(StreamId::new(tag.camera, modality))
            .or_insert_with(|| Tracker::new(cfg.tracker));
        let (updates, ended) = tracker.update(&detections);
        let mut boxes = Vec::new();
        for u in &updates {
            let key = TrackKey {
                camera: tag.camera,
                modality,
                track: u.id,
            };
            if u.born {
                let score = u.detection.map_or(0.0, |d| detections[d].score);
                let note = TrackNote::New {
                    key,
                    bbox: u.bbox,
                    score,
                    pts_s,
                    arrived: tag.arrived,
                };
                if to_embed.send(ToEmbed::Note(note)).is_err() {
                    return;
                }
            }
            if !u.confirmed {
                continue;
            }
            boxes.push((key, u.bbox));
            let Some(d) = u.detection else { continue };
            let det = detections[d];
            let Some(crop) = det.bbox.expand(margin).clamp(frame.width, frame.height) else {
                continue;
            };
            let truncated =
                crop.w < det.bbox.w * (1.0 + 2.0 * margin) - 1.0 || crop.h < det.bbox.h * (1.0 + 2.0 * margin) - 1.0;
            let job = CropJob {
                key,
                pixels: pixels.clone(),
                crop,
                bbox: det.bbox,
                score: det.score,
                quality: crop_quality(det.score, det.bbox.h, input_h, truncated),
                pts_s,
                arrived: tag.arrived,
            };
            if to_embed.send(ToEmbed::Crop(job)).is_err() {
                return;
            }
        }
        if tag.paired {
            let size = (frame.width, frame.height);
            if modality == Modality::Visible {
                fusion.visible = Some((tag.camera, boxes.clone(), size));
            } else {
                for (visible, thermal, further) in fusion.thermal(tag.camera, &boxes, size, cam.fuse_iou) {
                    let note = TrackNote::Fuse {
                        visible,
                        thermal,
                        further,
                        arrived: tag.arrived,
                    };
                    if to_embed.send(ToEmbed::Note(note)).is_err() {
                        return;
                    }
                }
            }
        }
        for id in ended {
            let key = TrackKey {
                camera: tag.camera,
                modality,
                track: id,
            };
            fusion.end(&key);
            if !send_end(to_embed, key, pts_s, tag.arrived) {
                return;
            }
        }
        let active: usize = trackers
            .iter()
            .filter(|(s, _)| s.camera == tag.camera)
            .map(|(_, t)| t.len())
            .sum();
        counters.active_tracks[tag.camera].store(active as i64, Ordering::Relaxed);
        if let Some(video) = video {
            let part = Annotated { pixels, boxes };
            match (modality, tag.paired) {
                (Modality::Visible, true) => waiting_visible = Some((tag.camera, part)),
                (Modality::Thermal, true) => {
                    let visible = waiting_visible.take().filter(|(c, _)| *c == tag.camera).map(|(_, v)| v);
                    video_frame(
                        video,
                        &counters.video_dropped,
                        VideoFrame {
                            camera: tag.camera,
                            pts_ns: frame.pts_ns,
                            visible,
                            thermal: Some(part),
                        },
                    );
                }
                (m, false) => {
                    let (visible, thermal) = if m == Modality::Visible {
                        (Some(part), None)
                    } else {
                        (None, Some(part))
                    };
                    video_frame(
                        video,
                        &counters.video_dropped,
                        VideoFrame {
                            camera: tag.camera,
                            pts_ns: frame.pts_ns,
                            visible,
                            thermal,
                        },
                    );
                }
            }
        }
    }
    // End of every stream: every live track ends.
    for (stream, mut tracker) in trackers {
        let StreamId { camera, modality } = stream;
        let pts_s = last_pts.get(&stream).copied().unwrap_or(0.0);
        for id in tracker.finish() {
            let key = TrackKey {
                camera,
                modality,
                track: id,
            };
            if !send_end(to_embed, key, pts_s, last_arrival) {
                return;
            }
        }
    }
}

/// Tells the embedder (and through it the identity stage) that a track ended; false when the
/// stages behind are gone.
fn send_end(to_embed: &Sender<ToEmbed>, key: TrackKey, pts_s: f64, arrived: Instant) -> bool {
    to_embed
        .send(ToEmbed::Note(TrackNote::End { key, pts_s, arrived }))
        .is_ok()
}

/// Hands a frame to the video writer without ever holding up tracking: a full queue drops it
/// (counted as `reid_dropped_total{stage="video"}`).
fn video_frame(video: &Sender<VideoFrame>, dropped: &AtomicU64, frame: VideoFrame) {
    if video.try_send(frame).is_err() {
        dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// An 8-bit rendering of a 16-bit thermal frame, shared by all its crops.
fn grey_rendering(
    frame: &crate::ingest::Frame,
    calibration: Option<crate::config::site::Calibration>,
) -> Result<Pixels, PixelsError> {
    let map = frame.buffer.map_readable().map_err(|_| PixelsError::Unmappable {
        camera: frame.camera.clone(),
        modality: frame.modality,
    })?;
    let image = Image::new(map.as_slice(), frame.width, frame.height, frame.stride, frame.format)?;
    let data = to_u8(&image, calibration, CELSIUS_RANGE).map_err(|source| PixelsError::Render {
        camera: frame.camera.clone(),
        source,
    })?;
    Ok(Pixels::Grey {
        data: Arc::new(data),
        width: frame.width,
        height: frame.height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(modality: Modality, track: u64) -> TrackKey {
        TrackKey {
            camera: 0,
            modality,
            track,
        }
    }

    /// Feeds `frames` paired frames in which visible track `v` and thermal track `t` overlap;
    /// returns the fusions.
    fn overlap(fusion: &mut Fusion, v: TrackKey, t: TrackKey, frames: u32) -> Vec<Fused> {
        let b = BBox::new(10.0, 10.0, 20.0, 40.0);
        let mut out = Vec::new();
        for _ in 0..frames {
            fusion.visible = Some((0, vec![(v, b)], (100, 100)));
            out.extend(fusion.thermal(0, &[(t, b)], (100, 100), 0.3));
        }
        out
    }

    #[test]
    fn a_track_whose_partner_ended_fuses_with_the_next_one() {
        let mut fusion = Fusion::default();
        let (v1, v2, t) = (
            key(Modality::Visible, 1),
            key(Modality::Visible, 2),
            key(Modality::Thermal, 7),
        );
        // v2 overlapped t too, one frame short of fusing, before v1 fused.
        assert!(overlap(&mut fusion, v2, t, FUSE_FRAMES - 1).is_empty());
        assert_eq!(overlap(&mut fusion, v1, t, FUSE_FRAMES), [(v1, t, false)]);
        fusion.end(&v1);
        // The overlaps counted before do not count: v2 needs its own.
        assert!(overlap(&mut fusion, v2, t, FUSE_FRAMES - 1).is_empty());
        assert_eq!(overlap(&mut fusion, v2, t, 1), [(v2, t, false)]);
        assert_eq!(fusion.first_partner.get(&t), Some(&v2));
    }

    #[test]
    fn a_fused_thermal_track_takes_the_visible_fragments_that_overlap_it_best() {
        let mut fusion = Fusion::default();
        let [v1, v2, v3, v4, v5] = [1, 2, 3, 4, 5].map(|i| key(Modality::Visible, i));
        let (t, u) = (key(Modality::Thermal, 7), key(Modality::Thermal, 8));
        assert_eq!(overlap(&mut fusion, v1, t, FUSE_FRAMES), [(v1, t, false)]);
        // While v1 lives, v2 (a fragment of the same person, v1 out of view) fuses with t as a
        // further partner; it stays t's, and v1 stays t's first partner.
        assert_eq!(overlap(&mut fusion, v2, t, FUSE_FRAMES), [(v2, t, true)]);
        assert_eq!(fusion.first_partner.get(&t), Some(&v1));
        assert!(overlap(&mut fusion, v2, u, FUSE_FRAMES).is_empty());
        // A box that overlaps t enough but another thermal box more is not t's fragment.
        let (near, nearer) = (BBox::new(10.0, 10.0, 20.0, 40.0), BBox::new(14.0, 10.0, 20.0, 40.0));
        for _ in 0..FUSE_FRAMES {
            fusion.visible = Some((0, vec![(v3, nearer)], (100, 100)));
            let fused = fusion.thermal(0, &[(t, near), (u, nearer)], (100, 100), 0.3);
            assert!(fused.iter().all(|(_, th, _)| *th != t), "{fused:?}");
        }
        // Nor is one boxed apart from t's first partner in the same frame: someone beside them.
        let wide = BBox::new(10.0, 10.0, 30.0, 40.0);
        let (left, right) = (BBox::new(10.0, 10.0, 13.0, 40.0), BBox::new(26.0, 10.0, 13.0, 40.0));
        for _ in 0..FUSE_FRAMES {
            fusion.visible = Some((0, vec![(v1, left), (v4, right)], (100, 100)));
            let fused = fusion.thermal(0, &[(t, wide)], (100, 100), 0.3);
            assert!(fused.is_empty(), "{fused:?}");
        }
        // ... for good: alone over t later, it still does not fuse.
        assert!(overlap(&mut fusion, v4, t, FUSE_FRAMES).is_empty());
        // When v1 ends, its oldest further partner (v2, not the later v5) takes its place.
        assert_eq!(overlap(&mut fusion, v5, t, FUSE_FRAMES), [(v5, t, true)]);
        fusion.end(&v1);
        assert_eq!(fusion.first_partner.get(&t), Some(&v2));
        // When t ends, its fragments may fuse again elsewhere.
        fusion.end(&t);
        assert!(fusion.thermal_of.values().all(|th| *th != t));
        assert!(!fusion.first_partner.contains_key(&t));
        assert_eq!(overlap(&mut fusion, v2, u, FUSE_FRAMES), [(v2, u, true)]);
    }
}
