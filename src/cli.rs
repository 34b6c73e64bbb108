//! Command-line interface (clap derive types only; no logic).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Person re-identification across paired visible and thermal cameras.
#[derive(Debug, Parser)]
#[command(name = "reid-pipe", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log filter (tracing syntax, e.g. `info`, `reid_pipe=debug`); RUST_LOG overrides it.
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
    /// Opens every camera pair's visible and thermal source and streams them until they end or
    /// Ctrl-C. At this stage of the project the live pipeline runs its ingest stage only: it reports
    /// frames, timestamps and pairing per source; detection, embedding and identity events follow.
    Run {
        /// Site configuration (TOML), e.g. config/site.toml.
        site: PathBuf,
        /// Stop each source after this many frames.
        #[arg(long)]
        max_frames: Option<u64>,
    },
    /// Train the LbA model from a training file (e.g. config/train-sysu.toml).
    ///
    /// Validates the file and prints the recipe; the trainer itself is not available yet.
    Train {
        /// Training configuration (TOML).
        config: PathBuf,
    },
    /// Evaluate a model with a benchmark protocol (not available yet).
    Eval {
        /// Training configuration naming the dataset (TOML).
        config: PathBuf,
    },
    /// Check the installation: library versions, CUDA, GStreamer elements and model files.
    ///
    /// Exits non-zero when something the site file needs is missing.
    Doctor {
        /// Site file whose pipelines and models are checked.
        #[arg(long, default_value = "config/site.toml")]
        site: PathBuf,
    },
    /// Validate a site or training file and print it resolved.
    Check {
        /// Configuration file (site or training; told apart by its keys).
        config: PathBuf,
    },
}
