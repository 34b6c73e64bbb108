//! The embedding stage: one embedder per device, fed by dynamic batches across every camera. A
//! batch closes when it holds `batch_size` crops or `max_batch_wait_ms` after its first crop,
//! so the model runs full batches under load and small ones when idle. Track notes pass through
//! in order (the batch before them is embedded first).
//!
//! Two threads: the batcher stages each batch on the host (the embedder's [`Stager`]: resizing,
//! or packing the crops' pixels for the device) while the embedder runs the one before, one
//! batch ahead at most. Each batch's phases go to `reid_embed_phase_seconds`.

use super::metrics::{BATCH_BUCKETS, Histogram, Metrics, PHASE_BUCKETS};
use super::types::{CropJob, Mapped, ToEmbed, ToIdentity, TrackNote};
use crate::base::Crop;
use crate::model::embedder::{Embed, Phases};
use crate::model::preprocess::{Staged, Stager};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Why the embedding stage stopped before its input ended.
#[derive(Debug, thiserror::Error)]
pub enum EmbedStageError {
    #[error("cannot start the embedder's staging thread")]
    Thread(#[source] std::io::Error),
    #[error("{count} batches in a row failed (runtime.max_failed_batches); the last one")]
    FailingBatches {
        count: u64,
        #[source]
        last: Box<BatchError>,
    },
}

/// Why a batch got no embeddings.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("reading the frames")]
    Pixels(#[from] super::types::PixelsError),
    #[error("staging the crops")]
    Stage(#[from] crate::model::preprocess::PreprocessError),
    #[error("the network")]
    Embed(#[from] crate::model::embedder::EmbedError),
    #[error("reading the embeddings back")]
    Download(#[from] tch::TchError),
    #[error(transparent)]
    Injected(#[from] super::supervise::InjectedFault),
}

/// What the batcher hands the embedder, in order.
enum Work {
    /// A staged batch: the jobs, and for each the row of its crop in `staged` (`None`: its crop
    /// could not be cut).
    Batch {
        jobs: Vec<CropJob>,
        staged: Result<(Staged, Vec<Option<usize>>), BatchError>,
        started: Instant,
    },
    Note(TrackNote),
}

/// Runs until `input` closes and everything queued is embedded and forwarded.
pub fn run(
    embedder: &dyn Embed,
    input: &Receiver<ToEmbed>,
    output: &Sender<ToIdentity>,
    limits: Limits,
    metrics: &Metrics,
) -> Result<(), EmbedStageError> {
    let Limits {
        batch_size,
        max_wait,
        max_failed,
    } = limits;
    let stager = embedder.stager();
    let (staged_tx, staged_rx) = bounded(1);
    std::thread::scope(|scope| {
        let batcher = std::thread::Builder::new()
            .name("embed-stage".into())
            .spawn_scoped(scope, move || {
                batch(&stager, input, &staged_tx, batch_size, max_wait, metrics);
            });
        // Owned here, so that a panic in `infer` drops it and the batcher, its sends failing,
        // ends instead of waiting forever (the scope joins it before the panic goes on).
        let staged_rx = staged_rx;
        match batcher {
            Ok(_) => infer(embedder, &staged_rx, output, max_failed, metrics),
            Err(e) => Err(EmbedStageError::Thread(e)),
        }
    })
}

/// How batches are formed, and when failing ones stop the stage.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest batch.
    pub batch_size: usize,
    /// Longest wait for a batch to fill.
    pub max_wait: Duration,
    /// Batches failing in a row that stop the stage.
    pub max_failed: u64,
}

/// Gathers crops into batches and stages them.
fn batch(
    stager: &Stager,
    input: &Receiver<ToEmbed>,
    out: &Sender<Work>,
    batch_size: usize,
    max_wait: Duration,
    metrics: &Metrics,
) {
    let sizes = metrics.histogram("reid_batch_size", &[], &BATCH_BUCKETS);
    let depth = metrics.gauge("reid_queue_depth", &[("queue", "embed")]);
    let mut batch: Vec<CropJob> = Vec::with_capacity(batch_size);
    let mut deadline = Instant::now();
    loop {
        let next = if batch.is_empty() {
            input.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            input.recv_deadline(deadline)
        };
        depth.store(input.len() as i64, Ordering::Relaxed);
        let (close, pass, done) = match next {
            Ok(ToEmbed::Crop(job)) => {
                if batch.is_empty() {
                    deadline = Instant::now() + max_wait;
                }
                batch.push(job);
                (batch.len() >= batch_size, None, false)
            }
            Ok(ToEmbed::Note(note)) => (true, Some(note), false),
            Err(RecvTimeoutError::Timeout) => (true, None, false),
            Err(RecvTimeoutError::Disconnected) => (true, None, true),
        };
        if close && !batch.is_empty() {
            let started = Instant::now();
            let jobs = std::mem::take(&mut batch);
            sizes.observe(jobs.len() as f64);
            let staged = stage(stager, &jobs);
            if out.send(Work::Batch { jobs, staged, started }).is_err() {
                return;
            }
        }
        if let Some(note) = pass
            && out.send(Work::Note(note)).is_err()
        {
            return;
        }
        if done {
            return;
        }
    }
}

/// The per-batch phase histograms.
struct PhaseMetrics([Arc<Histogram>; 4]);

impl PhaseMetrics {
    fn new(metrics: &Metrics) -> Self {
        Self(
            ["prepare", "upload", "network", "download"]
                .map(|p| metrics.histogram("reid_embed_phase_seconds", &[("phase", p)], &PHASE_BUCKETS)),
        )
    }

    fn observe(&self, p: &Phases) {
        for (h, d) in self.0.iter().zip([p.prepare, p.upload, p.network, p.download]) {
            h.observe(d.as_secs_f64());
        }
    }
}

/// Embeds staged batches and forwards results and notes in order; `max_failed` batches failing
/// in a row end it with an error.
fn infer(
    embedder: &dyn Embed,
    input: &Receiver<Work>,
    output: &Sender<ToIdentity>,
    max_failed: u64,
    metrics: &Metrics,
) -> Result<(), EmbedStageError> {
    let latency = metrics.latency("reid_stage_seconds", &[("stage", "embed")]);
    let embedded = metrics.counter("reid_crops_embedded_total", &[]);
    let failed = metrics.counter("reid_dropped_total", &[("stage", "embed"), ("reason", "failed")]);
    let phases = PhaseMetrics::new(metrics);
    let mut failed_batches = 0u64;
    let mut in_a_row = 0u64;
    for work in input.iter() {
        let (jobs, staged, started) = match work {
            Work::Note(note) => {
                if output.send(ToIdentity::Note(note)).is_err() {
                    return Ok(());
                }
                continue;
            }
            Work::Batch { jobs, staged, started } => (jobs, staged, started),
        };
        let staged = super::supervise::fault_point("embed")
            .map_err(BatchError::from)
            .and(staged);
        let vectors = staged.and_then(|(staged, slot)| {
            let mut p = Phases::default();
            let rows = embedder.infer(staged, &mut p)?;
            phases.observe(&p);
            split(&rows, embedder.dim() as usize, slot)
        });
        match vectors {
            Ok(vectors) => {
                in_a_row = 0;
                latency.observe(started.elapsed().as_secs_f64() / jobs.len() as f64);
                if !forward(jobs, vectors, output, &embedded, &failed) {
                    return Ok(());
                }
            }
            Err(e) => {
                // A fault that hits every batch (out of memory, say) is logged once, then every
                // hundredth time, not once a batch.
                failed_batches += 1;
                if failed_batches == 1 || failed_batches.is_multiple_of(100) {
                    tracing::error!(
                        "embedding a batch of {} crops: {} ({failed_batches} batches failed so far; their crops are dropped and counted)",
                        jobs.len(),
                        crate::base::Chain(&e)
                    );
                }
                failed.fetch_add(jobs.len() as u64, Ordering::Relaxed);
                in_a_row += 1;
                if in_a_row >= max_failed {
                    return Err(EmbedStageError::FailingBatches {
                        count: in_a_row,
                        last: Box::new(e),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Sends each embedded job on; false when the stage behind is gone.
fn forward(
    jobs: Vec<CropJob>,
    vectors: Vec<Option<Vec<f32>>>,
    output: &Sender<ToIdentity>,
    embedded: &AtomicU64,
    failed: &AtomicU64,
) -> bool {
    for (job, vector) in jobs.into_iter().zip(vectors) {
        let Some(vector) = vector else {
            failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        embedded.fetch_add(1, Ordering::Relaxed);
        let msg = ToIdentity::Embedded {
            key: job.key,
            pixels: job.pixels,
            crop: job.crop,
            vector,
            quality: job.quality,
            bbox: job.bbox,
            score: job.score,
            pts_s: job.pts_s,
            arrived: job.arrived,
        };
        if output.send(msg).is_err() {
            return false;
        }
    }
    true
}

/// Stages a batch; crops that cannot be cut (outside their frame) get no row.
fn stage(stager: &Stager, jobs: &[CropJob]) -> Result<(Staged, Vec<Option<usize>>), BatchError> {
    let maps: Vec<Mapped<'_>> = jobs.iter().map(|j| j.pixels.map()).collect::<Result<_, _>>()?;
    let images = maps.iter().map(Mapped::image).collect::<Result<Vec<_>, _>>()?;
    let mut crops: Vec<Crop<'_>> = Vec::with_capacity(jobs.len());
    let mut slot = Vec::with_capacity(jobs.len());
    for (job, image) in jobs.iter().zip(&images) {
        match job
            .crop
            .pixels(image.width, image.height)
            .and_then(|r| image.crop(r, job.key.modality))
        {
            Some(c) => {
                slot.push(Some(crops.len()));
                crops.push(c);
            }
            None => slot.push(None),
        }
    }
    let staged = stager.stage(&crops)?;
    Ok((staged, slot))
}

/// One vector per job from the embedder's rows.
fn split(rows: &tch::Tensor, dim: usize, slot: Vec<Option<usize>>) -> Result<Vec<Option<Vec<f32>>>, BatchError> {
    let flat = Vec::<f32>::try_from(rows.f_flatten(0, -1)?)?;
    Ok(slot
        .into_iter()
        .map(|s| s.map(|i| flat[i * dim..(i + 1) * dim].to_vec()))
        .collect())
}
