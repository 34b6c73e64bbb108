//! OpenCV's HOG + linear SVM people detector (Dalal & Triggs, 64×128 window).

use super::{BBox, Detect, DetectError, Detection, Image, sigmoid};
use opencv::core::{Rect, Size, Vector};
use opencv::objdetect::{HOGDescriptor, HOGDescriptorTrait, HOGDescriptorTraitConst};

/// HOG people detector. Its confidence is the logistic of the SVM margin, so the usual hit
/// threshold of 0 corresponds to a confidence of 0.5.
pub struct HogDetector {
    hog: HOGDescriptor,
}

impl HogDetector {
    pub fn new() -> Result<Self, DetectError> {
        let mut hog = HOGDescriptor::default()?;
        hog.set_svm_detector(HOGDescriptor::get_default_people_detector()?);
        Ok(Self { hog })
    }
}

impl Detect for HogDetector {
    fn name(&self) -> &'static str {
        "hog"
    }

    fn detect(&mut self, image: &Image<'_>) -> Result<Vec<Detection>, DetectError> {
        Ok(image.with_mat(|mat| {
            let mut found = Vector::<Rect>::new();
            let mut weights = Vector::<f64>::new();
            // Negative hit threshold: let the filter's confidence decide, not the SVM cut-off.
            self.hog.detect_multi_scale_weights(
                mat,
                &mut found,
                &mut weights,
                -1.0,
                Size::new(8, 8),
                Size::new(8, 8),
                1.05,
                2.0,
                false,
            )?;
            Ok(found
                .iter()
                .zip(weights.iter())
                .map(|(r, w)| Detection {
                    bbox: BBox::from(r),
                    score: sigmoid(w as f32),
                })
                .collect())
        })?)
    }
}
