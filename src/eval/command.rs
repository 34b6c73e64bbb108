//! `reid-pipe eval`: builds the protocol, scores every feature file (one per run) and writes
//! the reports.

use super::protocols::{self, Protocol, RegdbDirection, Shots, SysuMode};
use super::report::{self, Summary};
use super::{EvalError, FeatureBank, TrialResult};
use crate::cli::{DirectionArg, EvalArgs, EvalDataset, ShotsArg, SysuModeArg};
use crate::config::train::DatasetKind;
use crate::model::embedder::LbaEmbedder;
use crate::model::weights::WeightFile;
use std::path::Path;

/// What an evaluation printed and wrote.
pub struct Outcome {
    pub protocol: String,
    pub table: String,
    /// Trial means of each run, then (with several runs) their mean ± std.
    pub runs: Vec<Summary>,
    pub overall: Summary,
}

/// Longest trial range accepted (the benchmarks have 10).
const MAX_TRIALS: u64 = 100;

/// Parses `0-9`, `1,3,5`, `2` or `all` (= `all`, the dataset's whole list).
pub fn parse_trials(s: &str, all: &[u64]) -> Result<Vec<u64>, String> {
    if s.trim() == "all" {
        return Ok(all.to_vec());
    }
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |x: &str| {
            x.trim()
                .parse::<u64>()
                .map_err(|_| format!("trial {x:?} is not a number"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("trial range {part:?} runs backwards"));
                }
                if b - a >= MAX_TRIALS {
                    return Err(format!("trial range {part:?}: at most {MAX_TRIALS} trials"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    if out.is_empty() {
        return Err(format!("no trials in {s:?}"));
    }
    Ok(out)
}

/// Builds the protocol the arguments name. A RegDB model trained on one trial (`trained`) is
/// scored on that trial unless `--trials` says otherwise.
pub fn protocol(args: &EvalArgs, trained: Option<u32>) -> Result<Protocol, EvalError> {
    let bad_trials = |message: String| EvalError::Features {
        path: "--trials".into(),
        message,
    };
    Ok(match args.dataset {
        EvalDataset::Sysu => {
            let mode = match args.mode {
                SysuModeArg::All => SysuMode::All,
                SysuModeArg::Indoor => SysuMode::Indoor,
            };
            let shots = match args.shots {
                ShotsArg::Single => Shots::Single,
                ShotsArg::Multi => Shots::Multi,
            };
            let all: Vec<u64> = (0..=9).collect();
            let trials = parse_trials(args.trials.as_deref().unwrap_or("all"), &all).map_err(bad_trials)?;
            protocols::sysu(&args.root, mode, shots, &trials)?
        }
        EvalDataset::Regdb => {
            let direction = match args.direction {
                DirectionArg::V2t => RegdbDirection::VisibleToThermal,
                DirectionArg::T2v => RegdbDirection::ThermalToVisible,
            };
            let all: Vec<u64> = (1..=10).collect();
            let t: Vec<u64> = match (&args.trials, trained) {
                (None, Some(own)) => vec![u64::from(own)],
                (given, _) => parse_trials(given.as_deref().unwrap_or("all"), &all).map_err(bad_trials)?,
            };
            if let Some(bad) = t.iter().find(|&&t| !(1..=10).contains(&t)) {
                return Err(bad_trials(format!("RegDB trials are 1..10, found {bad}")));
            }
            let t: Vec<u32> = t.into_iter().map(|t| t as u32).collect();
            protocols::regdb(&args.root, direction, &t)?
        }
        EvalDataset::Market => protocols::market(&args.root, "Market-1501")?,
        EvalDataset::Duke => protocols::market(&args.root, "DukeMTMC-reID")?,
    })
}

/// The RegDB trial a checkpoint was trained on (from its metadata), warning when the trials to
/// score include others: their test identities overlap the ones it trained on.
pub(crate) fn trained_trial(args: &EvalArgs, file: &WeightFile) -> Option<u32> {
    if args.dataset != EvalDataset::Regdb {
        return None;
    }
    let own = file.provenance.trial?;
    if let Some(given) = &args.trials {
        let all: Vec<u64> = (1..=10).collect();
        let others: Vec<String> = parse_trials(given, &all)
            .unwrap_or_default()
            .into_iter()
            .filter(|&t| t != u64::from(own))
            .map(|t| t.to_string())
            .collect();
        if !others.is_empty() {
            tracing::warn!(
                "{} was trained on RegDB trial {own}: the test identities of trial(s) {} include identities it \
                 trained on, so its scores there are not test results (score per-trial models on their own trials)",
                file.path.display(),
                others.join(", ")
            );
        }
    }
    Some(own)
}

/// Runs the evaluation and writes summary.json, per_query.csv and cmc.png into `args.out`.
pub fn run(args: &EvalArgs) -> Result<Outcome, EvalError> {
    let mut rows = Vec::new();
    let mut runs = Vec::new();
    let mut all_trials: Vec<Vec<TrialResult>> = Vec::new();
    let mut first_protocol = None;
    let device = crate::config::site::parse_device(&args.device)
        .ok_or_else(|| EvalError::Features {
            path: "--device".into(),
            message: format!("expected auto, cpu, cuda or cuda:N, found {:?}", args.device),
        })
        .and_then(|d| Ok(crate::model::device(d, "--device")?))?;
    let runs_in = args.features.len().max(args.checkpoint.len());
    for i in 0..runs_in {
        let (protocol, mut bank) = match (args.features.get(i), args.checkpoint.get(i)) {
            (Some(path), _) => (protocol(args, None)?, FeatureBank::load(path)?),
            (None, Some(weights)) => {
                let file = WeightFile::read(weights)?;
                let embedder = embedder(&file, args, device)?;
                let protocol = protocol(args, trained_trial(args, &file))?;
                let bank = extract_with(&embedder, &protocol, args)?;
                bank.save(&args.out.join(format!("features-{}.safetensors", i + 1)))?;
                (protocol, bank)
            }
            (None, None) => unreachable!("i < max(len)"),
        };
        bank.features = bank.features.to_device(device);
        let trials = super::evaluate(&protocol, &bank, args.block.max(1))?;
        let summary = Summary::of(&trials.iter().map(|t| t.metrics.clone()).collect::<Vec<_>>());
        let names: Vec<&str> = trials.iter().map(|t| t.name.as_str()).collect();
        let label = match (runs_in, trials.len()) {
            (1, 1) => format!("{} ({})", protocol.name, names[0]),
            (1, n) => format!("{} ({n} trials)", protocol.name),
            (_, 1) => format!("run {} ({})", i + 1, names[0]),
            (_, n) => format!("run {} ({n} trials)", i + 1),
        };
        rows.push((label, summary.clone()));
        runs.push(summary);
        all_trials.push(trials);
        first_protocol.get_or_insert(protocol);
    }
    let protocol = first_protocol.ok_or_else(|| EvalError::Features {
        path: args.root.clone(),
        message: "give --checkpoint or --features".to_owned(),
    })?;
    let overall = if runs.len() == 1 {
        runs[0].clone()
    } else {
        let s = Summary::of(&runs.iter().map(Summary::as_metrics).collect::<Vec<_>>());
        rows.push((format!("mean over {} runs", runs.len()), s.clone()));
        s
    };
    let table = report::table(&rows);
    write_outputs(&args.out, &protocol, &runs, &overall, &all_trials)?;
    Ok(Outcome {
        protocol: protocol.name,
        table,
        runs,
        overall,
    })
}

/// The embedder of a weight file at the `--input-size` given (if the file records none). It
/// resizes on the host, exactly as Pillow does (the protocols' pre-processing, spec §5.2), on
/// every device: benchmark figures do not depend on the GPU's one-grey-level differences.
pub(crate) fn embedder(file: &WeightFile, args: &EvalArgs, device: tch::Device) -> Result<LbaEmbedder, EvalError> {
    Ok(
        LbaEmbedder::from_file(file, crate::cli::input_size(args.input_size.as_deref()), device, false)?
            .with_preprocess(crate::config::site::Preprocess::Host),
    )
}

/// Extracts features of every image any trial uses.
pub(crate) fn extract_with(
    embedder: &LbaEmbedder,
    protocol: &Protocol,
    args: &EvalArgs,
) -> Result<FeatureBank, EvalError> {
    let dataset = match args.dataset {
        EvalDataset::Sysu => DatasetKind::Sysu,
        EvalDataset::Regdb => DatasetKind::Regdb,
        EvalDataset::Market => DatasetKind::Market,
        EvalDataset::Duke => DatasetKind::Duke,
    };
    super::extract::extract_protocol(embedder, &args.root, protocol, dataset, args.batch)
}

fn write_outputs(
    out: &Path,
    protocol: &Protocol,
    runs: &[Summary],
    overall: &Summary,
    trials: &[Vec<TrialResult>],
) -> Result<(), EvalError> {
    let io = |path: &Path, e: std::io::Error| EvalError::Features {
        path: path.to_path_buf(),
        message: format!("cannot write: {e}"),
    };
    let per_run: Vec<serde_json::Value> = trials
        .iter()
        .zip(runs)
        .map(|(ts, s)| {
            serde_json::json!({
                "summary": s,
                "trials": ts.iter().map(|t| serde_json::json!({"name": t.name, "metrics": t.metrics})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let json = serde_json::json!({
        "protocol": protocol.name,
        "cmc_mode": protocol.cmc,
        "exclusion": protocol.exclusion,
        "overall": overall,
        "runs": per_run,
    });
    let summary = out.join("summary.json");
    let text = serde_json::to_vec_pretty(&json).map_err(|e| io(&summary, std::io::Error::other(e)))?;
    crate::atomic::write(&summary, &text).map_err(|e| io(&summary, e))?;
    let csv = out.join("per_query.csv");
    let all: Vec<TrialResult> = trials.iter().flatten().cloned().collect();
    crate::atomic::write(&csv, report::per_query_csv(&all).as_bytes()).map_err(|e| io(&csv, e))?;
    let plot = out.join("cmc.png");
    let curves: Vec<(String, Vec<f64>)> = if runs.len() == 1 {
        vec![(protocol.name.clone(), overall.cmc.clone())]
    } else {
        runs.iter()
            .enumerate()
            .map(|(i, s)| (format!("run {}", i + 1), s.cmc.clone()))
            .collect()
    };
    report::write_cmc_plot(&plot, &curves).map_err(|e| io(&plot, e))
}

#[cfg(test)]
mod tests {
    use super::parse_trials;

    #[test]
    fn trial_lists() {
        let all = [1, 2, 3];
        assert_eq!(parse_trials("0-3", &all).expect("ok"), vec![0, 1, 2, 3]);
        assert_eq!(parse_trials("1, 5,7-8", &all).expect("ok"), vec![1, 5, 7, 8]);
        assert_eq!(parse_trials("all", &all).expect("ok"), vec![1, 2, 3]);
        assert!(parse_trials("3-1", &all).is_err());
        assert!(parse_trials("x", &all).is_err());
        assert!(parse_trials("", &all).is_err());
    }
}
