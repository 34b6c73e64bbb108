//! A source on its own thread: pulls frames from its pipeline into a bounded queue, reconnects
//! live sources with capped exponential backoff, and counts what it delivers and drops.
//!
//! Full-queue policy: live sources (RTSP, V4L2) drop the *oldest* queued frame (stale frames are
//! worthless; counted); files and test patterns block (nothing is lost).

use super::source::{Frame, IngestError, SourcePipeline};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use reid_core::base::Modality;
use reid_core::config::site::{Input, SourceSpec};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A live source that delivers nothing for this long is treated as lost and reconnected.
pub const STALL: Duration = Duration::from_secs(5);

/// Counters of one source, readable while it runs (each shareable, e.g. with a metrics registry).
#[derive(Debug, Default)]
pub struct Counters {
    /// Frames the source delivered.
    pub frames: Arc<AtomicU64>,
    /// Frames dropped because the queue was full (live sources only).
    pub dropped: Arc<AtomicU64>,
    /// Successful (re)starts after the first.
    pub reconnects: Arc<AtomicU64>,
    /// The last error, if any.
    pub last_error: Mutex<Option<String>>,
}

/// Reconnection delays: `initial`, doubling up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before attempt `n` (0-based).
    pub fn delay(&self, n: u32) -> Duration {
        self.initial.saturating_mul(1u32 << n.min(16)).min(self.max)
    }
}

/// A running source: its frames and counters. The channel closes when the source ends.
pub struct SourceHandle {
    pub camera: String,
    pub modality: Modality,
    pub frames: Receiver<Frame>,
    pub counters: Arc<Counters>,
    pub thread: JoinHandle<()>,
}

/// Whether the source is live (reconnects, drops when behind) or finite (ends, never drops).
pub fn is_live(spec: &SourceSpec) -> bool {
    matches!(spec.input, Input::Rtsp { .. } | Input::V4l2 { .. })
}

/// Starts a source thread. `max_frames` ends it after that many frames.
pub fn spawn(
    camera: &str,
    modality: Modality,
    spec: SourceSpec,
    queue: usize,
    backoff: Backoff,
    max_frames: Option<u64>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<SourceHandle> {
    let (tx, rx) = crossbeam_channel::bounded(queue.max(1));
    let counters = Arc::new(Counters::default());
    let (cam, c, drain) = (camera.to_owned(), Arc::clone(&counters), rx.clone());
    let thread = std::thread::Builder::new()
        .name(format!("src-{camera}-{modality}"))
        .spawn(move || {
            run(
                &cam, modality, &spec, queue, backoff, max_frames, &stop, &tx, &drain, &c,
            );
        })?;
    Ok(SourceHandle {
        camera: camera.to_owned(),
        modality,
        frames: rx,
        counters,
        thread,
    })
}

fn record(counters: &Counters, e: &IngestError) {
    if let Ok(mut last) = counters.last_error.lock() {
        *last = Some(reid_core::base::Chain(e).to_string());
    }
}

/// Sleeps up to `d`, waking early when `stop` is set.
fn pause(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20).min(until.saturating_duration_since(Instant::now())));
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    camera: &str,
    modality: Modality,
    spec: &SourceSpec,
    queue: usize,
    backoff: Backoff,
    max_frames: Option<u64>,
    stop: &AtomicBool,
    tx: &Sender<Frame>,
    drain: &Receiver<Frame>,
    counters: &Counters,
) {
    let live = is_live(spec);
    let mut attempt = 0u32;
    let mut started_once = false;
    while !stop.load(Ordering::Relaxed) {
        let source = SourcePipeline::build(camera, modality, spec, queue, live).and_then(|s| s.start().map(|()| s));
        let source = match source {
            Ok(s) => s,
            Err(e) => {
                record(counters, &e);
                if !live {
                    tracing::error!("{}", reid_core::base::Chain(&e));
                    return;
                }
                let wait = backoff.delay(attempt);
                tracing::warn!(
                    "{}; attempt {} failed, retrying in {:.1} s",
                    reid_core::base::Chain(&e),
                    attempt + 1,
                    wait.as_secs_f64()
                );
                attempt += 1;
                pause(wait, stop);
                continue;
            }
        };
        if started_once {
            counters.reconnects.fetch_add(1, Ordering::Relaxed);
            tracing::info!("camera {camera} ({modality}): reconnected");
        }
        started_once = true;
        let ended = pump(&source, spec, live, max_frames, stop, tx, drain, counters, &mut attempt);
        if ended || !live {
            return;
        }
        let wait = backoff.delay(attempt);
        tracing::warn!(
            "camera {camera} ({modality}): stream lost; reconnecting in {:.1} s",
            wait.as_secs_f64()
        );
        attempt += 1;
        pause(wait, stop);
    }
}

/// Moves frames from the pipeline into the queue. Returns true when the source is finished for
/// good (end of a file, frame limit, stop, or no one listening) and false when a live stream was
/// lost and should be reconnected.
#[allow(clippy::too_many_arguments)]
fn pump(
    source: &SourcePipeline,
    spec: &SourceSpec,
    live: bool,
    max_frames: Option<u64>,
    stop: &AtomicBool,
    tx: &Sender<Frame>,
    drain: &Receiver<Frame>,
    counters: &Counters,
    attempt: &mut u32,
) -> bool {
    let mut last_frame = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) || max_frames.is_some_and(|m| counters.frames.load(Ordering::Relaxed) >= m) {
            return true;
        }
        if live && last_frame.elapsed() > STALL {
            tracing::warn!("no frame for {} s", STALL.as_secs());
            return false;
        }
        match source.pull(Duration::from_millis(200)) {
            Ok(Some(frame)) => {
                last_frame = Instant::now();
                *attempt = 0;
                counters.frames.fetch_add(1, Ordering::Relaxed);
                if !deliver(frame, live, stop, tx, drain, counters) {
                    return true;
                }
            }
            Ok(None) if source.is_eos() => {
                if spec.looping {
                    if let Err(e) = source.rewind() {
                        record(counters, &e);
                        return true;
                    }
                } else {
                    // A live stream that ends has been lost; a file is done.
                    return !live;
                }
            }
            Ok(None) => {}
            Err(e) => {
                record(counters, &e);
                tracing::warn!("{}", reid_core::base::Chain(&e));
                return !live;
            }
        }
    }
}

/// Queues a frame by the source's policy; false when the consumer is gone.
fn deliver(
    frame: Frame,
    live: bool,
    stop: &AtomicBool,
    tx: &Sender<Frame>,
    drain: &Receiver<Frame>,
    counters: &Counters,
) -> bool {
    if live {
        let mut frame = frame;
        loop {
            match tx.try_send(frame) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(f)) => {
                    // Drop the oldest queued frame to make room for the newest.
                    if drain.try_recv().is_ok() {
                        counters.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    frame = f;
                }
            }
        }
    }
    let mut frame = frame;
    loop {
        match tx.send_timeout(frame, Duration::from_millis(100)) {
            Ok(()) => return true,
            Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => return false,
            Err(crossbeam_channel::SendTimeoutError::Timeout(f)) => {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                frame = f;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let d: Vec<u128> = (0..6).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(d, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(100), Duration::from_secs(1));
    }
}
