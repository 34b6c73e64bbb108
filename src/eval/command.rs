//! `reid-pipe eval`: builds the protocol, scores every feature file (one per run) and writes
//! the reports.

use super::protocols::{self, Protocol, RegdbDirection, Shots, SysuMode};
use super::report::{self, Summary};
use super::{EvalError, FeatureBank, TrialResult};
use crate::cli::{DirectionArg, EvalArgs, EvalDataset, ShotsArg, SysuModeArg};
use crate::config::train::DatasetKind;
use crate::model::embedder::LbaEmbedder;
use std::path::Path;

/// What an evaluation printed and wrote.
pub struct Outcome {
    pub protocol: String,
    pub table: String,
    /// Trial means of each run, then (with several runs) their mean ± std.
    pub runs: Vec<Summary>,
    pub overall: Summary,
}

/// Parses `0-9`, `1,3,5` or `2`.
pub fn parse_trials(s: &str) -> Result<Vec<u64>, String> {
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

/// Builds the protocol the arguments name.
pub fn protocol(args: &EvalArgs) -> Result<Protocol, EvalError> {
    let trials = |default: &str| {
        parse_trials(args.trials.as_deref().unwrap_or(default)).map_err(|message| EvalError::Features {
            path: "--trials".into(),
            message,
        })
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
            protocols::sysu(&args.root, mode, shots, &trials("0-9")?)?
        }
        EvalDataset::Regdb => {
            let direction = match args.direction {
                DirectionArg::V2t => RegdbDirection::VisibleToThermal,
                DirectionArg::T2v => RegdbDirection::ThermalToVisible,
            };
            let t: Vec<u32> = trials("1-10")?.into_iter().map(|t| t as u32).collect();
            if let Some(bad) = t.iter().find(|&&t| !(1..=10).contains(&t)) {
                return Err(EvalError::Features {
                    path: "--trials".into(),
                    message: format!("RegDB trials are 1..10, found {bad}"),
                });
            }
            protocols::regdb(&args.root, direction, &t)?
        }
        EvalDataset::Market => protocols::market(&args.root, "Market-1501")?,
        EvalDataset::Duke => protocols::market(&args.root, "DukeMTMC-reID")?,
    })
}

/// Runs the evaluation and writes summary.json, per_query.csv and cmc.png into `args.out`.
pub fn run(args: &EvalArgs) -> Result<Outcome, EvalError> {
    let protocol = protocol(args)?;
    let mut rows = Vec::new();
    let mut runs = Vec::new();
    let mut all_trials: Vec<Vec<TrialResult>> = Vec::new();
    let device = crate::config::site::parse_device(&args.device)
        .map(crate::model::device)
        .ok_or_else(|| EvalError::Features {
            path: "--device".into(),
            message: format!("expected auto, cpu, cuda or cuda:N, found {:?}", args.device),
        })?;
    let runs_in = args.features.len().max(args.checkpoint.len());
    for i in 0..runs_in {
        let mut bank = match (args.features.get(i), args.checkpoint.get(i)) {
            (Some(path), _) => FeatureBank::load(path)?,
            (None, Some(weights)) => {
                let bank = extract_with(weights, &protocol, args, device)?;
                bank.save(&args.out.join(format!("features-{}.safetensors", i + 1)))?;
                bank
            }
            (None, None) => unreachable!("i < max(len)"),
        };
        bank.features = bank.features.to_device(device);
        let trials = super::evaluate(&protocol, &bank, args.block.max(1))?;
        let summary = Summary::of(&trials.iter().map(|t| t.metrics.clone()).collect::<Vec<_>>());
        let label = if runs_in == 1 {
            format!("{} ({} trials)", protocol.name, trials.len())
        } else {
            format!("run {} ({} trials)", i + 1, trials.len())
        };
        rows.push((label, summary.clone()));
        runs.push(summary);
        all_trials.push(trials);
    }
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

/// Extracts features of every image any trial uses.
pub(crate) fn extract_with(
    weights: &Path,
    protocol: &Protocol,
    args: &EvalArgs,
    device: tch::Device,
) -> Result<FeatureBank, EvalError> {
    let embedder = LbaEmbedder::from_weights(weights, device, false).map_err(|e| EvalError::Features {
        path: weights.to_path_buf(),
        message: e.to_string(),
    })?;
    let dataset = match args.dataset {
        EvalDataset::Sysu => DatasetKind::Sysu,
        EvalDataset::Regdb => DatasetKind::Regdb,
        EvalDataset::Market => DatasetKind::Market,
        EvalDataset::Duke => DatasetKind::Duke,
    };
    super::extract::extract_protocol(&embedder, &args.root, protocol, dataset, args.batch)
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
        assert_eq!(parse_trials("0-3").expect("ok"), vec![0, 1, 2, 3]);
        assert_eq!(parse_trials("1, 5,7-8").expect("ok"), vec![1, 5, 7, 8]);
        assert!(parse_trials("3-1").is_err());
        assert!(parse_trials("x").is_err());
        assert!(parse_trials("").is_err());
    }
}
