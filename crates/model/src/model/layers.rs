//! Layer constructors shared by the backbones, with torchvision's conventions: convolutions
//! followed by batch norm have no bias, and odd kernels are padded to keep the size ("same").

use tch::nn;

/// A bias-free k×k convolution with (k − 1)/2 padding.
pub(super) fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, groups: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding: (k - 1) / 2,
        groups,
        bias: false,
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, k, cfg)
}

/// BatchNorm2d with PyTorch's defaults (eps 1e-5, momentum 0.1).
pub(super) fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, Default::default())
}
