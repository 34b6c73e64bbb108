//! User-supplied YOLO detectors in ONNX form, run by OpenCV's DNN module: YOLOv5 (`[1, N, 5 + C]`)
//! and YOLOv8 (`[1, 4 + C, N]`) output layouts, letterboxed input.

use super::{BBox, Detect, DetectError, Detection, Image, require_file};
use opencv::core::{BORDER_CONSTANT, Mat, Scalar, Size};
use opencv::prelude::*;
use opencv::{dnn, imgproc};
use reid_core::config::site::YoloLayout;
use std::path::Path;

/// How a frame was fitted into the network input: scale, then padding on the left and top.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub scale: f32,
    pub pad_x: f32,
    pub pad_y: f32,
}

impl Letterbox {
    /// Fits `width` × `height` into `input` (width, height), keeping the aspect ratio and centring.
    pub fn fit(width: u32, height: u32, input: (u32, u32)) -> (Self, Size) {
        let scale = (input.0 as f32 / width as f32).min(input.1 as f32 / height as f32);
        let w = ((width as f32 * scale).round() as i32).max(1);
        let h = ((height as f32 * scale).round() as i32).max(1);
        let lb = Letterbox {
            scale,
            pad_x: ((input.0 as i32 - w) / 2) as f32,
            pad_y: ((input.1 as i32 - h) / 2) as f32,
        };
        (lb, Size::new(w, h))
    }

    /// A box given by centre and size in network pixels, in frame pixels.
    pub fn unmap(&self, cx: f32, cy: f32, w: f32, h: f32) -> BBox {
        BBox::new(
            (cx - w / 2.0 - self.pad_x) / self.scale,
            (cy - h / 2.0 - self.pad_y) / self.scale,
            w / self.scale,
            h / self.scale,
        )
    }
}

/// Reads candidate boxes from a YOLO output of `rows` predictions with `fields` values each,
/// keeping the best of the wanted `classes` per prediction.
pub fn parse(
    layout: YoloLayout,
    data: &[f32],
    shape: &[i32],
    classes: &[u32],
    letterbox: &Letterbox,
) -> Result<Vec<Detection>, DetectError> {
    let bad = || DetectError::Output {
        detector: "onnx",
        problem: format!("unexpected {layout:?} output shape {shape:?}"),
    };
    let &[1, a, b] = shape else { return Err(bad()) };
    let (count, fields) = match layout {
        YoloLayout::Yolov5 => (a as usize, b as usize),
        YoloLayout::Yolov8 => (b as usize, a as usize),
    };
    let first_class = if layout == YoloLayout::Yolov5 { 5 } else { 4 };
    if fields <= first_class || data.len() != count * fields {
        return Err(bad());
    }
    let n_classes = fields - first_class;
    let at = |row: usize, field: usize| match layout {
        YoloLayout::Yolov5 => data[row * fields + field],
        YoloLayout::Yolov8 => data[field * count + row],
    };
    let mut out = Vec::new();
    for row in 0..count {
        let objectness = if layout == YoloLayout::Yolov5 { at(row, 4) } else { 1.0 };
        let best = classes
            .iter()
            .filter(|&&c| (c as usize) < n_classes)
            .map(|&c| objectness * at(row, first_class + c as usize))
            .fold(f32::NEG_INFINITY, f32::max);
        if best > 0.0 {
            out.push(Detection {
                bbox: letterbox.unmap(at(row, 0), at(row, 1), at(row, 2), at(row, 3)),
                score: best,
            });
        }
    }
    Ok(out)
}

/// A YOLO ONNX detector.
pub struct OnnxDetector {
    net: dnn::Net,
    layout: YoloLayout,
    input: (u32, u32),
    classes: Vec<u32>,
}

impl OnnxDetector {
    pub fn new(path: &Path, layout: YoloLayout, input: (u32, u32), classes: Vec<u32>) -> Result<Self, DetectError> {
        require_file(path)?;
        let net = dnn::read_net_from_onnx(path).map_err(|source| DetectError::Load {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            net,
            layout,
            input,
            classes,
        })
    }
}

impl Detect for OnnxDetector {
    fn name(&self) -> &'static str {
        "onnx"
    }

    fn detect(&mut self, image: &Image<'_>) -> Result<Vec<Detection>, DetectError> {
        let (letterbox, size) = Letterbox::fit(image.width, image.height, self.input);
        let padded = image.with_mat(|mat| {
            let mut resized = Mat::default();
            imgproc::resize(mat, &mut resized, size, 0.0, 0.0, imgproc::INTER_LINEAR)?;
            let mut padded = Mat::default();
            let (px, py) = (letterbox.pad_x as i32, letterbox.pad_y as i32);
            opencv::core::copy_make_border(
                &resized,
                &mut padded,
                py,
                self.input.1 as i32 - size.height - py,
                px,
                self.input.0 as i32 - size.width - px,
                BORDER_CONSTANT,
                Scalar::all(114.0),
            )?;
            Ok(padded)
        })?;
        let blob = dnn::blob_from_image(
            &padded,
            1.0 / 255.0,
            Size::default(),
            Scalar::default(),
            false,
            false,
            opencv::core::CV_32F,
        )?;
        self.net.set_input_def(&blob)?;
        let out = self.net.forward_single_def()?;
        let shape: Vec<i32> = out.mat_size().iter().copied().collect();
        parse(self.layout, out.data_typed()?, &shape, &self.classes, &letterbox)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_round_trip() {
        let (lb, size) = Letterbox::fit(768, 576, (640, 640));
        assert_eq!(size, Size::new(640, 480));
        assert_eq!((lb.pad_x, lb.pad_y), (0.0, 80.0));
        let b = lb.unmap(320.0, 320.0, 64.0, 128.0);
        // Network (288, 256)-(352, 384) → frame ((288)/s, (256-80)/s) with s = 640/768.
        let s = 640.0 / 768.0;
        assert!((b.x - 288.0 / s).abs() < 1e-3 && (b.y - 176.0 / s).abs() < 1e-3);
        assert!((b.w - 64.0 / s).abs() < 1e-3 && (b.h - 128.0 / s).abs() < 1e-3);
    }

    #[test]
    fn both_layouts_read_the_same_predictions() {
        let lb = Letterbox {
            scale: 1.0,
            pad_x: 0.0,
            pad_y: 0.0,
        };
        // Two predictions, classes (person, car).
        let v5 = [10.0, 20.0, 4.0, 8.0, 0.5, 0.8, 0.1, 50.0, 60.0, 2.0, 2.0, 0.9, 0.1, 0.9];
        let d5 = parse(YoloLayout::Yolov5, &v5, &[1, 2, 7], &[0], &lb).unwrap();
        assert_eq!(d5.len(), 2);
        assert_eq!(d5[0].bbox, BBox::new(8.0, 16.0, 4.0, 8.0));
        assert!((d5[0].score - 0.4).abs() < 1e-6 && (d5[1].score - 0.09).abs() < 1e-6);
        // Same boxes, YOLOv8 layout: fields major, no objectness.
        let v8 = [10.0, 50.0, 20.0, 60.0, 4.0, 2.0, 8.0, 2.0, 0.4, 0.09, 0.1, 0.9];
        let d8 = parse(YoloLayout::Yolov8, &v8, &[1, 6, 2], &[0], &lb).unwrap();
        assert_eq!(
            d8.iter().map(|d| d.bbox).collect::<Vec<_>>(),
            d5.iter().map(|d| d.bbox).collect::<Vec<_>>()
        );
        // Class filter: only cars.
        let cars = parse(YoloLayout::Yolov8, &v8, &[1, 6, 2], &[1], &lb).unwrap();
        assert!((cars[1].score - 0.9).abs() < 1e-6);
        assert!(parse(YoloLayout::Yolov8, &v8, &[1, 5, 2], &[0], &lb).is_err());
    }
}
