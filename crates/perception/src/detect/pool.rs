//! Detection on a pool of worker threads. Each worker owns its own detectors (OpenCV networks are
//! not shared between threads), built on first use for each stream. Results come out in the order
//! jobs went in, so every stream's tracker sees its frames in sequence.

use super::{DetectError, Detection, Image, StreamDetector};
use crate::ingest::Frame;
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use reid_core::base::{Modality, StreamId};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Builds the detector of a stream (called once per worker and stream).
pub type DetectorFactory = Arc<dyn Fn(StreamId) -> Result<StreamDetector, DetectError> + Send + Sync>;

/// A frame to detect people in; `tag` travels with it unchanged.
pub struct Job<T> {
    pub stream: StreamId,
    pub frame: Frame,
    pub tag: T,
}

/// A finished job: the frame back, and its detections or the error that prevented them.
pub struct Done<T> {
    pub stream: StreamId,
    pub frame: Frame,
    pub tag: T,
    pub detections: Result<Vec<Detection>, FrameError>,
}

/// Why one frame has no detections, naming its camera and modality.
#[derive(Debug, thiserror::Error)]
#[error("camera {camera} ({modality})")]
pub struct FrameError {
    pub camera: String,
    pub modality: Modality,
    #[source]
    pub failure: FrameFailure,
}

/// What went wrong with one frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameFailure {
    #[error("cannot build the detector")]
    Build(#[source] DetectError),
    #[error("the frame buffer is not readable")]
    Unmappable,
    #[error("detection failed")]
    Detect(#[source] DetectError),
    #[error("the detector panicked")]
    Panicked,
}

/// The pool. Dropping it (or [`DetectPool::close`]) stops intake; the workers finish the queued
/// jobs, deliver them to whoever still holds [`DetectPool::results`], and exit.
pub struct DetectPool<T> {
    input: Option<Sender<(u64, Job<T>)>>,
    output: Option<Receiver<Done<T>>>,
    next: u64,
}

impl<T: Send + 'static> DetectPool<T> {
    /// `workers` threads; at most `capacity` jobs wait, and the ordered output holds as many.
    pub fn new(workers: usize, capacity: usize, factory: DetectorFactory) -> Self {
        let workers = workers.max(1);
        let (input, jobs) = bounded::<(u64, Job<T>)>(capacity.max(1));
        let (finished, unordered) = bounded::<(u64, Done<T>)>(capacity.max(1) + workers);
        let (ordered, output) = bounded::<Done<T>>(capacity.max(1));
        for w in 0..workers {
            let jobs = jobs.clone();
            let finished = finished.clone();
            let factory = Arc::clone(&factory);
            let spawned = std::thread::Builder::new()
                .name(format!("detect-{w}"))
                .spawn(move || worker(&jobs, &finished, &factory));
            if let Err(e) = spawned {
                tracing::error!("cannot start detection worker {w}: {e}");
            }
        }
        drop(finished);
        if let Err(e) = std::thread::Builder::new()
            .name("detect-order".into())
            .spawn(move || reorder(&unordered, &ordered))
        {
            tracing::error!("cannot start the detection ordering thread: {e}");
        }
        Self {
            input: Some(input),
            output: Some(output),
            next: 0,
        }
    }

    /// Queues a job, waiting while the queue is full. Fails (returning the job) once closed.
    pub fn submit(&mut self, job: Job<T>) -> Result<(), Job<T>> {
        let Some(input) = &self.input else { return Err(job) };
        match input.send((self.next, job)) {
            Ok(()) => {
                self.next += 1;
                Ok(())
            }
            Err(e) => Err(e.into_inner().1),
        }
    }

    /// Queues a job if there is room; returns it when the queue is full (the caller counts the drop).
    pub fn try_submit(&mut self, job: Job<T>) -> Result<(), Job<T>> {
        let Some(input) = &self.input else { return Err(job) };
        match input.try_send((self.next, job)) {
            Ok(()) => {
                self.next += 1;
                Ok(())
            }
            Err(TrySendError::Full((_, j)) | TrySendError::Disconnected((_, j))) => Err(j),
        }
    }

    /// Finished jobs, in submission order. Only the first call gets the receiver: when its
    /// holder goes away, the workers see it and stop instead of waiting on a full queue.
    pub fn take_results(&mut self) -> Option<Receiver<Done<T>>> {
        self.output.take()
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> usize {
        self.input.as_ref().map_or(0, Sender::len)
    }

    /// Stops accepting jobs; queued ones still finish and arrive on [`DetectPool::results`].
    pub fn close(&mut self) {
        self.input = None;
    }
}

fn worker<T>(jobs: &Receiver<(u64, Job<T>)>, finished: &Sender<(u64, Done<T>)>, factory: &DetectorFactory) {
    let mut detectors: HashMap<StreamId, StreamDetector> = HashMap::new();
    while let Ok((seq, job)) = jobs.recv() {
        // A panicking detector fails its frame, not the pool (the ordering thread waits for
        // every sequence number).
        let detections = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            detect_frame(&mut detectors, factory, job.stream, &job.frame)
        }))
        .unwrap_or_else(|_| {
            detectors.remove(&job.stream);
            Err(FrameFailure::Panicked)
        })
        .map_err(|failure| FrameError {
            camera: job.frame.camera.clone(),
            modality: job.frame.modality,
            failure,
        });
        let done = Done {
            stream: job.stream,
            frame: job.frame,
            tag: job.tag,
            detections,
        };
        if finished.send((seq, done)).is_err() {
            return;
        }
    }
}

fn detect_frame(
    detectors: &mut HashMap<StreamId, StreamDetector>,
    factory: &DetectorFactory,
    stream: StreamId,
    frame: &Frame,
) -> Result<Vec<Detection>, FrameFailure> {
    let detector = match detectors.entry(stream) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => v.insert(factory(stream).map_err(FrameFailure::Build)?),
    };
    let map = frame.buffer.map_readable().map_err(|_| FrameFailure::Unmappable)?;
    let image = Image::new(map.as_slice(), frame.width, frame.height, frame.stride, frame.format)
        .map_err(|e| FrameFailure::Detect(e.into()))?;
    detector.run(&image).map_err(FrameFailure::Detect)
}

/// Forwards finished jobs in sequence order.
fn reorder<T>(unordered: &Receiver<(u64, Done<T>)>, ordered: &Sender<Done<T>>) {
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    while let Ok((seq, done)) = unordered.recv() {
        pending.insert(seq, done);
        while let Some(done) = pending.remove(&next) {
            if ordered.send(done).is_err() {
                return;
            }
            next += 1;
        }
    }
}
