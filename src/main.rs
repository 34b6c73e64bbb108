//! The `reid-pipe` binary: parses the command line, sets up logging, calls the library.

use anyhow::{Context, Result};
use clap::Parser;
use reid_pipe::base::outputs;
use reid_pipe::cli::{Cli, Command, IndexAction};
use reid_pipe::config::{SiteConfig, TrainConfig};
use reid_pipe::eval::report::Summary;
use reid_pipe::{doctor, live};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    reid_pipe::runtime::tune_allocator();
    let cli = Cli::parse();
    let rust_log = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
    let (given, from) = match &rust_log {
        Some(v) => (v.as_str(), "RUST_LOG"),
        None => (cli.log.as_str(), "--log"),
    };
    let filter = match EnvFilter::try_new(reid_pipe::cli::log_filter(given)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: invalid {from} filter {given:?}: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            tracing::debug!("{e:?}");
            eprintln!("error: {}", reid_pipe::base::Chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run {
            site,
            max_frames,
            fresh_index,
        } => run_site(&site, max_frames, fresh_index),
        Command::Harvest {
            site,
            out,
            max_frames,
            from,
            to,
            force,
        } => harvest(&site, out, max_frames, (from, to), force),
        Command::Adapt {
            site,
            out,
            max_frames,
            epochs,
            seed,
            sampler,
            resume,
            keep_pseudo_identities,
        } => {
            let cfg = SiteConfig::load(&site)?;
            let opts = reid_pipe::adapt::AdaptOptions {
                out,
                max_frames,
                epochs,
                seed,
                sampler: sampler.into(),
                resume,
                associate: !keep_pseudo_identities,
            };
            let stop = Arc::new(AtomicBool::new(false));
            let handler_stop = Arc::clone(&stop);
            ctrlc::set_handler(move || {
                if handler_stop.swap(true, Ordering::Relaxed) {
                    std::process::exit(130);
                }
                eprintln!(
                    "stopping after this phase (a harvest writes what it has); Ctrl-C again stops at once; \
                     `adapt --resume` continues (training from its last epoch's checkpoint)"
                );
            })
            .context("cannot install the signal handler")?;
            let report = reid_pipe::adapt::adapt(&cfg, &opts, &stop)?;
            println!("{}", report.table());
            println!(
                "To use the adapted weights, set in {}:\n{}",
                site.display(),
                report.site_lines()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Train { config, resume, runs } => {
            let cfg = TrainConfig::load(&config)?;
            let results = reid_pipe::train::train(&cfg, reid_pipe::train::Options { resume, runs })?;
            let metrics: Vec<_> = results.iter().filter_map(|r| r.metrics.clone()).collect();
            let mut rows: Vec<(String, Summary)> = results
                .iter()
                .filter_map(|r| {
                    r.metrics
                        .clone()
                        .map(|m| (format!("seed {}", r.seed), Summary::of(&[m])))
                })
                .collect();
            if metrics.len() > 1 {
                rows.push((format!("mean over {} runs", metrics.len()), Summary::of(&metrics)));
            }
            print!("{}", reid_pipe::eval::report::table(&rows));
            for r in &results {
                println!("model: {}", r.dir.join("last.safetensors").display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval(args) => {
            let request = args.request();
            let outcome = reid_pipe::eval::command::run(&request)?;
            print!("{}", outcome.table);
            println!(
                "wrote summary.json, per_query.csv and cmc.png to {}",
                request.out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { site } => {
            let site = site.or_else(|| {
                let default = PathBuf::from("config/site.toml");
                default.exists().then_some(default)
            });
            let report = doctor::run(site.as_deref());
            print!("{}", report.render());
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Export {
            site,
            out,
            name,
            overwrite,
        } => {
            let cfg = SiteConfig::load(&site)?;
            let outputs = ["toml", "visible.pt", "thermal.pt"].map(|end| {
                out.join(if end == "toml" {
                    format!("{name}.toml")
                } else {
                    format!("{name}-{end}")
                })
            });
            let inputs = [
                ("the site file".to_owned(), site.clone()),
                ("model.weights".to_owned(), cfg.model.weights.clone()),
            ];
            outputs::check(&outputs, &inputs, overwrite).context("--out")?;
            let manifest = reid_pipe::model::torchscript::export_site(&cfg.model, &out, &name)?;
            println!("wrote {}", manifest.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Synth {
            format,
            identities,
            out,
            clips,
            seed,
        } => {
            reid_pipe::synth::generate(format, identities, clips as usize, &out, seed)?;
            println!(
                "wrote a {format:?} dataset of {identities} identities to {}",
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Index { action } => index(action),
        Command::Viz { figure } => {
            viz(figure)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Import {
            input,
            output,
            classes,
            input_size,
            trial,
            force,
        } => {
            let request = reid_pipe::model::import::Request {
                input: &input,
                output: &output,
                classes,
                input_size: reid_pipe::cli::input_size(input_size.as_deref()),
                trial,
                overwrite: force,
            };
            let done = reid_pipe::model::import::run(&request)?;
            println!("{done}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => {
            check(&config)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn index(action: IndexAction) -> Result<ExitCode> {
    use reid_pipe::index::{inspect, snapshot};
    let dir = match &action {
        IndexAction::Stats { dir } | IndexAction::Query { dir, .. } | IndexAction::Export { dir, .. } => dir,
    };
    let Some((path, idx)) = snapshot::load_for_inspection(dir)? else {
        anyhow::bail!("no snapshot in {}", dir.display());
    };
    match action {
        IndexAction::Stats { .. } => print!("{}", inspect::stats(&path, &idx)),
        IndexAction::Query { identity, k, .. } => {
            eprintln!("snapshot {}", path.display());
            println!("{:>10}  {:>8}  modality", "identity", "distance");
            for (id, d, cross) in inspect::query(&idx, identity, k)? {
                println!("{id:>10}  {d:>8.4}  {}", if cross { "cross" } else { "same" });
            }
        }
        IndexAction::Export { out, overwrite, .. } => {
            let outputs = [out.join("identities.jsonl"), out.join("exemplars.safetensors")];
            outputs::check(&outputs, &[("the snapshot".to_owned(), path.clone())], overwrite).context("--out")?;
            inspect::export(&idx, &out)?;
            println!("wrote {}/identities.jsonl and exemplars.safetensors", out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn viz(figure: reid_pipe::cli::VizFigure) -> Result<()> {
    use reid_pipe::cli::VizFigure;
    use reid_pipe::viz::{alignment, curves, retrieval};
    match figure {
        VizFigure::Retrieval {
            eval,
            queries,
            top,
            seed,
            png,
        } => {
            let rows = retrieval::run(&retrieval::RetrievalRequest {
                eval: eval.request(),
                queries,
                top,
                seed,
                out: png.clone(),
            })?;
            let right = rows.iter().filter(|r| r.ranked.first().is_some_and(|g| g.1)).count();
            println!(
                "wrote {} ({} queries, {right} right at rank 1)",
                png.display(),
                rows.len()
            );
        }
        VizFigure::Coattention {
            checkpoint,
            visible,
            thermal,
            stage,
            input_size,
            out,
            overwrite,
        } => {
            let mut inputs = vec![("--checkpoint".to_owned(), checkpoint.clone())];
            inputs.extend(visible.iter().map(|p| ("a --visible image".to_owned(), p.clone())));
            inputs.extend(thermal.iter().map(|p| ("a --thermal image".to_owned(), p.clone())));
            outputs::check(std::slice::from_ref(&out), &inputs, overwrite).context("--out")?;
            if visible.len() != thermal.len() {
                anyhow::bail!(
                    "give one --thermal per --visible ({} vs {})",
                    visible.len(),
                    thermal.len()
                );
            }
            let pairs: Vec<_> = visible.into_iter().zip(thermal).collect();
            alignment::coattention(
                &checkpoint,
                reid_pipe::cli::input_size(input_size.as_deref()),
                &pairs,
                stage,
                &out,
            )?;
            println!("wrote {}", out.display());
        }
        VizFigure::Correspondence {
            checkpoint,
            visible,
            thermal,
            stage,
            input_size,
            out,
            overwrite,
        } => {
            let mut inputs: Vec<_> = checkpoint
                .iter()
                .map(|p| ("a --checkpoint".to_owned(), p.clone()))
                .collect();
            inputs.push(("--visible".to_owned(), visible.clone()));
            inputs.push(("--thermal".to_owned(), thermal.clone()));
            let outputs = [out.clone(), out.with_extension("json")];
            outputs::check(&outputs, &inputs, overwrite).context("--out")?;
            alignment::correspondence(
                &checkpoint,
                reid_pipe::cli::input_size(input_size.as_deref()),
                &visible,
                &thermal,
                stage,
                &out,
            )?;
            println!("wrote {}", out.display());
        }
        VizFigure::Curves {
            training_log,
            out,
            overwrite,
        } => {
            let inputs = [("the training log".to_owned(), training_log.clone())];
            outputs::check(std::slice::from_ref(&out), &inputs, overwrite).context("--out")?;
            let (losses, metrics) = curves::read(&training_log)?;
            curves::draw(&losses, &metrics, &out)?;
            println!("wrote {}", out.display());
        }
    }
    Ok(())
}

fn check(path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    // A file with any table only a site file has is a site file; anything else is read as a
    // training file. A file that is not valid TOML is told apart by its table headers, so its
    // error comes from the right loader.
    const SITE_ONLY: [&str; 8] = [
        "harvest",
        "runtime",
        "cameras",
        "detector",
        "thermal_detector",
        "tracker",
        "index",
        "outputs",
    ];
    let is_site = match text.parse::<toml::Table>() {
        Ok(table) => SITE_ONLY.iter().any(|k| table.contains_key(*k)),
        Err(_) => text.lines().any(|l| {
            let l = l.trim_start().trim_start_matches('[');
            SITE_ONLY
                .iter()
                .any(|k| l.starts_with(k) && l[k.len()..].starts_with([']', '.']))
        }),
    };
    if is_site {
        let cfg = SiteConfig::load(path)?;
        println!("{cfg:#?}");
        // What a run opens before its first frame: detectors, the snapshot folder, the model.
        live::preflight(&cfg)?;
        for absent in live::preflight::absent_sources(&cfg) {
            println!("warning: {absent}; `run` starts without this source and reports it failed");
        }
    } else {
        let cfg = TrainConfig::load(path)?;
        println!("{cfg:#?}");
        // What `train` checks before it decodes an image; an earlier run is fine for --resume.
        let resume = reid_pipe::train::Options { resume: true, runs: 1 };
        reid_pipe::train::preflight(&cfg, resume)?;
        if std::fs::read_dir(&cfg.output_dir).is_ok_and(|mut d| d.next().is_some()) {
            println!(
                "note: output_dir {} holds an earlier run: `train` continues it only with --resume",
                cfg.output_dir.display()
            );
        }
    }
    println!("{}: valid", path.display());
    Ok(())
}

fn harvest(
    site: &Path,
    out: PathBuf,
    max_frames: Option<u64>,
    (from, to): (f64, Option<f64>),
    force: bool,
) -> Result<ExitCode> {
    let to = to.unwrap_or(f64::INFINITY);
    if !(from.is_finite() && from >= 0.0 && from < to) {
        anyhow::bail!("--from {from} --to {to}: expected 0 ≤ from < to, in seconds of stream time");
    }
    let cfg = SiteConfig::load(site)?;
    let inputs = [("the site file".to_owned(), site.to_path_buf())];
    outputs::check(std::slice::from_ref(&out), &inputs, true).context("--out")?;
    let stop = Arc::new(AtomicBool::new(false));
    let handler_stop = Arc::clone(&stop);
    ctrlc::set_handler(move || {
        if handler_stop.swap(true, Ordering::Relaxed) {
            std::process::exit(130);
        }
        eprintln!("stopping: the sources end and what was harvested so far is written");
    })
    .context("cannot install the signal handler")?;
    let opts = live::harvest::HarvestOptions {
        out: out.clone(),
        max_frames,
        from_s: from,
        to_s: to,
        force,
    };
    let summary = live::harvest::harvest(&cfg, &opts, &stop)?;
    let w = &summary.written;
    let l = &w.left_out;
    let layout = match summary.layout {
        live::harvest::Layout::Sysu => "SYSU-MM01 layout, both modalities",
        live::harvest::Layout::Market => "Market-1501 layout, visible tracks alone: single-modality, nothing fused",
    };
    println!(
        "{} tracks; {} pseudo-identities written to {} ({layout}; {} train, {} test, cut at {:.1} s), {} crops",
        summary.tracks,
        w.train + w.test,
        out.display(),
        w.train,
        w.test,
        w.cut_s,
        w.crops
    );
    println!(
        "left out: {} spanning the cut, {} unstable fusions, {} short, {} without a large enough crop; {} tracks never fused",
        l.crossing_the_cut, l.unstable_fusion, l.short, l.no_crops, l.unfused_tracks
    );
    Ok(ExitCode::SUCCESS)
}

fn run_site(site: &Path, max_frames: Option<u64>, fresh_index: bool) -> Result<ExitCode> {
    let cfg = SiteConfig::load(site)?;
    let stop = Arc::new(AtomicBool::new(false));
    let handler_stop = Arc::clone(&stop);
    ctrlc::set_handler(move || {
        if handler_stop.swap(true, Ordering::Relaxed) {
            eprintln!("second interrupt: exiting without draining");
            std::process::exit(130);
        }
        eprintln!("stopping: draining queues, flushing events, writing the index snapshot");
        // Shutdown is bounded: if draining takes too long, leave anyway.
        std::thread::spawn(|| {
            std::thread::sleep(SHUTDOWN_LIMIT);
            eprintln!("shutdown took longer than {} s; exiting", SHUTDOWN_LIMIT.as_secs());
            std::process::exit(1);
        });
    })
    .context("cannot install the signal handler")?;
    tracing::info!(cameras = cfg.cameras.len(), "running {}", site.display());
    let opts = live::RunOptions {
        max_frames,
        status_every_s: 5.0,
        fresh_index,
    };
    let summary = live::run(&cfg, &opts, &stop)?;
    let cameras = &summary.cameras;
    println!(
        "{:<16} {:<8} {:>8} {:>8} {:>6} {:>10} {:>10} {:>9}  status",
        "camera", "modality", "frames", "dropped", "recon", "size", "span s", "frames/s"
    );
    let mut failed = 0;
    for cam in cameras {
        for s in &cam.sources {
            let span = match (s.first_pts_ns, s.last_pts_ns) {
                (Some(a), Some(b)) => format!("{:.2}", (b.saturating_sub(a)) as f64 / 1e9),
                _ => "-".to_owned(),
            };
            let size = s.size.map_or_else(|| "-".to_owned(), |(w, h)| format!("{w}x{h}"));
            let rate = s.frames as f64 / s.elapsed.as_secs_f64().max(1e-9);
            let status = s.error.clone().unwrap_or_else(|| "ok".to_owned());
            failed += usize::from(s.error.is_some());
            let modality = s.modality.map_or_else(String::new, |m| m.to_string());
            println!(
                "{:<16} {:<8} {:>8} {:>8} {:>6} {:>10} {:>10} {:>9.1}  {status}",
                s.camera, modality, s.frames, s.dropped, s.reconnects, size, span, rate
            );
        }
        let p = cam.pairing;
        println!(
            "{:<16} pairs {} (tolerance {} ms), unpaired visible {}, unpaired thermal {}, dropped unpaired {}",
            cam.camera,
            p.pairs,
            cfg.camera(&cam.camera).map_or(0.0, |c| c.pairing_tolerance_ms),
            p.unpaired_visible,
            p.unpaired_thermal,
            p.dropped
        );
    }
    let m = &summary.metrics;
    let events = |kind: &str| {
        m.counter("reid_events_total", &[("type", kind)])
            .load(Ordering::Relaxed)
    };
    println!(
        "{} frames processed, {} crops embedded, {} identities; events: {} new, {} update, {} end; \
         {} dropped; {:.1} s",
        m.total("reid_frames_processed_total"),
        m.total("reid_crops_embedded_total"),
        summary.identities,
        events("new"),
        events("update"),
        events("end"),
        m.total("reid_dropped_total"),
        summary.elapsed.as_secs_f64()
    );
    if cfg.cluster.is_some() {
        let dropped = |reason: &str| {
            m.counter("reid_cluster_dropped_total", &[("reason", reason)])
                .load(Ordering::Relaxed)
        };
        println!(
            "cluster: {} exemplars queued, {} stored, {} stored already (retries), {} applied from other nodes, \
             {} merges applied; dropped: {} queue full, {} unsent at the end, {} of another model",
            m.total("reid_cluster_queued_total"),
            m.total("reid_cluster_published_total"),
            m.total("reid_cluster_duplicates_total"),
            m.total("reid_cluster_applied_total"),
            m.total("reid_cluster_merges_applied_total"),
            dropped("outbox_full"),
            dropped("unsent_at_exit"),
            dropped("other_model")
        );
    }
    if let Some(p) = &summary.snapshot {
        println!("index snapshot: {}", p.display());
    }
    if let Some(e) = &summary.snapshot_error {
        // The identities of this run are not on disk: that is a failed run.
        eprintln!("error: the last index snapshot failed: {}", reid_pipe::base::Chain(e));
        return Ok(ExitCode::FAILURE);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{failed} source(s) failed; the others ran to the end");
        ExitCode::FAILURE
    })
}

/// Longest time a stop request may take to drain the pipeline.
const SHUTDOWN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);
