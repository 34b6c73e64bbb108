//! The capture stage of the live pipeline: every source of every camera pair streams on its own
//! thread into a bounded queue, a pairing thread per camera matches visible and thermal frames by
//! timestamp and passes the pairs on, and everything is counted. One failing source does not
//! stop the others.

use super::metrics::Metrics;
use crate::base::Modality;
use crate::config::SiteConfig;
use crate::ingest::Frame;
use crate::ingest::pairing::{PairCounts, Paired, Pairer};
use crate::ingest::stream::{self, Backoff, SourceHandle};
use crossbeam_channel::Sender;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What one source delivered.
#[derive(Debug, Clone, Default)]
pub struct SourceStats {
    pub camera: String,
    pub modality: Option<Modality>,
    pub frames: u64,
    /// Frames dropped because downstream was slow (live sources).
    pub dropped: u64,
    pub reconnects: u64,
    pub first_pts_ns: Option<u64>,
    pub last_pts_ns: Option<u64>,
    pub size: Option<(u32, u32)>,
    pub elapsed: Duration,
    /// Why the source stopped early, if it failed.
    pub error: Option<String>,
}

/// What one camera pair delivered.
#[derive(Debug, Clone, Default)]
pub struct CameraStats {
    pub camera: String,
    pub sources: Vec<SourceStats>,
    pub pairing: PairCounts,
}

/// A camera pair as started: its name, its pairing thread (or why it could not start), and the
/// stats of sources that failed to start.
pub type Started = (String, std::io::Result<JoinHandle<CameraStats>>, Vec<SourceStats>);

/// A pair (or a lone frame) from camera pair `camera`.
pub struct Arrival {
    pub camera: usize,
    pub paired: Paired,
}

/// A camera pair's pairing counts in the metrics, published after every frame.
struct PairMetrics {
    pairs: Arc<AtomicU64>,
    unpaired_visible: Arc<AtomicU64>,
    unpaired_thermal: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

impl PairMetrics {
    fn new(metrics: &Metrics, camera: &str) -> Self {
        let unpaired = |m: &str| metrics.counter("reid_unpaired_total", &[("camera", camera), ("modality", m)]);
        PairMetrics {
            pairs: metrics.counter("reid_pairs_total", &[("camera", camera)]),
            unpaired_visible: unpaired("visible"),
            unpaired_thermal: unpaired("thermal"),
            dropped: metrics.counter(
                "reid_dropped_total",
                &[("stage", "pairing"), ("reason", "unpaired"), ("camera", camera)],
            ),
        }
    }

    fn publish(&self, c: &PairCounts) {
        self.pairs.store(c.pairs, Ordering::Relaxed);
        self.unpaired_visible.store(c.unpaired_visible, Ordering::Relaxed);
        self.unpaired_thermal.store(c.unpaired_thermal, Ordering::Relaxed);
        self.dropped.store(c.dropped, Ordering::Relaxed);
    }
}

/// Starts every camera pair; pairs go to `out` (blocking: files wait, live sources drop their
/// oldest frames in their own queues). Each camera's thread returns its counts when its sources
/// end, `max_frames` are read per source, or `stop` is set.
/// Every source's counters (frames in, drops, reconnects) and the pairers' counts are exported
/// through `metrics`.
pub fn start(
    cfg: &SiteConfig,
    max_frames: Option<u64>,
    stop: &Arc<AtomicBool>,
    out: &Sender<Arrival>,
    metrics: &Metrics,
) -> Vec<Started> {
    let queue = cfg.runtime.queue_capacity;
    let mut cameras = Vec::new();
    for (index, cam) in cfg.cameras.iter().enumerate() {
        let mut handles = Vec::new();
        let mut failed = Vec::new();
        for (modality, spec) in [(Modality::Visible, &cam.visible), (Modality::Thermal, &cam.thermal)] {
            match stream::spawn(
                &cam.name,
                modality,
                spec.clone(),
                queue,
                Backoff::default(),
                max_frames,
                Arc::clone(stop),
            ) {
                Ok(h) => {
                    let labels = [("camera", cam.name.as_str()), ("modality", modality.as_str())];
                    let c = &h.counters;
                    metrics.adopt("reid_frames_in_total", &labels, Arc::clone(&c.frames));
                    metrics.adopt("reid_source_reconnects_total", &labels, Arc::clone(&c.reconnects));
                    metrics.adopt(
                        "reid_dropped_total",
                        &[("stage", "source"), ("reason", "queue_full"), labels[0], labels[1]],
                        Arc::clone(&c.dropped),
                    );
                    handles.push(h);
                }
                Err(e) => failed.push(SourceStats {
                    camera: cam.name.clone(),
                    modality: Some(modality),
                    error: Some(format!("cannot start a thread: {e}")),
                    ..Default::default()
                }),
            }
        }
        // Between two files the pairing thread stops reading the one that is `queue` frames
        // ahead (it waits). A live source is always read: when its partner is late or gone, the
        // pairer's bound passes its frames on unpaired instead of stalling the camera.
        let both_files = !stream::is_live(&cam.visible) && !stream::is_live(&cam.thermal);
        let pairer = Pairer::new(cam.pairing_tolerance_ms, cam.unpaired, queue * 4);
        let counts = PairMetrics::new(metrics, &cam.name);
        let name = cam.name.clone();
        let out = out.clone();
        let stop = Arc::clone(stop);
        let thread = std::thread::Builder::new().name(format!("pair-{name}")).spawn(move || {
            let forward = |paired| {
                let mut arrival = Arrival { camera: index, paired };
                // Waits while the pipeline is busy, but not past a stop request.
                loop {
                    match out.send_timeout(arrival, Duration::from_millis(200)) {
                        Ok(()) => return true,
                        Err(crossbeam_channel::SendTimeoutError::Timeout(a)) if !stop.load(Ordering::Relaxed) => {
                            arrival = a;
                        }
                        Err(crossbeam_channel::SendTimeoutError::Timeout(_)) => return false,
                        Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => {
                            // The pipeline behind is gone: stop every source.
                            stop.store(true, Ordering::Relaxed);
                            return false;
                        }
                    }
                }
            };
            pair_camera(name, handles, pairer, both_files, &counts, forward)
        });
        cameras.push((cam.name.clone(), thread, failed));
    }
    cameras
}

/// Waits for the camera threads of [`start`].
pub fn join(cameras: Vec<Started>) -> Vec<CameraStats> {
    cameras
        .into_iter()
        .map(|(camera, thread, failed)| {
            let mut stats = match thread
                .map_err(|e| e.to_string())
                .and_then(|t| t.join().map_err(|_| "the pairing thread panicked".to_owned()))
            {
                Ok(s) => s,
                Err(e) => CameraStats {
                    camera: camera.clone(),
                    sources: vec![SourceStats {
                        camera,
                        error: Some(e),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            };
            stats.sources.extend(failed);
            stats
        })
        .collect()
}

fn pair_camera(
    camera: String,
    handles: Vec<SourceHandle>,
    mut pairer: Pairer,
    backpressure: bool,
    counts: &PairMetrics,
    mut forward: impl FnMut(Paired) -> bool,
) -> CameraStats {
    let started = Instant::now();
    let mut sources: Vec<SourceStats> = handles
        .iter()
        .map(|h| SourceStats {
            camera: camera.clone(),
            modality: Some(h.modality),
            ..Default::default()
        })
        .collect();
    let mut open: Vec<bool> = vec![true; handles.len()];
    let observe = |sources: &mut Vec<SourceStats>, i: usize, f: &Frame| {
        let s = &mut sources[i];
        s.first_pts_ns = s.first_pts_ns.or(f.pts_ns);
        s.last_pts_ns = f.pts_ns.or(s.last_pts_ns);
        s.size = Some((f.width, f.height));
    };
    let ahead = |pairer: &Pairer, i: usize, open: &[bool]| {
        let others_open = (0..handles.len()).any(|j| j != i && open[j]);
        backpressure && others_open && pairer.pending(handles[i].modality) >= handles[i].frames.capacity().unwrap_or(8)
    };
    while open.iter().any(|o| *o) {
        let mut sel = crossbeam_channel::Select::new();
        let ids: Vec<usize> = (0..handles.len())
            .filter(|&i| open[i] && !ahead(&pairer, i, &open))
            .collect();
        for &i in &ids {
            sel.recv(&handles[i].frames);
        }
        // Sources see `stop` too and close their channels; until then keep draining.
        let Ok(op) = sel.select_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let i = ids[op.index()];
        match op.recv(&handles[i].frames) {
            Ok(frame) => {
                observe(&mut sources, i, &frame);
                for paired in pairer.push(frame) {
                    if !forward(paired) {
                        // Stopping, or the pipeline behind is gone (`stop` is set either way).
                        open.iter_mut().for_each(|o| *o = false);
                    }
                }
                counts.publish(&pairer.counts);
            }
            Err(_) => open[i] = false,
        }
    }
    for paired in pairer.flush() {
        forward(paired);
    }
    counts.publish(&pairer.counts);
    let elapsed = started.elapsed();
    for (s, h) in sources.iter_mut().zip(handles) {
        // Sources end at their end or on `stop`; nothing reads their queues any more.
        drop(h.frames);
        let c = &h.counters;
        s.frames = c.frames.load(Ordering::Relaxed);
        s.dropped = c.dropped.load(Ordering::Relaxed);
        s.reconnects = c.reconnects.load(Ordering::Relaxed);
        s.error = c.last_error.lock().ok().and_then(|e| e.clone());
        s.elapsed = elapsed;
        let _ = h.thread.join();
    }
    CameraStats {
        camera,
        sources,
        pairing: pairer.counts,
    }
}
