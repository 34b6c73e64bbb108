//! The annotated view of a camera pair: visible and thermal side by side, every confirmed track
//! boxed in its identity's colour with its label. It is drawn once per frame and goes to a video
//! file per camera pair (GStreamer: H.264 in Matroska), to the operator's page (a JPEG a few times
//! a second) and to the RTSP restream, as configured.

use super::board::{Board, LatestFrame};
use super::identity::Labels;
use super::rtsp::Restream;
use super::types::{Pixels, TrackKey};
use crate::base::Modality;
use crate::detect::BBox;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use opencv::core::{self, Mat, Point, Rect, Scalar};
use opencv::imgproc;
use opencv::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frame sizes of the visible and the thermal half.
type PairSize = ((u32, u32), (u32, u32));

/// One half of a pair with its confirmed tracks.
pub struct Annotated {
    pub pixels: Pixels,
    pub boxes: Vec<(TrackKey, BBox)>,
}

/// A pair (or a lone frame) to draw.
pub struct VideoFrame {
    pub camera: usize,
    pub pts_ns: Option<u64>,
    pub visible: Option<Annotated>,
    pub thermal: Option<Annotated>,
}

/// Frame rate written in the caps (the encoder needs one); buffers carry the real timestamps.
const NOMINAL_FPS: i32 = 25;

/// What stops an annotated video.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("GStreamer")]
    Gst(#[from] gst::glib::Error),
    #[error("cannot create the folder {}", .0.display())]
    Folder(PathBuf, #[source] std::io::Error),
    #[error("the encoder pipeline has no {0}")]
    Pipeline(&'static str),
    #[error("cannot start the encoder")]
    Start(#[from] gst::StateChangeError),
    #[error("the encoder failed")]
    Encoder(#[source] gst::glib::Error),
    #[error("the encoder stopped taking frames")]
    Flow(#[from] gst::FlowError),
    #[error("drawing")]
    OpenCv(#[from] opencv::Error),
    #[error("reading the frame")]
    Pixels(#[from] super::types::PixelsError),
}

/// An encoder writing RGB frames of a fixed size to a file.
struct Encoder {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
}

impl Encoder {
    fn start(path: &Path, width: i32, height: i32) -> Result<Self, VideoError> {
        gst::init()?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| VideoError::Folder(dir.to_path_buf(), e))?;
        }
        let description =
            "appsrc name=src format=time ! videoconvert ! openh264enc ! h264parse ! matroskamux ! filesink name=sink";
        let pipeline = gst::parse::launch(description)?
            .downcast::<gst::Pipeline>()
            .map_err(|_| VideoError::Pipeline("pipeline"))?;
        let sink = pipeline.by_name("sink").ok_or(VideoError::Pipeline("filesink"))?;
        sink.set_property("location", path.to_string_lossy().to_string());
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or(VideoError::Pipeline("appsrc"))?;
        let caps = gst::Caps::builder("video/x-raw")
            .field("format", "RGB")
            .field("width", width)
            .field("height", height)
            .field("framerate", gst::Fraction::new(NOMINAL_FPS, 1))
            .build();
        src.set_caps(Some(&caps));
        src.set_property("block", true);
        src.set_property("max-bytes", (width * height * 3 * 4) as u64);
        pipeline.set_state(gst::State::Playing)?;
        Ok(Self { pipeline, src })
    }

    fn push(&self, mat: &Mat, pts_ns: u64) -> Result<(), VideoError> {
        // A failed encoder or file stops taking buffers; report it instead of waiting forever.
        if let Some(msg) = self
            .pipeline
            .bus()
            .and_then(|b| b.pop_filtered(&[gst::MessageType::Error]))
            && let gst::MessageView::Error(e) = msg.view()
        {
            return Err(VideoError::Encoder(e.error()));
        }
        let bytes = mat.data_bytes()?;
        let mut buffer = gst::Buffer::from_slice(bytes.to_vec());
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(pts_ns));
        }
        self.src.push_buffer(buffer)?;
        Ok(())
    }

    /// Ends the stream and waits (up to 10 s) for the file to be finished.
    fn finish(self) {
        let _ = self.src.end_of_stream();
        if let Some(bus) = self.pipeline.bus() {
            let _ = bus.timed_pop_filtered(
                gst::ClockTime::from_seconds(10),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            );
        }
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// A distinct colour per identity (grey while unknown).
fn colour(identity: Option<u64>) -> Scalar {
    let Some(id) = identity else {
        return Scalar::new(200.0, 200.0, 200.0, 0.0);
    };
    let h = (id.wrapping_mul(2_654_435_761) % 360) as f64;
    // HSV with full saturation and value → RGB.
    let x = 1.0 - ((h / 60.0) % 2.0 - 1.0).abs();
    let (r, g, b) = match (h / 60.0) as u32 {
        0 => (1.0, x, 0.0),
        1 => (x, 1.0, 0.0),
        2 => (0.0, 1.0, x),
        3 => (0.0, x, 1.0),
        4 => (x, 0.0, 1.0),
        _ => (1.0, 0.0, x),
    };
    Scalar::new(r * 255.0, g * 255.0, b * 255.0, 0.0)
}

/// Draws one half into `canvas` at `x0`.
fn draw_half(canvas: &mut Mat, x0: i32, half: &Annotated, labels: &HashMap<TrackKey, u64>) -> Result<(), VideoError> {
    let map = half.pixels.map()?;
    let image = map.image()?;
    let roi = Rect::new(x0, 0, image.width as i32, image.height as i32);
    let mut target = Mat::roi_mut(canvas, roi)?;
    image.with_mat(|m| {
        if m.channels() == 3 {
            m.copy_to(&mut target)?;
        } else {
            let mut grey8 = Mat::default();
            let scale = if m.depth() == core::CV_16U { 1.0 / 256.0 } else { 1.0 };
            m.convert_to(&mut grey8, core::CV_8U, scale, 0.0)?;
            imgproc::cvt_color_def(&grey8, &mut target, imgproc::COLOR_GRAY2RGB)?;
        }
        Ok(())
    })?;
    for (key, b) in &half.boxes {
        let identity = labels.get(key).copied();
        let c = colour(identity);
        let r = Rect::new(
            x0 + b.x.round() as i32,
            b.y.round() as i32,
            b.w.round() as i32,
            b.h.round() as i32,
        );
        imgproc::rectangle(canvas, r, c, 2, imgproc::LINE_8, 0)?;
        let tag = if key.modality == Modality::Visible { "v" } else { "t" };
        let text = match identity {
            Some(id) => format!("id {id} ({tag}{})", key.track),
            None => format!("{tag}{}", key.track),
        };
        imgproc::put_text(
            canvas,
            &text,
            Point::new(r.x, (r.y - 4).max(12)),
            imgproc::FONT_HERSHEY_SIMPLEX,
            0.5,
            c,
            1,
            imgproc::LINE_AA,
            false,
        )?;
    }
    Ok(())
}

/// Composes one side-by-side frame (visible left, thermal right).
pub fn compose(frame: &VideoFrame, sizes: PairSize, labels: &Labels) -> Result<Mat, VideoError> {
    let ((vw, vh), (tw, th)) = sizes;
    let (w, h) = ((vw + tw) as i32, vh.max(th) as i32);
    let mut canvas = Mat::new_rows_cols_with_default(h, w, core::CV_8UC3, Scalar::all(0.0))?;
    // One look at the identities for both halves, not holding the lock while drawing.
    let labels = labels.lock().map(|l| l.clone()).unwrap_or_default();
    if let Some(v) = &frame.visible {
        draw_half(&mut canvas, 0, v, &labels)?;
    }
    if let Some(t) = &frame.thermal {
        draw_half(&mut canvas, vw as i32, t, &labels)?;
    }
    Ok(canvas)
}

fn size_of(a: &Annotated) -> (u32, u32) {
    match &a.pixels {
        Pixels::Frame(f) => (f.width, f.height),
        Pixels::Grey { width, height, .. } => (*width, *height),
    }
}

/// Where the annotated view goes: a video file per camera pair, the operator's page (a JPEG every
/// [`BOARD_FRAME_INTERVAL`]) and the RTSP restream.
#[derive(Default)]
pub struct Destinations {
    /// Camera pairs in the site.
    pub cameras: usize,
    pub files: Vec<PathBuf>,
    pub board: Option<Arc<Board>>,
    pub restream: Option<Arc<Restream>>,
}

impl Destinations {
    /// Whether any destination is configured (the stage runs only then).
    pub fn any(&self) -> bool {
        !self.files.is_empty() || self.board.is_some() || self.restream.is_some()
    }
}

/// Interval between two frames of a camera pair drawn for the page.
pub const BOARD_FRAME_INTERVAL: Duration = Duration::from_millis(200);

/// Draws the frames of every camera pair until `input` closes, for each destination that wants
/// one. A camera pair's size is fixed by its first frame with both halves.
pub fn run(input: &crossbeam_channel::Receiver<VideoFrame>, to: &Destinations, labels: &Labels) {
    let cameras = to.cameras;
    let mut sizes: Vec<Option<PairSize>> = vec![None; cameras];
    let mut encoders: Vec<Option<Encoder>> = (0..cameras).map(|_| None).collect();
    let mut failed = vec![false; cameras];
    let mut next_pts = vec![0u64; cameras];
    let mut last_board = vec![None::<Instant>; cameras];
    for frame in input.iter() {
        let c = frame.camera;
        if c >= cameras {
            continue;
        }
        if sizes[c].is_none() {
            let (Some(v), Some(t)) = (&frame.visible, &frame.thermal) else {
                continue;
            };
            let pair = (size_of(v), size_of(t));
            sizes[c] = Some(pair);
            if let Some(path) = to.files.get(c) {
                let (w, h) = ((pair.0.0 + pair.1.0) as i32, pair.0.1.max(pair.1.1) as i32);
                match Encoder::start(path, w, h) {
                    Ok(e) => encoders[c] = Some(e),
                    Err(e) => {
                        tracing::error!("annotated video {}: {}", path.display(), crate::base::Chain(&e));
                        failed[c] = true;
                    }
                }
            }
        }
        let Some(pair) = sizes[c] else { continue };
        let now = (
            frame.visible.as_ref().map_or(pair.0, size_of),
            frame.thermal.as_ref().map_or(pair.1, size_of),
        );
        if now != pair {
            continue; // a source changed resolution mid-stream: such frames are left out
        }
        let to_file = encoders[c].is_some() && !failed[c];
        let to_board = to.board.is_some() && last_board[c].is_none_or(|t: Instant| t.elapsed() >= BOARD_FRAME_INTERVAL);
        let to_restream = to.restream.as_ref().is_some_and(|r| r.wants(c));
        if !(to_file || to_board || to_restream) {
            continue;
        }
        let canvas = match compose(&frame, pair, labels) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!("annotated view of camera pair {c}: {}", crate::base::Chain(&e));
                continue;
            }
        };
        if to_file && let Some(encoder) = &encoders[c] {
            // Timestamps must grow for the muxer.
            let pts = frame.pts_ns.unwrap_or(next_pts[c]).max(next_pts[c]);
            next_pts[c] = pts + 1;
            if let Err(e) = encoder.push(&canvas, pts) {
                let path = to.files[c].display();
                tracing::error!("annotated video {path}: {}", crate::base::Chain(&e));
                failed[c] = true;
            }
        }
        if to_board && let Some(board) = &to.board {
            last_board[c] = Some(Instant::now());
            match latest_frame(&canvas) {
                Ok(f) => board.set_frame(c, f),
                Err(e) => tracing::warn!("annotated view of camera pair {c}: JPEG: {e}"),
            }
        }
        if to_restream && let Some(r) = &to.restream {
            r.push(c, &canvas);
        }
    }
    for e in encoders.into_iter().flatten() {
        e.finish();
    }
}

/// The canvas (RGB) as a JPEG for the page.
fn latest_frame(canvas: &Mat) -> opencv::Result<LatestFrame> {
    let mut bgr = Mat::default();
    imgproc::cvt_color_def(canvas, &mut bgr, imgproc::COLOR_RGB2BGR)?;
    Ok(LatestFrame {
        jpeg: super::writer::jpeg(&bgr)?.into(),
        time: super::events::unix_now(),
        width: canvas.cols() as u32,
        height: canvas.rows() as u32,
    })
}
