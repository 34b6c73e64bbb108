//! A harvest in which no visible–thermal pair fused (a site whose thermal view is not aligned
//! with its visible one, or whose thermal camera saw no one): every visible track that passes the
//! quality filters becomes a pseudo-identity, written as Market-1501, the
//! single-modality layout `train` and `eval` read (`dataset.kind = "market"`):
//! `bounding_box_train/` holds the training tracks' crops; a test track's crops are cut in two
//! by time, the earlier half in `query/` and the later half in `bounding_box_test/`, under two
//! camera numbers, so that the Market protocol (which ignores gallery crops of the query's
//! person seen by the query's camera) scores how well a track's earlier crops retrieve its later
//! ones among every other held-out track. No cross-modal training comes of it.
//!
//! File names are Market's `<pid:04>_c<camera>s1_<crop:06>_00.jpg`; the camera of pair `n`
//! (from 0) is `2n + 1`, and `2n + 2` for the later half of a test track. `exp/co_occurring.txt`
//! and `manifest.json` are as in the SYSU-MM01 layout ([`super::layout`]).

use super::HarvestError;
use super::collect::Collected;
use super::layout::{self, CropEntry, LeftOut, Manifest, Split, Written};
use crate::base::Modality;
use crate::live::types::TrackKey;
use serde::Serialize;
use std::path::Path;

/// The training folder, whose presence marks a harvest of this layout.
pub const TRAIN_FOLDER: &str = "bounding_box_train";
/// The `layout` field of a manifest written here.
const LAYOUT: &str = "market-1501";

/// Everything [`write`] needs.
pub struct SingleHarvest<'a> {
    pub site: &'a Path,
    pub cameras: &'a [String],
    pub settings: &'a crate::config::site::Harvest,
    pub collected: &'a Collected,
    /// The tracks kept, all visible, each with at least two crops.
    pub tracks: Vec<TrackKey>,
    pub left_out: LeftOut,
}

/// A pseudo-identity of the manifest: one track.
#[derive(Serialize)]
struct TrackEntry {
    pid: i64,
    split: Split,
    camera: String,
    modality: Modality,
    track: u64,
    first_s: f64,
    last_s: f64,
    /// Tracks of the same camera and modality alive at the same time: certainly other people.
    co_occurring: Vec<i64>,
    crops: Vec<CropEntry>,
}

/// A track and its first and last stream time.
type Timed = (TrackKey, (f64, f64));

/// Splits the tracks by time and writes them into `out` (made ready by [`layout::prepare`]).
pub fn write(out: &Path, mut h: SingleHarvest<'_>) -> Result<Written, HarvestError> {
    let times = layout::cut(h.collected, h.settings);
    let mut tracks: Vec<Timed> = h
        .tracks
        .drain(..)
        .map(|key| {
            let t = &h.collected.tracks[&key];
            (key, (t.first_s(), t.last_s()))
        })
        .collect();
    tracks.sort_by(|(a, sa), (b, sb)| {
        sa.0.total_cmp(&sb.0)
            .then(a.camera.cmp(&b.camera))
            .then(a.track.cmp(&b.track))
    });
    let (sides, (train, test)) = layout::split_by_time(tracks, |(_, span)| *span, times, &mut h.left_out)?;
    layout::begin(out)?;
    for folder in [TRAIN_FOLDER, "query", "bounding_box_test"] {
        let dir = out.join(folder);
        std::fs::create_dir_all(&dir).map_err(layout::io(&dir))?;
    }
    let keys: Vec<[TrackKey; 1]> = sides.iter().map(|((key, _), _)| [*key]).collect();
    let co_occurring = layout::co_occurring(&keys, |key| {
        h.collected.tracks.get(key).map(|t| (t.first_s(), t.last_s()))
    });
    let mut entries = Vec::with_capacity(sides.len());
    let mut crops = 0;
    // Two crops at least, so that a test track has an earlier and a later half.
    let per_track = h.settings.max_crops_per_track.max(2);
    for (i, ((key, (first_s, last_s)), split)) in sides.iter().enumerate() {
        let pid = i as i64 + 1;
        let chosen = h.collected.tracks[key].chosen(per_track);
        let half = chosen.len().div_ceil(2);
        let mut files = Vec::with_capacity(chosen.len());
        for (n, kept) in chosen.into_iter().enumerate() {
            let later = *split == Split::Test && n >= half;
            let folder = match split {
                Split::Train => TRAIN_FOLDER,
                Split::Test if later => "bounding_box_test",
                Split::Test => "query",
            };
            let camera = 2 * key.camera + 1 + usize::from(later);
            let rel = format!("{folder}/{pid:04}_c{camera}s1_{:06}_00.jpg", n + 1);
            files.push(layout::write_crop(out, rel, kept, key.modality)?);
        }
        crops += files.len();
        entries.push(TrackEntry {
            pid,
            split: *split,
            camera: h.cameras[key.camera].clone(),
            modality: key.modality,
            track: key.track,
            first_s: *first_s,
            last_s: *last_s,
            co_occurring: co_occurring[i].clone(),
            crops: files,
        });
    }
    let manifest = Manifest::new(LAYOUT, h.site, h.settings, times, entries, h.left_out);
    layout::finish(out, &co_occurring, manifest, (train, test, crops))
}
