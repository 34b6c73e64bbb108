//! The LbA network in libtorch: a stem per modality, a shared body, GeM pooling, a BN neck and a
//! classifier; CMAlign for training; weights in safetensors; a batched embedder for the live
//! pipeline. One code path serves training (autograd) and inference.

pub mod centre;
pub mod cmalign;
pub mod embedder;
pub mod import;
mod layers;
pub mod mobilenetv2;
pub mod preprocess;
pub mod resnet;
pub mod torchscript;
pub mod weights;

use reid_core::base::{Backbone, Modality};
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

/// What a network is: enough to rebuild it and to feed it (stored in weight files' metadata).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelSpec {
    pub backbone: Backbone,
    /// Identities of the classifier (0: no classifier, an embedding-only network).
    pub classes: i64,
    /// Input height and width.
    pub input_size: (i64, i64),
    /// Per-channel normalisation of RGB inputs scaled to [0, 1].
    pub mean: [f64; 3],
    pub std: [f64; 3],
    /// Stride of the last stage (1 in LbA).
    pub last_stride: i64,
    /// Horizontal stripes of the last feature map pooled separately, each with its own BN neck
    /// and classifier, features concatenated (the PCB head); 1 is global pooling.
    #[serde(default = "one")]
    pub parts: i64,
}

fn one() -> i64 {
    1
}

/// A model description with a value no network can have.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("classes {0} is negative")]
    Classes(i64),
    #[error("input_size [{0}, {1}]: each side must be in [16, 2048]")]
    InputSize(i64, i64),
    #[error("parts {parts} for an input {height} pixels high: between 1 and {}", (height / 16).clamp(1, 16))]
    Parts { parts: i64, height: i64 },
    #[error("last_stride {0} (1 or 2)")]
    LastStride(i64),
    #[error("mean {mean:?} / std {std:?}: finite, std > 0")]
    Normalisation { mean: [f64; 3], std: [f64; 3] },
}

impl ModelSpec {
    /// The LbA recipe's settings for `backbone` with `classes` identities.
    pub fn new(backbone: Backbone, classes: i64, input_size: (i64, i64)) -> Self {
        Self {
            backbone,
            classes,
            input_size,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            last_stride: 1,
            parts: 1,
        }
    }

    /// Checks the values a file may carry: identities ≥ 0, input sides in [16, 2048], parts in
    /// [1, 16] and at most one per 16 rows of input, last stride 1 or 2, positive std.
    pub fn validate(&self) -> Result<(), SpecError> {
        let (h, w) = self.input_size;
        if self.classes < 0 {
            return Err(SpecError::Classes(self.classes));
        }
        if !(16..=2048).contains(&h) || !(16..=2048).contains(&w) {
            return Err(SpecError::InputSize(h, w));
        }
        if !(1..=16).contains(&self.parts) || self.parts > h / 16 {
            return Err(SpecError::Parts {
                parts: self.parts,
                height: h,
            });
        }
        if !matches!(self.last_stride, 1 | 2) {
            return Err(SpecError::LastStride(self.last_stride));
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) || self.mean.iter().any(|m| !m.is_finite()) {
            return Err(SpecError::Normalisation {
                mean: self.mean,
                std: self.std,
            });
        }
        Ok(())
    }

    /// Channels of the last stage.
    pub fn channels(&self) -> i64 {
        match self.backbone {
            Backbone::Resnet50 => 2048,
            Backbone::Mobilenetv2 => 1280,
            Backbone::Tinyresnet => 256,
        }
    }

    /// Dimension of the embedding: the last stage's channels times the parts.
    pub fn feature_dim(&self) -> i64 {
        self.channels() * self.parts.max(1)
    }

    /// The input normalisation.
    pub fn normalisation(&self) -> preprocess::Normalisation {
        preprocess::Normalisation {
            mean: self.mean,
            std: self.std,
        }
    }
}

/// ImageNet channel means (RGB).
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB).
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

enum Stem {
    Resnet(resnet::Stem),
    Mobilenet(mobilenetv2::ConvBn),
}

impl Stem {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Stem::Resnet(s) => s.forward_t(x, train),
            Stem::Mobilenet(s) => s.forward_t(x, train),
        }
    }
}

enum Body {
    Resnet(resnet::Body),
    Mobilenet(mobilenetv2::Body),
}

/// The LbA network. Variable names follow the official checkpoints:
/// `visible_module.visible.*`, `thermal_module.thermal.*`, `base_resnet.base.*`, `bottleneck.*`,
/// `classifier.*`.
pub struct LbaNet {
    pub spec: ModelSpec,
    visible: Stem,
    thermal: Stem,
    body: Body,
    /// BN neck and classifier per part (one for global pooling).
    heads: Vec<(BnNeck, Option<nn::Linear>)>,
}

/// BatchNorm1d whose bias is frozen at 0 (spec §2.4): weight ~ N(1, 0.01), bias not trainable.
struct BnNeck {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
}

impl BnNeck {
    fn new(p: &nn::Path, dim: i64) -> Self {
        Self {
            weight: p.var("weight", &[dim], Init::Randn { mean: 1.0, stdev: 0.01 }),
            bias: p.zeros_no_train("bias", &[dim]),
            running_mean: p.zeros_no_train("running_mean", &[dim]),
            running_var: p.ones_no_train("running_var", &[dim]),
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        Tensor::batch_norm(
            x,
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            0.1,
            1e-5,
            false,
        )
    }
}

/// GeM pooling with a fixed p = 3 and eps = 1e-12 inside the root, no clamp (spec §2.3).
pub fn gem(x: &Tensor) -> Tensor {
    (x.flatten(2, -1)
        .pow_tensor_scalar(3.0)
        .mean_dim([-1i64].as_slice(), false, Kind::Float)
        + 1e-12)
        .pow_tensor_scalar(1.0 / 3.0)
}

impl LbaNet {
    /// Builds the network's variables under `p` (the root of a `VarStore`).
    pub fn new(p: &nn::Path, spec: ModelSpec) -> Self {
        let (visible, thermal, body) = match spec.backbone {
            Backbone::Resnet50 | Backbone::Tinyresnet => {
                let shape = if spec.backbone == Backbone::Resnet50 {
                    resnet::RESNET50
                } else {
                    resnet::TINY
                };
                (
                    Stem::Resnet(resnet::Stem::new(&(p / "visible_module" / "visible"), shape.width)),
                    Stem::Resnet(resnet::Stem::new(&(p / "thermal_module" / "thermal"), shape.width)),
                    Body::Resnet(resnet::Body::new(
                        &(p / "base_resnet" / "base"),
                        shape,
                        spec.last_stride,
                    )),
                )
            }
            Backbone::Mobilenetv2 => (
                Stem::Mobilenet(mobilenetv2::ConvBn::stem(
                    &(p / "visible_module" / "visible" / "features" / 0),
                )),
                Stem::Mobilenet(mobilenetv2::ConvBn::stem(
                    &(p / "thermal_module" / "thermal" / "features" / 0),
                )),
                Body::Mobilenet(mobilenetv2::Body::new(&(p / "base_resnet" / "base"), spec.last_stride)),
            ),
        };
        let dim = spec.channels();
        let cfg = nn::LinearConfig {
            ws_init: Init::Randn {
                mean: 0.0,
                stdev: 0.001,
            },
            bs_init: None,
            bias: false,
        };
        // Global pooling keeps the official names (`bottleneck.*`, `classifier.*`); PCB parts are
        // numbered (`bottleneck.<i>.*`, `classifier.<i>.*`).
        let heads = (0..spec.parts.max(1))
            .map(|i| {
                let (neck, cls) = if spec.parts > 1 {
                    (p / "bottleneck" / i, p / "classifier" / i)
                } else {
                    (p / "bottleneck", p / "classifier")
                };
                (
                    BnNeck::new(&neck, dim),
                    (spec.classes > 0).then(|| nn::linear(cls, dim, spec.classes, cfg)),
                )
            })
            .collect();
        Self {
            spec,
            visible,
            thermal,
            body,
            heads,
        }
    }

    /// The modality's stem.
    pub fn stem(&self, x: &Tensor, modality: Modality, train: bool) -> Tensor {
        match modality {
            Modality::Visible => self.visible.forward_t(x, train),
            Modality::Thermal => self.thermal.forward_t(x, train),
        }
    }

    /// Shared stages up to layer3.
    pub fn to_layer3(&self, x: &Tensor, train: bool) -> Tensor {
        match &self.body {
            Body::Resnet(b) => b.to_layer3(x, train),
            Body::Mobilenet(b) => b.to_layer3(x, train),
        }
    }

    /// The shared last stage.
    pub fn layer4(&self, x: &Tensor, train: bool) -> Tensor {
        match &self.body {
            Body::Resnet(b) => b.layer4(x, train),
            Body::Mobilenet(b) => b.layer4(x, train),
        }
    }

    /// Channels of layer3 and layer4 outputs.
    pub fn channels(&self) -> (i64, i64) {
        match &self.body {
            Body::Resnet(b) => b.channels(),
            Body::Mobilenet(b) => b.channels(),
        }
    }

    /// Backbone feature map (layer4 output) of one modality's images.
    pub fn feature_map(&self, x: &Tensor, modality: Modality, train: bool) -> Tensor {
        self.layer4(&self.to_layer3(&self.stem(x, modality, train), train), train)
    }

    /// GeM over the whole map (B×C), or over each of `parts` horizontal stripes, concatenated
    /// (B×parts·C).
    pub fn pool(&self, map: &Tensor) -> Tensor {
        let parts = self.spec.parts.max(1);
        if parts == 1 {
            return gem(map);
        }
        let h = map.size()[2];
        let stripes: Vec<Tensor> = (0..parts)
            .map(|i| {
                let start = (i * h / parts).min(h - 1);
                let end = ((i + 1) * h / parts).max(start + 1);
                gem(&map.narrow(2, start, end - start))
            })
            .collect();
        Tensor::cat(&stripes, 1)
    }

    /// The test-time feature: the pooled layer4 map, pre-BN, L2-normalised (spec §2.5). No flip
    /// averaging.
    pub fn embed(&self, x: &Tensor, modality: Modality) -> Tensor {
        let f = self.pool(&self.feature_map(x, modality, false));
        // The pooled feature is B×C by construction; like every layer above, a libtorch failure
        // here panics (the embedder turns that into the batch's error).
        reid_core::base::normalize_rows(&f).expect("normalising pooled features")
    }

    /// BN neck then classifier of each part (the identity logits); empty for an embedding-only
    /// network. `pooled` is what [`LbaNet::pool`] returns.
    pub fn classify(&self, pooled: &Tensor, train: bool) -> Vec<Tensor> {
        let c = self.spec.channels();
        self.heads
            .iter()
            .enumerate()
            .filter_map(|(i, (neck, cls))| {
                let part = pooled.narrow(1, i as i64 * c, c);
                cls.as_ref().map(|cls| neck.forward_t(&part, train).apply(cls))
            })
            .collect()
    }
}

/// Returns `x` (4-D) laid out channels-last (NHWC strides, same shape): libtorch then picks its
/// channels-last convolution kernels, markedly faster on CPUs (oneDNN).
pub fn channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Re-lays every 4-D variable (convolution weights) of `vs` out channels-last.
pub fn vars_channels_last(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (_, mut v) in vs.variables() {
            if v.dim() == 4 {
                let cl = channels_last(&v);
                v.set_data(&cl);
            }
        }
    });
}
