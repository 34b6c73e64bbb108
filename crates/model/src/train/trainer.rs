//! The training loop: per-epoch learning rates, identity-balanced batches, the LbA losses, an
//! atomically written checkpoint every epoch (`--resume` continues from it exactly), a JSON-lines
//! log, evaluation on the test protocol, and several runs with a mean ± std summary.
//!
//! Files in the output directory (one per run with `--runs N > 1`: `run-<i>/`):
//! - `checkpoint.safetensors`: model, momentum buffers, the float16 loss scaler's state, next
//!   epoch, seed (for `--resume`);
//! - `last.safetensors`: the model alone (for `eval --checkpoint`, `export`, a site file);
//! - `log.jsonl`: one line per epoch: lr, mean of each loss term, images/s, the fraction of the
//!   epoch spent waiting for data, precision (and skipped steps and loss scale in float16),
//!   evaluation metrics.
//!
//! Batches come from the parallel [`loader`](super::loader); the forward pass runs in mixed
//! precision with `schedule.amp` ([`amp`](super::amp)).

use super::amp::{AmpError, Precision, Stepped};
use super::dataset::{self, DatasetError, TrainSet};
use super::loader::{self, Loader};
use super::preflight::{Ready, preflight};
use super::sampler::epoch_batches;
use super::sgd::{Group, Sgd};
use super::step;
use crate::eval::metrics::Scores;
use crate::eval::protocols::{self, RegdbDirection, Shots, SysuMode};
use crate::model::embedder::LbaEmbedder;
use crate::model::preprocess::{PreprocessError, normalise};
use crate::model::weights::{self, Fit, Provenance, WeightFile, WeightsError};
use crate::model::{LbaNet, ModelSpec};
use reid_core::base::PyRandom;
use reid_core::config::TrainConfig;
use reid_core::config::train::DatasetKind;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Errors of training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Eval(#[from] crate::eval::EvalError),
    #[error(
        "epoch {epoch}, step {step}: the `{term}` loss is {value} (not finite); stopped. The checkpoint of the last completed epoch is kept"
    )]
    NonFinite {
        epoch: u32,
        step: usize,
        term: &'static str,
        value: f64,
    },
    #[error("{}", path.display())]
    Checkpoint {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("output_dir {}: {problem}", path.display())]
    OutputDir { path: PathBuf, problem: &'static str },
    #[error("{}: model.pretrained", file.display())]
    Pretrained {
        file: PathBuf,
        #[source]
        source: Box<WeightsError>,
    },
    #[error("{}: {key}: {message}", file.display())]
    Setting {
        file: PathBuf,
        key: &'static str,
        message: String,
    },
    #[error("{}", file.display())]
    Device {
        file: PathBuf,
        source: reid_core::base::DeviceError,
    },
    #[error("libtorch")]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    #[error("{}", file.display())]
    Amp { file: PathBuf, source: AmpError },
    #[error(transparent)]
    Save(#[from] reid_core::safetensors::SafetensorsError),
    #[error("the training loader stopped before the end of the epoch (a worker thread failed)")]
    LoaderStopped,
    #[error(
        "epoch {epoch}, step {step}: {skipped} steps in a row had non-finite gradients even at loss scale {scale}; stopped. The checkpoint of the last completed epoch is kept"
    )]
    ScalerGaveUp {
        epoch: u32,
        step: usize,
        skipped: usize,
        scale: f64,
    },
}

/// Float16 steps in a row with non-finite gradients after which training stops as diverged.
const MAX_SKIPPED_IN_A_ROW: usize = 50;

/// How to train.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Continue from `checkpoint.safetensors` when it exists.
    pub resume: bool,
    /// Independent runs with seeds seed, seed + 1, …
    pub runs: usize,
}

/// What one run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub dir: PathBuf,
    pub seed: u64,
    /// Scores of the last evaluation (the final epoch always evaluates).
    pub metrics: Option<Scores>,
}

/// Trains `opts.runs` runs of the configuration, after the checks of [`preflight`].
pub fn train(cfg: &TrainConfig, opts: Options) -> Result<Vec<RunResult>, TrainError> {
    let ready = preflight(cfg, opts)?;
    tch::set_num_threads(cfg.threads as i32);
    let size = (i64::from(cfg.model.input_size.0), i64::from(cfg.model.input_size.1));
    let cache = cfg.dataset.cache.then(|| cfg.output_dir.join("cache"));
    let set = dataset::load(&cfg.dataset, size, cache.as_deref(), cfg.loader.workers)?;
    tracing::info!("{}", set.summary);
    let mut results = Vec::with_capacity(ready.dirs.len());
    for (run, dir) in ready.dirs.iter().enumerate() {
        let seed = cfg.seed + run as u64;
        results.push(train_run(cfg, &set, &ready, dir, seed, opts.resume)?);
    }
    Ok(results)
}

/// The precision the configuration asks for on `device`.
fn precision(cfg: &TrainConfig, device: Device) -> Result<Precision, TrainError> {
    Precision::new(cfg.schedule.amp, cfg.schedule.amp_dtype, device).map_err(|source| TrainError::Amp {
        file: cfg.file.clone(),
        source,
    })
}

/// An error of the training output or checkpoint `path`: an I/O or format error kept as its
/// cause, or a message.
fn io_err(path: &Path, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

fn train_run(
    cfg: &TrainConfig,
    set: &TrainSet,
    ready: &Ready,
    dir: &Path,
    seed: u64,
    resume: bool,
) -> Result<RunResult, TrainError> {
    let device = ready.device;
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    tch::manual_seed(seed as i64);
    let size = (i64::from(cfg.model.input_size.0), i64::from(cfg.model.input_size.1));
    let spec = ModelSpec {
        parts: i64::from(cfg.model.parts),
        ..ModelSpec::new(cfg.model.backbone, set.classes as i64, size)
    };
    let mut vs = VarStore::new(device);
    let net = LbaNet::new(&vs.root(), spec.clone());
    if let Some(file) = &ready.pretrained {
        initialise_from(&mut vs, file)?;
    }
    // Channels-last convolution weights (inputs are channels-last already): faster kernels.
    crate::model::vars_channels_last(&vs);
    let s = &cfg.schedule;
    let mut sgd = Sgd::new(&vs.variables(), s.momentum, s.nesterov, s.weight_decay);
    let mut precision = precision(cfg, device)?;
    let checkpoint = dir.join("checkpoint.safetensors");
    let log_path = dir.join("log.jsonl");
    let mut start = 0;
    if resume && checkpoint.exists() {
        start = restore(&checkpoint, &mut vs, &mut sgd, &mut precision, seed, &spec)?;
        trim_log(&log_path, start)?;
        tracing::info!("resuming {} at epoch {start}", checkpoint.display());
    } else if log_path.exists() {
        std::fs::remove_file(&log_path).map_err(|e| io_err(&log_path, e))?;
    }
    let (p, k) = (s.identities_per_batch, s.images_per_identity);
    let labels_v: Vec<i64> = set.visible.labels.clone();
    let labels_t: Vec<i64> = set.infrared.labels.clone();
    let mut metrics = None;
    for epoch in start..s.epochs {
        let head_lr = s.head_lr(epoch);
        let backbone_lr = s.backbone_lr(epoch);
        let batches = epoch_batches(
            &set.visible.by_label,
            &set.infrared.by_label,
            ready.co_occurring.as_deref(),
            p,
            k,
            seed,
            epoch,
        );
        let mut aug = PyRandom::new(
            seed.wrapping_mul(31)
                .wrapping_add(u64::from(epoch))
                .wrapping_add(1 << 40),
        );
        let plan = loader::plan(&batches, || aug.getrandbits(1) == 1);
        let mut pairs = PyRandom::new(
            seed.wrapping_mul(37)
                .wrapping_add(u64::from(epoch))
                .wrapping_add(1 << 41),
        );
        let bar = indicatif::ProgressBar::new(batches.len() as u64).with_style(
            indicatif::ProgressStyle::with_template("epoch {prefix} {bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, s.epochs));
        let mut sums: BTreeMap<&'static str, f64> = BTreeMap::new();
        let (mut counted, mut skipped, mut in_a_row) = (0usize, 0usize, 0usize);
        let started = Instant::now();
        let waited = std::thread::scope(|scope| -> Result<Duration, TrainError> {
            let pixels = (&set.visible.pixels, &set.infrared.pixels);
            let mut batches_in = Loader::start(scope, pixels, plan, cfg.loader.workers, cfg.loader.prefetch, device);
            for (step_index, b) in batches.iter().enumerate() {
                let assembled = batches_in.next_batch().ok_or(TrainError::LoaderStopped)??;
                let xv = input(&assembled.visible, &spec, device)?;
                let xt = input(&assembled.infrared, &spec, device)?;
                let labels: Vec<i64> = b
                    .visible
                    .iter()
                    .map(|&i| labels_v[i])
                    .chain(b.infrared.iter().map(|&i| labels_t[i]))
                    .collect();
                let labels = Tensor::from_slice(&labels).to_device(device);
                let out = precision
                    .forward(|| {
                        step::forward(
                            &net,
                            &xv,
                            &xt,
                            (set.visible.modality, set.infrared.modality),
                            &labels,
                            &cfg.loss,
                            (p, k),
                            &mut pairs,
                        )
                    })
                    .map_err(|source| TrainError::Amp {
                        file: cfg.file.clone(),
                        source,
                    })?;
                let values: Vec<(&'static str, f64)> =
                    out.terms.iter().map(|(t, v)| (*t, v.double_value(&[]))).collect();
                // A non-finite loss is divergence, but in float16 it is the loss scaler's: the
                // step is skipped and the scale lowered.
                if let Some((term, value)) = values.iter().find(|(_, v)| !v.is_finite())
                    && !precision.skips_non_finite()
                {
                    bar.abandon();
                    return Err(TrainError::NonFinite {
                        epoch,
                        step: step_index,
                        term,
                        value: *value,
                    });
                }
                let lr = |g| if g == Group::Backbone { backbone_lr } else { head_lr };
                match precision.backward_and_step(&out.total, &mut sgd, lr)? {
                    Stepped::Updated => {
                        in_a_row = 0;
                        counted += 1;
                        for (term, v) in &values {
                            *sums.entry(term).or_default() += v;
                        }
                    }
                    Stepped::Skipped => {
                        skipped += 1;
                        in_a_row += 1;
                        if in_a_row >= MAX_SKIPPED_IN_A_ROW {
                            bar.abandon();
                            return Err(TrainError::ScalerGaveUp {
                                epoch,
                                step: step_index,
                                skipped: in_a_row,
                                scale: precision.loss_scale(),
                            });
                        }
                    }
                }
                let images = ((step_index + 1) * 2 * p * k) as f64;
                let elapsed = started.elapsed().as_secs_f64();
                let terms: Vec<String> = sums
                    .iter()
                    .map(|(t, v)| format!("{t} {:.3}", v / counted.max(1) as f64))
                    .collect();
                bar.set_message(format!(
                    "{} | {:.1} img/s, data {:.0}%",
                    terms.join(" "),
                    images / elapsed,
                    100.0 * batches_in.waited.as_secs_f64() / elapsed
                ));
                bar.inc(1);
            }
            Ok(batches_in.waited)
        })?;
        bar.finish_and_clear();
        let elapsed = started.elapsed().as_secs_f64();
        let images_per_s = (batches.len() * 2 * p * k) as f64 / elapsed;
        let data_wait = waited.as_secs_f64() / elapsed;
        // Weights first, then the checkpoint that makes the epoch count as done.
        let last = dir.join("last.safetensors");
        let provenance = Provenance {
            dataset: Some(format!("{:?}", cfg.dataset.kind).to_lowercase()),
            trial: (cfg.dataset.kind == DatasetKind::Regdb).then_some(cfg.dataset.trial),
            epoch: Some(i64::from(epoch + 1)),
            imported_from: None,
        };
        weights::save(&vs, &spec, &provenance, &last)?;
        save_checkpoint(&checkpoint, &vs, &sgd, &precision, epoch + 1, seed, &spec)?;
        let done = epoch + 1;
        let evaluate_now = done == s.epochs || (s.eval_every > 0 && done % s.eval_every == 0);
        if evaluate_now {
            metrics = Some(evaluate(cfg, &last, device)?);
        }
        let mean: BTreeMap<&str, f64> = sums.iter().map(|(t, v)| (*t, v / counted.max(1) as f64)).collect();
        let mut line = serde_json::json!({
            "epoch": done,
            "lr": head_lr,
            "backbone_lr": backbone_lr,
            "loss": mean,
            "images_per_s": images_per_s,
            "data_wait": data_wait,
            "precision": precision.name(),
            "eval": if evaluate_now { serde_json::to_value(&metrics).ok() } else { None },
        });
        if precision.skips_non_finite() {
            line["skipped_steps"] = skipped.into();
            line["loss_scale"] = precision.loss_scale().into();
        }
        append_line(&log_path, &line.to_string())?;
        let eval_text = match (&metrics, evaluate_now) {
            (Some(m), true) => format!(", rank-1 {:.2}%, mAP {:.2}%", 100.0 * m.rank(1), 100.0 * m.map),
            _ => String::new(),
        };
        tracing::info!(
            "epoch {done}/{}: {} | {images_per_s:.1} img/s ({}), {:.0}% waiting for data{eval_text}",
            s.epochs,
            mean.iter()
                .map(|(t, v)| format!("{t} {v:.4}"))
                .collect::<Vec<_>>()
                .join(" "),
            precision.name(),
            100.0 * data_wait
        );
    }
    if metrics.is_none() {
        // Resumed after the last epoch: evaluate what is there.
        metrics = Some(evaluate(cfg, &dir.join("last.safetensors"), device)?);
    }
    Ok(RunResult {
        dir: dir.to_path_buf(),
        seed,
        metrics,
    })
}

/// Loads a starting point into the network: any weight file (see [`weights`]) whose backbone is
/// the configured one (checked by [`preflight`]); a head that does not fit the training
/// identities starts fresh.
fn initialise_from(vs: &mut VarStore, file: &WeightFile) -> Result<(), TrainError> {
    let report = weights::load(vs, file, Fit::Initialise)?;
    tracing::info!(
        "{}: {} tensors loaded, {} ignored{}",
        file.path.display(),
        report.loaded,
        report.ignored,
        if report.initialised.is_empty() {
            String::new()
        } else {
            format!(
                "; starting fresh: {}",
                report
                    .initialised
                    .iter()
                    .filter(|n| n.ends_with("weight"))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    Ok(())
}

/// An assembled u8 batch (pinned on CUDA) as the network's input on `device`: uploaded without
/// blocking, normalised there.
fn input(pixels: &Tensor, spec: &ModelSpec, device: Device) -> Result<Tensor, TrainError> {
    let on_device = pixels.f_to_device_(device, Kind::Uint8, true, false)?;
    Ok(normalise(&on_device, &spec.normalisation(), device, Kind::Float)?)
}

/// The test protocol's first trial (SYSU trial 0 all-search single-shot, RegDB V→T of the
/// trained trial, or Market/Duke), on weights just saved.
fn evaluate(cfg: &TrainConfig, weights_path: &Path, device: Device) -> Result<Scores, TrainError> {
    let d = &cfg.dataset;
    let protocol = match d.kind {
        DatasetKind::Sysu => {
            protocols::sysu(&d.root, SysuMode::All, Shots::Single, &[0]).map_err(crate::eval::EvalError::from)?
        }
        DatasetKind::Regdb => protocols::regdb(&d.root, RegdbDirection::VisibleToThermal, &[d.trial])
            .map_err(crate::eval::EvalError::from)?,
        DatasetKind::Market | DatasetKind::Duke => {
            protocols::market(&d.root, "test").map_err(crate::eval::EvalError::from)?
        }
    };
    // Pillow-exact pre-processing on every device, as `eval` (figures comparable across devices).
    let embedder = LbaEmbedder::open(weights_path, None, device, false)
        .map_err(|e| io_err(weights_path, e))?
        .with_preprocess(reid_core::config::site::Preprocess::Host);
    let bank = crate::eval::extract::extract_protocol(&embedder, &d.root, &protocol, d.kind, 64)?;
    let results = crate::eval::evaluate(&protocol, &bank, 256)?;
    Ok(results
        .into_iter()
        .next()
        .map(|r| r.metrics)
        .unwrap_or_else(|| Scores::from_queries(&[], crate::eval::MAX_RANK)))
}

fn save_checkpoint(
    path: &Path,
    vs: &VarStore,
    sgd: &Sgd,
    precision: &Precision,
    next_epoch: u32,
    seed: u64,
    spec: &ModelSpec,
) -> Result<(), TrainError> {
    let vars = vs.variables();
    let mut names: Vec<String> = vars.keys().cloned().collect();
    names.sort();
    let mut keyed: Vec<(String, Tensor)> = names
        .iter()
        .map(|n| (format!("model/{n}"), vars[n].shallow_clone()))
        .collect();
    keyed.extend(sgd.state().iter().map(|(n, t)| (format!("sgd/{n}"), t.shallow_clone())));
    keyed.extend(precision.state());
    let tensors: Vec<(&str, &Tensor)> = keyed.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let meta = BTreeMap::from([
        ("format".to_owned(), "reid-pipe-checkpoint".to_owned()),
        ("next_epoch".to_owned(), next_epoch.to_string()),
        ("seed".to_owned(), seed.to_string()),
        (
            "spec".to_owned(),
            serde_json::to_string(spec).map_err(|e| io_err(path, e))?,
        ),
    ]);
    Ok(tch::no_grad(|| reid_core::safetensors::write(path, &tensors, &meta))?)
}

/// Restores model and optimiser state; returns the epoch to continue with.
fn restore(
    path: &Path,
    vs: &mut VarStore,
    sgd: &mut Sgd,
    precision: &mut Precision,
    seed: u64,
    spec: &ModelSpec,
) -> Result<u32, TrainError> {
    let file = reid_core::safetensors::read(path)?;
    let meta = |k: &str| {
        file.metadata
            .get(k)
            .cloned()
            .ok_or_else(|| io_err(path, format!("no `{k}` in the metadata: not a reid-pipe checkpoint")))
    };
    let saved_seed: u64 = meta("seed")?.parse().map_err(|e| io_err(path, e))?;
    if saved_seed != seed {
        return Err(io_err(
            path,
            format!("written by a run with seed {saved_seed}, this run has seed {seed}"),
        ));
    }
    let saved_spec: ModelSpec = serde_json::from_str(&meta("spec")?).map_err(|e| io_err(path, e))?;
    if &saved_spec != spec {
        return Err(io_err(
            path,
            format!("the network differs from the configuration's: {saved_spec:?} vs {spec:?}"),
        ));
    }
    let next: u32 = meta("next_epoch")?.parse().map_err(|e| io_err(path, e))?;
    let mut vars = vs.variables();
    let mut buffers = BTreeMap::new();
    let mut scaler = BTreeMap::new();
    tch::no_grad(|| -> Result<(), TrainError> {
        for (name, t) in &file.tensors {
            if let Some(var_name) = name.strip_prefix("model/") {
                let var = vars
                    .get_mut(var_name)
                    .ok_or_else(|| io_err(path, format!("unknown variable `{var_name}`")))?;
                var.f_copy_(&t.to_device(var.device()))
                    .map_err(|e| io_err(path, format!("`{var_name}`: {e}")))?;
            } else if let Some(var_name) = name.strip_prefix("sgd/") {
                buffers.insert(var_name.to_owned(), t.shallow_clone());
            } else if Precision::owns(name) {
                scaler.insert(name.clone(), t.shallow_clone());
            }
        }
        Ok(())
    })?;
    sgd.load_state(buffers).map_err(|m| io_err(path, m))?;
    precision.load_state(&scaler).map_err(|e| io_err(path, e))?;
    Ok(next)
}

fn append_line(path: &Path, line: &str) -> Result<(), TrainError> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    writeln!(f, "{line}").map_err(|e| io_err(path, e))?;
    f.sync_data().map_err(|e| io_err(path, e))
}

/// Drops log lines of epochs after the checkpoint (written before a crash, then redone).
fn trim_log(path: &Path, next_epoch: u32) -> Result<(), TrainError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["epoch"].as_u64())
                .is_some_and(|e| e <= u64::from(next_epoch))
        })
        .collect();
    let body = if kept.is_empty() {
        String::new()
    } else {
        format!("{}\n", kept.join("\n"))
    };
    reid_core::atomic::write(path, body.as_bytes()).map_err(|e| io_err(path, e))
}
