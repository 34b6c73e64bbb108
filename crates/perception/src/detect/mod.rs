//! Person detection on visible and thermal frames: the detectors behind one trait, the filters
//! every detection passes (confidence, size, region of interest, NMS) and a worker pool.
//!
//! Visible frames: OpenCV's HOG people detector, the Haar full-body cascade, the SSDLite-MobileNetV2
//! person detector (OpenCV DNN), a user-supplied YOLO ONNX model, or motion against the
//! background. Thermal frames: a hot-region detector.

pub mod boxes;
pub mod haar;
pub mod hog;
pub mod motion;
pub mod onnx;
pub mod pool;
pub mod regions;
pub mod ssd;
pub mod thermal;

pub use boxes::{BBox, Detection, nms};

use reid_core::base::{Image, ImageError, PixelFormat};
use reid_core::config::site::{Calibration, Detector, DetectorKind, ThermalDetector};
use std::path::{Path, PathBuf};

/// Errors of detection, naming the model file or input involved. Each message says this level
/// only; the cause is the error's source.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("the {0:?} detector needs a model file (`model`)")]
    NoModel(DetectorKind),
    #[error("detector model {}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("detector model {}: not a file", path.display())]
    NotAFile { path: PathBuf },
    #[error("detector model {}: {problem}", path.display())]
    BadModel { path: PathBuf, problem: String },
    #[error("detector model {}: OpenCV cannot load it", path.display())]
    Load {
        path: PathBuf,
        #[source]
        source: opencv::Error,
    },
    #[error("frame")]
    Frame(#[from] ImageError),
    #[error("{0:?} frame given where 16-bit grey was expected")]
    NotGray16(PixelFormat),
    #[error("{detector} output: {problem}")]
    Output { detector: &'static str, problem: String },
    #[error("OpenCV")]
    OpenCv(#[from] opencv::Error),
}

/// A person detector. Implementations return raw candidates; [`Filter`] applies the
/// configured confidence, size, region and NMS rules.
pub trait Detect: Send {
    /// Short name for logs and metrics.
    fn name(&self) -> &'static str;
    /// Candidate people in one frame.
    fn detect(&mut self, image: &Image<'_>) -> Result<Vec<Detection>, DetectError>;
}

/// The rules every detection passes after the detector.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub confidence: f32,
    pub nms_iou: f32,
    pub min_box: (u32, u32),
    pub roi: Option<Vec<(f32, f32)>>,
}

impl Filter {
    /// Clamps to the frame, drops low-confidence, small and out-of-region boxes, then NMS.
    pub fn apply(&self, detections: Vec<Detection>, width: u32, height: u32) -> Vec<Detection> {
        let kept = detections
            .into_iter()
            .filter(|d| d.score >= self.confidence)
            .filter_map(|d| {
                d.bbox
                    .clamp(width, height)
                    .map(|bbox| Detection { bbox, score: d.score })
            })
            .filter(|d| d.bbox.w >= self.min_box.0 as f32 && d.bbox.h >= self.min_box.1 as f32)
            .filter(|d| self.roi.as_ref().is_none_or(|p| boxes::inside(p, d.bbox.foot())))
            .collect();
        nms(kept, self.nms_iou)
    }
}

/// A detector with its filter: what one stream runs.
pub struct StreamDetector {
    pub detector: Box<dyn Detect>,
    pub filter: Filter,
}

impl StreamDetector {
    /// Filtered people in one frame.
    pub fn run(&mut self, image: &Image<'_>) -> Result<Vec<Detection>, DetectError> {
        let raw = self.detector.detect(image)?;
        Ok(self.filter.apply(raw, image.width, image.height))
    }
}

/// Builds the visible-light detector a camera's settings describe.
pub fn visible(cfg: &Detector) -> Result<StreamDetector, DetectError> {
    let detector: Box<dyn Detect> = match cfg.kind {
        DetectorKind::Hog => Box::new(hog::HogDetector::new()?),
        DetectorKind::Haar => Box::new(haar::HaarDetector::new(cfg.model.as_deref())?),
        DetectorKind::Ssd => Box::new(ssd::SsdDetector::new(model_path(cfg)?)?),
        DetectorKind::Onnx => Box::new(onnx::OnnxDetector::new(
            model_path(cfg)?,
            cfg.layout,
            cfg.input_size,
            cfg.classes.clone(),
        )?),
        DetectorKind::Motion => Box::new(motion::MotionDetector::new(cfg.min_box)),
    };
    Ok(StreamDetector {
        detector,
        filter: Filter {
            confidence: cfg.confidence,
            nms_iou: cfg.nms_iou,
            min_box: cfg.min_box,
            roi: cfg.roi.clone(),
        },
    })
}

/// Builds the hot-region detector of a camera's thermal stream.
pub fn thermal(cfg: &ThermalDetector, calibration: Option<Calibration>) -> StreamDetector {
    StreamDetector {
        detector: Box::new(thermal::HotRegionDetector::new(cfg.clone(), calibration)),
        filter: Filter {
            confidence: cfg.confidence,
            nms_iou: 0.45,
            min_box: cfg.min_box,
            roi: cfg.roi.clone(),
        },
    }
}

fn model_path(cfg: &Detector) -> Result<&Path, DetectError> {
    cfg.model.as_deref().ok_or(DetectError::NoModel(cfg.kind))
}

/// Fails with a message naming `path` when it is not a readable file.
pub(crate) fn require_file(path: &Path) -> Result<(), DetectError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(DetectError::NotAFile { path: path.to_owned() }),
        Err(source) => Err(DetectError::Unreadable {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The logistic function, mapping a detector margin to a confidence in (0, 1).
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_applies_every_rule() {
        let d = |x, y, w, h, score| Detection {
            bbox: BBox::new(x, y, w, h),
            score,
        };
        let filter = Filter {
            confidence: 0.5,
            nms_iou: 0.5,
            min_box: (10, 20),
            roi: Some(vec![(0.0, 0.0), (100.0, 0.0), (100.0, 100.0), (0.0, 100.0)]),
        };
        let out = filter.apply(
            vec![
                d(10.0, 10.0, 20.0, 40.0, 0.9),  // kept
                d(11.0, 10.0, 20.0, 40.0, 0.8),  // suppressed by the first
                d(50.0, 10.0, 20.0, 40.0, 0.4),  // too unsure
                d(50.0, 10.0, 5.0, 40.0, 0.9),   // too narrow
                d(60.0, 80.0, 20.0, 40.0, 0.9),  // feet at y = 120, outside the region (frame 200 high)
                d(-10.0, 50.0, 30.0, 40.0, 0.7), // clamped to x = 0, width 20: kept
            ],
            200,
            200,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].score, 0.9);
        assert_eq!(out[1].bbox, BBox::new(0.0, 50.0, 20.0, 40.0));
    }
}
