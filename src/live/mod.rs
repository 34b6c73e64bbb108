//! The live pipeline of `reid-pipe run`: stages on threads joined by bounded channels.
//!
//! sources → pairing ([`capture`]) → detection pool ([`crate::detect::pool`]) → tracking
//! ([`tracking`]) → batched embedding ([`embedding`]) → identity index ([`identity`]) → events
//! ([`outputs`]: file, stdout, MQTT), with the annotated video ([`video`]) and metrics
//! ([`metrics`]) beside them. Every queue is bounded; file sources wait for the pipeline, live
//! sources drop their oldest frames (counted). On stop (SIGINT/SIGTERM) the sources end, every
//! queue drains, tracks end, events are flushed and the index is snapshotted.

pub mod board;
pub mod capture;
pub mod embedding;
pub mod events;
pub mod harvest;
pub mod homeassistant;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod mqtt;
pub mod outputs;
pub mod preflight;
pub mod rtsp;
pub mod supervise;
pub mod tracking;
pub mod types;
pub mod video;
pub mod writer;

pub use capture::{CameraStats, SourceStats};
pub use preflight::preflight;

use crate::base::{Modality, StreamId};
use crate::config::SiteConfig;
use crate::detect::pool::{DetectPool, DetectorFactory, Job};
use crate::detect::{self};
use crate::index::backend::HnswParams;
use crate::index::identities::{IdentityIndex, Settings};
use crate::index::snapshot;
use crate::ingest::pairing::Paired;
use crossbeam_channel::{Receiver, bounded};
use events::{EventFileError, EventLog};
use metrics::Metrics;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracking::Tag;

/// Errors that stop a run before it starts, naming what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Events(#[from] EventFileError),
    #[error("model.weights {}", path.display())]
    Model {
        path: PathBuf,
        #[source]
        source: Box<crate::model::embedder::EmbedError>,
    },
    #[error(
        "camera {camera}: the detector (`detector.kind` = \"{}\", `detector.model`) cannot start",
        format!("{kind:?}").to_lowercase()
    )]
    Detector {
        camera: String,
        kind: crate::config::site::DetectorKind,
        #[source]
        source: crate::detect::DetectError,
    },
    #[error("model.centre {}", path.display())]
    Centre {
        path: PathBuf,
        #[source]
        source: Box<crate::model::embedder::EmbedError>,
    },
    #[error(
        "model.centre {}: computed for other weights (CRC-32 {made_for:08x}) than model.weights {} ({weights_crc:08x}); run `reid-pipe adapt` again or leave model.centre out",
        centre.display(),
        weights.display()
    )]
    CentreOfOtherWeights {
        centre: PathBuf,
        weights: PathBuf,
        made_for: u32,
        weights_crc: u32,
    },
    #[error("{key} {}: cannot read it to identify the model", path.display())]
    ModelId {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Http(#[from] http::HttpError),
    #[error(transparent)]
    Rtsp(#[from] rtsp::RtspError),
    #[error(transparent)]
    Mqtt(#[from] mqtt::MqttError),
    #[error("cluster")]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("cannot start a pipeline thread")]
    Thread(#[from] std::io::Error),
    #[error("the {} stage failed: {}; the pipeline was drained and stopped", .0.stage, .0.cause)]
    Stage(supervise::StageFailure),
    #[error(transparent)]
    Device(#[from] crate::base::DeviceError),
    #[error("index.snapshot_dir")]
    Snapshot(#[from] snapshot::SnapshotError),
}

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop each source after this many frames.
    pub max_frames: Option<u64>,
    /// Seconds between status lines (0: none).
    pub status_every_s: f64,
    /// Begin with an empty index when the snapshots are another model's, setting them aside.
    pub fresh_index: bool,
}

/// What a run did.
pub struct RunSummary {
    pub cameras: Vec<CameraStats>,
    pub metrics: Arc<Metrics>,
    pub identities: usize,
    pub snapshot: Option<PathBuf>,
    /// Why the last snapshot attempt failed, if it did.
    pub snapshot_error: Option<writer::WriteError>,
    /// The HTTP server's address, when one ran.
    pub http_addr: Option<std::net::SocketAddr>,
    pub mqtt_dropped: u64,
    pub elapsed: Duration,
}

fn index_settings(cfg: &SiteConfig, dim: usize) -> Settings {
    Settings {
        dim,
        backend: cfg.index.backend,
        hnsw: HnswParams::default(),
        same_modality_threshold: cfg.index.same_modality_threshold,
        cross_modality_threshold: cfg.index.cross_modality_threshold,
        max_exemplars: cfg.index.max_exemplars,
        expiry_s: cfg.index.expiry_s,
        neighbours: 16,
        rebuild_dead_fraction: 0.5,
        also_fraction: cfg.cluster.as_ref().map_or(0.0, |c| c.merge_fraction),
        device: tch::Device::Cpu,
    }
}

/// Joins the cluster of `[cluster]`, if any, with its counters in `/metrics`.
fn start_cluster(
    cfg: &SiteConfig,
    index: &mut IdentityIndex,
    model_id: &str,
    metrics: &Metrics,
) -> Result<Option<crate::cluster::Node>, LiveError> {
    let Some(c) = &cfg.cluster else { return Ok(None) };
    let dropped = |reason| metrics.counter("reid_cluster_dropped_total", &[("reason", reason)]);
    let counters = crate::cluster::Counters {
        queued: metrics.counter("reid_cluster_queued_total", &[]),
        published: metrics.counter("reid_cluster_published_total", &[]),
        duplicates: metrics.counter("reid_cluster_duplicates_total", &[]),
        publish_retries: metrics.counter("reid_cluster_publish_retries_total", &[]),
        dropped_outbox: dropped("outbox_full"),
        unsent_at_exit: dropped("unsent_at_exit"),
        applied: metrics.counter("reid_cluster_applied_total", &[]),
        other_model: dropped("other_model"),
        refused: dropped("refused"),
        merges_recorded: metrics.counter("reid_cluster_merges_recorded_total", &[]),
        merges_applied: metrics.counter("reid_cluster_merges_applied_total", &[]),
        dropped_merges: dropped("merge_queue_full"),
        dropped_events: dropped("event_queue_full"),
        connected: metrics.gauge("reid_cluster_connected", &[]),
    };
    Ok(Some(crate::cluster::Node::start(c, index, model_id, counters)?))
}

/// Runs the site until every source ends or `stop` is set: each stage is set up in turn (any
/// that cannot start fails the run before the first frame), then all run on scoped threads,
/// joined by bounded channels, until the sources end and every queue has drained.
pub fn run(cfg: &SiteConfig, opts: &RunOptions, stop: &Arc<AtomicBool>) -> Result<RunSummary, LiveError> {
    let started = Instant::now();
    apply_threads(cfg.runtime.threads);
    let metrics = Arc::new(Metrics::default());
    // Everything the run opens is checked before a source starts.
    let preflight::Ready { embedder, model_id } = preflight(cfg)?;
    let log = open_event_log(cfg)?;
    let mut index = open_index(cfg, opts, embedder.dim() as usize, &model_id)?;
    let cluster = start_cluster(cfg, &mut index, &model_id, &metrics)?;
    let writer = writer::DiskWriter::start(&cfg.index.snapshot_dir, &metrics)?;
    let mqtt = match &cfg.outputs.mqtt {
        Some(m) => Some(mqtt::MqttSink::start(m, &camera_names(cfg))?),
        None => None,
    };
    let home_assistant = cfg.outputs.mqtt.as_ref().filter(|m| m.home_assistant);
    let board = (cfg.outputs.http_listen.is_some() || home_assistant.is_some()).then(|| Arc::new(new_board(cfg)));
    let server = match (cfg.outputs.http_listen, &board) {
        (Some(addr), Some(b)) => Some(http::Server::start(addr, Arc::clone(b), Arc::clone(&metrics))?),
        _ => None,
    };
    let restream = match &cfg.outputs.rtsp {
        Some(r) => Some(rtsp::Restream::start(r, &camera_names(cfg))?),
        None => None,
    };
    let q = cfg.runtime.queue_capacity;
    let Front {
        cameras,
        arrivals,
        pool,
        detected,
    } = start_front(cfg, opts.max_frames, stop, &metrics);
    let (embed_tx, embed_rx) = bounded(q * cfg.runtime.batch_size.max(1));
    let (ident_tx, ident_rx) = bounded(q * cfg.runtime.batch_size.max(1));
    let (events_tx, events_rx) = bounded(q * 16);
    let labels: identity::Labels = Arc::default();
    let destinations = video::Destinations {
        cameras: cfg.cameras.len(),
        files: video_paths(cfg),
        // Frames for the page only when there is a page.
        board: board.clone().filter(|_| server.is_some()),
        restream: restream.clone(),
    };
    let (video_tx, video_rx) = bounded(q);
    let video_tx = destinations.any().then_some(video_tx);
    let finished = AtomicBool::new(false);
    let sinks = outputs::Sinks {
        log,
        stdout: cfg.outputs.stdout,
        mqtt,
        board: board.clone(),
        home_assistant: home_assistant.map(homeassistant::States::new),
    };
    let supervisor = supervise::Supervisor::new(Arc::clone(stop));
    let sup = &supervisor;
    let (stats, outcome, sinks) = std::thread::scope(|s| {
        let m = &metrics;
        let labels = &labels;
        let dispatch = sup.spawn(s, "dispatch", move || dispatch(&arrivals, pool, m))?;
        let track = sup.spawn(s, "track", move || {
            tracking::run(cfg, &detected, &embed_tx, video_tx.as_ref(), m);
        })?;
        let embed = sup.spawn_fallible(s, "embed", move || {
            let limits = embedding::Limits {
                batch_size: cfg.runtime.batch_size,
                max_wait: Duration::from_millis(cfg.runtime.max_batch_wait_ms),
                max_failed: cfg.runtime.max_failed_batches,
            };
            embedding::run(embedder.as_ref(), &embed_rx, &ident_tx, limits, m)
        })?;
        // Exemplar thumbnails only for a page.
        let board = board.as_ref().filter(|_| server.is_some());
        let ident = sup.spawn(s, "identity", move || {
            identity::run(cfg, index, writer, &ident_rx, &events_tx, labels, board, m, cluster)
        })?;
        let out = sup.spawn(s, "events", move || outputs::run(&events_rx, sinks, m))?;
        let video = if destinations.any() {
            let to = &destinations;
            Some(sup.spawn(s, "video", move || video::run(&video_rx, to, labels))?)
        } else {
            None
        };
        let fin = &finished;
        if opts.status_every_s > 0.0 {
            let every = Duration::from_secs_f64(opts.status_every_s);
            std::thread::Builder::new()
                .name("status".into())
                .spawn_scoped(s, move || status(m, every, fin))?;
        }
        let stats = capture::join(cameras);
        // Stages catch their own panics (the supervisor records them): joining cannot fail.
        let _ = dispatch.join();
        let _ = track.join();
        let _ = embed.join();
        let outcome = ident.join().ok().flatten();
        let sinks = out.join().ok().flatten();
        if let Some(v) = video {
            let _ = v.join();
        }
        finished.store(true, Ordering::Relaxed);
        Ok::<_, LiveError>((stats, outcome, sinks))
    })?;
    let mut mqtt_dropped = 0;
    if let Some(mqtt) = sinks.and_then(|s| s.mqtt) {
        mqtt_dropped = mqtt.dropped.total();
        mqtt.close(Duration::from_secs(5));
    }
    if let Some(r) = &restream {
        r.stop();
    }
    let http_addr = server.map(|server| {
        let addr = server.addr();
        server.stop();
        addr
    });
    if let Some(failure) = supervisor.failure() {
        return Err(LiveError::Stage(failure));
    }
    let Some(outcome) = outcome else {
        return Err(LiveError::Stage(supervise::StageFailure {
            stage: "identity",
            cause: "ended without a result".to_owned(),
        }));
    };
    Ok(RunSummary {
        cameras: stats,
        metrics,
        identities: outcome.index.identities().len(),
        snapshot: outcome.written.snapshot,
        snapshot_error: outcome.written.error,
        http_addr,
        mqtt_dropped,
        elapsed: started.elapsed(),
    })
}

/// The front of the pipeline, started: the sources and their pairing threads feeding the
/// arrivals queue, and the detection pool whose results come out in frame order.
struct Front {
    cameras: Vec<capture::Started>,
    arrivals: Receiver<capture::Arrival>,
    pool: DetectPool<Tag>,
    detected: Receiver<crate::detect::pool::Done<Tag>>,
}

/// Starts the sources (each stopping after `max_frames`, or when `stop` is set) and the
/// detection pool, with queues of `runtime.queue_capacity`.
fn start_front(cfg: &SiteConfig, max_frames: Option<u64>, stop: &Arc<AtomicBool>, metrics: &Metrics) -> Front {
    let q = cfg.runtime.queue_capacity;
    let (arrivals_tx, arrivals) = bounded(q);
    let cameras = capture::start(cfg, max_frames, stop, &arrivals_tx, metrics);
    let mut pool = DetectPool::<Tag>::new(cfg.runtime.detector_workers, q, detector_factory(cfg));
    let detected = pool.take_results().expect("a new pool has its results receiver");
    Front {
        cameras,
        arrivals,
        pool,
        detected,
    }
}

/// `runtime.threads`: libtorch's and OpenCV's CPU threads.
fn apply_threads(threads: usize) {
    tch::set_num_threads(threads as i32);
    if let Err(e) = opencv::core::set_num_threads(threads as i32) {
        tracing::warn!("runtime.threads: OpenCV refused {threads} threads: {e}");
    }
}

/// The event file of `outputs.events`, opened for appending (rotated by size).
fn open_event_log(cfg: &SiteConfig) -> Result<Option<EventLog>, LiveError> {
    Ok(match &cfg.outputs.events {
        Some(p) => Some(EventLog::open(
            p,
            cfg.outputs.events_max_bytes,
            cfg.outputs.events_keep,
        )?),
        None => None,
    })
}

/// The identity index: the newest usable snapshot of `index.snapshot_dir`, or an empty index.
/// Snapshots of another model stop the run unless `--fresh-index` sets them aside.
fn open_index(cfg: &SiteConfig, opts: &RunOptions, dim: usize, model: &str) -> Result<IdentityIndex, LiveError> {
    let settings = index_settings(cfg, dim);
    let dir = &cfg.index.snapshot_dir;
    if opts.fresh_index {
        for moved in snapshot::set_aside_other_models(dir, settings.dim, Some(model))? {
            tracing::warn!("set aside another model's snapshot as {}", moved.display());
        }
    }
    let aside = snapshot::set_aside(dir);
    if !aside.is_empty() {
        tracing::info!(
            "{} snapshot(s) of another model kept aside in {} (set-aside-*)",
            aside.len(),
            dir.display()
        );
    }
    let empty = || IdentityIndex::new(settings).with_model(model.to_owned());
    Ok(match snapshot::load(dir, settings, Some(model)) {
        Ok(Some((path, index))) => {
            tracing::info!(
                "resuming {} identities from {}",
                index.identities().len(),
                path.display()
            );
            index
        }
        Ok(None) => empty(),
        Err(e @ snapshot::SnapshotError::OtherModel { .. }) => return Err(e.into()),
        Err(e) => {
            tracing::warn!("{}; starting with an empty index", crate::base::Chain(&e));
            empty()
        }
    })
}

/// The annotated video files: each camera's `outputs.video` name, or when a file of that name
/// exists (an earlier run's), the first free numbered name beside it: a run never replaces a file.
fn video_paths(cfg: &SiteConfig) -> Vec<PathBuf> {
    let mut chosen: Vec<PathBuf> = Vec::new();
    for p in cfg.video_paths() {
        let free = crate::base::outputs::first_free(&p, &chosen);
        if free != p {
            tracing::info!("outputs.video: {} exists; writing {}", p.display(), free.display());
        }
        chosen.push(free);
    }
    chosen
}

/// The camera pairs' names, in site-file order.
fn camera_names(cfg: &SiteConfig) -> Vec<String> {
    cfg.cameras.iter().map(|c| c.name.clone()).collect()
}

/// The operator's view of the run: its camera pairs, the index expiry, the embedder's device.
fn new_board(cfg: &SiteConfig) -> board::Board {
    let device = match cfg.runtime.device.resolve("runtime.device") {
        Ok(tch::Device::Cuda(n)) => format!("cuda:{n}"),
        Ok(_) => "cpu".to_owned(),
        Err(_) => "unknown".to_owned(),
    };
    board::Board::new(camera_names(cfg), cfg.index.expiry_s, device, events::unix_now())
}

/// Builds each stream's detector: the camera's visible detector or its thermal one.
fn detector_factory(cfg: &SiteConfig) -> DetectorFactory {
    let shared = Arc::new(cfg.clone());
    Arc::new(move |stream: StreamId| {
        let cam = &shared.cameras[stream.camera];
        match stream.modality {
            Modality::Visible => detect::visible(&cam.detector),
            Modality::Thermal => Ok(detect::thermal(&cam.thermal_detector, cam.calibration)),
        }
    })
}

/// The dispatch stage: every frame of every arrival goes to the detection pool.
fn dispatch(arrivals: &Receiver<capture::Arrival>, mut pool: DetectPool<Tag>, m: &Metrics) {
    let depth = m.gauge("reid_queue_depth", &[("queue", "detect")]);
    for a in arrivals.iter() {
        let frames = match a.paired {
            Paired::Pair { visible, thermal } => vec![(visible, true), (thermal, true)],
            Paired::Single(f) => vec![(f, false)],
        };
        for (frame, paired) in frames {
            let stream = StreamId::new(a.camera, frame.modality);
            let tag = Tag {
                camera: a.camera,
                paired,
                arrived: frame.arrived,
            };
            if pool.submit(Job { stream, frame, tag }).is_err() {
                return;
            }
        }
        depth.store(pool.queued() as i64, Ordering::Relaxed);
    }
    pool.close();
}

/// One line every `every`: frames, crops, batch size, tracks, identities, events, queues.
fn status(m: &Metrics, every: Duration, finished: &AtomicBool) {
    let mut last = (Instant::now(), 0u64, 0u64);
    while !finished.load(Ordering::Relaxed) {
        let until = Instant::now() + every;
        while Instant::now() < until {
            if finished.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let frames = m.total("reid_frames_processed_total");
        let crops = m.total("reid_crops_embedded_total");
        let dt = last.0.elapsed().as_secs_f64().max(1e-9);
        let batch = m.histogram("reid_batch_size", &[], &metrics::BATCH_BUCKETS);
        tracing::info!(
            "frames {frames} ({:.1}/s) | crops {crops} ({:.1}/s, {} batches) | identities {} | events {} | dropped {}",
            (frames - last.1) as f64 / dt,
            (crops - last.2) as f64 / dt,
            batch.count(),
            m.gauge("reid_identities", &[]).load(Ordering::Relaxed),
            m.total("reid_events_total"),
            m.total("reid_dropped_total"),
        );
        last = (Instant::now(), frames, crops);
    }
}
