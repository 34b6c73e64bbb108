//! The identity stage's disk writes, on a thread of their own so that the stage never waits for
//! the disk: index snapshots, encoded from a frozen copy of the index (at most one in flight; the
//! stage hands the next over once the writer is idle), and identity thumbnails (a bounded queue;
//! a full queue drops the thumbnail, counted). Snapshot errors are logged and counted, and the
//! last one is kept for the run's summary.

use super::board::{Board, Thumbnail};
use super::metrics::Metrics;
use super::types::Pixels;
use crate::base::Chain;
use crate::detect::BBox;
use crate::index::snapshot::{self, Frozen};
use crossbeam_channel::{Sender, TrySendError, bounded};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::thread::JoinHandle;

/// Thumbnails waiting to be written, at most.
const THUMBNAIL_QUEUE: usize = 32;

enum Job {
    Snapshot(Frozen),
    Thumbnail(ThumbnailJob),
}

/// A thumbnail to make: a JPEG of `crop` in `pixels`, written to `file` (`outputs.thumbnails`)
/// and/or kept on the board as an exemplar of an identity.
pub struct ThumbnailJob {
    pub pixels: Pixels,
    pub crop: BBox,
    pub file: Option<PathBuf>,
    pub exemplar: Option<Exemplar>,
}

/// Where a thumbnail goes on the board.
pub struct Exemplar {
    pub board: Arc<Board>,
    pub identity: u64,
    pub camera: String,
    pub modality: crate::base::Modality,
    pub time: f64,
}

/// What the writer did, when it is finished.
#[derive(Debug, Default)]
pub struct Written {
    /// The last snapshot written.
    pub snapshot: Option<PathBuf>,
    /// Why the last snapshot attempt failed, if it did.
    pub error: Option<WriteError>,
}

/// Why a snapshot was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error("the disk writer failed: {0}")]
    Panicked(String),
}

/// The writer thread and its queue.
pub struct DiskWriter {
    jobs: Sender<Job>,
    /// A snapshot is queued or being written.
    busy: Arc<AtomicBool>,
    thumbnails_dropped: Arc<AtomicU64>,
    thread: JoinHandle<Written>,
}

/// The writer's metrics, looked up once.
struct Counters {
    snapshots: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    last_success: Arc<AtomicI64>,
    seconds: Arc<super::metrics::Histogram>,
    thumbnails_failed: Arc<AtomicU64>,
}

impl DiskWriter {
    /// Starts the writer; snapshots go to `snapshot_dir`.
    pub fn start(snapshot_dir: &Path, metrics: &Metrics) -> std::io::Result<Self> {
        let (jobs, queue) = bounded::<Job>(THUMBNAIL_QUEUE + 1);
        let busy = Arc::new(AtomicBool::new(false));
        let counters = Counters {
            snapshots: metrics.counter("reid_snapshots_total", &[]),
            errors: metrics.counter("reid_snapshot_errors_total", &[]),
            last_success: metrics.gauge("reid_snapshot_last_success_timestamp_seconds", &[]),
            seconds: metrics.latency("reid_snapshot_seconds", &[]),
            thumbnails_failed: metrics.counter(
                "reid_dropped_total",
                &[("stage", "thumbnails"), ("reason", "write_failed")],
            ),
        };
        let thumbnails_dropped = metrics.counter(
            "reid_dropped_total",
            &[("stage", "thumbnails"), ("reason", "queue_full")],
        );
        let (dir, in_flight) = (snapshot_dir.to_path_buf(), Arc::clone(&busy));
        let thread = std::thread::Builder::new().name("disk-writer".into()).spawn(move || {
            let mut written = Written::default();
            for job in queue {
                // A panic in one job (a bug) is that job's failure, not the writer's end: the
                // stage goes on handing over snapshots.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match job {
                    Job::Snapshot(frozen) => {
                        written = write_snapshot(&frozen, &dir, &counters, std::mem::take(&mut written));
                    }
                    Job::Thumbnail(job) => {
                        if let Err(e) = make_thumbnail(job) {
                            counters.thumbnails_failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!("{}", Chain(&e));
                        }
                    }
                }));
                if let Err(payload) = outcome {
                    let cause = crate::runtime::panic_message(payload.as_ref());
                    tracing::error!("the disk writer failed: {cause}");
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    written.error = Some(WriteError::Panicked(cause));
                }
                in_flight.store(false, Ordering::Release);
            }
            written
        })?;
        Ok(DiskWriter {
            jobs,
            busy,
            thumbnails_dropped,
            thread,
        })
    }

    /// Hands over a snapshot if none is in flight; `false` (nothing done) when one is, or the
    /// queue is full: the caller tries again later, with a fresher copy.
    pub fn snapshot(&self, freeze: impl FnOnce() -> Frozen) -> bool {
        if self.busy.load(Ordering::Acquire) || self.jobs.is_full() {
            return false;
        }
        self.busy.store(true, Ordering::Release);
        match self.jobs.try_send(Job::Snapshot(freeze())) {
            Ok(()) => true,
            Err(_) => {
                self.busy.store(false, Ordering::Release);
                false
            }
        }
    }

    /// Whether the thumbnail queue is less than half full: exemplars for the page are made only
    /// then, so that they never crowd out the thumbnail files of new identities.
    pub fn has_spare_room(&self) -> bool {
        self.jobs.len() < THUMBNAIL_QUEUE / 2
    }

    /// Queues a thumbnail; `false` (counted) when the queue is full.
    pub fn thumbnail(&self, job: ThumbnailJob) -> bool {
        match self.jobs.try_send(Job::Thumbnail(job)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.thumbnails_dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Writes `last` after everything queued (waiting for room), then ends the thread.
    pub fn finish(self, last: Frozen) -> Written {
        let _ = self.jobs.send(Job::Snapshot(last));
        drop(self.jobs);
        self.thread.join().unwrap_or_else(|payload| Written {
            snapshot: None,
            error: Some(WriteError::Panicked(crate::runtime::panic_message(payload.as_ref()))),
        })
    }
}

fn write_snapshot(frozen: &Frozen, dir: &Path, c: &Counters, mut written: Written) -> Written {
    let started = std::time::Instant::now();
    let result = std::fs::create_dir_all(dir)
        .map_err(|source| snapshot::SnapshotError::Write {
            path: dir.to_path_buf(),
            source,
        })
        .and_then(|()| snapshot::save(frozen, dir));
    match result {
        Ok(path) => {
            c.seconds.observe(started.elapsed().as_secs_f64());
            c.snapshots.fetch_add(1, Ordering::Relaxed);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            c.last_success.store(now, Ordering::Relaxed);
            written.snapshot = Some(path);
            written.error = None;
        }
        Err(e) => {
            c.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!("{}", Chain(&e));
            written.error = Some(e.into());
        }
    }
    written
}

/// Why a thumbnail was not made.
#[derive(Debug, thiserror::Error)]
enum ThumbnailError {
    #[error("thumbnail {}", .0.display())]
    Write(PathBuf, #[source] std::io::Error),
    #[error("thumbnail: reading the frame")]
    Pixels(#[from] super::types::PixelsError),
    #[error("thumbnail: the crop is empty")]
    Empty,
    #[error("thumbnail: encoding")]
    OpenCv(#[from] opencv::Error),
}

/// Encodes the JPEG once, then writes it to its file and hands it to the board.
fn make_thumbnail(job: ThumbnailJob) -> Result<(), ThumbnailError> {
    let jpeg = encode_crop(&job.pixels, &job.crop)?;
    if let Some(path) = &job.file {
        let written = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => std::fs::create_dir_all(dir),
            None => Ok(()),
        }
        .and_then(|()| crate::atomic::write(path, &jpeg));
        written.map_err(|e| ThumbnailError::Write(path.clone(), e))?;
    }
    if let Some(x) = job.exemplar {
        let thumbnail = Thumbnail {
            time: x.time,
            camera: x.camera,
            modality: x.modality,
            jpeg: jpeg.into(),
        };
        x.board.add_thumbnail(x.identity, thumbnail);
    }
    Ok(())
}

/// A JPEG of `crop` in `pixels`.
fn encode_crop(pixels: &Pixels, crop: &BBox) -> Result<Vec<u8>, ThumbnailError> {
    use opencv::core::{Mat, Rect};
    use opencv::imgproc;
    use opencv::prelude::*;
    let map = pixels.map()?;
    let image = map.image()?;
    let (x, y, w, h) = crop.pixels(image.width, image.height).ok_or(ThumbnailError::Empty)?;
    Ok(image.with_mat(|m| {
        let roi = Mat::roi(m, Rect::new(x as i32, y as i32, w as i32, h as i32))?;
        let mut out = Mat::default();
        match image.format {
            crate::base::PixelFormat::Rgb => imgproc::cvt_color_def(&roi, &mut out, imgproc::COLOR_RGB2BGR)?,
            // 16-bit thermal data in 8 bits, as the annotated view shows it.
            crate::base::PixelFormat::Gray16 => roi.convert_to(&mut out, opencv::core::CV_8U, 1.0 / 256.0, 0.0)?,
            crate::base::PixelFormat::Gray8 => roi.copy_to(&mut out)?,
        }
        jpeg(&out)
    })?)
}

/// JPEG bytes of a BGR or grey image (quality 85).
pub fn jpeg(image: &opencv::core::Mat) -> opencv::Result<Vec<u8>> {
    use opencv::core::{Vector, VectorToVec};
    let mut out = Vector::<u8>::new();
    let params = Vector::from_slice(&[opencv::imgcodecs::IMWRITE_JPEG_QUALITY, 85]);
    opencv::imgcodecs::imencode(".jpg", image, &mut out, &params)?;
    Ok(out.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::backend::HnswParams;
    use crate::index::identities::{IdentityIndex, Settings};

    fn index() -> IdentityIndex {
        let mut idx = IdentityIndex::new(Settings {
            dim: 4,
            backend: crate::config::site::IndexBackend::Exact,
            hnsw: HnswParams::default(),
            same_modality_threshold: 0.1,
            cross_modality_threshold: 0.2,
            max_exemplars: 4,
            expiry_s: 100.0,
            neighbours: 4,
            rebuild_dead_fraction: 0.5,
            also_fraction: 0.0,
            device: tch::Device::Cpu,
        });
        idx.assign(&[1.0, 0.0, 0.0, 0.0], crate::base::Modality::Visible, "a", 1.0)
            .expect("finite");
        idx
    }

    #[test]
    fn snapshots_are_written_off_the_caller_and_errors_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = Metrics::default();
        let writer = DiskWriter::start(&dir.path().join("index"), &metrics).expect("start");
        let idx = index();
        assert!(writer.snapshot(|| snapshot::freeze(&idx)));
        let written = writer.finish(snapshot::freeze(&idx));
        assert!(written.error.is_none(), "{:?}", written.error);
        assert!(written.snapshot.as_ref().is_some_and(|p| p.exists()));
        assert_eq!(metrics.total("reid_snapshots_total"), 2);
        // A snapshot folder under a regular file cannot be made: the error is counted and kept.
        let file = dir.path().join("file");
        std::fs::write(&file, "x").expect("write");
        let writer = DiskWriter::start(&file.join("index"), &metrics).expect("start");
        let written = writer.finish(snapshot::freeze(&idx));
        assert!(written.snapshot.is_none());
        assert!(
            written
                .error
                .as_ref()
                .is_some_and(|e| Chain(e).to_string().contains("file/index")),
            "{written:?}"
        );
        assert_eq!(metrics.total("reid_snapshot_errors_total"), 1);
    }
}
