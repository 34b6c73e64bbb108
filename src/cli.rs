//! Command-line interface: clap derive types, and one conversion of their values (no other logic).

use crate::base::Device;
use crate::config::train::DatasetKind;
use crate::eval::protocols::{RegdbDirection, Shots, SysuMode};
use crate::eval::{EvalInput, EvalRequest, Trials};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Person re-identification across paired visible and thermal cameras.
#[derive(Debug, Parser)]
#[command(name = "reid-pipe", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log filter (tracing syntax, e.g. `info`, `reid_pipe=debug` for all of reid-pipe,
    /// `reid_index::cluster=debug` for one module); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the live pipeline of a site file.
    ///
    /// Streams every camera pair's visible and thermal source through detection, tracking,
    /// batched embedding and the identity index to events (file, stdout, MQTT), metrics and the
    /// annotated video, until the sources end or SIGINT/SIGTERM (drains, snapshots, exits 0).
    Run {
        /// Site configuration (TOML), e.g. config/site.toml.
        site: PathBuf,
        /// Stop each source after this many frames.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_frames: Option<u64>,
        /// When the index snapshots were written by another model (vectors of another
        /// dimension), set them aside (renamed `set-aside-*`, kept) and begin an empty index;
        /// without this flag such a run refuses to start.
        #[arg(long)]
        fresh_index: bool,
    },
    /// Build a cross-modal training set from a site's own footage, without labels.
    ///
    /// Runs the site's sources, detection and tracking (no model), and writes every fused
    /// visible–thermal track pair whose boxes overlapped steadily as one pseudo-identity, in the
    /// SYSU-MM01 layout `train` and `eval` read: the first part of the recording for training,
    /// the rest for test (`[harvest]` in the site file sets the split and the quality filters),
    /// with manifest.json recording where every crop came from.
    Harvest {
        /// Site configuration (TOML).
        site: PathBuf,
        /// The dataset folder to write (absent or empty; an earlier harvest only with --force).
        #[arg(long)]
        out: PathBuf,
        /// Stop each source after this many frames.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_frames: Option<u64>,
        /// Keep only crops from this stream time on, in seconds.
        #[arg(long, default_value_t = 0.0)]
        from: f64,
        /// Keep only crops up to this stream time, in seconds.
        #[arg(long)]
        to: Option<f64>,
        /// Replace an earlier harvest in --out (only a harvest's own files are removed).
        #[arg(long)]
        force: bool,
    },
    /// Adapt the site's model to its own footage, without labels: harvest, train from the
    /// site's current weights, evaluate before and after on the held-out (later) part.
    ///
    /// Writes OUT/data (the harvest), OUT/train.toml and OUT/run/ (the trainer's files; the
    /// adapted weights are OUT/run/last.safetensors), OUT/eval-before/ and OUT/eval-after/,
    /// OUT/centre.safetensors (the adapted model's embedding centre, `model.centre`),
    /// OUT/retrieval.png, and OUT/report.json + report.md with the scores and the index
    /// thresholds suggested for the adapted weights with that centre; prints the site-file lines
    /// that switch to them.
    Adapt {
        /// Site configuration (TOML).
        site: PathBuf,
        /// The folder to write (absent or empty; an earlier adaptation only with --resume).
        #[arg(long)]
        out: PathBuf,
        /// Stop each source after this many frames (harvest).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_frames: Option<u64>,
        /// Training epochs.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        epochs: u32,
        /// Training seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// How training batches draw their pseudo-identities: with those seen at the same time
        /// (certainly other people), or at random as the LbA recipe does.
        #[arg(long, value_enum, default_value_t = SamplerArg::CoOccurring)]
        sampler: SamplerArg,
        /// Continue an interrupted adaptation in --out.
        #[arg(long)]
        resume: bool,
        /// Train on every pseudo-identity as its own person, without first grouping those the
        /// starting weights find to be one person who came back.
        #[arg(long)]
        keep_pseudo_identities: bool,
    },
    /// Draw the figures models are judged by: retrieval grids, co-attention, correspondences,
    /// training curves.
    Viz {
        #[command(subcommand)]
        figure: VizFigure,
    },
    /// Train the LbA model from a training file (e.g. config/train-sysu.toml).
    ///
    /// Writes checkpoint.safetensors (for --resume), last.safetensors (the model) and log.jsonl
    /// (one line per epoch) into the file's output_dir, and evaluates on the test protocol.
    Train {
        /// Training configuration (TOML).
        config: PathBuf,
        /// Continue from the output directory's checkpoint (same epoch, optimiser and sampler state).
        #[arg(long)]
        resume: bool,
        /// Independent runs (seeds seed, seed+1, …) summarised as mean ± std.
        #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        runs: usize,
    },
    /// Score features with a benchmark's exact protocol: CMC, mAP, mINP over its trials.
    ///
    /// Prints mean ± std over trials (and over runs, one per --features file), and writes
    /// summary.json, per_query.csv and cmc.png to --out.
    Eval(EvalArgs),
    /// Check the installation: library versions, CUDA, GStreamer elements and model files.
    ///
    /// Exits non-zero when something the site file needs is missing.
    Doctor {
        /// Site file whose pipelines and models are checked (default: config/site.toml when it
        /// exists); a file given here that is missing or invalid fails the check.
        #[arg(long)]
        site: Option<PathBuf>,
    },
    /// Export the site's embedding network as TorchScript modules plus a manifest.
    ///
    /// Writes `<name>-visible.pt`, `<name>-thermal.pt` and `<name>.toml` into --out; point a site
    /// file's `model.weights` at the `.toml` to run them, or load them anywhere libtorch runs.
    /// A site's `model.centre` is not part of the modules: keep it in the site file (thresholds
    /// suggested with it hold only with it).
    Export {
        /// Site file whose `[model]` is exported.
        site: PathBuf,
        /// Output folder.
        #[arg(long, default_value = "out/export")]
        out: PathBuf,
        /// File name stem.
        #[arg(long, default_value = "reid-embedder")]
        name: String,
        /// Replace the files of an earlier export with this name.
        #[arg(long)]
        overwrite: bool,
    },
    /// Write a generated dataset in the exact layout of SYSU-MM01, RegDB or Market-1501.
    ///
    /// Rendered people whose shape survives the change of modality while colour and texture exist
    /// in visible images only; for tests, demos and trying the trainer without the real data.
    Synth {
        /// Layout to write.
        #[arg(long, value_enum)]
        format: crate::synth::Format,
        /// Number of identities.
        #[arg(long, default_value_t = 40)]
        identities: usize,
        /// Output folder (the dataset root).
        #[arg(long)]
        out: PathBuf,
        /// Scenes only: consecutive clips in one recording, each with two or three of the
        /// people, who come back in later clips.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        clips: u64,
        /// Seed; the same seed writes the same dataset.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Inspect an identity-index snapshot directory (the site's `index.snapshot_dir`).
    Index {
        #[command(subcommand)]
        action: IndexAction,
    },
    /// Convert a weight file into reid-pipe's own format (safetensors with the network's
    /// description), so that later commands need no flags.
    ///
    /// Reads official LbA checkpoints (`sysu_pretrained.t`: torch.save with the state dict under
    /// `net`), other torch.save checkpoints (`state_dict`, `model`; DataParallel `module.`
    /// prefixes), torchvision's ImageNet ResNet-50 (`resnet50-19c8e357.pth`) and safetensors state
    /// dicts, without Python. The network is inferred from the tensors.
    Import {
        /// The file to convert (.t, .pt, .pth, .tar, .safetensors).
        input: PathBuf,
        /// The reid-pipe weight file to write.
        output: PathBuf,
        /// Identities the classifier must have (a check against importing the wrong checkpoint).
        #[arg(long)]
        classes: Option<i64>,
        /// Input height and width the network was trained at (default 288 144, the recipe's).
        #[arg(long, num_args = 2, value_names = ["H", "W"], value_parser = clap::value_parser!(i64).range(16..=2048))]
        input_size: Option<Vec<i64>>,
        /// RegDB trial (1..=10) the model was trained on; `eval` then scores that trial.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10))]
        trial: Option<u32>,
        /// Replace OUTPUT if it exists.
        #[arg(long, alias = "overwrite")]
        force: bool,
    },
    /// Validate a site or training file and print it resolved.
    Check {
        /// Configuration file (site or training; told apart by its keys).
        config: PathBuf,
    },
}

/// The (height, width) of an `--input-size H W` argument (clap makes sure there are two values).
pub fn input_size(arg: Option<&[i64]>) -> Option<(i64, i64)> {
    match arg {
        Some(&[h, w]) => Some((h, w)),
        _ => None,
    }
}

/// Dataset layouts `eval` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalDataset {
    Sysu,
    Regdb,
    Market,
    Duke,
}

/// The training sampler of `adapt` (`schedule.sampler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SamplerArg {
    Identity,
    CoOccurring,
}

impl From<SamplerArg> for crate::config::train::SamplerKind {
    fn from(s: SamplerArg) -> Self {
        match s {
            SamplerArg::Identity => Self::Identity,
            SamplerArg::CoOccurring => Self::CoOccurring,
        }
    }
}

/// SYSU-MM01 search mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SysuModeArg {
    All,
    Indoor,
}

/// SYSU-MM01 gallery shots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShotsArg {
    Single,
    Multi,
}

/// RegDB search direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DirectionArg {
    /// Visible queries, thermal gallery.
    V2t,
    /// Thermal queries, visible gallery.
    T2v,
}

/// Arguments of `reid-pipe eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Dataset layout.
    #[arg(long, value_enum)]
    pub dataset: EvalDataset,
    /// Dataset root folder.
    #[arg(long)]
    pub root: PathBuf,
    /// Feature file (safetensors: `features` N×D and metadata `paths`); repeat for several runs.
    #[arg(long, required_unless_present = "checkpoint", conflicts_with = "checkpoint")]
    pub features: Vec<PathBuf>,
    /// Weights to extract features with: a reid-pipe file, an official LbA checkpoint
    /// (`sysu_pretrained.t`), any torch.save or safetensors state dict of a known layout; repeat
    /// for several runs. The features are saved as <out>/features-<n>.safetensors for later
    /// --features runs.
    #[arg(long)]
    pub checkpoint: Vec<PathBuf>,
    /// Input height and width for weights that do not record theirs (default 288 144).
    #[arg(long, num_args = 2, value_names = ["H", "W"], value_parser = clap::value_parser!(i64).range(16..=2048))]
    pub input_size: Option<Vec<i64>>,
    /// Device for extraction and ranking: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_parser = device)]
    pub device: Device,
    /// Images per extraction batch.
    #[arg(long, default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096))]
    pub batch: usize,
    /// SYSU-MM01 search mode.
    #[arg(long, value_enum, default_value = "all")]
    pub mode: SysuModeArg,
    /// SYSU-MM01 gallery: one image per identity and camera, or ten.
    #[arg(long, value_enum, default_value = "single")]
    pub shots: ShotsArg,
    /// RegDB direction.
    #[arg(long, value_enum, default_value = "v2t")]
    pub direction: DirectionArg,
    /// Trials, e.g. `0-9`, `1,3` or `all` (default: SYSU 0-9; RegDB: the trial a checkpoint was
    /// trained on, else 1-10).
    #[arg(long, value_parser = Trials::parse)]
    pub trials: Option<Trials>,
    /// Queries ranked per block (bounds memory).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(i64).range(1..))]
    pub block: i64,
    /// Output folder for summary.json, per_query.csv and cmc.png.
    #[arg(long, default_value = "out/eval")]
    pub out: PathBuf,
    /// Replace the reports (and extracted features, or the figure) an earlier run left there.
    #[arg(long)]
    pub overwrite: bool,
}

impl EvalArgs {
    /// The evaluation these arguments ask for.
    pub fn request(self) -> EvalRequest {
        let inputs = if self.features.is_empty() {
            self.checkpoint.into_iter().map(EvalInput::Checkpoint).collect()
        } else {
            self.features.into_iter().map(EvalInput::Features).collect()
        };
        EvalRequest {
            dataset: match self.dataset {
                EvalDataset::Sysu => DatasetKind::Sysu,
                EvalDataset::Regdb => DatasetKind::Regdb,
                EvalDataset::Market => DatasetKind::Market,
                EvalDataset::Duke => DatasetKind::Duke,
            },
            root: self.root,
            inputs,
            input_size: input_size(self.input_size.as_deref()),
            device: self.device,
            batch: self.batch,
            sysu_mode: match self.mode {
                SysuModeArg::All => SysuMode::All,
                SysuModeArg::Indoor => SysuMode::Indoor,
            },
            shots: match self.shots {
                ShotsArg::Single => Shots::Single,
                ShotsArg::Multi => Shots::Multi,
            },
            direction: match self.direction {
                DirectionArg::V2t => RegdbDirection::VisibleToThermal,
                DirectionArg::T2v => RegdbDirection::ThermalToVisible,
            },
            trials: self.trials.unwrap_or_default(),
            block: self.block,
            out: self.out,
            overwrite: self.overwrite,
        }
    }
}

/// Parses a `--device` value.
fn device(s: &str) -> Result<Device, String> {
    Device::parse(s).ok_or_else(|| format!("expected auto, cpu, cuda or cuda:N, found {s:?}"))
}

/// `reid-pipe viz` figures (PNG).
#[derive(Debug, Subcommand)]
pub enum VizFigure {
    /// Queries and their top-k gallery images, framed green (right identity) or red (wrong).
    Retrieval {
        #[command(flatten)]
        eval: EvalArgs,
        /// Queries drawn from the first trial (chosen with --seed).
        #[arg(long, default_value_t = 8, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        queries: usize,
        /// Gallery images per query.
        #[arg(long, default_value_t = 10, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        top: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output PNG (a JSON file with the same rows is written beside it).
        #[arg(long, default_value = "out/viz/retrieval.png")]
        png: PathBuf,
    },
    /// RGB/IR pairs of one person with their person masks and co-attention maps.
    Coattention {
        /// Weights (any file `import` reads).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Visible image; repeat, one per --thermal.
        #[arg(long, required = true)]
        visible: Vec<PathBuf>,
        /// Infrared image of the same person; repeat.
        #[arg(long, required = true)]
        thermal: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "layer4")]
        stage: crate::viz::alignment::Stage,
        /// Input height and width for weights that do not record theirs (default 288 144).
        #[arg(long, num_args = 2, value_names = ["H", "W"], value_parser = clap::value_parser!(i64).range(16..=2048))]
        input_size: Option<Vec<i64>>,
        #[arg(long, default_value = "out/viz/coattention.png")]
        out: PathBuf,
        /// Replace the output file if it exists.
        #[arg(long)]
        overwrite: bool,
    },
    /// The top-20 dense correspondences of an RGB/IR pair, one row per checkpoint.
    Correspondence {
        /// Weights; repeat to compare models (e.g. ablations) side by side.
        #[arg(long, required = true)]
        checkpoint: Vec<PathBuf>,
        #[arg(long)]
        visible: PathBuf,
        #[arg(long)]
        thermal: PathBuf,
        #[arg(long, value_enum, default_value = "layer4")]
        stage: crate::viz::alignment::Stage,
        /// Input height and width for weights that do not record theirs (default 288 144).
        #[arg(long, num_args = 2, value_names = ["H", "W"], value_parser = clap::value_parser!(i64).range(16..=2048))]
        input_size: Option<Vec<i64>>,
        #[arg(long, default_value = "out/viz/correspondence.png")]
        out: PathBuf,
        /// Replace the output file if it exists.
        #[arg(long)]
        overwrite: bool,
    },
    /// Loss terms and evaluation metrics over epochs from a training log.
    Curves {
        /// A run's log.jsonl.
        #[arg(value_name = "LOG_JSONL")]
        training_log: PathBuf,
        #[arg(long, default_value = "out/viz/curves.png")]
        out: PathBuf,
        /// Replace the output file if it exists.
        #[arg(long)]
        overwrite: bool,
    },
}

/// `reid-pipe index` actions.
#[derive(Debug, Subcommand)]
pub enum IndexAction {
    /// Counts of identities and exemplars per modality and camera, and the time span.
    Stats {
        /// Snapshot directory.
        dir: PathBuf,
    },
    /// The identities nearest to one identity.
    Query {
        /// Snapshot directory.
        dir: PathBuf,
        /// Identity id.
        #[arg(long)]
        identity: u64,
        /// How many neighbours.
        #[arg(short, default_value_t = 5, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        k: usize,
    },
    /// Write identities.jsonl and exemplars.safetensors.
    Export {
        /// Snapshot directory.
        dir: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Replace the files of an earlier export there.
        #[arg(long)]
        overwrite: bool,
    },
}

/// The workspace's crates: log events are named after the crate that holds their code
/// (`reid_index::cluster::link`).
const CRATES: [&str; 5] = ["reid_pipe", "reid_core", "reid_perception", "reid_model", "reid_index"];

/// `given` with each directive for the whole of `reid_pipe` (`reid_pipe`, `reid_pipe=debug`)
/// applied to every crate of the workspace; other directives as they are.
pub fn log_filter(given: &str) -> String {
    let mut out = Vec::new();
    for directive in given.split(',').map(str::trim) {
        match directive.strip_prefix("reid_pipe") {
            Some(level) if level.is_empty() || level.starts_with('=') => {
                out.extend(CRATES.iter().map(|c| format!("{c}{level}")));
            }
            _ => out.push(directive.to_owned()),
        }
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn a_filter_for_reid_pipe_covers_every_crate() {
        assert_eq!(
            log_filter("info,reid_pipe=debug"),
            "info,reid_pipe=debug,reid_core=debug,reid_perception=debug,reid_model=debug,reid_index=debug"
        );
        assert_eq!(
            log_filter("reid_pipe"),
            "reid_pipe,reid_core,reid_perception,reid_model,reid_index"
        );
        assert_eq!(
            log_filter("warn,reid_index::cluster=trace"),
            "warn,reid_index::cluster=trace"
        );
        assert_eq!(log_filter("reid_pipe::live=debug"), "reid_pipe::live=debug");
    }
}
