//! The embedding stage: one embedder per device, fed by dynamic batches across every camera. A
//! batch closes when it holds `batch_size` crops or `max_batch_wait_ms` after its first crop,
//! so the model runs full batches under load and small ones when idle. Track notes pass through
//! in order (the batch before them is embedded first).

use super::metrics::{BATCH_BUCKETS, Metrics};
use super::types::{CropJob, Mapped, ToEmbed, ToIdentity};
use crate::model::embedder::{Crop, Embed};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Runs until `input` closes and everything queued is embedded and forwarded.
pub fn run(
    embedder: &dyn Embed,
    input: &Receiver<ToEmbed>,
    output: &Sender<ToIdentity>,
    batch_size: usize,
    max_wait: Duration,
    metrics: &Metrics,
) {
    let sizes = metrics.histogram("reid_batch_size", "", &BATCH_BUCKETS);
    let latency = metrics.latency("reid_stage_seconds", "stage=\"embed\"");
    let embedded = metrics.counter("reid_crops_embedded_total", "");
    let failed = metrics.counter("reid_dropped_total", "stage=\"embed\"");
    let depth = metrics.gauge("reid_queue_depth", "queue=\"embed\"");
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
            match embed(embedder, &jobs) {
                Ok(vectors) => {
                    latency.observe(started.elapsed().as_secs_f64() / jobs.len() as f64);
                    embedded.fetch_add(jobs.len() as u64, Ordering::Relaxed);
                    for (job, vector) in jobs.into_iter().zip(vectors) {
                        let Some(vector) = vector else {
                            failed.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
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
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::error!("embedding a batch of {} crops: {e}", jobs.len());
                    failed.fetch_add(jobs.len() as u64, Ordering::Relaxed);
                }
            }
        }
        if let Some(note) = pass
            && output.send(ToIdentity::Note(note)).is_err()
        {
            return;
        }
        if done {
            return;
        }
    }
}

/// Embeds a batch; crops that cannot be cut (outside their frame) get `None`.
fn embed(embedder: &dyn Embed, jobs: &[CropJob]) -> Result<Vec<Option<Vec<f32>>>, String> {
    let maps: Vec<Mapped<'_>> = jobs
        .iter()
        .map(|j| j.pixels.map())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let images = maps
        .iter()
        .map(Mapped::image)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let mut crops: Vec<Crop<'_>> = Vec::with_capacity(jobs.len());
    let mut slot = Vec::with_capacity(jobs.len());
    for (job, image) in jobs.iter().zip(&images) {
        match image.crop(&job.crop, job.key.modality) {
            Some(c) => {
                slot.push(Some(crops.len()));
                crops.push(c);
            }
            None => slot.push(None),
        }
    }
    if crops.is_empty() {
        return Ok(vec![None; jobs.len()]);
    }
    let rows = embedder.embed(&crops).map_err(|e| e.to_string())?;
    let dim = embedder.dim() as usize;
    let flat = Vec::<f32>::try_from(rows.flatten(0, -1)).map_err(|e| e.to_string())?;
    Ok(slot
        .into_iter()
        .map(|s| s.map(|i| flat[i * dim..(i + 1) * dim].to_vec()))
        .collect())
}
