//! Evaluation with the benchmarks' exact protocols: features in, CMC / mAP / mINP out, averaged
//! over trials and runs.

pub mod command;
pub mod extract;
pub mod metrics;
pub mod protocols;
pub mod ranking;
pub mod report;
pub mod request;

use crate::data::Item;
use metrics::{QueryScore, Scores};
use protocols::Protocol;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

pub use request::{EvalInput, EvalRequest, Trials, TrialsError};

/// CMC is reported up to this rank.
pub const MAX_RANK: usize = 20;

/// Errors of an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    File(#[from] reid_core::safetensors::SafetensorsError),
    #[error("{}: {problem}", path.display())]
    Features { path: PathBuf, problem: String },
    #[error("image {}: cannot decode it", path.display())]
    Decode {
        path: PathBuf,
        #[source]
        source: opencv::Error,
    },
    #[error("image {}: {problem}", path.display())]
    Image { path: PathBuf, problem: &'static str },
    #[error("embedding the images under {}", root.display())]
    Extract {
        root: PathBuf,
        #[source]
        source: Box<crate::model::embedder::EmbedError>,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Args(String),
    #[error("{protocol}, {trial}: {message}")]
    Trial {
        protocol: String,
        trial: String,
        message: String,
    },
    #[error(transparent)]
    Device(#[from] reid_core::base::DeviceError),
    #[error("--out")]
    Output(#[from] reid_core::base::OutputError),
    #[error(transparent)]
    Weights(#[from] crate::model::weights::WeightsError),
    #[error(transparent)]
    Embed(#[from] crate::model::embedder::EmbedError),
    #[error("libtorch")]
    Torch(#[from] tch::TchError),
}

/// Features of dataset images, looked up by their path relative to the dataset root.
///
/// File format (safetensors): tensor `features` (N×D, F32) and metadata `paths`, a JSON array of
/// the N relative paths (e.g. `"cam3/0001/0004.jpg"`), in row order.
pub struct FeatureBank {
    pub source: PathBuf,
    pub features: Tensor,
    rows: HashMap<String, i64>,
}

impl FeatureBank {
    /// Wraps N×D features and their N paths.
    pub fn new(source: PathBuf, features: Tensor, paths: Vec<String>) -> Result<Self, EvalError> {
        let bad = |problem: String| EvalError::Features {
            path: source.clone(),
            problem,
        };
        let size = features.size();
        if size.len() != 2 || size[0] as usize != paths.len() {
            return Err(bad(format!(
                "`features` has shape {size:?}, expected [{}, D] to match `paths`",
                paths.len()
            )));
        }
        if size[1] == 0 {
            return Err(bad("the features have dimension 0".to_owned()));
        }
        // Garbage must not be scored as a result: NaN or infinite values, or rows without a
        // direction (all zeros), rank in gallery order and give plausible-looking numbers.
        let f = features.f_to_kind(tch::Kind::Float)?;
        let finite: Vec<bool> = Vec::try_from(f.f_isfinite()?.f_all_dim(1, false)?.to_device(tch::Device::Cpu))?;
        if let Some(row) = finite.iter().position(|ok| !ok) {
            return Err(bad(format!(
                "row {row} ({}) has NaN or infinite values: not features a model produces",
                paths[row]
            )));
        }
        let nonzero: Vec<bool> = Vec::try_from(f.f_ne(0.0)?.f_any_dim(1, false)?.to_device(tch::Device::Cpu))?;
        if let Some(row) = nonzero.iter().position(|ok| !ok) {
            return Err(bad(format!(
                "row {row} ({}) is all zeros: it has no direction to rank by",
                paths[row]
            )));
        }
        if size[0] > 1 && f.f_eq_tensor(&f.f_get(0)?)?.f_all()?.f_int64_value(&[])? != 0 {
            return Err(bad(format!(
                "all {} rows are the same vector: the features do not tell the images apart",
                size[0]
            )));
        }
        let mut rows = HashMap::with_capacity(paths.len());
        for (i, p) in paths.into_iter().enumerate() {
            if let Some(prev) = rows.insert(p.clone(), i as i64) {
                return Err(bad(format!("path {p:?} appears twice (rows {prev} and {i})")));
            }
        }
        Ok(Self { source, features, rows })
    }

    /// Reads a feature file.
    pub fn load(path: &Path) -> Result<Self, EvalError> {
        let file = reid_core::safetensors::read(path)?;
        let bad = |problem: &str| EvalError::Features {
            path: path.to_path_buf(),
            problem: problem.to_owned(),
        };
        let features = file
            .get("features")
            .ok_or_else(|| bad("no tensor named `features`"))?
            .shallow_clone();
        let paths = file
            .metadata
            .get("paths")
            .ok_or_else(|| bad("no `paths` in the metadata"))?;
        let paths: Vec<String> = serde_json::from_str(paths)
            .map_err(|e| bad(&format!("metadata `paths` is not a JSON string array: {e}")))?;
        Self::new(path.to_path_buf(), features.to_kind(tch::Kind::Float), paths)
    }

    /// The image path of every row, in row order.
    pub fn paths(&self) -> Vec<&str> {
        let mut rows: Vec<(&String, &i64)> = self.rows.iter().collect();
        rows.sort_by_key(|(_, r)| **r);
        rows.into_iter().map(|(p, _)| p.as_str()).collect()
    }

    /// Writes the bank in the format [`FeatureBank::load`] reads.
    pub fn save(&self, path: &Path) -> Result<(), EvalError> {
        let paths = self.paths();
        let meta = std::collections::BTreeMap::from([(
            "paths".to_owned(),
            serde_json::to_string(&paths).map_err(|e| EvalError::Write {
                path: path.to_path_buf(),
                source: e.into(),
            })?,
        )]);
        reid_core::safetensors::write(path, &[("features", &self.features)], &meta)?;
        Ok(())
    }

    /// Rows of `items`, in order, as one tensor.
    pub(crate) fn gather(&self, items: &[Item], protocol: &str, trial: &str) -> Result<Tensor, EvalError> {
        let mut idx = Vec::with_capacity(items.len());
        for it in items {
            let row = self.rows.get(&it.path).ok_or_else(|| EvalError::Trial {
                protocol: protocol.to_owned(),
                trial: trial.to_owned(),
                message: format!("{} has no feature for {}", self.source.display(), it.path),
            })?;
            idx.push(*row);
        }
        let idx = Tensor::from_slice(&idx).to_device(self.features.device());
        Ok(self.features.f_index_select(0, &idx)?)
    }
}

/// Scores of one trial.
#[derive(Debug, Clone)]
pub struct TrialResult {
    pub name: String,
    pub metrics: Scores,
    /// Per query: its path and its score (`None`: no true match left, excluded from the means).
    pub queries: Vec<(String, Option<QueryScore>)>,
}

/// Evaluates every trial of `protocol` on `bank`, ranking `block_rows` queries at a time.
pub fn evaluate(protocol: &Protocol, bank: &FeatureBank, block_rows: i64) -> Result<Vec<TrialResult>, EvalError> {
    let mut results = Vec::with_capacity(protocol.trials.len());
    for trial in &protocol.trials {
        if trial.query.is_empty() || trial.gallery.is_empty() {
            return Err(EvalError::Trial {
                protocol: protocol.name.clone(),
                trial: trial.name.clone(),
                message: format!(
                    "{} queries and {} gallery images; both must be non-empty",
                    trial.query.len(),
                    trial.gallery.len()
                ),
            });
        }
        let q = bank.gather(&trial.query, &protocol.name, &trial.name)?;
        let g = bank.gather(&trial.gallery, &protocol.name, &trial.name)?;
        let gallery_ids: Vec<i64> = trial.gallery.iter().map(|i| i.pid).collect();
        let mut scores = vec![None; trial.query.len()];
        ranking::rank(&q, &g, block_rows, |qi, order| {
            let query = &trial.query[qi];
            scores[qi] = metrics::score_query(
                order.iter().map(|&g| g as usize),
                &gallery_ids,
                query.pid,
                |g| protocol.exclusion.keeps(query, &trial.gallery[g]),
                protocol.cmc,
            );
        })?;
        let metrics = Scores::from_queries(&scores, MAX_RANK);
        let queries = trial.query.iter().map(|i| i.path.clone()).zip(scores).collect();
        results.push(TrialResult {
            name: trial.name.clone(),
            metrics,
            queries,
        });
    }
    Ok(results)
}
