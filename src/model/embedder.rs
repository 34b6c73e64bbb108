//! Batched feature extraction for the live pipeline and for evaluation: crops of any size in,
//! L2-normalised embeddings out. Each crop is resized once, straight into its slot of the batch
//! tensor (the only copy of its pixels); normalisation runs on the device.

use super::weights::{self, WeightFile, WeightsError};
use super::{LbaNet, ModelSpec};
use crate::ingest::Modality;
use crate::resample;
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

/// Resizes every crop into one u8 batch tensor, B×H×W×3 (grey crops are replicated to RGB),
/// with Pillow's antialiased Lanczos ([`crate::resample`]): the same pixels as the reference
/// code's `Image.resize((W, H), Image.ANTIALIAS)`, on every path (evaluation, training, live).
pub fn batch_pixels(crops: &[Crop<'_>], (height, width): (i64, i64)) -> Result<Tensor, EmbedError> {
    let batch = Tensor::zeros([crops.len() as i64, height, width, 3], (Kind::Uint8, Device::Cpu));
    let slot_bytes = (height * width * 3) as usize;
    if crops.is_empty() {
        return Ok(batch);
    }
    // SAFETY: `batch` is a contiguous CPU u8 tensor of exactly crops.len() × slot_bytes bytes,
    // owned here and not aliased while the slice lives.
    let all = unsafe { std::slice::from_raw_parts_mut(batch.data_ptr() as *mut u8, crops.len() * slot_bytes) };
    for ((index, c), slot) in crops.iter().enumerate().zip(all.chunks_exact_mut(slot_bytes)) {
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
        let view = resample::View {
            pixels: c.pixels,
            width: c.width,
            height: c.height,
            stride: c.stride,
            channels: c.channels,
        };
        resample::lanczos_rgb(view, width as usize, height as usize, slot);
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
    /// Opens any weight file (see [`weights`]) as an embedder: the network the file describes, or
    /// the one its tensors imply at `input_size` (default: the recipe's). A classifier in the
    /// file is not used. `half` runs in float16 (CUDA only).
    pub fn open(
        path: &std::path::Path,
        input_size: Option<(i64, i64)>,
        device: Device,
        half: bool,
    ) -> Result<Self, EmbedError> {
        Self::from_file(&WeightFile::read(path)?, input_size, device, half)
    }

    /// Like [`LbaEmbedder::open`], for a file already read.
    pub fn from_file(
        file: &WeightFile,
        input_size: Option<(i64, i64)>,
        device: Device,
        half: bool,
    ) -> Result<Self, EmbedError> {
        let opened = weights::open(file, input_size, weights::Head::Embedding, device)?;
        Self::new(opened.net, opened.vs, half)
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

/// Embeds a generated visible and a generated thermal crop and checks the result: one finite row
/// of the announced dimension per crop. Run before a pipeline starts, so that a model that cannot
/// work (NaN weights, a TorchScript module of another output size) stops it at once.
pub fn probe(embedder: &dyn Embed) -> Result<(), EmbedError> {
    let (w, h) = (48usize, 128usize);
    let rgb: Vec<u8> = (0..w * h * 3).map(|i| ((i * 7 + i / 97) % 256) as u8).collect();
    let grey: Vec<u8> = (0..w * h).map(|i| ((i / w) * 2 % 256) as u8).collect();
    let crops =
        [(&rgb, 3, Modality::Visible), (&grey, 1, Modality::Thermal)].map(|(pixels, channels, modality)| Crop {
            pixels,
            width: w,
            height: h,
            stride: w * channels,
            channels,
            modality,
        });
    let out = embedder.embed(&crops)?;
    if out.size() != [2, embedder.dim()] {
        return Err(EmbedError::Model(format!(
            "a test batch of 2 crops gave embeddings of shape {:?}, expected [2, {}]",
            out.size(),
            embedder.dim()
        )));
    }
    let finite: Vec<bool> = Vec::try_from(out.f_isfinite()?.f_all_dim(1, false)?)?;
    if let Some(row) = finite.iter().position(|ok| !ok) {
        let modality = if row == 0 { "visible" } else { "thermal" };
        return Err(EmbedError::Model(format!(
            "the embedding of a test {modality} crop is not finite (NaN or infinite weights?)"
        )));
    }
    Ok(())
}

/// The embedder a site file's `[model]` names: a TorchScript manifest (`.toml`), or any weight
/// file (see [`weights`]); the network is the file's own description, or the one its tensors
/// imply at the configured input size. A configured `model.backbone` must match the file.
pub fn from_site_model(model: &crate::config::site::Model, device: Device) -> Result<Box<dyn Embed>, EmbedError> {
    if model.weights.extension().is_some_and(|e| e == "toml") {
        return Ok(Box::new(super::torchscript::ScriptEmbedder::load(
            &model.weights,
            device,
        )?));
    }
    let file = site_weights(model)?;
    Ok(Box::new(LbaEmbedder::from_file(
        &file,
        site_input_size(model),
        device,
        model.half,
    )?))
}

/// Reads a site's weight file and checks it against the configured `model.backbone` and
/// `model.input_size`.
pub fn site_weights(model: &crate::config::site::Model) -> Result<WeightFile, EmbedError> {
    let file = WeightFile::read(&model.weights)?;
    let spec = file.spec(site_input_size(model))?;
    if let Some(b) = model.backbone
        && b != spec.backbone
    {
        return Err(EmbedError::Model(format!(
            "{}: the weights are a {:?} network, model.backbone says {b:?}",
            model.weights.display(),
            spec.backbone,
        )));
    }
    if let (Some(_), Some((h, w))) = (&file.spec, model.input_size)
        && (i64::from(h), i64::from(w)) != spec.input_size
    {
        tracing::warn!(
            "{}: the network was made for {:?} inputs; model.input_size [{h}, {w}] is not used",
            model.weights.display(),
            spec.input_size
        );
    }
    Ok(file)
}

/// The configured input size (height, width), if any.
pub fn site_input_size(model: &crate::config::site::Model) -> Option<(i64, i64)> {
    model.input_size.map(|(h, w)| (i64::from(h), i64::from(w)))
}
