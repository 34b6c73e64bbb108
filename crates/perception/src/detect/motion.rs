//! Motion detector for fixed cameras: pixels that differ from a running-average background by
//! more than a threshold in any colour channel, grouped into regions of person-like size and
//! shape. The background adapts (learning rate 0.02 per frame), so people who stop fade into it
//! after a few seconds.
//!
//! A change of the whole scene at once (lights switched, a day/night switch, a camera that moved
//! or reconnected onto another view, a cut in a recording) would otherwise leave the old
//! background showing through as "motion" everywhere for seconds: ghost boxes that turn into
//! tracks. When at least 15 % of the pixels differ from the *previous frame*, spread over at least
//! 12 of the frame's 4 × 4 cells (a person close to the camera changes a compact region, a scene
//! change all of it), the background is relearnt from the new frame and that frame reports
//! nothing (what Frigate calls its lightning threshold; it measures against the background, which
//! cannot tell a cut from a crowd that walked in slowly).

use super::regions::Regions;
use super::{Detect, DetectError, Detection, Image};
use opencv::core::{self, Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;
use reid_core::base::PixelFormat;

/// Grey-level difference (0–255) that counts as motion.
const THRESHOLD: f64 = 25.0;
/// Weight of each new frame in the background.
const LEARNING_RATE: f64 = 0.02;
/// Share of pixels changed since the previous frame that recalibrates the background. A cut
/// between generated scenes changes 23–30 % (measured); people walking, a few percent.
const SCENE_CHANGE: f64 = 0.15;
/// Of the frame's 4 × 4 cells, how many must have changed (5 % of their pixels or more) too.
const SCENE_CHANGE_CELLS: usize = 12;

/// Background-subtraction detector. Its regions must cover at least half of `min_box` and be
/// 1 to 6 times as tall as wide.
pub struct MotionDetector {
    background: Option<Mat>,
    /// The previous frame, smoothed.
    previous: Option<Mat>,
    regions: Regions,
}

impl MotionDetector {
    pub fn new(min_box: (u32, u32)) -> Self {
        Self {
            background: None,
            previous: None,
            regions: Regions::new((min_box.0 * min_box.1 / 2).max(1), (1.0, 6.0), 5),
        }
    }
}

impl Detect for MotionDetector {
    fn name(&self) -> &'static str {
        "motion"
    }

    fn detect(&mut self, image: &Image<'_>) -> Result<Vec<Detection>, DetectError> {
        // Colour frames are compared per channel: a change of hue at equal brightness is motion too.
        let frame = image.with_mat(|mat| {
            let mut scaled = Mat::default();
            let scale = if image.format == PixelFormat::Gray16 {
                1.0 / 256.0
            } else {
                1.0
            };
            mat.convert_to(&mut scaled, core::CV_32F, scale, 0.0)?;
            let mut smooth = Mat::default();
            imgproc::gaussian_blur_def(&scaled, &mut smooth, Size::new(5, 5), 0.0)?;
            Ok(smooth)
        })?;
        let scene_changed = match &self.previous {
            Some(previous) if previous.size()? == frame.size()? => {
                let (share, cells) = changed_share(&frame, previous)?;
                let changed = share >= SCENE_CHANGE && cells >= SCENE_CHANGE_CELLS;
                if changed {
                    tracing::info!(
                        "motion detector: {:.0} % of the scene changed at once; background relearnt",
                        share * 100.0
                    );
                }
                changed
            }
            Some(_) => {
                tracing::info!("motion detector: the frame size changed; background relearnt");
                true
            }
            None => true,
        };
        let background = match &mut self.background {
            Some(background) if !scene_changed => background,
            _ => {
                self.background = Some(frame.clone());
                self.previous = Some(frame);
                return Ok(Vec::new());
            }
        };
        let mut diff = Mat::default();
        core::absdiff(&frame, &*background, &mut diff)?;
        imgproc::accumulate_weighted(&frame, background, LEARNING_RATE, &core::no_array())?;
        self.previous = Some(frame);
        let diff = largest_channel(diff)?;
        let mut binary = Mat::default();
        imgproc::threshold(&diff, &mut binary, THRESHOLD, 255.0, imgproc::THRESH_BINARY)?;
        let mut mask = Mat::default();
        binary.convert_to(&mut mask, core::CV_8U, 1.0, 0.0)?;
        // Parts of one body that differ from the background by different amounts (a torso and
        // legs) are joined by a closing with a tall kernel.
        let tall = imgproc::get_structuring_element_def(imgproc::MORPH_RECT, Size::new(3, 15))?;
        let mut joined = Mat::default();
        imgproc::morphology_ex(
            &mask,
            &mut joined,
            imgproc::MORPH_CLOSE,
            &tall,
            opencv::core::Point::new(-1, -1),
            1,
            core::BORDER_CONSTANT,
            imgproc::morphology_default_border_value()?,
        )?;
        self.regions.find(&mut joined)
    }
}

/// Per pixel, the largest difference over the channels.
fn largest_channel(diff: Mat) -> opencv::Result<Mat> {
    if diff.channels() == 1 {
        return Ok(diff);
    }
    let mut channels = core::Vector::<Mat>::new();
    core::split(&diff, &mut channels)?;
    let mut largest = channels.get(0)?;
    for c in channels.iter().skip(1) {
        let mut m = Mat::default();
        core::max(&largest, &c, &mut m)?;
        largest = m;
    }
    Ok(largest)
}

/// The share of pixels of `frame` that differ from `previous` by more than [`THRESHOLD`], and how
/// many of the frame's 4 × 4 cells have 5 % of their pixels changed or more.
fn changed_share(frame: &Mat, previous: &Mat) -> opencv::Result<(f64, usize)> {
    let mut diff = Mat::default();
    core::absdiff(frame, previous, &mut diff)?;
    let diff = largest_channel(diff)?;
    let mut binary = Mat::default();
    imgproc::threshold(&diff, &mut binary, THRESHOLD, 1.0, imgproc::THRESH_BINARY)?;
    let share = *core::mean_def(&binary)?.first().unwrap_or(&0.0);
    let mut cells = Mat::default();
    imgproc::resize(&binary, &mut cells, Size::new(4, 4), 0.0, 0.0, imgproc::INTER_AREA)?;
    let mut changed = 0;
    for row in 0..4 {
        for col in 0..4 {
            if f64::from(*cells.at_2d::<f32>(row, col)?) >= 0.05 {
                changed += 1;
            }
        }
    }
    Ok((share, changed))
}
