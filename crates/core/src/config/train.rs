//! The training file (`reid-pipe train train.toml`): dataset, model, loss terms, schedule.
//! Defaults are the paper's recipe (see `shared/spec` §5): P=8 identities × K=4 images per
//! modality, 288×144 input, SGD with Nesterov momentum, 81 epochs with warm-up and two steps.

use super::checks::{self, Pair};
use super::{ConfigError, Source};
use crate::base::{Backbone, Device};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A validated training configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub file: PathBuf,
    /// Seed for sampling, augmentation, pairing and initialisation.
    pub seed: u64,
    /// Checkpoints, logs and summaries go here.
    pub output_dir: PathBuf,
    pub dataset: Dataset,
    pub model: TrainModel,
    pub loss: Loss,
    pub schedule: Schedule,
    pub device: Device,
    pub threads: usize,
    pub loader: Loader,
}

/// The training loader (`[loader]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loader {
    /// Threads that decode the dataset and assemble batches.
    pub workers: usize,
    /// Batches assembled ahead of the training step.
    pub prefetch: usize,
}

/// The element type of mixed-precision training (`schedule.amp_dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AmpDtype {
    /// bfloat16 where the GPU runs it natively (compute capability 8.0 and newer), else float16.
    #[default]
    Auto,
    /// bfloat16: float32's range, no loss scaling needed.
    Bfloat16,
    /// float16 with dynamic loss scaling.
    Float16,
}

/// How the trainer draws a batch's identities (`schedule.sampler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerKind {
    /// The recipe's: P identities drawn at random.
    #[default]
    Identity,
    /// One identity drawn at random and, first, the identities seen at the same time by the same
    /// camera (certainly other people: `exp/co_occurring.txt`, written by `reid-pipe harvest`),
    /// then random ones up to P.
    CoOccurring,
}

impl SamplerKind {
    /// The name the training file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            SamplerKind::Identity => "identity",
            SamplerKind::CoOccurring => "co-occurring",
        }
    }
}

/// Which dataset and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub kind: DatasetKind,
    pub root: PathBuf,
    /// RegDB trial (1..=10).
    pub trial: u32,
    /// Cache decoded, resized images on disk.
    pub cache: bool,
}

/// Supported dataset layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    Sysu,
    Regdb,
    Market,
    Duke,
}

/// Network settings for training.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainModel {
    pub backbone: Backbone,
    /// The starting point of training.
    pub pretrained: Pretrained,
    /// Input height × width.
    pub input_size: (u32, u32),
    /// Split the pooled feature into this many horizontal parts (PCB); 1 = global pooling.
    pub parts: u32,
}

/// Where training starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pretrained {
    /// Random initialisation (`pretrained = "none"`, or a backbone without ImageNet weights).
    None,
    /// A weight file (any format `reid-pipe import` reads): ImageNet weights, or a re-ID model to
    /// fine-tune.
    File(PathBuf),
}

/// Where a backbone's ImageNet weights come from, for the message that asks for them.
fn imagenet_source(backbone: Backbone) -> Option<&'static str> {
    match backbone {
        Backbone::Resnet50 => Some(
            "the LbA recipe starts from torchvision's ImageNet ResNet-50 `resnet50-19c8e357.pth` (what \
             `torchvision.models.resnet50(pretrained=True)` downloads; newer torchvision: `IMAGENET1K_V1`, see \
             models/README.md): convert it once with \
             `reid-pipe import resnet50-19c8e357.pth models/weights/resnet50_imagenet.safetensors` and name that file here",
        ),
        Backbone::Mobilenetv2 => Some(
            "MobileNetV2 starts from ImageNet weights: models/weights/mobilenetv2_imagenet.safetensors, made by \
             scripts/setup.sh",
        ),
        Backbone::Tinyresnet => None,
    }
}

/// Loss terms and their weights; a weight of 0 switches a term off.
#[derive(Debug, Clone, PartialEq)]
pub struct Loss {
    pub id_weight: f64,
    pub triplet_weight: f64,
    pub triplet_margin: f64,
    pub id_consistency_weight: f64,
    pub dense_triplet_weight: f64,
    pub dense_triplet_margin: f64,
    pub dense_triplet_weighting: DenseTripletWeighting,
    /// CMAlign softmax scale τ (multiplies the cosine similarity).
    pub cmalign_temperature: f64,
    /// Stages CMAlign runs on.
    pub cmalign_stages: Vec<Stage>,
}

/// How the co-attention weights the dense triplet term (spec §3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DenseTripletWeighting {
    /// The reference code's batch-mean broadcast (reproduces the published numbers).
    Code,
    /// Per-sample weighting as the paper describes it.
    Intended,
}

/// Backbone stage a CMAlign module attaches to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Layer3,
    Layer4,
}

/// Optimiser and learning-rate schedule (per epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub epochs: u32,
    /// Identities per batch (P).
    pub identities_per_batch: usize,
    /// Images per identity per modality (K).
    pub images_per_identity: usize,
    pub base_lr: f64,
    /// Backbone learning rate as a fraction of `base_lr`.
    pub backbone_lr_mult: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// Linear warm-up epochs.
    pub warmup_epochs: u32,
    /// Epochs at which the learning rate is multiplied by `gamma`.
    pub milestones: Vec<u32>,
    pub gamma: f64,
    /// Evaluate on the test protocol every this many epochs (0 = never).
    pub eval_every: u32,
    /// Mixed precision (CUDA only).
    pub amp: bool,
    /// Its element type.
    pub amp_dtype: AmpDtype,
    /// How a batch's identities are drawn.
    pub sampler: SamplerKind,
}

impl TrainConfig {
    /// Loads and validates a training file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (raw, text) = super::read::<RawTrain>(path)?;
        raw.check(&Source::new(path, &text))
    }

    /// Parses and validates training TOML; `path` names the file in errors.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, ConfigError> {
        let raw = super::parse::<RawTrain>(path, bytes)?;
        let text = String::from_utf8_lossy(bytes);
        raw.check(&Source::new(path, &text))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrain {
    seed: Option<Spanned<i64>>,
    output_dir: Spanned<PathBuf>,
    device: Option<Spanned<String>>,
    threads: Option<Spanned<i64>>,
    dataset: RawDataset,
    model: RawTrainModel,
    #[serde(default)]
    loss: RawLoss,
    #[serde(default)]
    schedule: RawSchedule,
    #[serde(default)]
    loader: RawLoader,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLoader {
    workers: Option<Spanned<i64>>,
    prefetch: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    kind: DatasetKind,
    root: Spanned<PathBuf>,
    trial: Option<Spanned<i64>>,
    #[serde(default = "yes")]
    cache: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrainModel {
    backbone: Spanned<Backbone>,
    pretrained: Option<Spanned<PathBuf>>,
    input_size: Option<Spanned<Pair<i64>>>,
    parts: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLoss {
    id: Option<Spanned<f64>>,
    triplet: Option<Spanned<f64>>,
    triplet_margin: Option<Spanned<f64>>,
    id_consistency: Option<Spanned<f64>>,
    dense_triplet: Option<Spanned<f64>>,
    dense_triplet_margin: Option<Spanned<f64>>,
    dense_triplet_weighting: Option<DenseTripletWeighting>,
    cmalign_temperature: Option<Spanned<f64>>,
    cmalign_stages: Option<Spanned<Vec<Stage>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    epochs: Option<Spanned<i64>>,
    identities_per_batch: Option<Spanned<i64>>,
    images_per_identity: Option<Spanned<i64>>,
    base_lr: Option<Spanned<f64>>,
    backbone_lr_mult: Option<Spanned<f64>>,
    momentum: Option<Spanned<f64>>,
    nesterov: Option<bool>,
    weight_decay: Option<Spanned<f64>>,
    warmup_epochs: Option<Spanned<i64>>,
    milestones: Option<Spanned<Vec<i64>>>,
    gamma: Option<Spanned<f64>>,
    eval_every: Option<Spanned<i64>>,
    #[serde(default)]
    amp: bool,
    amp_dtype: Option<Spanned<AmpDtype>>,
    sampler: Option<Spanned<SamplerKind>>,
}

impl RawTrain {
    fn check(self, src: &Source<'_>) -> Result<TrainConfig, ConfigError> {
        let device = match &self.device {
            None => Device::AUTO,
            Some(d) => Device::parse(d.get_ref()).ok_or_else(|| {
                src.error(
                    "device",
                    d.span(),
                    format!(
                        "expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\", found {:?}",
                        d.get_ref()
                    ),
                )
            })?,
        };
        let d = &self.dataset;
        let trial = checks::int(src, "dataset.trial", &d.trial, 1, 1, 10)? as u32;
        if d.trial.is_some() && d.kind != DatasetKind::Regdb {
            return Err(src.error(
                "dataset.trial",
                d.trial.as_ref().map_or(0..0, Spanned::span),
                "`trial` applies only to the `regdb` dataset",
            ));
        }
        let dataset = Dataset {
            kind: d.kind,
            root: src.resolve(d.root.get_ref()),
            trial,
            cache: d.cache,
        };
        let m = &self.model;
        let input_size = match &m.input_size {
            None => (288, 144),
            Some(s) => {
                let Pair([h, w]) = *s.get_ref();
                if !(16..=2048).contains(&h) || !(16..=2048).contains(&w) {
                    return Err(src.error(
                        "model.input_size",
                        s.span(),
                        format!("expected [height, width], each in [16, 2048], found [{h}, {w}]"),
                    ));
                }
                (h as u32, w as u32)
            }
        };
        let backbone = *m.backbone.get_ref();
        let pretrained = match &m.pretrained {
            Some(p) if p.get_ref().as_os_str() == "none" => Pretrained::None,
            Some(p) if p.get_ref().as_os_str().is_empty() => {
                return Err(src.error(
                    "model.pretrained",
                    p.span(),
                    "expected the path of a weight file, or \"none\" to start from random weights",
                ));
            }
            Some(p) => Pretrained::File(src.resolve(p.get_ref())),
            None => match imagenet_source(backbone) {
                // Training the recipe from random weights by omission is a silent catastrophe.
                Some(source) => {
                    return Err(src.error(
                        "model.pretrained",
                        m.backbone.span(),
                        format!(
                            "not set: {source}; or write pretrained = \"none\" to train from random weights \
                             (far below the published numbers)"
                        ),
                    ));
                }
                None => Pretrained::None,
            },
        };
        let model = TrainModel {
            backbone,
            pretrained,
            input_size,
            parts: checks::int(src, "model.parts", &m.parts, 1, 1, 16)? as u32,
        };
        let loss = self.loss.check(src)?;
        let batch_span = self.schedule.identities_per_batch.as_ref().map_or(0..0, Spanned::span);
        if let Some(s) = &self.schedule.sampler
            && *s.get_ref() == SamplerKind::CoOccurring
            && dataset.kind == DatasetKind::Regdb
        {
            return Err(src.error(
                "schedule.sampler",
                s.span(),
                "\"co-occurring\" needs a harvested set (dataset.kind = \"sysu\", or \"market\" for a single-modality harvest, with exp/co_occurring.txt)",
            ));
        }
        let schedule = self.schedule.check(src)?;
        if schedule.identities_per_batch <= schedule.images_per_identity {
            let span = batch_span;
            return Err(src.error(
                "schedule.identities_per_batch",
                span,
                format!(
                    "CMAlign draws {} distinct other identities per identity as negatives, so identities_per_batch must be > images_per_identity ({} ≤ {})",
                    schedule.images_per_identity, schedule.identities_per_batch, schedule.images_per_identity
                ),
            ));
        }
        Ok(TrainConfig {
            file: src.file.to_path_buf(),
            seed: checks::int(src, "seed", &self.seed, 0, 0, i64::MAX)? as u64,
            output_dir: src.resolve(self.output_dir.get_ref()),
            dataset,
            model,
            loss,
            schedule,
            device,
            threads: checks::int(src, "threads", &self.threads, 2, 1, 1024)? as usize,
            loader: Loader {
                workers: checks::int(src, "loader.workers", &self.loader.workers, default_workers(), 1, 64)? as usize,
                prefetch: checks::int(src, "loader.prefetch", &self.loader.prefetch, 4, 1, 64)? as usize,
            },
        })
    }
}

/// Loader threads by default: the cores, at most 8.
fn default_workers() -> i64 {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(8) as i64)
}

impl RawLoss {
    fn check(self, src: &Source<'_>) -> Result<Loss, ConfigError> {
        let w = |key: &str, v: &Option<Spanned<f64>>, default: f64| {
            checks::float(src, &format!("loss.{key}"), v, default, 0.0, 1000.0)
        };
        let stages = match &self.cmalign_stages {
            None => vec![Stage::Layer3, Stage::Layer4],
            Some(s) => {
                let mut v = s.get_ref().clone();
                v.sort_by_key(|st| *st as u8);
                if v.windows(2).any(|p| p[0] == p[1]) {
                    return Err(src.error("loss.cmalign_stages", s.span(), "each stage may be listed once"));
                }
                v
            }
        };
        let loss = Loss {
            id_weight: w("id", &self.id, 1.0)?,
            triplet_weight: w("triplet", &self.triplet, 1.0)?,
            triplet_margin: w("triplet_margin", &self.triplet_margin, 0.3)?,
            id_consistency_weight: w("id_consistency", &self.id_consistency, 1.0)?,
            dense_triplet_weight: w("dense_triplet", &self.dense_triplet, 0.5)?,
            dense_triplet_margin: w("dense_triplet_margin", &self.dense_triplet_margin, 0.3)?,
            dense_triplet_weighting: self.dense_triplet_weighting.unwrap_or(DenseTripletWeighting::Code),
            cmalign_temperature: checks::positive(src, "loss.cmalign_temperature", &self.cmalign_temperature, 50.0)?,
            cmalign_stages: stages,
        };
        let weights = [
            loss.id_weight,
            loss.triplet_weight,
            loss.id_consistency_weight,
            loss.dense_triplet_weight,
        ];
        if weights.iter().all(|&w| w == 0.0) {
            let span = [&self.id, &self.triplet, &self.id_consistency, &self.dense_triplet]
                .into_iter()
                .flatten()
                .map(Spanned::span)
                .next()
                .unwrap_or(0..0);
            return Err(src.error(
                "loss",
                span,
                "every loss weight (id, triplet, id_consistency, dense_triplet) is 0: there is nothing to train; \
                 switch at least one on",
            ));
        }
        Ok(loss)
    }
}

impl RawSchedule {
    fn check(self, src: &Source<'_>) -> Result<Schedule, ConfigError> {
        let epochs = checks::int(src, "schedule.epochs", &self.epochs, 81, 1, 100_000)? as u32;
        let milestones = match &self.milestones {
            None => vec![20, 50],
            Some(m) => {
                let v = m.get_ref();
                if v.windows(2).any(|p| p[0] >= p[1]) || v.iter().any(|&e| e < 0 || e >= i64::from(epochs)) {
                    return Err(src.error(
                        "schedule.milestones",
                        m.span(),
                        format!("expected increasing epochs in [0, {epochs}), found {v:?}"),
                    ));
                }
                v.iter().map(|&e| e as u32).collect()
            }
        };
        Ok(Schedule {
            epochs,
            identities_per_batch: checks::int(
                src,
                "schedule.identities_per_batch",
                &self.identities_per_batch,
                8,
                2,
                1024,
            )? as usize,
            images_per_identity: checks::int(
                src,
                "schedule.images_per_identity",
                &self.images_per_identity,
                4,
                1,
                1024,
            )? as usize,
            base_lr: checks::positive(src, "schedule.base_lr", &self.base_lr, 0.1)?,
            backbone_lr_mult: checks::float(
                src,
                "schedule.backbone_lr_mult",
                &self.backbone_lr_mult,
                0.1,
                0.0,
                100.0,
            )?,
            momentum: checks::float(src, "schedule.momentum", &self.momentum, 0.9, 0.0, 1.0)?,
            nesterov: self.nesterov.unwrap_or(true),
            weight_decay: checks::float(src, "schedule.weight_decay", &self.weight_decay, 5e-4, 0.0, 1.0)?,
            warmup_epochs: checks::int(
                src,
                "schedule.warmup_epochs",
                &self.warmup_epochs,
                10,
                0,
                i64::from(epochs),
            )? as u32,
            milestones,
            gamma: checks::float(src, "schedule.gamma", &self.gamma, 0.1, 0.0, 1.0)?,
            eval_every: checks::int(src, "schedule.eval_every", &self.eval_every, 40, 0, 100_000)? as u32,
            amp: self.amp,
            amp_dtype: match &self.amp_dtype {
                Some(d) if !self.amp => {
                    return Err(src.error(
                        "schedule.amp_dtype",
                        d.span(),
                        "set, but schedule.amp is false: add `amp = true` or remove amp_dtype",
                    ));
                }
                Some(d) => *d.get_ref(),
                None => AmpDtype::Auto,
            },
            sampler: self.sampler.map(Spanned::into_inner).unwrap_or_default(),
        })
    }
}

impl Schedule {
    /// Learning rate of the head (BN neck, classifier) at `epoch` (0-based): linear warm-up to
    /// `base_lr` over `warmup_epochs`, then multiplied by `gamma` at each milestone.
    pub fn head_lr(&self, epoch: u32) -> f64 {
        if epoch < self.warmup_epochs {
            return self.base_lr * f64::from(epoch + 1) / f64::from(self.warmup_epochs);
        }
        let steps = self.milestones.iter().filter(|&&m| epoch >= m).count();
        self.base_lr * self.gamma.powi(steps as i32)
    }

    /// Learning rate of the backbone at `epoch`.
    pub fn backbone_lr(&self, epoch: u32) -> f64 {
        self.head_lr(epoch) * self.backbone_lr_mult
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_is_the_papers() {
        let cfg = TrainConfig::from_bytes(
            Path::new("t.toml"),
            b"output_dir = \"runs/x\"\n[dataset]\nkind = \"sysu\"\nroot = \"/d\"\n[model]\nbackbone = \"resnet50\"\npretrained = \"none\"\n",
        )
        .expect("valid");
        let s = &cfg.schedule;
        let lrs: Vec<f64> = [0, 4, 9, 10, 19, 20, 49, 50, 80]
            .iter()
            .map(|&e| s.head_lr(e))
            .collect();
        let want = [0.01, 0.05, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001];
        for (got, want) in lrs.iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{lrs:?}");
        }
        assert!((s.backbone_lr(50) - 0.0001).abs() < 1e-12);
        assert_eq!(s.epochs, 81);
    }
}
