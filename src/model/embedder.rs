//! Batched feature extraction for the live pipeline and for evaluation: crops of any size in,
//! L2-normalised embeddings out. Each crop is resized once, straight into its slot of the batch
//! tensor (the only copy of its pixels); normalisation runs on the device.

use super::weights::{self, WeightsError};
use super::{LbaNet, ModelSpec};
use crate::ingest::Modality;
use opencv::core::{Mat, Size};
use opencv::imgproc;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// One crop: 8-bit pixels, rows `stride` bytes apart, 1 (grey) or 3 (RGB) channels.
#[derive(Debug, Clone, Copy)]
pub struct Crop<'a> {
    pub pixels: &'a [u8],
    pub width: usize,
    pub height: usize,
    pub stride: usize,
    pub channels: usize,
    pub modality: Modality,
}

/// Errors of feature extraction, naming the crop or tensor involved.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("crop {index}: {message}")]
    Crop { index: usize, message: String },
    #[error("resizing crop {index}: {source}")]
    Resize { index: usize, source: opencv::Error },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{0}")]
    Model(String),
}

/// Anything that maps crops to embeddings.
pub trait Embed: Send {
    /// Embedding dimension.
    fn dim(&self) -> i64;
    /// One L2-normalised row per crop, on the CPU, in the crops' order.
    fn embed(&self, crops: &[Crop<'_>]) -> Result<Tensor, EmbedError>;
}

/// Resizes every crop into one u8 batch tensor, B×H×W×3 (grey crops are replicated to RGB).
/// Shrinking uses area averaging (closest to the antialiased Lanczos of training images in the
/// reference), enlarging Lanczos-4.
pub fn batch_pixels(crops: &[Crop<'_>], (height, width): (i64, i64)) -> Result<Tensor, EmbedError> {
    let batch = Tensor::zeros([crops.len() as i64, height, width, 3], (Kind::Uint8, Device::Cpu));
    let slot_bytes = (height * width * 3) as usize;
    let base = batch.data_ptr() as *mut u8;
    for (index, c) in crops.iter().enumerate() {
        let bad = |message: String| EmbedError::Crop { index, message };
        if c.width == 0 || c.height == 0 {
            return Err(bad(format!("empty crop {}x{}", c.width, c.height)));
        }
        if c.channels != 1 && c.channels != 3 {
            return Err(bad(format!("{} channels; expected 1 (grey) or 3 (RGB)", c.channels)));
        }
        if c.stride < c.width * c.channels || c.pixels.len() < c.stride * (c.height - 1) + c.width * c.channels {
            return Err(bad(format!(
                "{} bytes cannot hold {}x{}x{} with stride {}",
                c.pixels.len(),
                c.width,
                c.height,
                c.channels,
                c.stride
            )));
        }
        let typ = if c.channels == 1 {
            opencv::core::CV_8UC1
        } else {
            opencv::core::CV_8UC3
        };
        let resize = |source| EmbedError::Resize { index, source };
        // SAFETY: the header borrows `c.pixels`, whose size was checked against rows × stride
        // above, and lives only within this iteration; OpenCV only reads through it.
        let src = unsafe {
            Mat::new_rows_cols_with_data_unsafe(
                c.height as i32,
                c.width as i32,
                typ,
                c.pixels.as_ptr() as *mut _,
                c.stride,
            )
        }
        .map_err(resize)?;
        // SAFETY: slot `index` of the contiguous B×H×W×3 u8 tensor `batch`, which outlives `dst`.
        let mut dst = unsafe {
            Mat::new_rows_cols_with_data_unsafe(
                height as i32,
                width as i32,
                opencv::core::CV_8UC3,
                base.add(index * slot_bytes) as *mut _,
                (width * 3) as usize,
            )
        }
        .map_err(resize)?;
        let shrink = (c.width as i64) >= width && (c.height as i64) >= height;
        let interp = if shrink {
            imgproc::INTER_AREA
        } else {
            imgproc::INTER_LANCZOS4
        };
        let size = Size::new(width as i32, height as i32);
        if c.channels == 3 {
            imgproc::resize(&src, &mut dst, size, 0.0, 0.0, interp).map_err(resize)?;
        } else {
            let mut grey = Mat::default();
            imgproc::resize(&src, &mut grey, size, 0.0, 0.0, interp).map_err(resize)?;
            imgproc::cvt_color_def(&grey, &mut dst, imgproc::COLOR_GRAY2RGB).map_err(resize)?;
        }
    }
    Ok(batch)
}

/// Turns a u8 B×H×W×3 batch into the network's normalised float B×3×H×W input on `device`.
pub fn normalise(batch: &Tensor, spec: &ModelSpec, device: Device, kind: Kind) -> Tensor {
    let mean = Tensor::from_slice(&spec.mean)
        .to_kind(Kind::Float)
        .view([1, 3, 1, 1])
        .to_device(device);
    let std = Tensor::from_slice(&spec.std)
        .to_kind(Kind::Float)
        .view([1, 3, 1, 1])
        .to_device(device);
    // The u8 batch is B×H×W×3, so the permuted view is already channels-last; the arithmetic
    // keeps that layout.
    let x = batch.to_device(device).permute([0, 3, 1, 2]).to_kind(Kind::Float) / 255.0;
    ((x - mean) / std).to_kind(kind)
}

/// The built-in LbA network as an embedder.
pub struct LbaEmbedder {
    net: LbaNet,
    // Owns the variables `net` refers to.
    _vs: VarStore,
    device: Device,
    kind: Kind,
}

impl LbaEmbedder {
    /// Loads a reid-pipe weight file; `half` runs in float16 (CUDA only).
    pub fn from_weights(path: &std::path::Path, device: Device, half: bool) -> Result<Self, EmbedError> {
        let spec = weights::read_spec(path)?;
        Self::with_spec(path, spec, device, half)
    }

    /// Loads weights of either layout (an ImageNet backbone too) into a network built from `spec`.
    pub fn with_spec(path: &std::path::Path, spec: ModelSpec, device: Device, half: bool) -> Result<Self, EmbedError> {
        let mut vs = VarStore::new(device);
        let net = LbaNet::new(&vs.root(), spec);
        weights::load(&mut vs, path)?;
        Self::new(net, vs, half)
    }

    /// The network (for figures that look inside it).
    pub fn net(&self) -> &LbaNet {
        &self.net
    }

    /// The device the network runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Wraps a network whose variables live in `vs`.
    pub fn new(net: LbaNet, mut vs: VarStore, half: bool) -> Result<Self, EmbedError> {
        let device = vs.device();
        if half && device == Device::Cpu {
            return Err(EmbedError::Model(
                "half precision needs a CUDA device (model.half = true on the CPU)".to_owned(),
            ));
        }
        vs.freeze();
        let kind = if half {
            vs.half();
            Kind::Half
        } else {
            Kind::Float
        };
        // Channels-last weights and inputs select the faster convolution kernels (BENCHMARKS.md).
        super::vars_channels_last(&vs);
        Ok(Self {
            net,
            _vs: vs,
            device,
            kind,
        })
    }

    /// The network description.
    pub fn spec(&self) -> &ModelSpec {
        &self.net.spec
    }

    /// Embeds a normalised B×3×H×W input of one modality.
    pub fn embed_input(&self, x: &Tensor, modality: Modality) -> Tensor {
        tch::no_grad(|| self.net.embed(x, modality))
    }
}

impl Embed for LbaEmbedder {
    fn dim(&self) -> i64 {
        self.net.spec.feature_dim()
    }

    fn embed(&self, crops: &[Crop<'_>]) -> Result<Tensor, EmbedError> {
        let batch = batch_pixels(crops, self.net.spec.input_size)?;
        let x = normalise(&batch, &self.net.spec, self.device, self.kind);
        per_modality(crops, &x, self.dim(), |part, modality| {
            Ok(self.embed_input(part, modality))
        })
    }
}

/// Runs `embed` on the rows of `x` of each modality (as the crops say) and returns the outputs
/// as float rows on the CPU, in crop order.
pub(crate) fn per_modality(
    crops: &[Crop<'_>],
    x: &Tensor,
    dim: i64,
    mut embed: impl FnMut(&Tensor, Modality) -> Result<Tensor, EmbedError>,
) -> Result<Tensor, EmbedError> {
    let mut out = Tensor::zeros([crops.len() as i64, dim], (Kind::Float, Device::Cpu));
    for modality in [Modality::Visible, Modality::Thermal] {
        let rows: Vec<i64> = crops
            .iter()
            .enumerate()
            .filter(|(_, c)| c.modality == modality)
            .map(|(i, _)| i as i64)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let idx = Tensor::from_slice(&rows);
        let part = x.f_index_select(0, &idx.to_device(x.device()))?;
        let y = embed(&part, modality)?.to_kind(Kind::Float).to_device(Device::Cpu);
        if y.size() != [rows.len() as i64, dim] {
            return Err(EmbedError::Model(format!(
                "the {modality} network returned shape {:?}, expected [{}, {dim}]",
                y.size(),
                rows.len()
            )));
        }
        let _ = out.f_index_copy_(0, &idx, &y)?;
    }
    Ok(out)
}

/// The network a site file's LbA weights describe: the file's own description, checked against
/// the configured backbone, or (weights without reid-pipe metadata, an ImageNet backbone) one built
/// from the configured backbone and input size.
pub fn site_model_spec(model: &crate::config::site::Model) -> Result<ModelSpec, EmbedError> {
    match weights::read_spec(&model.weights) {
        Ok(spec) if spec.backbone != model.backbone => Err(EmbedError::Model(format!(
            "{}: the weights are a {:?} network, the configuration says {:?}",
            model.weights.display(),
            spec.backbone,
            model.backbone
        ))),
        Ok(spec) => Ok(spec),
        Err(WeightsError::Metadata { .. }) => Ok(ModelSpec::new(
            model.backbone,
            0,
            (i64::from(model.input_size.0), i64::from(model.input_size.1)),
        )),
        Err(e) => Err(e.into()),
    }
}

/// The embedder a site file's `[model]` names: a TorchScript manifest (`.toml`), or LbA weights
/// (safetensors). Weights without reid-pipe metadata (an ImageNet backbone) are built from the
/// configured backbone and input size.
pub fn from_site_model(model: &crate::config::site::Model, device: Device) -> Result<Box<dyn Embed>, EmbedError> {
    if model.weights.extension().is_some_and(|e| e == "toml") {
        return Ok(Box::new(super::torchscript::ScriptEmbedder::load(
            &model.weights,
            device,
        )?));
    }
    let spec = site_model_spec(model)?;
    Ok(Box::new(LbaEmbedder::with_spec(
        &model.weights,
        spec,
        device,
        model.half,
    )?))
}
