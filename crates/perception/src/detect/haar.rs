//! OpenCV's Haar full-body cascade (Debian `opencv-data`).

use super::{BBox, Detect, DetectError, Detection, Image, require_file};
use opencv::core::{Mat, Rect, Size, Vector};
use opencv::imgproc;
use opencv::objdetect::{CascadeClassifier, CascadeClassifierTrait, CascadeClassifierTraitConst};
use opencv::prelude::*;
use std::path::Path;

/// Where Debian's `opencv-data` installs the full-body cascade.
pub const DEFAULT_CASCADE: &str = "/usr/share/opencv4/haarcascades/haarcascade_fullbody.xml";

/// Neighbours a candidate needs to be reported at confidence 0.5.
const MIN_NEIGHBORS: i32 = 3;

/// Haar cascade detector. Confidence = n / (n + 3) for a box supported by n raw candidates, so
/// the conventional `minNeighbors = 3` is a confidence of 0.5.
pub struct HaarDetector {
    cascade: CascadeClassifier,
    grey: Mat,
}

impl HaarDetector {
    /// Loads `path`, or the Debian full-body cascade.
    pub fn new(path: Option<&Path>) -> Result<Self, DetectError> {
        let path = path.unwrap_or(Path::new(DEFAULT_CASCADE));
        require_file(path)?;
        let load = |source| DetectError::Load {
            path: path.to_owned(),
            source,
        };
        let cascade = CascadeClassifier::new(path).map_err(load)?;
        if cascade.empty()? {
            return Err(DetectError::BadModel {
                path: path.to_owned(),
                problem: "not a cascade OpenCV can load".into(),
            });
        }
        Ok(Self {
            cascade,
            grey: Mat::default(),
        })
    }
}

impl Detect for HaarDetector {
    fn name(&self) -> &'static str {
        "haar"
    }

    fn detect(&mut self, image: &Image<'_>) -> Result<Vec<Detection>, DetectError> {
        Ok(image.with_mat(|mat| {
            if mat.channels() == 3 {
                imgproc::cvt_color_def(mat, &mut self.grey, imgproc::COLOR_RGB2GRAY)?;
            } else {
                mat.convert_to_def(&mut self.grey, opencv::core::CV_8U)?;
            }
            let mut equalised = Mat::default();
            imgproc::equalize_hist(&self.grey, &mut equalised)?;
            let mut found = Vector::<Rect>::new();
            let mut neighbours = Vector::<i32>::new();
            self.cascade.detect_multi_scale2(
                &equalised,
                &mut found,
                &mut neighbours,
                1.05,
                1,
                0,
                Size::new(24, 48),
                Size::default(),
            )?;
            Ok(found
                .iter()
                .zip(neighbours.iter())
                .map(|(r, n)| Detection {
                    bbox: BBox::from(r),
                    score: n as f32 / (n + MIN_NEIGHBORS) as f32,
                })
                .collect())
        })?)
    }
}
