//! `reid-pipe harvest`: a training set from a site's own footage, without labels. The live
//! pipeline's front runs as in `run` (sources → pairing → detection → tracking, which fuses a
//! camera pair's visible and thermal tracks whose boxes overlap); in place of the embedder, a
//! [`collect`]or keeps each track's boxes and a few distinct crops. Every fused pair whose boxes
//! overlapped steadily becomes one pseudo-identity seen in both modalities, and the
//! pseudo-identities are split by time (the first part of the recording trains, the rest
//! tests; one seen on both sides of the cut is left out) and written as SYSU-MM01
//! ([`layout`]). Where no pair fused at all, the visible tracks are harvested alone, as
//! Market-1501 ([`single`]), and the harvest says so.

pub mod collect;
pub mod layout;
pub mod single;

use super::metrics::Metrics;
use super::supervise::Supervisor;
use super::{capture, dispatch, tracking};
use crate::base::Modality;
use crate::config::SiteConfig;
use crate::live::types::TrackKey;
use collect::{Collected, Collector};
use crossbeam_channel::bounded;
use layout::{CAMERA_FOLDERS, Harvested, LeftOut, PseudoIdentity};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Errors of a harvest, naming the folder, setting or stage involved.
#[derive(Debug, thiserror::Error)]
pub enum HarvestError {
    #[error("--out {}: {problem}", path.display())]
    Output { path: PathBuf, problem: &'static str },
    #[error("{}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{cameras} camera pairs: the SYSU-MM01 layout has two thermal cameras, so a harvest takes at most two camera pairs; harvest the others from a site file of their own"
    )]
    Cameras { cameras: usize },
    #[error(transparent)]
    Detector(#[from] super::LiveError),
    #[error("cannot start a pipeline thread")]
    Thread(#[source] std::io::Error),
    #[error("the {} stage failed: {}", .0.stage, .0.cause)]
    Stage(super::supervise::StageFailure),
    #[error(
        "the recording is too short to split by time: over its {span_s:.1} s, {train} pseudo-identities end before the cut at {cut_s:.1} s and {test} begin after it ({crossing} span the cut); at least {min} are needed on each side: harvest a longer recording, or move harvest.train_fraction",
        min = layout::MIN_PER_SIDE
    )]
    TooShort {
        span_s: f64,
        cut_s: f64,
        train: usize,
        test: usize,
        crossing: usize,
    },
    #[error(
        "{0} pseudo-identities: the layout's person ids have four digits (at most 9999); harvest a shorter span with --from/--to"
    )]
    TooMany(usize),
    #[error(
        "no person was tracked in the stream time harvested ({outside} crops fell outside --from/--to): nothing to harvest"
    )]
    NoTracks { outside: u64 },
    #[error(
        "no visible–thermal track pair was fused ({0} tracks, none with a partner), and no visible track has {1} frames and two crops to harvest alone: harvest a longer recording, or lower harvest.min_track_frames"
    )]
    NothingFused(usize, u32),
}

/// Options of one harvest.
#[derive(Debug, Clone)]
pub struct HarvestOptions {
    pub out: PathBuf,
    /// Stop each source after this many frames.
    pub max_frames: Option<u64>,
    /// Stream-time window, in seconds, whose crops are kept.
    pub from_s: f64,
    pub to_s: f64,
    /// Replace an earlier harvest in `out`.
    pub force: bool,
}

/// The layout of a harvest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Fused visible–thermal pairs, as SYSU-MM01.
    Sysu,
    /// Nothing fused: the visible tracks alone, as Market-1501.
    Market,
}

/// What a harvest wrote.
#[derive(Debug)]
pub struct HarvestSummary {
    pub written: layout::Written,
    pub tracks: usize,
    pub layout: Layout,
}

/// Whether the finished harvest in `dir` is of the visible tracks alone (Market-1501).
pub fn is_single_modality(dir: &std::path::Path) -> bool {
    dir.join(single::TRAIN_FOLDER).is_dir()
}

/// Harvests the site into `opts.out`.
pub fn harvest(
    cfg: &SiteConfig,
    opts: &HarvestOptions,
    stop: &Arc<AtomicBool>,
) -> Result<HarvestSummary, HarvestError> {
    if cfg.cameras.len() > CAMERA_FOLDERS.len() {
        return Err(HarvestError::Cameras {
            cameras: cfg.cameras.len(),
        });
    }
    layout::prepare(&opts.out, opts.force)?;
    for cam in &cfg.cameras {
        crate::detect::visible(&cam.detector).map_err(|source| super::LiveError::Detector {
            camera: cam.name.clone(),
            kind: cam.detector.kind,
            source,
        })?;
    }
    let collected = collect_tracks(cfg, opts, stop)?;
    if collected.tracks.is_empty() {
        return Err(HarvestError::NoTracks {
            outside: collected.outside,
        });
    }
    let (identities, left_out) = pseudo_identities(cfg, &collected);
    let cameras: Vec<String> = cfg.cameras.iter().map(|c| c.name.clone()).collect();
    if identities.is_empty() && left_out.unstable_fusion + left_out.short + left_out.no_crops == 0 {
        let (tracks, left_out) = visible_tracks(cfg, &collected);
        if tracks.is_empty() {
            return Err(HarvestError::NothingFused(
                collected.tracks.len(),
                cfg.harvest.min_track_frames,
            ));
        }
        tracing::warn!(
            "no visible–thermal track pair was fused ({} tracks; the views may not be aligned, cameras.fuse_iou = 0 turns fusion off, or the thermal camera saw no one): harvesting the {} visible tracks alone, as a single-modality Market-1501 set (dataset kind \"market\"); it trains same-modality re-identification only, nothing cross-modal",
            collected.tracks.len(),
            tracks.len()
        );
        let written = single::write(
            &opts.out,
            single::SingleHarvest {
                site: &cfg.file,
                cameras: &cameras,
                settings: &cfg.harvest,
                collected: &collected,
                tracks,
                left_out,
            },
        )?;
        return Ok(HarvestSummary {
            written,
            tracks: collected.tracks.len(),
            layout: Layout::Market,
        });
    }
    let written = layout::write(
        &opts.out,
        Harvested {
            site: &cfg.file,
            cameras: &cameras,
            settings: &cfg.harvest,
            collected: &collected,
            identities,
            left_out,
        },
    )?;
    Ok(HarvestSummary {
        written,
        tracks: collected.tracks.len(),
        layout: Layout::Sysu,
    })
}

/// Runs the pipeline's front to the end of the sources, collecting the tracks.
fn collect_tracks(cfg: &SiteConfig, opts: &HarvestOptions, stop: &Arc<AtomicBool>) -> Result<Collected, HarvestError> {
    super::apply_threads(cfg.runtime.threads);
    let metrics = Metrics::default();
    let super::Front {
        cameras,
        arrivals,
        pool,
        detected,
    } = super::start_front(cfg, opts.max_frames, stop, &metrics);
    let (crops_tx, crops_rx) = bounded(cfg.runtime.queue_capacity * cfg.runtime.batch_size.max(1));
    let supervisor = Supervisor::new(Arc::clone(stop));
    let sup = &supervisor;
    let bar = indicatif::ProgressBar::new_spinner().with_style(
        indicatif::ProgressStyle::with_template("harvesting {spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let collected = std::thread::scope(|s| {
        let m = &metrics;
        let dispatch = sup.spawn(s, "dispatch", move || dispatch(&arrivals, pool, m))?;
        let track = sup.spawn(s, "track", move || tracking::run(cfg, &detected, &crops_tx, None, m))?;
        let bar = &bar;
        let collect = sup.spawn(s, "harvest", move || {
            let mut collector = Collector::new(&cfg.harvest, (opts.from_s, opts.to_s));
            for (n, message) in crops_rx.iter().enumerate() {
                collector.take(message);
                if n % 64 == 0 {
                    let c = &collector.collected;
                    bar.set_message(format!(
                        "{} tracks, {} fused pairs, up to {:.1} s",
                        c.tracks.len(),
                        c.fused.iter().filter(|f| !f.2).count(),
                        c.span.map_or(0.0, |s| s.1)
                    ));
                    bar.tick();
                }
            }
            collector.collected
        })?;
        let stats = capture::join(cameras);
        let _ = dispatch.join();
        let _ = track.join();
        let collected = collect.join().ok().flatten();
        Ok::<_, std::io::Error>((stats, collected))
    });
    bar.finish_and_clear();
    let (stats, collected) = collected.map_err(HarvestError::Thread)?;
    if let Some(failure) = supervisor.failure() {
        return Err(HarvestError::Stage(failure));
    }
    for cam in &stats {
        for source in &cam.sources {
            if let Some(e) = &source.error {
                tracing::warn!("camera {} {:?}: {e}", source.camera, source.modality);
            }
        }
    }
    collected.ok_or_else(|| {
        HarvestError::Stage(super::supervise::StageFailure {
            stage: "harvest",
            cause: "ended without a result".to_owned(),
        })
    })
}

/// The fused pairs that pass the quality filters, and the counts of what was left out. A track
/// the tracking stage fused again after its first partner ended keeps its first accepted pair
/// only (a pseudo-identity is one pair): the later partner, and any pair it forms in turn, are
/// left out, so that no person becomes two pseudo-identities through a chain of fusions.
fn pseudo_identities(cfg: &SiteConfig, c: &Collected) -> (Vec<PseudoIdentity>, LeftOut) {
    let s = &cfg.harvest;
    let mut left = LeftOut::default();
    let mut out = Vec::new();
    let mut fused_keys = std::collections::HashSet::new();
    // Tracks of an accepted pair, and of a pair left out for holding one.
    let mut used = std::collections::HashSet::new();
    for &(visible, thermal, further) in &c.fused {
        fused_keys.insert(visible);
        fused_keys.insert(thermal);
        // A fragment's fusion makes no pseudo-identity: a pair is a track and its first partner.
        if further {
            continue;
        }
        if used.contains(&visible) || used.contains(&thermal) {
            used.extend([visible, thermal]);
            continue;
        }
        let (Some(v), Some(t)) = (c.tracks.get(&visible), c.tracks.get(&thermal)) else {
            // Fused outside the --from/--to window.
            continue;
        };
        if v.boxes.len() < s.min_track_frames as usize || t.boxes.len() < s.min_track_frames as usize {
            left.short += 1;
            continue;
        }
        if v.kept.is_empty() || t.kept.is_empty() {
            left.no_crops += 1;
            continue;
        }
        let cam = &cfg.cameras[visible.camera];
        let fusion = collect::overlap(v, t, cam.pairing_tolerance_ms / 1000.0, cam.fuse_iou);
        if fusion.2 < s.min_fused_fraction {
            left.unstable_fusion += 1;
            continue;
        }
        used.extend([visible, thermal]);
        out.push(PseudoIdentity {
            visible,
            thermal,
            first_s: v.first_s().min(t.first_s()),
            last_s: v.last_s().max(t.last_s()),
            fusion,
        });
    }
    left.unfused_tracks = c.tracks.keys().filter(|k| !fused_keys.contains(*k)).count();
    (out, left)
}

/// For a harvest in which no pair fused: the visible tracks with `min_track_frames` frames and
/// two crops at least, and the counts of what was left out. (Not thermal ones: a Market-1501 set
/// trains and is embedded by the visible half of the network, while the live pipeline embeds
/// thermal crops with the thermal half.)
fn visible_tracks(cfg: &SiteConfig, c: &Collected) -> (Vec<TrackKey>, LeftOut) {
    let mut left = LeftOut::default();
    let mut keys = Vec::new();
    for (key, track) in &c.tracks {
        if key.modality != Modality::Visible {
            left.unfused_tracks += 1;
        } else if track.boxes.len() < cfg.harvest.min_track_frames as usize {
            left.short += 1;
        } else if track.kept.len() < 2 {
            left.no_crops += 1;
        } else {
            keys.push(*key);
        }
    }
    (keys, left)
}
