//! `[harvest]`: how `reid-pipe harvest` turns a site's tracks into a training set.

use crate::config::checks;
use crate::config::{ConfigError, Source};
use serde::Deserialize;
use toml::Spanned;

/// Quality filters and the time split of a harvest.
#[derive(Debug, Clone, PartialEq)]
pub struct Harvest {
    /// Share of the recording, from its start, whose pseudo-identities train; the rest test.
    /// A pseudo-identity seen on both sides of the cut is left out.
    pub train_fraction: f64,
    /// Fewest frames a track must have crops in to be harvested.
    pub min_track_frames: u32,
    /// Smallest detection height, in pixels, whose crop is kept.
    pub min_box_height: f32,
    /// Most crops kept per track, spread over its life.
    pub max_crops_per_track: usize,
    /// A crop whose 16×8 grey thumbnail differs from the last kept one's by less than this many
    /// grey levels on average is a near-duplicate and skipped.
    pub duplicate_difference: f64,
    /// Least share of the frames in which both tracks of a fused pair were seen where their
    /// boxes overlapped by `fuse_iou` or more: a pair below it is not kept (an unstable fusion
    /// may join two people).
    pub min_fused_fraction: f64,
}

impl Default for Harvest {
    fn default() -> Self {
        Harvest {
            train_fraction: 0.5,
            min_track_frames: 8,
            min_box_height: 48.0,
            max_crops_per_track: 16,
            duplicate_difference: 2.0,
            min_fused_fraction: 0.7,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHarvest {
    train_fraction: Option<Spanned<f64>>,
    min_track_frames: Option<Spanned<i64>>,
    min_box_height: Option<Spanned<f64>>,
    max_crops_per_track: Option<Spanned<i64>>,
    duplicate_difference: Option<Spanned<f64>>,
    min_fused_fraction: Option<Spanned<f64>>,
}

impl RawHarvest {
    pub(super) fn check(self, src: &Source<'_>) -> Result<Harvest, ConfigError> {
        let d = Harvest::default();
        Ok(Harvest {
            train_fraction: checks::float(
                src,
                "harvest.train_fraction",
                &self.train_fraction,
                d.train_fraction,
                0.05,
                0.95,
            )?,
            min_track_frames: checks::int(
                src,
                "harvest.min_track_frames",
                &self.min_track_frames,
                i64::from(d.min_track_frames),
                1,
                100_000,
            )? as u32,
            min_box_height: checks::float(
                src,
                "harvest.min_box_height",
                &self.min_box_height,
                f64::from(d.min_box_height),
                1.0,
                4096.0,
            )? as f32,
            max_crops_per_track: checks::int(
                src,
                "harvest.max_crops_per_track",
                &self.max_crops_per_track,
                d.max_crops_per_track as i64,
                1,
                10_000,
            )? as usize,
            duplicate_difference: checks::float(
                src,
                "harvest.duplicate_difference",
                &self.duplicate_difference,
                d.duplicate_difference,
                0.0,
                255.0,
            )?,
            min_fused_fraction: checks::float(
                src,
                "harvest.min_fused_fraction",
                &self.min_fused_fraction,
                d.min_fused_fraction,
                0.0,
                1.0,
            )?,
        })
    }
}
