//! What a training run needs, checked before any image is decoded: the model's parts fit its
//! input, the device exists, mixed precision suits it, the dataset folder lists enough
//! identities for a batch, the starting weights load and match the backbone, and the output
//! folders neither hold an earlier run (without `--resume`) nor lie inside the dataset or over
//! the starting weights. `check` runs the same checks, so a training file that passes `check`
//! starts.

use super::amp::Precision;
use super::dataset;
use super::trainer::{Options, TrainError};
use crate::model::weights::WeightFile;
use reid_core::base::outputs;
use reid_core::config::TrainConfig;
use reid_core::config::train::{Pretrained, SamplerKind};
use std::path::PathBuf;
use tch::Device;

/// Files a run writes into its directory; a new run (without `--resume`) refuses to start over them.
const RUN_FILES: [&str; 3] = ["checkpoint.safetensors", "last.safetensors", "log.jsonl"];

/// What the checks resolved, for the runs to use.
pub struct Ready {
    pub device: Device,
    /// One folder per run (`output_dir`, or `output_dir/run-<i>` with several runs).
    pub dirs: Vec<PathBuf>,
    /// The starting weights, read and matched to `model.backbone`.
    pub pretrained: Option<WeightFile>,
    /// Training identities the dataset lists.
    pub classes: usize,
    /// With the co-occurring sampler: per label, the labels seen beside it.
    pub co_occurring: Option<Vec<Vec<usize>>>,
}

/// Runs the checks.
pub fn preflight(cfg: &TrainConfig, opts: Options) -> Result<Ready, TrainError> {
    let setting = |key: &'static str, message: String| TrainError::Setting {
        file: cfg.file.clone(),
        key,
        message,
    };
    // Both backbones reduce the input 16× (last stride 1): every part needs a row.
    let rows = i64::from(cfg.model.input_size.0) / 16;
    if i64::from(cfg.model.parts) > rows {
        return Err(setting(
            "model.parts",
            format!(
                "{} parts, but a {}-pixel-high input gives a {rows}-row feature map; use at most {rows}",
                cfg.model.parts, cfg.model.input_size.0
            ),
        ));
    }
    let device = cfg.device.resolve("device").map_err(|source| TrainError::Device {
        file: cfg.file.clone(),
        source,
    })?;
    Precision::new(cfg.schedule.amp, cfg.schedule.amp_dtype, device).map_err(|source| TrainError::Amp {
        file: cfg.file.clone(),
        source,
    })?;
    let root = &cfg.dataset.root;
    if !root.is_dir() {
        let problem = if root.exists() { "not a folder" } else { "not found" };
        return Err(setting("dataset.root", format!("{}: {problem}", root.display())));
    }
    let (_, _, classes) = dataset::list(&cfg.dataset)?;
    let p = cfg.schedule.identities_per_batch;
    if p > classes {
        return Err(setting(
            "schedule.identities_per_batch",
            format!(
                "{p}, but the training set in {} has {classes} identities",
                root.display()
            ),
        ));
    }
    let co_occurring = match cfg.schedule.sampler {
        SamplerKind::Identity => None,
        SamplerKind::CoOccurring => Some(dataset::co_occurring(&cfg.dataset)?.ok_or_else(|| {
            setting(
                "schedule.sampler",
                format!(
                    "\"co-occurring\" needs {}, which `reid-pipe harvest` writes; it is not there (sampler = \"identity\" draws identities at random)",
                    cfg.dataset.root.join(crate::data::sysu::CO_OCCURRING).display()
                ),
            )
        })?),
    };
    let dirs = run_dirs(cfg, opts)?;
    let pretrained = match &cfg.model.pretrained {
        Pretrained::None => None,
        Pretrained::File(path) => Some(starting_weights(cfg, path)?),
    };
    Ok(Ready {
        device,
        dirs,
        pretrained,
        classes,
        co_occurring,
    })
}

/// The weight file `model.pretrained`, read and checked to hold `model.backbone`.
fn starting_weights(cfg: &TrainConfig, path: &std::path::Path) -> Result<WeightFile, TrainError> {
    if !path.is_file() {
        let problem = if path.exists() { "not a file" } else { "not found" };
        return Err(TrainError::Setting {
            file: cfg.file.clone(),
            key: "model.pretrained",
            message: format!("{}: {problem}", path.display()),
        });
    }
    let named = |source| TrainError::Pretrained {
        file: cfg.file.clone(),
        source: Box::new(source),
    };
    let file = WeightFile::read(path).map_err(named)?;
    let size = (i64::from(cfg.model.input_size.0), i64::from(cfg.model.input_size.1));
    let theirs = file.spec(Some(size)).map_err(named)?;
    if theirs.backbone != cfg.model.backbone {
        return Err(TrainError::Setting {
            file: cfg.file.clone(),
            key: "model.pretrained",
            message: format!(
                "{} holds a {:?} network, model.backbone is {:?}",
                path.display(),
                theirs.backbone,
                cfg.model.backbone
            ),
        });
    }
    Ok(file)
}

/// The runs' folders, checked: each is a folder or absent, none lies inside the dataset, none
/// of their files is the starting weights, and none holds an earlier run unless `--resume`
/// continues it from its checkpoint.
fn run_dirs(cfg: &TrainConfig, opts: Options) -> Result<Vec<PathBuf>, TrainError> {
    let dirs: Vec<PathBuf> = (0..opts.runs.max(1))
        .map(|run| {
            if opts.runs > 1 {
                cfg.output_dir.join(format!("run-{}", run + 1))
            } else {
                cfg.output_dir.clone()
            }
        })
        .collect();
    if outputs::inside(&cfg.output_dir, &cfg.dataset.root) {
        return Err(TrainError::OutputDir {
            path: cfg.output_dir.clone(),
            problem: "inside dataset.root: an output may not be written among the inputs; set another output_dir",
        });
    }
    let mut inputs = Vec::new();
    if let Pretrained::File(path) = &cfg.model.pretrained {
        inputs.push(("model.pretrained".to_owned(), path.clone()));
    }
    for dir in std::iter::once(&cfg.output_dir).chain(&dirs) {
        if dir.exists() && !dir.is_dir() {
            return Err(TrainError::OutputDir {
                path: dir.clone(),
                problem: "a file is there; output_dir must be a folder (it is created when missing)",
            });
        }
    }
    for dir in &dirs {
        let files: Vec<PathBuf> = RUN_FILES.iter().map(|f| dir.join(f)).collect();
        if let Some(file) = files.iter().find(|f| outputs::input_named(f, &inputs).is_some()) {
            return Err(TrainError::OutputDir {
                path: file.clone(),
                problem: "is model.pretrained, which a run would replace: an output may not be an input",
            });
        }
        let checkpoint = &files[0];
        match files.iter().find(|p| p.exists()) {
            // A new run never replaces what an earlier one wrote.
            Some(file) if !opts.resume => {
                return Err(TrainError::OutputDir {
                    path: file.clone(),
                    problem: "an earlier run's output: pass --resume to continue it, or set another output_dir",
                });
            }
            // Nor does a resumed one that has nothing to resume from.
            Some(_) if !checkpoint.exists() => {
                return Err(TrainError::OutputDir {
                    path: checkpoint.clone(),
                    problem: "missing, so --resume has nothing to continue, and the earlier run's other files \
                              would be replaced; move them away or set another output_dir",
                });
            }
            _ => {}
        }
    }
    Ok(dirs)
}
