//! Hot-region person detector for thermal frames: threshold (adaptive, or in °C for calibrated
//! 16-bit frames), morphological clean-up, and contour filters on area and aspect ratio.

use super::regions::Regions;
use super::{Detect, DetectError, Detection, Image};
use opencv::core::{self, Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;
use reid_core::base::PixelFormat;
use reid_core::config::site::{Calibration, ThermalDetector};

/// Hot-region detector. A region's confidence is the fraction of its box that is hot.
pub struct HotRegionDetector {
    cfg: ThermalDetector,
    calibration: Option<Calibration>,
    regions: Regions,
}

impl HotRegionDetector {
    pub fn new(cfg: ThermalDetector, calibration: Option<Calibration>) -> Self {
        let regions = Regions::new(cfg.min_area, cfg.aspect, cfg.morph_px);
        Self {
            cfg,
            calibration,
            regions,
        }
    }

    /// The frame as 32-bit floats: °C for calibrated 16-bit frames, raw values otherwise.
    fn temperatures(&self, image: &Image<'_>) -> Result<Mat, DetectError> {
        Ok(image.with_mat(|mat| {
            let mut out = Mat::default();
            match (image.format, self.calibration) {
                (PixelFormat::Rgb, _) => {
                    let mut grey = Mat::default();
                    imgproc::cvt_color_def(mat, &mut grey, imgproc::COLOR_RGB2GRAY)?;
                    grey.convert_to(&mut out, core::CV_32F, 1.0, 0.0)?;
                }
                (PixelFormat::Gray16, Some(c)) => mat.convert_to(&mut out, core::CV_32F, c.gain, c.offset)?,
                _ => mat.convert_to(&mut out, core::CV_32F, 1.0, 0.0)?,
            }
            Ok(out)
        })?)
    }

    /// The hot threshold of one frame.
    fn threshold(&self, temps: &Mat) -> Result<f64, DetectError> {
        if let (Some(t), Some(_)) = (self.cfg.min_celsius, self.calibration) {
            return Ok(t.into());
        }
        let mut mean = Mat::default();
        let mut std = Mat::default();
        core::mean_std_dev(temps, &mut mean, &mut std, &core::no_array())?;
        let (mean, std) = (*mean.at::<f64>(0)?, *std.at::<f64>(0)?);
        // Otsu's threshold on an 8-bit rendering of the frame's range, mapped back.
        let (mut lo, mut hi) = (0.0, 0.0);
        core::min_max_loc(temps, Some(&mut lo), Some(&mut hi), None, None, &core::no_array())?;
        let otsu = if hi > lo {
            let mut u8s = Mat::default();
            let scale = 255.0 / (hi - lo);
            temps.convert_to(&mut u8s, core::CV_8U, scale, -lo * scale)?;
            let mut ignored = Mat::default();
            let t = imgproc::threshold(
                &u8s,
                &mut ignored,
                0.0,
                255.0,
                imgproc::THRESH_BINARY | imgproc::THRESH_OTSU,
            )?;
            lo + t / scale
        } else {
            hi
        };
        Ok(otsu
            .max(mean + f64::from(self.cfg.sigma) * std)
            .max(mean + f64::from(self.cfg.min_contrast)))
    }
}

impl Detect for HotRegionDetector {
    fn name(&self) -> &'static str {
        "thermal"
    }

    fn detect(&mut self, image: &Image<'_>) -> Result<Vec<Detection>, DetectError> {
        let temps = self.temperatures(image)?;
        let mut smooth = Mat::default();
        imgproc::gaussian_blur_def(&temps, &mut smooth, Size::new(5, 5), 0.0)?;
        let t = self.threshold(&smooth)?;
        let mut binary = Mat::default();
        imgproc::threshold(&smooth, &mut binary, t, 255.0, imgproc::THRESH_BINARY)?;
        let mut hot = Mat::default();
        binary.convert_to(&mut hot, core::CV_8U, 1.0, 0.0)?;
        self.regions.find(&mut hot)
    }
}

/// An 8-bit rendering of a 16-bit frame for the embedder: °C mapped linearly from
/// `range` (for example 15–40 °C) when calibrated, the frame's own min–max otherwise.
pub fn to_u8(image: &Image<'_>, calibration: Option<Calibration>, range: (f64, f64)) -> Result<Vec<u8>, DetectError> {
    if image.format != PixelFormat::Gray16 {
        return Err(DetectError::NotGray16(image.format));
    }
    Ok(image.with_mat(|mat| {
        let (alpha, beta) = match calibration {
            Some(c) => {
                let s = 255.0 / (range.1 - range.0);
                (c.gain * s, (c.offset - range.0) * s)
            }
            None => {
                let (mut lo, mut hi) = (0.0, 0.0);
                core::min_max_loc(mat, Some(&mut lo), Some(&mut hi), None, None, &core::no_array())?;
                let s = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
                (s, -lo * s)
            }
        };
        let mut out = vec![0u8; image.width as usize * image.height as usize];
        // SAFETY: `out` holds exactly height × width bytes and outlives the header.
        let mut dst = unsafe {
            Mat::new_rows_cols_with_data_unsafe(
                image.height as i32,
                image.width as i32,
                core::CV_8UC1,
                out.as_mut_ptr() as *mut _,
                image.width as usize,
            )
        }?;
        mat.convert_to(&mut dst, core::CV_8U, alpha, beta)?;
        Ok(out)
    })?)
}
