//! Harvested pseudo-identities written as SYSU-MM01, the layout `train` and `eval` read (a harvest
//! in which nothing fused is written as Market-1501 by [`super::single`]):
//! `cam<N>/<pid:04>/<nnnn>.jpg` (camera pair 1: visible `cam1`, thermal `cam3`; pair 2: `cam2`,
//! `cam6`), `exp/{train,val,test}_id.txt`, `exp/co_occurring.txt` (the pseudo-identities seen
//! at the same time by the same camera, which the `co-occurring` sampler draws together), and
//! `manifest.json` (where every pseudo-identity and crop came from).
//!
//! The output folder is marked incomplete (`HARVEST-INCOMPLETE`) until the manifest is in
//! place; the dataset readers refuse a marked folder, and a new harvest into it starts over.
//! Only the entries a harvest writes are ever removed.

use super::HarvestError;
use super::collect::{Collected, Kept, TrackLog};
use crate::base::Modality;
use crate::live::types::TrackKey;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The marker of a harvest in progress (or interrupted).
pub const INCOMPLETE: &str = crate::data::HARVEST_INCOMPLETE;
/// The manifest, written last.
pub const MANIFEST: &str = "manifest.json";
/// The first field of a harvest's manifest.
const FORMAT: &str = "reid-pipe harvest 1";
/// The `layout` field of a manifest written here.
const LAYOUT: &str = "sysu-mm01";
/// SYSU-MM01 camera folders (visible, thermal) of camera pairs 1 and 2.
pub const CAMERA_FOLDERS: [(i64, i64); 2] = [(1, 3), (2, 6)];
/// The entries of the output folder a harvest writes, in either layout: all it ever removes.
const ENTRIES: [&str; 10] = [
    "cam1",
    "cam2",
    "cam3",
    "cam6",
    "bounding_box_train",
    "bounding_box_test",
    "query",
    "exp",
    MANIFEST,
    INCOMPLETE,
];

/// Which part of the recording a pseudo-identity is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

/// One person seen in both modalities: a fused visible–thermal track pair.
#[derive(Debug, Clone)]
pub struct PseudoIdentity {
    pub visible: TrackKey,
    pub thermal: TrackKey,
    pub first_s: f64,
    pub last_s: f64,
    /// Frames both tracks were seen in, their mean IoU, and the share at or above `fuse_iou`.
    pub fusion: (usize, f64, f64),
}

/// Checks that `out` may take a harvest: absent or empty; an interrupted harvest's output
/// (started over); an earlier harvest's output only with `force`. Anything else is refused.
/// Nothing is removed here: [`write`] replaces an earlier harvest only once the new one is
/// ready to be written, so a harvest that fails leaves the earlier one as it was.
pub fn prepare(out: &Path, force: bool) -> Result<(), HarvestError> {
    let refuse = |problem: &'static str| HarvestError::Output {
        path: out.to_path_buf(),
        problem,
    };
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(refuse(
            "a file is there; --out must be a folder (it is created when missing)",
        ));
    }
    if std::fs::read_dir(out).map_err(io(out))?.next().is_none() {
        return Ok(());
    }
    if out.join(INCOMPLETE).exists() {
        tracing::warn!("{}: an interrupted harvest; it is started over", out.display());
        Ok(())
    } else if is_harvest(&out.join(MANIFEST)) {
        if force {
            Ok(())
        } else {
            Err(refuse("holds an earlier harvest; pass --force to replace it"))
        }
    } else {
        Err(refuse(
            "not empty, and not a harvest's output: choose an empty folder (harvest removes only what it wrote)",
        ))
    }
}

/// Marks `out` incomplete, then removes what an earlier harvest wrote there (only the entries
/// a harvest writes): an interruption in between leaves a folder the readers refuse, which the
/// next harvest starts over.
fn clear(out: &Path) -> Result<(), HarvestError> {
    let marker = out.join(INCOMPLETE);
    std::fs::write(
        &marker,
        "a harvest is writing this folder, or was interrupted: run it again\n",
    )
    .map_err(io(&marker))?;
    for entry in ENTRIES.iter().filter(|e| **e != INCOMPLETE) {
        let path = out.join(entry);
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else if path.exists() {
            std::fs::remove_file(&path)
        } else {
            Ok(())
        };
        removed.map_err(io(&path))?;
    }
    Ok(())
}

fn is_harvest(manifest: &Path) -> bool {
    std::fs::read(manifest)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v.get("format").and_then(|f| f.as_str()) == Some(FORMAT))
}

/// What a harvest's `manifest.json` holds; `E` is the layout's entry per pseudo-identity.
#[derive(Serialize)]
pub(super) struct Manifest<'a, E> {
    format: &'static str,
    /// `sysu-mm01` or `market-1501`.
    layout: &'static str,
    site: &'a Path,
    /// Stream time of the first and last crop harvested, and of the cut between train and test.
    span_s: (f64, f64),
    cut_s: f64,
    settings: Settings,
    identities: Vec<E>,
    left_out: LeftOut,
}

impl<'a, E: Serialize> Manifest<'a, E> {
    pub(super) fn new(
        layout: &'static str,
        site: &'a Path,
        settings: &crate::config::site::Harvest,
        (span_s, cut_s): ((f64, f64), f64),
        identities: Vec<E>,
        left_out: LeftOut,
    ) -> Self {
        let s = settings;
        Manifest {
            format: FORMAT,
            layout,
            site,
            span_s,
            cut_s,
            settings: Settings {
                train_fraction: s.train_fraction,
                min_track_frames: s.min_track_frames,
                min_box_height: s.min_box_height,
                max_crops_per_track: s.max_crops_per_track,
                duplicate_difference: s.duplicate_difference,
                min_fused_fraction: s.min_fused_fraction,
            },
            identities,
            left_out,
        }
    }
}

#[derive(Serialize)]
struct Settings {
    train_fraction: f64,
    min_track_frames: u32,
    min_box_height: f32,
    max_crops_per_track: usize,
    duplicate_difference: f64,
    min_fused_fraction: f64,
}

#[derive(Serialize)]
struct IdentityEntry {
    pid: i64,
    split: Split,
    camera: String,
    visible_track: u64,
    thermal_track: u64,
    first_s: f64,
    last_s: f64,
    /// First and last stream time of the visible and of the thermal track.
    visible_s: (f64, f64),
    thermal_s: (f64, f64),
    fusion_frames: usize,
    fusion_mean_iou: f64,
    fusion_stable_fraction: f64,
    /// Pseudo-identities seen by the same camera at the same time: certainly other people.
    co_occurring: Vec<i64>,
    crops: Vec<CropEntry>,
}

/// One crop a harvest wrote, in the manifest.
#[derive(Serialize)]
pub(super) struct CropEntry {
    file: String,
    modality: Modality,
    pts_s: f64,
    /// Detection box in its frame: x, y, width, height.
    #[serde(rename = "box")]
    bbox: [f32; 4],
}

/// Why pseudo-identities or tracks were left out.
#[derive(Debug, Default, Clone, Serialize)]
pub struct LeftOut {
    /// Fused pairs whose boxes did not overlap steadily enough.
    pub unstable_fusion: usize,
    /// Fused pairs with a track of fewer frames than `min_track_frames` (in a single-modality
    /// harvest: such tracks).
    pub short: usize,
    /// Fused pairs with a track without a crop large enough (in a single-modality harvest:
    /// tracks with fewer than two).
    pub no_crops: usize,
    /// Pseudo-identities seen on both sides of the cut.
    pub crossing_the_cut: usize,
    /// Confirmed tracks that were never fused (no thermal partner, or no visible one); in a
    /// single-modality harvest, the other modality's tracks.
    pub unfused_tracks: usize,
}

/// What was written.
#[derive(Debug)]
pub struct Written {
    pub train: usize,
    pub test: usize,
    pub crops: usize,
    pub cut_s: f64,
    /// What was left out, and why (including the pseudo-identities that span the cut).
    pub left_out: LeftOut,
}

/// Everything [`write`] needs.
pub struct Harvested<'a> {
    pub site: &'a Path,
    pub cameras: &'a [String],
    pub settings: &'a crate::config::site::Harvest,
    pub collected: &'a Collected,
    pub identities: Vec<PseudoIdentity>,
    pub left_out: LeftOut,
}

/// Per pseudo-identity (`tracks[i]` its tracks, pid = i + 1), the pids with a track of the same
/// camera pair and modality alive at the same time as one of its own: two tracks of one modality
/// alive together are other people (a tracker's duplicate of one person breaks this; a harvest
/// has no better evidence). A fused pair's whole span is not used: a person whose visible track
/// broke and restarted while their thermal track went on would overlap themselves.
/// `span` gives a track's first and last stream time.
pub(super) fn co_occurring<K: AsRef<[TrackKey]>>(
    tracks: &[K],
    span: impl Fn(&TrackKey) -> Option<(f64, f64)>,
) -> Vec<Vec<i64>> {
    let beside = |a: &TrackKey, b: &TrackKey| {
        a.camera == b.camera
            && a.modality == b.modality
            && match (span(a), span(b)) {
                (Some(a), Some(b)) => a.0.max(b.0) < a.1.min(b.1),
                _ => false,
            }
    };
    tracks
        .iter()
        .enumerate()
        .map(|(i, mine)| {
            tracks
                .iter()
                .enumerate()
                .filter(|(j, theirs)| {
                    *j != i
                        && mine
                            .as_ref()
                            .iter()
                            .any(|a| theirs.as_ref().iter().any(|b| beside(a, b)))
                })
                .map(|(j, _)| j as i64 + 1)
                .collect()
        })
        .collect()
}

/// Fewest pseudo-identities on each side of the cut.
pub const MIN_PER_SIDE: usize = 2;

/// The stream time of the first and last crop harvested, and the cut between train and test.
pub(super) fn cut(collected: &Collected, settings: &crate::config::site::Harvest) -> ((f64, f64), f64) {
    let (start, end) = collected.span.unwrap_or((0.0, 0.0));
    ((start, end), start + settings.train_fraction * (end - start))
}

/// Items on their side of the cut, in time order.
pub(super) type Sides<T> = Vec<(T, Split)>;

/// `items` (in time order) on their side of the cut, by their first and last stream time, and
/// how many are on each side (train, test); those seen on both sides are counted in `left_out`
/// and left out. Refuses a recording with fewer than [`MIN_PER_SIDE`] on a side, or more than
/// the layouts' four-digit ids allow.
pub(super) fn split_by_time<T>(
    items: Vec<T>,
    span: impl Fn(&T) -> (f64, f64),
    ((start, end), cut_s): ((f64, f64), f64),
    left_out: &mut LeftOut,
) -> Result<(Sides<T>, (usize, usize)), HarvestError> {
    let mut sides = Vec::new();
    for item in items {
        let (first, last) = span(&item);
        let split = if last <= cut_s {
            Split::Train
        } else if first >= cut_s {
            Split::Test
        } else {
            left_out.crossing_the_cut += 1;
            continue;
        };
        sides.push((item, split));
    }
    let train = sides.iter().filter(|(_, s)| *s == Split::Train).count();
    let test = sides.len() - train;
    if train < MIN_PER_SIDE || test < MIN_PER_SIDE {
        return Err(HarvestError::TooShort {
            span_s: end - start,
            cut_s,
            train,
            test,
            crossing: left_out.crossing_the_cut,
        });
    }
    if sides.len() > 9999 {
        return Err(HarvestError::TooMany(sides.len()));
    }
    Ok((sides, (train, test)))
}

/// The error of a failed write of `path`.
pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HarvestError {
    let path = path.to_path_buf();
    move |source| HarvestError::Write { path, source }
}

/// Makes `out` and marks it incomplete, with an earlier harvest's entries removed.
pub(super) fn begin(out: &Path) -> Result<(), HarvestError> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    clear(out)
}

/// Writes `exp/co_occurring.txt` and the manifest, and then removes the incomplete marker: the
/// harvest in `out` is done. `counts`: training and held-out pseudo-identities, and crops.
pub(super) fn finish<E: Serialize>(
    out: &Path,
    co_occurring: &[Vec<i64>],
    manifest: Manifest<'_, E>,
    (train, test, crops): (usize, usize, usize),
) -> Result<Written, HarvestError> {
    write_co_occurring(out, co_occurring)?;
    let path: PathBuf = out.join(MANIFEST);
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| HarvestError::Write {
        path: path.clone(),
        source: e.into(),
    })?;
    crate::atomic::write(&path, &json).map_err(io(&path))?;
    let marker = out.join(INCOMPLETE);
    std::fs::remove_file(&marker).map_err(io(&marker))?;
    Ok(Written {
        train,
        test,
        crops,
        cut_s: manifest.cut_s,
        left_out: manifest.left_out,
    })
}

/// Writes a kept crop at `rel` in `out`; its manifest entry.
pub(super) fn write_crop(out: &Path, rel: String, kept: &Kept, modality: Modality) -> Result<CropEntry, HarvestError> {
    let path = out.join(&rel);
    std::fs::write(&path, &kept.jpeg).map_err(io(&path))?;
    let b = kept.bbox;
    Ok(CropEntry {
        file: rel,
        modality,
        pts_s: kept.pts_s,
        bbox: [b.x, b.y, b.w, b.h],
    })
}

/// Writes `exp/co_occurring.txt`: per pid (pid = index + 1) with any, the pids seen beside it.
fn write_co_occurring(out: &Path, co_occurring: &[Vec<i64>]) -> Result<(), HarvestError> {
    let path = out.join(crate::data::sysu::CO_OCCURRING);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let lines: String = co_occurring
        .iter()
        .enumerate()
        .filter(|(_, others)| !others.is_empty())
        .map(|(i, others)| {
            let others: Vec<String> = others.iter().map(i64::to_string).collect();
            format!("{}: {}\n", i + 1, others.join(","))
        })
        .collect();
    crate::atomic::write(&path, lines.as_bytes()).map_err(io(&path))
}

/// Splits the pseudo-identities by time and writes the dataset into `out` (made ready by
/// [`prepare`]).
pub fn write(out: &Path, mut h: Harvested<'_>) -> Result<Written, HarvestError> {
    let times = cut(h.collected, h.settings);
    h.identities.sort_by(|a, b| a.first_s.total_cmp(&b.first_s));
    let (sides, (train, test)) = split_by_time(h.identities, |id| (id.first_s, id.last_s), times, &mut h.left_out)?;
    begin(out)?;
    let tracks: Vec<[TrackKey; 2]> = sides.iter().map(|(id, _)| [id.visible, id.thermal]).collect();
    let co_occurring = co_occurring(&tracks, |key| {
        h.collected.tracks.get(key).map(|t| (t.first_s(), t.last_s()))
    });
    let mut entries = Vec::with_capacity(sides.len());
    let mut ids = (Vec::new(), Vec::new());
    let mut crops = 0;
    for (i, (id, split)) in sides.iter().enumerate() {
        let pid = i as i64 + 1;
        let (vis_cam, ir_cam) = CAMERA_FOLDERS[id.visible.camera];
        let span = |key: &TrackKey| {
            let t = &h.collected.tracks[key];
            (t.first_s(), t.last_s())
        };
        let mut files = Vec::new();
        for (key, cam) in [(&id.visible, vis_cam), (&id.thermal, ir_cam)] {
            let track: &TrackLog = &h.collected.tracks[key];
            let dir = out.join(format!("cam{cam}/{pid:04}"));
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            for (n, kept) in track.chosen(h.settings.max_crops_per_track).into_iter().enumerate() {
                let rel = format!("cam{cam}/{pid:04}/{:04}.jpg", n + 1);
                files.push(write_crop(out, rel, kept, key.modality)?);
            }
        }
        crops += files.len();
        match split {
            Split::Train => ids.0.push(pid),
            Split::Test => ids.1.push(pid),
        }
        entries.push(IdentityEntry {
            pid,
            split: *split,
            camera: h.cameras[id.visible.camera].clone(),
            visible_track: id.visible.track,
            thermal_track: id.thermal.track,
            first_s: id.first_s,
            last_s: id.last_s,
            visible_s: span(&id.visible),
            thermal_s: span(&id.thermal),
            fusion_frames: id.fusion.0,
            fusion_mean_iou: id.fusion.1,
            fusion_stable_fraction: id.fusion.2,
            co_occurring: co_occurring[i].clone(),
            crops: files,
        });
    }
    // SYSU's trainer reads train + val; val holds the latest training identity (as the reference
    // layout has a non-empty val list).
    let (train_ids, test_ids) = ids;
    let (train_only, val) = train_ids.split_at(train_ids.len() - 1);
    let exp = out.join("exp");
    std::fs::create_dir_all(&exp).map_err(io(&exp))?;
    for (name, list) in [
        ("train_id.txt", train_only),
        ("val_id.txt", val),
        ("test_id.txt", &test_ids[..]),
    ] {
        let text: Vec<String> = list.iter().map(i64::to_string).collect();
        let path = exp.join(name);
        crate::atomic::write(&path, format!("{}\n", text.join(",")).as_bytes()).map_err(io(&path))?;
    }
    let manifest = Manifest::new(LAYOUT, h.site, h.settings, times, entries, h.left_out);
    finish(out, &co_occurring, manifest, (train, test, crops))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn co_occurring_means_one_modality_seen_together_by_one_camera_pair() {
        let key = |camera, modality, track| TrackKey {
            camera,
            modality,
            track,
        };
        // (camera, visible span, thermal span) per pseudo-identity.
        type Span = (f64, f64);
        let ids: [(usize, Span, Span); 5] = [
            (0, (0.0, 10.0), (0.0, 4.0)),   // 1
            (0, (5.0, 15.0), (5.0, 15.0)),  // 2: beside 1 (visible)
            (1, (5.0, 15.0), (5.0, 15.0)),  // 3: another camera pair
            (0, (12.0, 20.0), (6.0, 11.0)), // 4: beside 2 (both); with 1, only their spans overlap
            (0, (30.0, 40.0), (3.0, 35.0)), // 5: beside 1, 2 and 4 (thermal)
        ];
        let mut spans = std::collections::HashMap::new();
        let pairs: Vec<[TrackKey; 2]> = ids
            .iter()
            .enumerate()
            .map(|(i, &(camera, v, t))| {
                let (visible, thermal) = (
                    key(camera, Modality::Visible, i as u64),
                    key(camera, Modality::Thermal, i as u64),
                );
                spans.insert(visible, v);
                spans.insert(thermal, t);
                [visible, thermal]
            })
            .collect();
        let lists = co_occurring(&pairs, |k| spans.get(k).copied());
        assert_eq!(
            lists,
            vec![vec![2, 5], vec![1, 4, 5], vec![], vec![2, 5], vec![1, 2, 4]]
        );
    }

    #[test]
    fn co_occurring_single_tracks_means_one_camera_and_modality_at_the_same_time() {
        let key = |camera, modality, track| TrackKey {
            camera,
            modality,
            track,
        };
        let tracks = [
            (key(0, Modality::Visible, 1), (0.0, 10.0)),
            (key(0, Modality::Visible, 2), (5.0, 15.0)),  // beside 1
            (key(1, Modality::Visible, 3), (5.0, 15.0)),  // another camera pair
            (key(0, Modality::Thermal, 4), (5.0, 15.0)),  // another modality
            (key(0, Modality::Visible, 5), (10.0, 20.0)), // beside 2; touches 1 only at 10 s
        ];
        let spans: std::collections::HashMap<TrackKey, (f64, f64)> = tracks.into_iter().collect();
        let single: Vec<[TrackKey; 1]> = tracks.iter().map(|(k, _)| [*k]).collect();
        assert_eq!(
            co_occurring(&single, |k| spans.get(k).copied()),
            vec![vec![2], vec![1, 5], vec![], vec![], vec![2]]
        );
    }
}
