//! OpenCV's HOG + linear SVM people detector (Dalal & Triggs, 64×128 window).
//!
//! The image pyramid is walked here, not by OpenCV's `detectMultiScale`. That function's parallel
//! loop over scales (OpenCV 4.6) appends a scale's windows and their SVM margins under two
//! separate locks, so when two scales finish together the margins land beside another scale's
//! windows: a person's confidence, and whether the person passes the confidence filter, changes
//! from run to run. Here each thread scans its own scales with OpenCV's single-scale `detect`
//! on the same pyramid (same levels, same resize), the windows are put back in scale order and
//! grouped by OpenCV's HOG `groupRectangles`, then cut to the frame: what a single-threaded
//! `detectMultiScale` returns, box for box and margin for margin (tested).

use super::{BBox, Detect, DetectError, Detection, Image, sigmoid};
use opencv::core::{Mat, MatTraitConst, Point, Rect, Size, Vector};
use opencv::imgproc::{INTER_LINEAR_EXACT, resize};
use opencv::objdetect::{HOGDescriptor, HOGDescriptorTrait, HOGDescriptorTraitConst};

/// Ratio between pyramid levels.
const SCALE_STEP: f64 = 1.05;
/// SVM margin a window needs to be a candidate. Negative: let the filter's confidence decide,
/// not the SVM cut-off.
const HIT_THRESHOLD: f64 = -1.0;
/// Window step and frame padding, in pixels of the scaled frame.
const WIN_STRIDE: Size = Size { width: 8, height: 8 };
const PADDING: Size = Size { width: 8, height: 8 };
/// A group needs more than this many overlapping windows to become a detection.
const GROUP_THRESHOLD: i32 = 2;
/// Relative size difference under which windows group (`detectMultiScale` uses 0.2).
const GROUP_EPS: f64 = 0.2;

/// HOG people detector. Its confidence is the logistic of the SVM margin, so the usual hit
/// threshold of 0 corresponds to a confidence of 0.5.
pub struct HogDetector {
    /// One descriptor per scanning thread (as many as OpenCV's thread setting): the Rust handle
    /// of a descriptor cannot be shared between threads.
    hogs: Vec<HOGDescriptor>,
}

impl HogDetector {
    pub fn new() -> Result<Self, DetectError> {
        let threads = opencv::core::get_num_threads()?.max(1) as usize;
        let hogs = (0..threads).map(|_| people_detector()).collect::<Result<_, _>>()?;
        Ok(Self { hogs })
    }
}

fn people_detector() -> opencv::Result<HOGDescriptor> {
    let mut hog = HOGDescriptor::default()?;
    hog.set_svm_detector_input_array(&HOGDescriptor::get_default_people_detector()?)?;
    Ok(hog)
}

impl Detect for HogDetector {
    fn name(&self) -> &'static str {
        "hog"
    }

    fn detect(&mut self, image: &Image<'_>) -> Result<Vec<Detection>, DetectError> {
        let scales = pyramid(
            image.width,
            image.height,
            self.hogs[0].win_size(),
            self.hogs[0].nlevels(),
        );
        let threads = self.hogs.len().min(scales.len());
        // Thread t scans levels t, t + threads, …: the large levels, which cost the most, are
        // shared out evenly.
        let mut by_level: Vec<LevelWindows> = if threads == 1 {
            scan_levels(&self.hogs[0], image, &scales, 0, 1)?
        } else {
            let scales = &scales;
            std::thread::scope(|s| {
                // `&mut`: a descriptor may move to another thread but not be shared.
                let workers: Vec<_> = self.hogs[..threads]
                    .iter_mut()
                    .enumerate()
                    .map(|(first, hog)| s.spawn(move || scan_levels(hog, image, scales, first, threads)))
                    .collect();
                let mut all = Vec::with_capacity(scales.len());
                for worker in workers {
                    all.extend(worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?);
                }
                Ok::<_, opencv::Error>(all)
            })?
        };
        by_level.sort_by_key(|(level, _)| *level);
        let (mut rects, mut margins): (Vector<Rect>, Vector<f64>) =
            by_level.into_iter().flat_map(|(_, windows)| windows).unzip();
        self.hogs[0].group_rectangles(&mut rects, &mut margins, GROUP_THRESHOLD, GROUP_EPS)?;
        let frame = Rect::new(0, 0, image.width as i32, image.height as i32);
        Ok(rects
            .iter()
            .zip(margins.iter())
            .map(|(r, margin)| (r & frame, margin))
            .filter(|(r, _)| r.area() > 0)
            .map(|(r, margin)| Detection {
                bbox: BBox::from(r),
                score: sigmoid(margin as f32),
            })
            .collect())
    }
}

/// `detectMultiScale`'s pyramid: scale 1, then ×[`SCALE_STEP`] while the scaled frame still
/// holds a window, at most `levels` levels; scale 1 even when the frame is smaller than a window.
fn pyramid(width: u32, height: u32, window: Size, levels: i32) -> Vec<f64> {
    let holds_a_window = |scale: f64| {
        cv_round(f64::from(width) / scale) >= window.width && cv_round(f64::from(height) / scale) >= window.height
    };
    let mut scales = Vec::new();
    let mut scale = 1.0;
    while scales.len() < levels.max(1) as usize && holds_a_window(scale) {
        scales.push(scale);
        scale *= SCALE_STEP;
    }
    if scales.is_empty() {
        scales.push(1.0);
    }
    scales
}

/// A pyramid level's index and its windows, each with its SVM margin, in frame pixels.
type LevelWindows = (usize, Vec<(Rect, f64)>);

/// The windows of levels `first`, `first + step`, …, each with its SVM margin, in frame pixels.
fn scan_levels(
    hog: &HOGDescriptor,
    image: &Image<'_>,
    scales: &[f64],
    first: usize,
    step: usize,
) -> opencv::Result<Vec<LevelWindows>> {
    let window = hog.win_size();
    image.with_mat(|frame| {
        let mut scaled = Mat::default();
        let mut found = Vec::new();
        for (level, &scale) in scales.iter().enumerate().skip(first).step_by(step) {
            let size = Size::new(
                cv_round(f64::from(frame.cols()) / scale),
                cv_round(f64::from(frame.rows()) / scale),
            );
            let input = if size == frame.size()? {
                frame
            } else {
                resize(frame, &mut scaled, size, 0.0, 0.0, INTER_LINEAR_EXACT)?;
                &scaled
            };
            let mut corners = Vector::<Point>::new();
            let mut margins = Vector::<f64>::new();
            hog.detect_weights(
                input,
                &mut corners,
                &mut margins,
                HIT_THRESHOLD,
                WIN_STRIDE,
                PADDING,
                &Vector::new(),
            )?;
            let (w, h) = (
                cv_round(f64::from(window.width) * scale),
                cv_round(f64::from(window.height) * scale),
            );
            let windows = corners
                .iter()
                .zip(margins.iter())
                .map(|(p, margin)| {
                    let x = cv_round(f64::from(p.x) * scale);
                    let y = cv_round(f64::from(p.y) * scale);
                    (Rect::new(x, y, w, h), margin)
                })
                .collect();
            found.push((level, windows));
        }
        Ok(found)
    })
}

/// OpenCV's `cvRound`: to the nearest integer, halves to even.
fn cv_round(x: f64) -> i32 {
    x.round_ties_even() as i32
}
