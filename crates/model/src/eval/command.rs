//! `reid-pipe eval`: builds the protocol, scores every feature file (one per run) and writes
//! the reports.

use super::protocols::{self, Protocol};
use super::report::{self, Summary};
use super::request::{EvalInput, EvalRequest, Trials};
use super::{EvalError, FeatureBank, TrialResult};
use crate::model::embedder::LbaEmbedder;
use crate::model::weights::WeightFile;
use reid_core::config::train::DatasetKind;
use std::path::Path;

/// What an evaluation printed and wrote.
pub struct Outcome {
    pub protocol: String,
    pub table: String,
    /// Trial means of each run, then (with several runs) their mean ± std.
    pub runs: Vec<Summary>,
    pub overall: Summary,
}

/// The benchmarks' trials: SYSU-MM01's ten gallery draws and RegDB's ten splits.
const SYSU_TRIALS: [u64; 10] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
const REGDB_TRIALS: [u64; 10] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];

/// Builds the protocol the request names. A RegDB model trained on one trial (`trained`) is
/// scored on that trial unless the request lists trials.
pub fn protocol(req: &EvalRequest, trained: Option<u32>) -> Result<Protocol, EvalError> {
    Ok(match req.dataset {
        DatasetKind::Sysu => {
            let trials = req.trials.pick(&SYSU_TRIALS, None);
            protocols::sysu(&req.root, req.sysu_mode, req.shots, &trials)?
        }
        DatasetKind::Regdb => {
            let t = req.trials.pick(&REGDB_TRIALS, trained.map(u64::from));
            if let Some(bad) = t.iter().find(|t| !REGDB_TRIALS.contains(t)) {
                return Err(EvalError::Args(format!(
                    "--trials: RegDB trials are 1..10, found {bad}"
                )));
            }
            let t: Vec<u32> = t.into_iter().map(|t| t as u32).collect();
            protocols::regdb(&req.root, req.direction, &t)?
        }
        DatasetKind::Market => protocols::market(&req.root, "Market-1501")?,
        DatasetKind::Duke => protocols::market(&req.root, "DukeMTMC-reID")?,
    })
}

/// The RegDB trial a checkpoint was trained on (from its metadata), warning when the trials to
/// score include others: their test identities overlap the ones it trained on.
pub(crate) fn trained_trial(req: &EvalRequest, file: &WeightFile) -> Option<u32> {
    if req.dataset != DatasetKind::Regdb {
        return None;
    }
    let own = file.provenance.trial?;
    if req.trials != Trials::Default {
        let others: Vec<String> = req
            .trials
            .pick(&REGDB_TRIALS, None)
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

/// Runs the evaluation and writes summary.json, per_query.csv and cmc.png into `req.out`.
pub fn run(req: &EvalRequest) -> Result<Outcome, EvalError> {
    let mut rows = Vec::new();
    let mut runs = Vec::new();
    let mut all_trials: Vec<Vec<TrialResult>> = Vec::new();
    let mut first_protocol = None;
    let device = req.device.resolve("--device")?;
    reid_core::base::outputs::check(&req.outputs(), &req.input_files(), req.overwrite)?;
    let runs_in = req.inputs.len();
    for (i, input) in req.inputs.iter().enumerate() {
        let (protocol, mut bank) = match input {
            EvalInput::Features(path) => (protocol(req, None)?, FeatureBank::load(path)?),
            EvalInput::Checkpoint(weights) => {
                let file = WeightFile::read(weights)?;
                let embedder = embedder(&file, req, device)?;
                let protocol = protocol(req, trained_trial(req, &file))?;
                // Degenerate features name the weights that gave them, not the images.
                let bank = extract_with(&embedder, &protocol, req).map_err(|e| match e {
                    EvalError::Features { path, problem } => EvalError::Features {
                        path: weights.clone(),
                        problem: format!("its features of the images under {}: {problem}", path.display()),
                    },
                    other => other,
                })?;
                bank.save(&req.out.join(format!("features-{}.safetensors", i + 1)))?;
                (protocol, bank)
            }
        };
        bank.features = bank.features.to_device(device);
        let trials = super::evaluate(&protocol, &bank, req.block.max(1))?;
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
    let protocol = first_protocol.ok_or_else(|| EvalError::Args("give --checkpoint or --features".to_owned()))?;
    let overall = if runs.len() == 1 {
        runs[0].clone()
    } else {
        let s = Summary::of(&runs.iter().map(Summary::as_scores).collect::<Vec<_>>());
        rows.push((format!("mean over {} runs", runs.len()), s.clone()));
        s
    };
    let table = report::table(&rows);
    write_outputs(&req.out, &protocol, &runs, &overall, &all_trials)?;
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
pub(crate) fn embedder(file: &WeightFile, req: &EvalRequest, device: tch::Device) -> Result<LbaEmbedder, EvalError> {
    Ok(LbaEmbedder::from_file(file, req.input_size, device, false)?
        .with_preprocess(reid_core::config::site::Preprocess::Host))
}

/// Extracts features of every image any trial uses.
pub(crate) fn extract_with(
    embedder: &LbaEmbedder,
    protocol: &Protocol,
    req: &EvalRequest,
) -> Result<FeatureBank, EvalError> {
    super::extract::extract_protocol(embedder, &req.root, protocol, req.dataset, req.batch)
}

fn write_outputs(
    out: &Path,
    protocol: &Protocol,
    runs: &[Summary],
    overall: &Summary,
    trials: &[Vec<TrialResult>],
) -> Result<(), EvalError> {
    let io = |path: &Path, source: std::io::Error| EvalError::Write {
        path: path.to_path_buf(),
        source,
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
    reid_core::atomic::write(&summary, &text).map_err(|e| io(&summary, e))?;
    let csv = out.join("per_query.csv");
    let all: Vec<TrialResult> = trials.iter().flatten().cloned().collect();
    reid_core::atomic::write(&csv, report::per_query_csv(&all).as_bytes()).map_err(|e| io(&csv, e))?;
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
