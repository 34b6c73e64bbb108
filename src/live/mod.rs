//! The live pipeline of `reid-pipe run`. At this stage it runs the ingest stage: every source of
//! every camera pair streams on its own thread and is counted; one failing source does not stop
//! the others.

use crate::config::SiteConfig;
use crate::config::site::{Input, SourceSpec};
use crate::ingest::{IngestError, Modality, SourcePipeline};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What one source delivered.
#[derive(Debug, Clone, Default)]
pub struct SourceStats {
    pub camera: String,
    pub modality: Option<Modality>,
    pub frames: u64,
    pub first_pts_ns: Option<u64>,
    pub last_pts_ns: Option<u64>,
    pub size: Option<(u32, u32)>,
    pub elapsed: Duration,
    /// Why the source stopped early, if it failed.
    pub error: Option<String>,
}

/// Streams every source until it ends, `max_frames` are read, or `stop` is set.
pub fn run_ingest(cfg: &SiteConfig, max_frames: Option<u64>, stop: Arc<AtomicBool>) -> Vec<SourceStats> {
    let queue = cfg.runtime.queue_capacity;
    let mut handles = Vec::new();
    for cam in &cfg.cameras {
        for (modality, spec) in [(Modality::Visible, &cam.visible), (Modality::Thermal, &cam.thermal)] {
            let camera = cam.name.clone();
            let spec = spec.clone();
            let stop = Arc::clone(&stop);
            let name = format!("src-{camera}-{modality}");
            let handle = std::thread::Builder::new().name(name).spawn(move || {
                let mut stats = SourceStats {
                    camera: camera.clone(),
                    modality: Some(modality),
                    ..Default::default()
                };
                if let Err(e) = stream(&camera, modality, &spec, queue, max_frames, &stop, &mut stats) {
                    tracing::error!("{e}");
                    stats.error = Some(e.to_string());
                }
                stats
            });
            handles.push((cam.name.clone(), modality, handle));
        }
    }
    handles
        .into_iter()
        .map(|(camera, modality, h)| match h {
            Ok(h) => h.join().unwrap_or_else(|_| SourceStats {
                camera,
                modality: Some(modality),
                error: Some("the source thread panicked".to_owned()),
                ..Default::default()
            }),
            Err(e) => SourceStats {
                camera,
                modality: Some(modality),
                error: Some(format!("cannot start a thread: {e}")),
                ..Default::default()
            },
        })
        .collect()
}

fn stream(
    camera: &str,
    modality: Modality,
    spec: &SourceSpec,
    queue: usize,
    max_frames: Option<u64>,
    stop: &AtomicBool,
    stats: &mut SourceStats,
) -> Result<(), IngestError> {
    let live = matches!(spec.input, Input::Rtsp { .. } | Input::V4l2 { .. });
    let source = SourcePipeline::build(camera, modality, spec, queue, live)?;
    source.start()?;
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) && max_frames.is_none_or(|m| stats.frames < m) {
        match source.pull(Duration::from_millis(200))? {
            Some(frame) => {
                stats.frames += 1;
                stats.first_pts_ns = stats.first_pts_ns.or(frame.pts_ns);
                stats.last_pts_ns = frame.pts_ns.or(stats.last_pts_ns);
                stats.size = Some((frame.width, frame.height));
            }
            None if source.is_eos() => {
                if spec.looping {
                    source.rewind()?;
                } else {
                    break;
                }
            }
            None => {}
        }
    }
    stats.elapsed = started.elapsed();
    Ok(())
}
