//! What an evaluation is asked to do, built by the caller (the command line) from its
//! arguments: the library never sees how they were spelled.

use super::protocols::{RegdbDirection, Shots, SysuMode};
use reid_core::base::Device;
use reid_core::config::train::DatasetKind;
use std::path::PathBuf;

/// What to score: saved features, or weights to extract them with.
#[derive(Debug, Clone, PartialEq)]
pub enum EvalInput {
    /// A feature file (safetensors: `features` N×D and metadata `paths`).
    Features(PathBuf),
    /// Any weights file `reid-pipe import` reads; the features are saved beside the reports.
    Checkpoint(PathBuf),
}

/// Which trials of the protocol to score.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Trials {
    /// The dataset's whole list (SYSU-MM01 0–9, RegDB 1–10), or for a RegDB model trained on
    /// one trial, that trial.
    #[default]
    Default,
    /// The dataset's whole list.
    All,
    /// These trials.
    Listed(Vec<u64>),
}

/// Longest trial range accepted (the benchmarks have 10).
const MAX_TRIALS: u64 = 100;

/// A trial list that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrialsError {
    #[error("trial {0:?} is not a number")]
    NotANumber(String),
    #[error("trial range {0:?} runs backwards")]
    Backwards(String),
    #[error("trial range {0:?}: at most {MAX_TRIALS} trials")]
    TooLong(String),
    #[error("no trials in {0:?}")]
    Empty(String),
}

impl Trials {
    /// Parses `0-9`, `1,3,5`, `2` or `all`.
    pub fn parse(s: &str) -> Result<Trials, TrialsError> {
        if s.trim() == "all" {
            return Ok(Trials::All);
        }
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let num = |x: &str| {
                x.trim()
                    .parse::<u64>()
                    .map_err(|_| TrialsError::NotANumber(x.to_owned()))
            };
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if a > b {
                        return Err(TrialsError::Backwards(part.to_owned()));
                    }
                    if b - a >= MAX_TRIALS {
                        return Err(TrialsError::TooLong(part.to_owned()));
                    }
                    out.extend(a..=b);
                }
                None => out.push(num(part)?),
            }
        }
        if out.is_empty() {
            return Err(TrialsError::Empty(s.to_owned()));
        }
        Ok(Trials::Listed(out))
    }

    /// The trials to score, given the dataset's whole list and the trial a model was trained on.
    pub fn pick(&self, all: &[u64], trained: Option<u64>) -> Vec<u64> {
        match (self, trained) {
            (Trials::Default, Some(own)) => vec![own],
            (Trials::Default | Trials::All, _) => all.to_vec(),
            (Trials::Listed(t), _) => t.clone(),
        }
    }
}

/// An evaluation: the dataset and protocol, what to score, where and how.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    pub dataset: DatasetKind,
    /// Dataset root folder.
    pub root: PathBuf,
    /// One run per input; all of one kind.
    pub inputs: Vec<EvalInput>,
    /// Input height × width for weights that do not record theirs (default 288 × 144).
    pub input_size: Option<(i64, i64)>,
    /// Device for extraction and ranking.
    pub device: Device,
    /// Images per extraction batch.
    pub batch: usize,
    pub sysu_mode: SysuMode,
    pub shots: Shots,
    pub direction: RegdbDirection,
    pub trials: Trials,
    /// Queries ranked per block (bounds memory).
    pub block: i64,
    /// Output folder for summary.json, per_query.csv and cmc.png.
    pub out: PathBuf,
    /// Replace reports (and extracted features) an earlier evaluation left in `out`.
    pub overwrite: bool,
}

impl EvalRequest {
    /// Every file the evaluation writes: the reports, and the features extracted per checkpoint.
    pub fn outputs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = ["summary.json", "per_query.csv", "cmc.png"]
            .iter()
            .map(|f| self.out.join(f))
            .collect();
        for (i, input) in self.inputs.iter().enumerate() {
            if matches!(input, EvalInput::Checkpoint(_)) {
                out.push(self.out.join(format!("features-{}.safetensors", i + 1)));
            }
        }
        out
    }

    /// Every file the evaluation reads by name: feature files and checkpoints.
    pub fn input_files(&self) -> Vec<(String, PathBuf)> {
        self.inputs
            .iter()
            .map(|input| match input {
                EvalInput::Features(p) => ("a --features file".to_owned(), p.clone()),
                EvalInput::Checkpoint(p) => ("a --checkpoint file".to_owned(), p.clone()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trial_lists() {
        let listed = |s| match Trials::parse(s) {
            Ok(Trials::Listed(t)) => t,
            other => panic!("{s:?}: {other:?}"),
        };
        assert_eq!(listed("0-3"), vec![0, 1, 2, 3]);
        assert_eq!(listed("1, 5,7-8"), vec![1, 5, 7, 8]);
        assert_eq!(Trials::parse("all"), Ok(Trials::All));
        assert_eq!(Trials::parse("3-1"), Err(TrialsError::Backwards("3-1".into())));
        assert_eq!(Trials::parse("x"), Err(TrialsError::NotANumber("x".into())));
        assert_eq!(Trials::parse(""), Err(TrialsError::Empty(String::new())));
        assert!(matches!(Trials::parse("0-4294967295"), Err(TrialsError::TooLong(_))));
        assert_eq!(Trials::Default.pick(&[1, 2], Some(2)), vec![2]);
        assert_eq!(Trials::All.pick(&[1, 2], Some(2)), vec![1, 2]);
        assert_eq!(Trials::Listed(vec![7]).pick(&[1, 2], None), vec![7]);
    }
}
