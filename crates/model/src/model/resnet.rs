//! torchvision-style bottleneck ResNet split the LbA way: a stem (conv1, bn1, ReLU, max-pool) per
//! modality and a shared body (layer1..layer4) with the last stride set to 1. Variable names match
//! the official LbA checkpoints (`visible_module.visible.conv1…`, `base_resnet.base.layer1…`).

use super::layers::{bn, conv};
use tch::Tensor;
use tch::nn;

/// Shape of a ResNet: blocks per stage and the width of the first stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResnetShape {
    pub blocks: [i64; 4],
    pub width: i64,
}

/// ResNet-50 ([3, 4, 6, 3] bottlenecks, width 64 → 2048 output channels).
pub const RESNET50: ResnetShape = ResnetShape {
    blocks: [3, 4, 6, 3],
    width: 64,
};
/// A narrow, shallow ResNet for fast tests ([1, 1, 1, 1], width 8 → 256 output channels).
pub const TINY: ResnetShape = ResnetShape {
    blocks: [1, 1, 1, 1],
    width: 8,
};

const EXPANSION: i64 = 4;

/// conv1 + bn1 + ReLU + 3×3/2 max-pool.
#[derive(Debug)]
pub struct Stem {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
}

impl Stem {
    pub fn new(p: &nn::Path, width: i64) -> Self {
        Self {
            conv1: conv(p / "conv1", 3, width, 7, 2, 1),
            bn1: bn(p / "bn1", width),
        }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)
    }
}

#[derive(Debug)]
struct Bottleneck {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    conv3: nn::Conv2D,
    bn3: nn::BatchNorm,
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl Bottleneck {
    fn new(p: &nn::Path, c_in: i64, planes: i64, stride: i64) -> Self {
        let c_out = planes * EXPANSION;
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            (
                conv(p / "downsample" / 0, c_in, c_out, 1, stride, 1),
                bn(p / "downsample" / 1, c_out),
            )
        });
        Self {
            conv1: conv(p / "conv1", c_in, planes, 1, 1, 1),
            bn1: bn(p / "bn1", planes),
            // torchvision puts the stride on the 3×3 convolution.
            conv2: conv(p / "conv2", planes, planes, 3, stride, 1),
            bn2: bn(p / "bn2", planes),
            conv3: conv(p / "conv3", planes, c_out, 1, 1, 1),
            bn3: bn(p / "bn3", c_out),
            downsample,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        // In-place ReLU and addition (as torchvision's `inplace=True`): fewer large allocations.
        let mut y = x.apply(&self.conv1).apply_t(&self.bn1, train);
        let _ = y.relu_();
        let mut y = y.apply(&self.conv2).apply_t(&self.bn2, train);
        let _ = y.relu_();
        let mut y = y.apply(&self.conv3).apply_t(&self.bn3, train);
        match &self.downsample {
            Some((c, b)) => y += x.apply(c).apply_t(b, train),
            None => y += x,
        }
        let _ = y.relu_();
        y
    }
}

#[derive(Debug)]
struct Layer(Vec<Bottleneck>);

impl Layer {
    fn new(p: &nn::Path, c_in: i64, planes: i64, blocks: i64, stride: i64) -> Self {
        let mut v = Vec::with_capacity(blocks as usize);
        let mut c = c_in;
        for i in 0..blocks {
            v.push(Bottleneck::new(&(p / i), c, planes, if i == 0 { stride } else { 1 }));
            c = planes * EXPANSION;
        }
        Self(v)
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.0.iter().fold(x.shallow_clone(), |x, b| b.forward_t(&x, train))
    }
}

/// layer1..layer4 (shared by both modalities).
#[derive(Debug)]
pub struct Body {
    layers: [Layer; 4],
    channels: [i64; 4],
}

impl Body {
    /// `last_stride` is 1 in LbA (layer4 keeps layer3's resolution) and 2 in torchvision.
    pub fn new(p: &nn::Path, shape: ResnetShape, last_stride: i64) -> Self {
        let w = shape.width;
        let planes = [w, 2 * w, 4 * w, 8 * w];
        let strides = [1, 2, 2, last_stride];
        let mut c_in = w;
        let mut layers = Vec::with_capacity(4);
        for i in 0..4 {
            layers.push(Layer::new(
                &(p / format!("layer{}", i + 1)),
                c_in,
                planes[i],
                shape.blocks[i],
                strides[i],
            ));
            c_in = planes[i] * EXPANSION;
        }
        let layers: [Layer; 4] = layers.try_into().expect("exactly four stages were built");
        Self {
            layers,
            channels: planes.map(|p| p * EXPANSION),
        }
    }

    /// layer1..layer3.
    pub fn to_layer3(&self, x: &Tensor, train: bool) -> Tensor {
        self.layers[..3]
            .iter()
            .fold(x.shallow_clone(), |x, l| l.forward_t(&x, train))
    }

    /// layer4.
    pub fn layer4(&self, x: &Tensor, train: bool) -> Tensor {
        self.layers[3].forward_t(x, train)
    }

    /// Output channels of layer3 and layer4.
    pub fn channels(&self) -> (i64, i64) {
        (self.channels[2], self.channels[3])
    }
}
