//! Boxes from a binary mask: morphological opening and closing, outer contours, and filters on
//! area and aspect ratio. Shared by the hot-region and motion detectors.

use super::{BBox, DetectError, Detection};
use opencv::core::{self, Mat, Point, Size, Vector};
use opencv::imgproc;

/// The mask-to-box step with its filters.
pub struct Regions {
    min_area: u32,
    /// Allowed height / width.
    aspect: (f32, f32),
    kernel: Option<Mat>,
    morph_px: u32,
}

impl Regions {
    pub fn new(min_area: u32, aspect: (f32, f32), morph_px: u32) -> Self {
        Self {
            min_area,
            aspect,
            kernel: None,
            morph_px,
        }
    }

    /// Regions of an 8-bit mask (non-zero = foreground), cleaned in place. A region's confidence
    /// is the foreground fraction of its box.
    pub fn find(&mut self, mask: &mut Mat) -> Result<Vec<Detection>, DetectError> {
        if self.morph_px > 0 {
            let k = self.morph_px as i32;
            let kernel = match &self.kernel {
                Some(kernel) => kernel,
                None => self.kernel.insert(imgproc::get_structuring_element_def(
                    imgproc::MORPH_ELLIPSE,
                    Size::new(k, k),
                )?),
            };
            let anchor = Point::new(-1, -1);
            let border = imgproc::morphology_default_border_value()?;
            let mut opened = Mat::default();
            imgproc::morphology_ex(
                mask,
                &mut opened,
                imgproc::MORPH_OPEN,
                kernel,
                anchor,
                1,
                core::BORDER_CONSTANT,
                border,
            )?;
            imgproc::morphology_ex(
                &opened,
                mask,
                imgproc::MORPH_CLOSE,
                kernel,
                anchor,
                1,
                core::BORDER_CONSTANT,
                border,
            )?;
        }
        let mut contours = Vector::<Vector<Point>>::new();
        imgproc::find_contours_def(
            mask,
            &mut contours,
            imgproc::RETR_EXTERNAL,
            imgproc::CHAIN_APPROX_SIMPLE,
        )?;
        let (lo, hi) = self.aspect;
        let mut out = Vec::new();
        for contour in contours.iter() {
            let r = imgproc::bounding_rect(&contour)?;
            let area = imgproc::contour_area_def(&contour)?;
            let aspect = r.height as f32 / r.width.max(1) as f32;
            if area < f64::from(self.min_area) || aspect < lo || aspect > hi {
                continue;
            }
            let roi = Mat::roi(mask, r)?;
            let fill = core::count_non_zero(&roi)? as f32 / (r.width * r.height) as f32;
            out.push(Detection {
                bbox: BBox::from(r),
                score: fill,
            });
        }
        Ok(out)
    }
}
