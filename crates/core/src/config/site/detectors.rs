//! The `[detector]`, `[thermal_detector]` and `[tracker]` sections of the site file, and their
//! per-camera overrides (`[cameras.detector]`, `[cameras.thermal_detector]`): every key a camera
//! sets replaces the site-wide value for that camera only.

use crate::config::checks::{self, Pair};
use crate::config::{ConfigError, Source};
use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

/// Person detector settings for visible frames.
#[derive(Debug, Clone, PartialEq)]
pub struct Detector {
    pub kind: DetectorKind,
    /// Model file for `ssd` (the `.pb`, with its `.pbtxt` beside it), `onnx` and (optionally) `haar`.
    pub model: Option<PathBuf>,
    /// Minimum detection confidence in [0, 1].
    pub confidence: f32,
    /// NMS IoU threshold in [0, 1].
    pub nms_iou: f32,
    /// Smallest box kept, width × height in pixels.
    pub min_box: (u32, u32),
    /// Margin added around each box before cropping, as a fraction of its size.
    pub crop_margin: f32,
    /// Region of interest (polygon in frame pixels): detections whose foot point (bottom centre)
    /// lies outside are dropped. `None` keeps the whole frame.
    pub roi: Option<Vec<(f32, f32)>>,
    /// Output layout of an `onnx` model.
    pub layout: YoloLayout,
    /// Network input width × height of an `onnx` model.
    pub input_size: (u32, u32),
    /// Class ids kept from an `onnx` model (COCO: 0 is person).
    pub classes: Vec<u32>,
}

impl Detector {
    /// A detector of `kind` with every other setting at its documented default.
    pub fn with_defaults(kind: DetectorKind, model: Option<PathBuf>) -> Self {
        Self {
            kind,
            model,
            confidence: 0.5,
            nms_iou: 0.45,
            min_box: (16, 32),
            crop_margin: 0.0,
            roi: None,
            layout: YoloLayout::Yolov8,
            input_size: (640, 640),
            classes: vec![0],
        }
    }
}

/// Which detector runs on visible frames (thermal frames use the hot-region detector).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectorKind {
    Hog,
    Haar,
    Ssd,
    Onnx,
    /// Moving regions against a running-average background (for fixed cameras; also what the
    /// end-to-end test uses on rendered people, whom the learned detectors do not take for people).
    Motion,
}

/// Output tensor layout of a YOLO ONNX model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum YoloLayout {
    /// `[1, N, 5 + C]`: cx, cy, w, h, objectness, class scores.
    Yolov5,
    /// `[1, 4 + C, N]`: cx, cy, w, h, class scores.
    Yolov8,
}

/// Hot-region detector settings for thermal frames.
#[derive(Debug, Clone, PartialEq)]
pub struct ThermalDetector {
    /// A pixel is hot when it exceeds the frame mean by this many standard deviations (and
    /// Otsu's threshold); ignored when `min_celsius` applies.
    pub sigma: f32,
    /// Absolute threshold in °C, used when the camera has a radiometric calibration.
    pub min_celsius: Option<f32>,
    /// Without °C: hot pixels are at least this far above the frame mean (grey levels of 8-bit
    /// frames, raw units of 16-bit ones), so that a scene without people yields no regions.
    pub min_contrast: f32,
    /// Smallest hot region kept, in pixels.
    pub min_area: u32,
    /// Allowed height / width of a region's box.
    pub aspect: (f32, f32),
    /// Size of the morphological opening and closing, in pixels.
    pub morph_px: u32,
    /// Minimum confidence (the hot fraction of the box) in [0, 1].
    pub confidence: f32,
    pub min_box: (u32, u32),
    pub crop_margin: f32,
    pub roi: Option<Vec<(f32, f32)>>,
}

/// Converts raw 16-bit thermal values to °C: `celsius = raw × gain + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    pub gain: f64,
    pub offset: f64,
}

/// Per-camera multi-object tracker settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tracker {
    /// Frames a track may go unmatched before it ends.
    pub max_age: u32,
    /// Matched frames before a track is confirmed (and reported).
    pub min_hits: u32,
    /// Smallest IoU between a prediction and a detection to match them.
    pub iou_threshold: f32,
    /// Each confirmed track sends one embedding per interval to the index.
    pub embed_interval_ms: u64,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            max_age: 30,
            min_hits: 3,
            iou_threshold: 0.3,
            embed_interval_ms: 1000,
        }
    }
}

impl Default for ThermalDetector {
    fn default() -> Self {
        Self {
            sigma: 1.0,
            min_celsius: None,
            min_contrast: 40.0,
            min_area: 150,
            aspect: (0.8, 6.0),
            morph_px: 5,
            confidence: 0.3,
            min_box: (8, 16),
            crop_margin: 0.0,
            roi: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDetector {
    kind: Option<Spanned<DetectorKind>>,
    model: Option<Spanned<PathBuf>>,
    confidence: Option<Spanned<f64>>,
    nms_iou: Option<Spanned<f64>>,
    min_box: Option<Spanned<Pair<i64>>>,
    crop_margin: Option<Spanned<f64>>,
    roi: Option<Spanned<Vec<Pair<f64>>>>,
    layout: Option<YoloLayout>,
    input_size: Option<Spanned<Pair<i64>>>,
    classes: Option<Spanned<Vec<i64>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawThermalDetector {
    sigma: Option<Spanned<f64>>,
    min_celsius: Option<Spanned<f64>>,
    min_contrast: Option<Spanned<f64>>,
    min_area: Option<Spanned<i64>>,
    aspect: Option<Spanned<Pair<f64>>>,
    morph_px: Option<Spanned<i64>>,
    confidence: Option<Spanned<f64>>,
    min_box: Option<Spanned<Pair<i64>>>,
    crop_margin: Option<Spanned<f64>>,
    roi: Option<Spanned<Vec<Pair<f64>>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTracker {
    max_age: Option<Spanned<i64>>,
    min_hits: Option<Spanned<i64>>,
    iou_threshold: Option<Spanned<f64>>,
    embed_interval_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCalibration {
    gain: Spanned<f64>,
    offset: Spanned<f64>,
}

fn min_box(
    src: &Source<'_>,
    key: &str,
    v: &Option<Spanned<Pair<i64>>>,
    default: (u32, u32),
) -> Result<(u32, u32), ConfigError> {
    let Some(b) = v else { return Ok(default) };
    let Pair([w, h]) = *b.get_ref();
    if !(1..=4096).contains(&w) || !(1..=4096).contains(&h) {
        return Err(src.error(
            key,
            b.span(),
            format!("expected [width, height] in pixels, each in [1, 4096], found [{w}, {h}]"),
        ));
    }
    Ok((w as u32, h as u32))
}

fn roi(
    src: &Source<'_>,
    key: &str,
    v: &Option<Spanned<Vec<Pair<f64>>>>,
    default: &Option<Vec<(f32, f32)>>,
) -> Result<Option<Vec<(f32, f32)>>, ConfigError> {
    let Some(p) = v else { return Ok(default.clone()) };
    if p.get_ref().len() < 3 {
        return Err(src.error(
            key,
            p.span(),
            format!(
                "a region of interest needs at least 3 [x, y] points, found {}",
                p.get_ref().len()
            ),
        ));
    }
    if let Some(Pair([x, y])) = p
        .get_ref()
        .iter()
        .find(|Pair([x, y])| !x.is_finite() || !y.is_finite() || *x < 0.0 || *y < 0.0)
    {
        return Err(src.error(
            key,
            p.span(),
            format!("expected pixel coordinates ≥ 0, found [{x}, {y}]"),
        ));
    }
    Ok(Some(
        p.get_ref().iter().map(|&Pair([x, y])| (x as f32, y as f32)).collect(),
    ))
}

impl RawDetector {
    /// Checks the site-wide `[detector]` (`base` = None) or a camera's override of `base`.
    pub(super) fn check(
        self,
        src: &Source<'_>,
        prefix: &str,
        base: Option<&Detector>,
    ) -> Result<Detector, ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        let kind = match (&self.kind, base) {
            (Some(k), _) => *k.get_ref(),
            (None, Some(b)) => b.kind,
            (None, None) => return Err(src.error(prefix, 0..0, "missing `kind` (hog, haar, ssd, onnx or motion)")),
        };
        let model = match &self.model {
            Some(m) => Some(src.resolve(m.get_ref())),
            // A camera that changes the kind does not inherit another kind's model file.
            None => base.filter(|b| b.kind == kind).and_then(|b| b.model.clone()),
        };
        if matches!(kind, DetectorKind::Ssd | DetectorKind::Onnx) && model.is_none() {
            let span = self.kind.as_ref().map_or(0..0, Spanned::span);
            return Err(src.error(
                &key("model"),
                span,
                format!("the `{kind:?}` detector needs a `model` file").to_lowercase(),
            ));
        }
        let d = base.cloned().unwrap_or_else(|| Detector::with_defaults(kind, None));
        let input_size = match &self.input_size {
            None => d.input_size,
            Some(s) => {
                let Pair([w, h]) = *s.get_ref();
                if !(32..=4096).contains(&w) || !(32..=4096).contains(&h) || w % 32 != 0 || h % 32 != 0 {
                    return Err(src.error(
                        &key("input_size"),
                        s.span(),
                        format!("expected [width, height], multiples of 32 in [32, 4096], found [{w}, {h}]"),
                    ));
                }
                (w as u32, h as u32)
            }
        };
        let classes = match &self.classes {
            None => d.classes.clone(),
            Some(c) => {
                if c.get_ref().is_empty() || c.get_ref().iter().any(|&x| !(0..=100_000).contains(&x)) {
                    return Err(src.error(
                        &key("classes"),
                        c.span(),
                        format!("expected a non-empty list of class ids ≥ 0, found {:?}", c.get_ref()),
                    ));
                }
                c.get_ref().iter().map(|&x| x as u32).collect()
            }
        };
        Ok(Detector {
            kind,
            model,
            confidence: checks::float(src, &key("confidence"), &self.confidence, d.confidence.into(), 0.0, 1.0)? as f32,
            nms_iou: checks::float(src, &key("nms_iou"), &self.nms_iou, d.nms_iou.into(), 0.0, 1.0)? as f32,
            min_box: min_box(src, &key("min_box"), &self.min_box, d.min_box)?,
            crop_margin: checks::float(
                src,
                &key("crop_margin"),
                &self.crop_margin,
                d.crop_margin.into(),
                0.0,
                1.0,
            )? as f32,
            roi: roi(src, &key("roi"), &self.roi, &d.roi)?,
            layout: self.layout.unwrap_or(d.layout),
            input_size,
            classes,
        })
    }
}

impl RawThermalDetector {
    /// Checks `[thermal_detector]` or a camera's override of `base`.
    pub(super) fn check(
        self,
        src: &Source<'_>,
        prefix: &str,
        base: &ThermalDetector,
    ) -> Result<ThermalDetector, ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        let aspect = match &self.aspect {
            None => base.aspect,
            Some(a) => {
                let Pair([lo, hi]) = *a.get_ref();
                if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
                    return Err(src.error(
                        &key("aspect"),
                        a.span(),
                        format!("expected [min, max] height/width ratios with 0 < min ≤ max, found [{lo}, {hi}]"),
                    ));
                }
                (lo as f32, hi as f32)
            }
        };
        let min_celsius = match &self.min_celsius {
            None => base.min_celsius,
            Some(_) => Some(checks::float(src, &key("min_celsius"), &self.min_celsius, 0.0, -273.15, 2000.0)? as f32),
        };
        Ok(ThermalDetector {
            sigma: checks::float(src, &key("sigma"), &self.sigma, base.sigma.into(), 0.0, 10.0)? as f32,
            min_celsius,
            min_contrast: checks::float(
                src,
                &key("min_contrast"),
                &self.min_contrast,
                base.min_contrast.into(),
                0.0,
                65_535.0,
            )? as f32,
            min_area: checks::int(src, &key("min_area"), &self.min_area, base.min_area.into(), 1, 1 << 24)? as u32,
            aspect,
            morph_px: checks::int(src, &key("morph_px"), &self.morph_px, base.morph_px.into(), 0, 64)? as u32,
            confidence: checks::float(
                src,
                &key("confidence"),
                &self.confidence,
                base.confidence.into(),
                0.0,
                1.0,
            )? as f32,
            min_box: min_box(src, &key("min_box"), &self.min_box, base.min_box)?,
            crop_margin: checks::float(
                src,
                &key("crop_margin"),
                &self.crop_margin,
                base.crop_margin.into(),
                0.0,
                1.0,
            )? as f32,
            roi: roi(src, &key("roi"), &self.roi, &base.roi)?,
        })
    }
}

impl RawTracker {
    pub(super) fn check(self, src: &Source<'_>) -> Result<Tracker, ConfigError> {
        let d = Tracker::default();
        Ok(Tracker {
            max_age: checks::int(src, "tracker.max_age", &self.max_age, d.max_age.into(), 1, 100_000)? as u32,
            min_hits: checks::int(src, "tracker.min_hits", &self.min_hits, d.min_hits.into(), 1, 1000)? as u32,
            iou_threshold: checks::float(src, "tracker.iou_threshold", &self.iou_threshold, 0.3, 0.0, 1.0)? as f32,
            embed_interval_ms: checks::int(
                src,
                "tracker.embed_interval_ms",
                &self.embed_interval_ms,
                d.embed_interval_ms as i64,
                0,
                3_600_000,
            )? as u64,
        })
    }
}

impl RawCalibration {
    pub(super) fn check(self, src: &Source<'_>, prefix: &str) -> Result<Calibration, ConfigError> {
        let gain = *self.gain.get_ref();
        if !gain.is_finite() || gain == 0.0 {
            return Err(src.error(
                &format!("{prefix}.gain"),
                self.gain.span(),
                format!("expected a finite, non-zero gain, found {gain}"),
            ));
        }
        let offset = checks::float(src, &format!("{prefix}.offset"), &Some(self.offset), 0.0, -1e6, 1e6)?;
        Ok(Calibration { gain, offset })
    }
}
