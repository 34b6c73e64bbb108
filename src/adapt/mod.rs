//! `reid-pipe adapt`: a site's own model, without labels. Harvests the site
//! ([`crate::live::harvest`]) into `OUT/data`, groups the pseudo-identities the starting weights
//! find to be one person ([`associate`]), trains the LbA model on it from the site's current
//! weights with the existing trainer and losses (`OUT/train.toml`, `OUT/run/`), evaluates the
//! starting and the adapted weights on the held-out (later) part with the SYSU-MM01
//! protocol (`OUT/eval-before/`, `OUT/eval-after/`; the Market-1501 protocol for a harvest of
//! the visible tracks alone, where nothing fused), writes the adapted model's embedding centre
//! (`OUT/centre.safetensors`, the mean over the training crops; [`crate::model::centre`]), draws
//! its retrieval grid, suggests index thresholds from the held-out distances, centred
//! ([`thresholds`]), and writes `OUT/report.json` and `OUT/report.md`.
//!
//! `--resume` continues an interrupted adaptation: a finished harvest is kept, training resumes
//! from its checkpoint, and the evaluations are redone.

pub mod associate;
pub mod crops;
pub mod thresholds;

use crate::base::Backbone;
use crate::config::train::{DatasetKind, SamplerKind};
use crate::config::{SiteConfig, TrainConfig};
use crate::eval::protocols::{RegdbDirection, Shots, SysuMode};
use crate::eval::report::Summary;
use crate::eval::{EvalInput, EvalRequest, FeatureBank, Trials};
use crate::live::harvest::{self, HarvestOptions};
use crate::model::weights::WeightFile;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use thresholds::Threshold;

/// Errors of an adaptation, naming the phase and file involved.
#[derive(Debug, thiserror::Error)]
pub enum AdaptError {
    #[error("--out {}: {problem}", path.display())]
    Output { path: PathBuf, problem: &'static str },
    #[error(
        "model.weights {}: a TorchScript model cannot be trained here; adapt starts from a weight file (reid-pipe import reads most)",
        .0.display()
    )]
    TorchScript(PathBuf),
    #[error("model.weights {}", path.display())]
    Weights {
        path: PathBuf,
        #[source]
        source: Box<crate::model::weights::WeightsError>,
    },
    #[error("harvest")]
    Harvest(#[from] harvest::HarvestError),
    #[error("{}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the generated training file")]
    Config(#[from] crate::config::ConfigError),
    #[error("training")]
    Train(#[from] crate::train::TrainError),
    #[error("evaluating {}", what)]
    Eval {
        what: &'static str,
        #[source]
        source: Box<crate::eval::EvalError>,
    },
    #[error("interrupted after the {0}; `reid-pipe adapt --resume` continues")]
    Interrupted(&'static str),
    #[error("the retrieval figure")]
    Viz(#[from] crate::viz::VizError),
    #[error("the embedding centre")]
    Centre(#[from] crate::model::centre::CentreError),
}

/// Options of one adaptation.
#[derive(Debug, Clone)]
pub struct AdaptOptions {
    pub out: PathBuf,
    /// Stop each source after this many frames (harvest).
    pub max_frames: Option<u64>,
    pub epochs: u32,
    pub seed: u64,
    /// How training batches draw their pseudo-identities.
    pub sampler: SamplerKind,
    /// Continue an interrupted adaptation in `out`.
    pub resume: bool,
    /// Group the pseudo-identities of one person before training ([`associate`]).
    pub associate: bool,
}

/// Rank-1 and mAP (mean ± std over the protocol's ten gallery draws), in percent.
#[derive(Debug, Clone, Serialize)]
pub struct Scores {
    pub rank1: (f64, f64),
    pub map: (f64, f64),
}

impl From<&Summary> for Scores {
    fn from(s: &Summary) -> Self {
        Scores {
            rank1: (s.rank1.mean, s.rank1.std),
            map: (s.map.mean, s.map.std),
        }
    }
}

/// What an adaptation measured and wrote.
#[derive(Debug, Clone, Serialize)]
pub struct AdaptReport {
    pub site: PathBuf,
    pub starting_weights: PathBuf,
    pub adapted_weights: PathBuf,
    /// The adapted model's embedding centre (the mean over the training crops; see
    /// [`crate::model::centre`]), which the thresholds assume.
    pub centre: PathBuf,
    pub train_identities: usize,
    /// Groups of training pseudo-identities trained as one person ([`associate`]).
    pub same_person: Vec<Vec<i64>>,
    pub test_identities: usize,
    /// What `before` and `after` measure.
    pub protocol: &'static str,
    /// Held-out retrieval (cross-modal: thermal queries, visible gallery; of a single-modality
    /// harvest: a track's earlier crops against the later ones of every held-out track), before
    /// and after.
    pub before: Scores,
    pub after: Scores,
    /// Suggested `index.same_modality_threshold` and `index.cross_modality_threshold` for the
    /// adapted weights with `centre`, from the held-out pseudo-identities.
    pub same_modality_threshold: Option<Threshold>,
    pub cross_modality_threshold: Option<Threshold>,
    pub retrieval_figure: PathBuf,
}

impl AdaptReport {
    /// The lines of a site file that switch it to the adapted weights.
    pub fn site_lines(&self) -> String {
        let mut s = format!(
            "[model]\nweights = \"{}\"\ncentre = \"{}\"\n",
            self.adapted_weights.display(),
            self.centre.display()
        );
        if self.same_modality_threshold.is_some() || self.cross_modality_threshold.is_some() {
            s.push_str("[index]\n");
        }
        if let Some(t) = self.same_modality_threshold {
            s.push_str(&format!("same_modality_threshold = {:.4}\n", round_down(t.distance)));
        }
        if let Some(t) = self.cross_modality_threshold {
            s.push_str(&format!("cross_modality_threshold = {:.4}\n", round_down(t.distance)));
        }
        s
    }

    /// A short Markdown table of the before/after scores and the thresholds.
    pub fn table(&self) -> String {
        let row = |name: &str, s: &Scores| {
            format!(
                "| {name} | {:.1} ± {:.1} | {:.1} ± {:.1} |\n",
                s.rank1.0, s.rank1.1, s.map.0, s.map.1
            )
        };
        let grouped: usize = self.same_person.iter().map(Vec::len).sum();
        let groups = if grouped == 0 {
            String::new()
        } else {
            format!(", {grouped} of them in {} groups of one person", self.same_person.len())
        };
        let mut t = format!(
            "Held-out pseudo-identities: {} (trained on {}{groups}); {}.\n\n\
             | weights | rank-1 (%) | mAP (%) |\n|---|---|---|\n",
            self.test_identities, self.train_identities, self.protocol
        );
        t.push_str(&row(
            &format!("starting: {}", self.starting_weights.display()),
            &self.before,
        ));
        t.push_str(&row(
            &format!(
                "adapted: {} (centre {})",
                self.adapted_weights.display(),
                self.centre.display()
            ),
            &self.after,
        ));
        for (key, th) in [
            ("same_modality_threshold", self.same_modality_threshold),
            ("cross_modality_threshold", self.cross_modality_threshold),
        ] {
            if let Some(th) = th {
                t.push_str(&format!(
                    "\n`index.{key}` = {:.4}: splits {:.1} % of {} same-identity pairs, merges {:.2} % of {} {}.",
                    round_down(th.distance),
                    100.0 * th.split_rate,
                    th.same_pairs,
                    100.0 * th.merge_rate,
                    th.different_pairs,
                    if th.co_occurring {
                        "pairs of identities seen together (certainly different)"
                    } else {
                        "pairs of different identities"
                    }
                ));
                if round_down(th.distance) == 0.0 {
                    t.push_str(&format!(
                        " No distance is {}× likelier one identity than two while joining at least {:.0} % of \
                         the same-identity pairs: that pairing joins by fusion only.",
                        thresholds::MIN_LIKELIHOOD_RATIO,
                        100.0 * (1.0 - thresholds::MAX_SPLIT_RATE)
                    ));
                }
            }
        }
        t.push('\n');
        t
    }
}

/// `x` rounded down to the 4 decimals the site lines print: the index joins at or below its
/// threshold, so rounding up would merge more pairs than the threshold was chosen to allow.
fn round_down(x: f64) -> f64 {
    (x * 1e4).floor() / 1e4
}

/// What the report's scores measure: of a SYSU-MM01 harvest, and of a single-modality one.
const CROSS_MODAL: &str = "thermal queries, visible gallery, 10 gallery draws";
/// See [`CROSS_MODAL`].
const SINGLE_MODALITY: &str = "single-modality (nothing fused): each held-out track's earlier crops \
                               query the later crops of every held-out track";

/// Entries of the output folder an adaptation writes.
const DATA: &str = "data";
const RUN: &str = "run";
const TRAIN_FILE: &str = "train.toml";
const CENTRE: &str = "centre.safetensors";

/// Adapts the site's model to its own footage.
pub fn adapt(cfg: &SiteConfig, opts: &AdaptOptions, stop: &Arc<AtomicBool>) -> Result<AdaptReport, AdaptError> {
    let (backbone, input_size) = starting_point(cfg)?;
    prepare(&opts.out, opts.resume)?;
    let out = std::path::absolute(&opts.out).map_err(|source| AdaptError::Write {
        path: opts.out.clone(),
        source,
    })?;
    let data = out.join(DATA);
    if opts.resume && data.join(harvest::layout::MANIFEST).exists() && !data.join(harvest::layout::INCOMPLETE).exists()
    {
        tracing::info!("adapt 1/4: the harvest in {} is complete; keeping it", data.display());
    } else {
        tracing::info!("adapt 1/4: harvesting into {}", data.display());
        let h = HarvestOptions {
            out: data.clone(),
            max_frames: opts.max_frames,
            from_s: 0.0,
            to_s: f64::INFINITY,
            force: false,
        };
        harvest::harvest(cfg, &h, stop)?;
    }
    let interrupted = |phase| {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            Err(AdaptError::Interrupted(phase))
        } else {
            Ok(())
        }
    };
    interrupted("harvest")?;
    let kind = if harvest::is_single_modality(&data) {
        DatasetKind::Market
    } else {
        DatasetKind::Sysu
    };
    let (train_ids, test_ids) = harvested_ids(&data, kind).map_err(|e| AdaptError::Eval {
        what: "the harvested ids",
        source: Box::new(e.into()),
    })?;
    let train_file = out.join(TRAIN_FILE);
    let continuing = opts.resume && train_file.exists();
    let same_person = if kind == DatasetKind::Sysu {
        same_person(cfg, &data, input_size, opts.associate && !continuing, continuing)?
    } else {
        // One view only: too little to tell a returning person from a look-alike.
        Vec::new()
    };
    tracing::info!("adapt 2/4: training from {}", cfg.model.weights.display());
    if continuing {
        // The run continues as it was set up, whatever --epochs says now.
        tracing::info!("continuing the training of {}", train_file.display());
    } else {
        // One label per group of one person.
        let labels = train_ids - same_person.iter().map(|g| g.len() - 1).sum::<usize>();
        let text = training_file(cfg, kind, backbone, input_size, labels, opts);
        crate::atomic::write(&train_file, text.as_bytes()).map_err(|source| AdaptError::Write {
            path: train_file.clone(),
            source,
        })?;
    }
    let train_cfg = TrainConfig::load(&train_file)?;
    crate::train::train(
        &train_cfg,
        crate::train::Options {
            resume: opts.resume,
            runs: 1,
        },
    )?;
    interrupted("training")?;
    let adapted = out.join(RUN).join("last.safetensors");
    tracing::info!("adapt 3/4: evaluating before and after on the held-out part");
    let request = |input: &Path, folder: &str| EvalRequest {
        dataset: kind,
        root: data.clone(),
        inputs: vec![EvalInput::Checkpoint(input.to_path_buf())],
        input_size: Some(input_size),
        device: cfg.runtime.device,
        batch: 64,
        sysu_mode: SysuMode::All,
        shots: Shots::Single,
        direction: RegdbDirection::VisibleToThermal,
        trials: Trials::Default,
        block: 1024,
        out: out.join(folder),
        overwrite: opts.resume,
    };
    let before =
        crate::eval::command::run(&request(&cfg.model.weights, "eval-before")).map_err(|source| AdaptError::Eval {
            what: "the starting weights",
            source: Box::new(source),
        })?;
    let after_request = request(&adapted, "eval-after");
    let after = crate::eval::command::run(&after_request).map_err(|source| AdaptError::Eval {
        what: "the adapted weights",
        source: Box::new(source),
    })?;
    tracing::info!("adapt 4/4: embedding centre, thresholds, figure and report");
    let centre_path = out.join(CENTRE);
    let centre = embedding_centre(cfg, &data, kind, &adapted, input_size, &centre_path)?;
    let features = after_request
        .outputs()
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "safetensors"));
    let (same, cross) = match features {
        Some(f) => suggested_thresholds(&f, &data, kind, &centre)?,
        None => (None, None),
    };
    let figure = out.join("retrieval.png");
    let mut grid_eval = after_request.clone();
    grid_eval.inputs = vec![EvalInput::Features(out.join("eval-after/features-1.safetensors"))];
    grid_eval.overwrite = true;
    let outputs = [figure.clone(), figure.with_extension("json")];
    if opts.resume || outputs.iter().all(|p| !p.exists()) {
        crate::viz::retrieval::run(&crate::viz::retrieval::RetrievalRequest {
            eval: grid_eval,
            queries: 8,
            top: 8,
            seed: opts.seed,
            out: figure.clone(),
        })?;
    }
    let report = AdaptReport {
        site: cfg.file.clone(),
        starting_weights: cfg.model.weights.clone(),
        adapted_weights: adapted,
        centre: centre_path,
        train_identities: train_ids,
        same_person,
        test_identities: test_ids,
        protocol: if kind == DatasetKind::Market {
            SINGLE_MODALITY
        } else {
            CROSS_MODAL
        },
        before: Scores::from(&before.overall),
        after: Scores::from(&after.overall),
        same_modality_threshold: same,
        cross_modality_threshold: cross,
        retrieval_figure: figure,
    };
    let json = serde_json::to_vec_pretty(&report).map_err(|e| AdaptError::Write {
        path: out.join("report.json"),
        source: e.into(),
    })?;
    for (name, bytes) in [("report.json", json), ("report.md", report.table().into_bytes())] {
        let path = out.join(name);
        crate::atomic::write(&path, &bytes).map_err(|source| AdaptError::Write { path, source })?;
    }
    Ok(report)
}

/// The groups of training pseudo-identities trained as one person: with `find`, grouped with
/// the starting weights ([`associate`]) and written to `exp/same_person.txt`; with `keep` (a
/// resumed training, whose labels must not change), those written before; otherwise none (a
/// file left by an earlier attempt is removed).
fn same_person(
    cfg: &SiteConfig,
    data: &Path,
    input_size: (i64, i64),
    find: bool,
    keep: bool,
) -> Result<Vec<Vec<i64>>, AdaptError> {
    let path = data.join(crate::data::sysu::SAME_PERSON);
    let eval_err = |what, source| AdaptError::Eval {
        what,
        source: Box::new(source),
    };
    if keep {
        return crate::data::sysu::read_same_person(data)
            .map(Option::unwrap_or_default)
            .map_err(|e| eval_err("the groups of one person", e.into()));
    }
    let groups = if find {
        tracing::info!("adapt 2/4: grouping the pseudo-identities of one person, with the starting weights");
        let device = cfg
            .runtime
            .device
            .resolve("runtime.device")
            .map_err(|e| eval_err("the device (runtime.device)", e.into()))?;
        let means = associate::track_means(data, &cfg.model.weights, input_size, device)
            .map_err(|e| eval_err("the starting weights", e))?;
        let co_occurring = crate::data::sysu::read_co_occurring(data)
            .map_err(|e| eval_err("the harvest's co-occurring tracks", e.into()))?
            .unwrap_or_default();
        match associate::associate(&means, &co_occurring) {
            Some(a) => {
                tracing::info!(
                    "{} of {} pseudo-identities grouped into {} people (closer than {:.4} visible and {:.4} thermal, the closest of {} pairs seen together)",
                    a.groups.iter().map(Vec::len).sum::<usize>(),
                    means.len(),
                    a.groups.len(),
                    a.limits[0],
                    a.limits[1],
                    a.known_different
                );
                a.groups
            }
            None => {
                tracing::info!(
                    "fewer than {} pairs of pseudo-identities seen together: none grouped",
                    associate::MIN_KNOWN_DIFFERENT
                );
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let io = |source| AdaptError::Write {
        path: path.clone(),
        source,
    };
    if groups.is_empty() {
        if path.exists() {
            std::fs::remove_file(&path).map_err(io)?;
        }
    } else {
        crate::atomic::write(&path, associate::same_person_text(&groups).as_bytes()).map_err(io)?;
    }
    Ok(groups)
}

/// The site model's backbone and input size (height, width), read from its weight file.
fn starting_point(cfg: &SiteConfig) -> Result<(Backbone, (i64, i64)), AdaptError> {
    let path = &cfg.model.weights;
    if path.extension().is_some_and(|e| e == "toml") {
        return Err(AdaptError::TorchScript(path.clone()));
    }
    let wrap = |source| AdaptError::Weights {
        path: path.clone(),
        source: Box::new(source),
    };
    let file = WeightFile::read(path).map_err(wrap)?;
    let asked = cfg.model.input_size.map(|(h, w)| (i64::from(h), i64::from(w)));
    let spec = file.spec(asked).map_err(wrap)?;
    Ok((spec.backbone, spec.input_size))
}

/// `out` is absent or empty, or with `resume` holds an earlier adaptation.
fn prepare(out: &Path, resume: bool) -> Result<(), AdaptError> {
    let refuse = |problem| AdaptError::Output {
        path: out.to_path_buf(),
        problem,
    };
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(refuse("a file is there; --out must be a folder"));
    }
    let empty = std::fs::read_dir(out)
        .map_err(|source| AdaptError::Write {
            path: out.to_path_buf(),
            source,
        })?
        .next()
        .is_none();
    if empty {
        return Ok(());
    }
    if !out.join(TRAIN_FILE).exists() && !out.join(DATA).exists() {
        return Err(refuse(
            "not empty, and not an adaptation's output: choose an empty folder",
        ));
    }
    if !resume {
        return Err(refuse(
            "holds an earlier adaptation: pass --resume to continue it, or choose another folder",
        ));
    }
    Ok(())
}

/// Learning rate of an adaptation: a fifth of the recipe's 0.1, as it fine-tunes a working
/// model on small batches of a few pseudo-identities rather than training from ImageNet (a
/// choice, not yet measured over seeds).
const BASE_LR: f64 = 0.02;

/// The numbers of training and held-out pseudo-identities of the harvest in `data`.
fn harvested_ids(data: &Path, kind: DatasetKind) -> Result<(usize, usize), crate::data::DataError> {
    if kind == DatasetKind::Market {
        let pids = |folder| -> Result<usize, crate::data::DataError> {
            let items = crate::data::market::read_folder(data, folder)?;
            Ok(items
                .iter()
                .map(|i| i.pid)
                .collect::<std::collections::BTreeSet<_>>()
                .len())
        };
        return Ok((pids("bounding_box_train")?, pids("query")?));
    }
    let ids = |split| crate::data::sysu::read_ids(data, split).map(|ids| ids.len());
    // The trainer reads train + val (val holds the latest training identity).
    Ok((ids("train")? + ids("val")?, ids("test")?))
}

/// The training file of an adaptation: the harvested set, the site's backbone from its
/// weights, identity-balanced batches sized to the set's `labels`.
fn training_file(
    cfg: &SiteConfig,
    kind: DatasetKind,
    backbone: Backbone,
    (h, w): (i64, i64),
    labels: usize,
    opts: &AdaptOptions,
) -> String {
    let p = labels.clamp(2, 8);
    let k = 4.min(p - 1);
    let backbone = serde_json::to_value(backbone)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let device = match cfg.runtime.device.kind {
        crate::base::DeviceKind::Auto => "auto".to_owned(),
        crate::base::DeviceKind::Cpu => "cpu".to_owned(),
        crate::base::DeviceKind::Cuda => format!("cuda:{}", cfg.runtime.device.cuda_index),
    };
    let epochs = opts.epochs.max(1);
    format!(
        "# Written by `reid-pipe adapt`: the site's own tracks, from its current weights.\n\
         seed = {seed}\noutput_dir = \"{RUN}\"\ndevice = \"{device}\"\nthreads = {threads}\n\n\
         [dataset]\nkind = \"{kind}\"\nroot = \"{DATA}\"\n\n\
         [model]\nbackbone = \"{backbone}\"\npretrained = {weights}\ninput_size = [{h}, {w}]\n\n\
         [schedule]\nepochs = {epochs}\nidentities_per_batch = {p}\nimages_per_identity = {k}\n\
         base_lr = {BASE_LR}\nwarmup_epochs = 0\nmilestones = [{milestone}]\neval_every = {epochs}\nsampler = \"{sampler}\"\n",
        seed = opts.seed,
        kind = if kind == DatasetKind::Market { "market" } else { "sysu" },
        sampler = opts.sampler.as_str(),
        threads = cfg.runtime.threads,
        // A TOML string, escaped as TOML needs.
        weights = toml::Value::String(
            std::path::absolute(&cfg.model.weights)
                .unwrap_or_else(|_| cfg.model.weights.clone())
                .to_string_lossy()
                .into_owned()
        ),
        // The learning rate drops tenfold after two thirds of the epochs.
        milestone = Some(epochs * 2 / 3)
            .filter(|m| *m >= 1)
            .map_or(String::new(), |m| m.to_string()),
    )
}

/// The mean embedding of the harvest's training crops with the adapted `weights`, written to
/// `path` (see [`crate::model::centre`]).
fn embedding_centre(
    cfg: &SiteConfig,
    data: &Path,
    kind: DatasetKind,
    weights: &Path,
    input_size: (i64, i64),
    path: &Path,
) -> Result<tch::Tensor, AdaptError> {
    let eval_err = |what, source| AdaptError::Eval {
        what,
        source: Box::new(source),
    };
    let device = cfg
        .runtime
        .device
        .resolve("runtime.device")
        .map_err(|e| eval_err("the device (runtime.device)", e.into()))?;
    let items = crops::training_items(data, kind).map_err(|e| eval_err("the training crops", e))?;
    let rows = crops::embed(data, &items, kind, weights, input_size, device)
        .map_err(|e| eval_err("the training crops with the adapted weights", e))?;
    let centre = crate::model::centre::mean_of(&rows);
    let weights_crc = crate::index::snapshot::crc32_file_update(0, weights).map_err(|source| AdaptError::Write {
        path: weights.to_path_buf(),
        source,
    })?;
    crate::model::centre::write(path, &centre, Some(weights_crc))?;
    Ok(centre)
}

/// Most held-out crops whose pairs the thresholds are computed from.
const MAX_ROWS: usize = 2000;

/// Thresholds from the held-out features an evaluation saved (paths `camN/<pid>/…` of SYSU-MM01,
/// `<folder>/<pid>_c…` of a single-modality harvest, whose crops are all of one modality), centred
/// on `centre` as the live pipeline centres them.
fn suggested_thresholds(
    features: &Path,
    data: &Path,
    kind: DatasetKind,
    centre: &tch::Tensor,
) -> Result<(Option<Threshold>, Option<Threshold>), AdaptError> {
    let eval_err = |source| AdaptError::Eval {
        what: "the held-out features",
        source: Box::new(source),
    };
    let bank = FeatureBank::load(features).map_err(eval_err)?;
    let rows = crate::base::normalize_rows(&bank.features.to_kind(tch::Kind::Float)).map_err(|e| eval_err(e.into()))?;
    let rows = crate::model::centre::apply(&rows, centre).map_err(|e| eval_err(e.into()))?;
    let rows: Vec<Vec<f32>> = Vec::<Vec<f32>>::try_from(&rows).map_err(|e| eval_err(e.into()))?;
    // All pairs of at most MAX_ROWS crops (evenly spread): enough pairs for a threshold, and
    // a bounded cost on a large harvest.
    let step = rows.len().div_ceil(MAX_ROWS).max(1);
    let rows: Vec<Vec<f32>> = rows.into_iter().step_by(step).collect();
    let mut labels = Vec::new();
    let mut thermal = Vec::new();
    for path in bank.paths().into_iter().step_by(step) {
        let mut parts = path.split('/');
        let first = parts.next().unwrap_or("");
        let second = parts.next().unwrap_or("");
        if kind == DatasetKind::Market {
            labels.push(crate::data::market::parse_name(second).map_or(-1, |(pid, _)| pid));
            thermal.push(false);
        } else {
            labels.push(second.parse::<i64>().unwrap_or(-1));
            thermal.push(first == "cam3" || first == "cam6");
        }
    }
    let co_occurring = crate::data::sysu::read_co_occurring(data).map_err(|e| AdaptError::Eval {
        what: "the harvest's co-occurring tracks",
        source: Box::new(e.into()),
    })?;
    let seen_together = |a: i64, b: i64| {
        co_occurring
            .as_ref()
            .is_some_and(|c| c.get(&a).is_some_and(|others| others.contains(&b)))
    };
    let [same_modality, cross] = thresholds::pair_distances(&rows, &labels, &thermal, seen_together);
    // Per pairing: the certainly different pairs when there are enough of them (see
    // `thresholds`' notes), else every pair of different pseudo-identities.
    let pick = |pairs: &thresholds::Pairs| {
        let seen = pairs.known_different.len() >= thresholds::MIN_KNOWN_DIFFERENT;
        let negatives = if seen { &pairs.known_different } else { &pairs.different };
        thresholds::at_likelihood_ratio(&pairs.same, negatives, thresholds::MIN_LIKELIHOOD_RATIO).map(|t| Threshold {
            co_occurring: seen,
            ..t
        })
    };
    Ok((pick(&same_modality), pick(&cross)))
}
