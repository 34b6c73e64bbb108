//! Batched feature extraction for the live pipeline and for evaluation: crops of any size in,
//! L2-normalised float32 embeddings out. An embedder works in two halves ([`super::preprocess`]):
//! its [`Stager`] prepares a batch on the host, [`Embed::infer`] runs the rest on the device, so
//! that a pipeline can stage batch n+1 while batch n runs.

use super::preprocess::{Normalisation, PreprocessError, Staged, Stager};
use super::weights::{self, WeightFile, WeightsError};
use super::{LbaNet, ModelSpec};
use reid_core::base::{Crop, Modality};
use reid_core::config::site::Preprocess;
use std::time::{Duration, Instant};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Errors of feature extraction, naming the crop or tensor involved.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Centre(#[from] super::centre::CentreError),
    #[error("libtorch")]
    Torch(#[from] tch::TchError),
    #[error("{0}")]
    Model(String),
}

/// Where the time of one batch went (host wall-clock; on CUDA each device phase ends with a
/// synchronisation, so a phase holds its own device work).
#[derive(Debug, Clone, Copy, Default)]
pub struct Phases {
    /// Staging on the host (resizing, or packing the crops' pixels).
    pub prepare: Duration,
    /// Upload, and on the tensor way the device's crop, resize and normalisation.
    pub upload: Duration,
    /// The network.
    pub network: Duration,
    /// The embeddings back to the host.
    pub download: Duration,
}

/// Anything that maps crops to embeddings.
pub trait Embed: Send {
    /// Embedding dimension.
    fn dim(&self) -> i64;
    /// The host half, for a thread that stages batches while this one runs them.
    fn stager(&self) -> Stager;
    /// One L2-normalised float32 row per crop of a staged batch, on the CPU, in the crops'
    /// order; records where the time went in `phases`.
    fn infer(&self, staged: Staged, phases: &mut Phases) -> Result<Tensor, EmbedError>;
    /// Stages and runs `crops` in one go.
    fn embed(&self, crops: &[Crop<'_>]) -> Result<Tensor, EmbedError> {
        self.infer(self.stager().stage(crops)?, &mut Phases::default())
    }
}

/// The device half shared by the embedders: input, `network` per modality (on rows of one
/// modality), download; the host buffer goes back to the stager once the result is home.
pub(crate) fn run_staged(
    staged: Staged,
    phases: &mut Phases,
    norm: &Normalisation,
    (device, kind): (Device, Kind),
    dim: i64,
    mut network: impl FnMut(&Tensor, Modality) -> Result<Tensor, EmbedError>,
) -> Result<Tensor, EmbedError> {
    phases.prepare = staged.prepare;
    if staged.is_empty() {
        return Ok(Tensor::f_zeros([0, dim], (Kind::Float, Device::Cpu))?);
    }
    let started = Instant::now();
    let x = staged.input(norm, device, kind)?;
    reid_core::runtime::synchronize(device);
    phases.upload = started.elapsed();
    let started = Instant::now();
    let y = per_modality(&staged.modalities, &x, dim, &mut network)?;
    reid_core::runtime::synchronize(device);
    phases.network = started.elapsed();
    let started = Instant::now();
    let out = y.f_to_device(Device::Cpu)?;
    phases.download = started.elapsed();
    staged.recycle();
    Ok(out)
}

/// Runs `network` on the rows of `x` of each modality and returns float32 rows on `x`'s device,
/// in the batch's order.
fn per_modality(
    modalities: &[Modality],
    x: &Tensor,
    dim: i64,
    network: &mut impl FnMut(&Tensor, Modality) -> Result<Tensor, EmbedError>,
) -> Result<Tensor, EmbedError> {
    let run = |network: &mut dyn FnMut(&Tensor, Modality) -> Result<Tensor, EmbedError>,
               part: &Tensor,
               modality: Modality| {
        let rows = part.size()[0];
        let y = network(part, modality)?;
        if y.size() != [rows, dim] {
            return Err(EmbedError::Model(format!(
                "the {modality} network returned shape {:?}, expected [{rows}, {dim}]",
                y.size()
            )));
        }
        Ok(y.f_to_kind(Kind::Float)?)
    };
    if let Some(&only) = modalities.first()
        && modalities.iter().all(|&m| m == only)
    {
        return run(network, x, only);
    }
    let mut out = Tensor::f_zeros([modalities.len() as i64, dim], (Kind::Float, x.device()))?;
    for modality in [Modality::Visible, Modality::Thermal] {
        let rows: Vec<i64> = (0..modalities.len() as i64)
            .filter(|&i| modalities[i as usize] == modality)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let index = Tensor::from_slice(&rows).f_to_device(x.device())?;
        let y = run(network, &x.f_index_select(0, &index)?, modality)?;
        let _ = out.f_index_copy_(0, &index, &y)?;
    }
    Ok(out)
}

/// The built-in LbA network as an embedder.
pub struct LbaEmbedder {
    net: LbaNet,
    // Owns the variables `net` refers to.
    _vs: VarStore,
    device: Device,
    kind: Kind,
    stager: Stager,
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

    /// Wraps a network whose variables live in `vs`; crops are prepared the `auto` way (see
    /// [`LbaEmbedder::with_preprocess`]).
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
        let stager = Stager::new(net.spec.input_size, Preprocess::Auto, device);
        Ok(Self {
            net,
            _vs: vs,
            device,
            kind,
            stager,
        })
    }

    /// Prepares crops the given way (`model.preprocess`).
    pub fn with_preprocess(mut self, preprocess: Preprocess) -> Self {
        self.stager = Stager::new(self.net.spec.input_size, preprocess, self.device);
        self
    }

    /// The network description.
    pub fn spec(&self) -> &ModelSpec {
        &self.net.spec
    }

    /// The element type the network runs in (float32, or float16 in half precision).
    pub fn kind(&self) -> Kind {
        self.kind
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

    fn stager(&self) -> Stager {
        self.stager.clone()
    }

    fn infer(&self, staged: Staged, phases: &mut Phases) -> Result<Tensor, EmbedError> {
        let norm = self.net.spec.normalisation();
        run_staged(
            staged,
            phases,
            &norm,
            (self.device, self.kind),
            self.dim(),
            |x, modality| {
                // The network's layers use tch's infallible operations, which panic on a
                // libtorch error (CUDA out of memory, say): for the caller, this batch's error.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.embed_input(x, modality))).map_err(|p| {
                    let cause = reid_core::runtime::panic_message(p.as_ref());
                    EmbedError::Model(format!(
                        "the {modality} network failed on {} crops: {cause}",
                        x.size()[0]
                    ))
                })
            },
        )
    }
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
/// imply at the configured input size. A configured `model.backbone` must match the file. With
/// `model.centre`, the embeddings are centred (see [`super::centre`]).
pub fn from_site_model(model: &reid_core::config::site::Model, device: Device) -> Result<Box<dyn Embed>, EmbedError> {
    let embedder: Box<dyn Embed> = if model.weights.extension().is_some_and(|e| e == "toml") {
        Box::new(super::torchscript::ScriptEmbedder::load(&model.weights, device)?.with_preprocess(model.preprocess))
    } else {
        let file = site_weights(model)?;
        let half = model.half.unwrap_or(device.is_cuda());
        Box::new(LbaEmbedder::from_file(&file, site_input_size(model), device, half)?.with_preprocess(model.preprocess))
    };
    match &model.centre {
        Some(centre) => Ok(Box::new(super::centre::Centred::open(embedder, centre)?)),
        None => Ok(embedder),
    }
}

/// Reads a site's weight file and checks it against the configured `model.backbone` and
/// `model.input_size`.
pub fn site_weights(model: &reid_core::config::site::Model) -> Result<WeightFile, EmbedError> {
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
pub fn site_input_size(model: &reid_core::config::site::Model) -> Option<(i64, i64)> {
    model.input_size.map(|(h, w)| (i64::from(h), i64::from(w)))
}
