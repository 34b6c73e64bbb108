//! The annotated video of a camera pair: visible and thermal side by side, every confirmed track
//! boxed in its identity's colour with its label, encoded by GStreamer (H.264 in Matroska) to a
//! file per camera pair.

use super::identity::Labels;
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
    size: (i32, i32),
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
        Ok(Self {
            pipeline,
            src,
            size: (width, height),
        })
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

/// Writes the frames of every camera pair until `input` closes. Each file starts at the first
/// frame that has both halves (its size is fixed then).
pub fn run(input: &crossbeam_channel::Receiver<VideoFrame>, paths: &[PathBuf], labels: &Labels) {
    let mut encoders: Vec<Option<(Encoder, PairSize)>> = paths.iter().map(|_| None).collect();
    let mut failed = vec![false; paths.len()];
    let mut next_pts = vec![0u64; paths.len()];
    for frame in input.iter() {
        let c = frame.camera;
        if failed[c] {
            continue;
        }
        if encoders[c].is_none() {
            let (Some(v), Some(t)) = (&frame.visible, &frame.thermal) else {
                continue;
            };
            let sizes = (size_of(v), size_of(t));
            let (w, h) = ((sizes.0.0 + sizes.1.0) as i32, sizes.0.1.max(sizes.1.1) as i32);
            match Encoder::start(&paths[c], w, h) {
                Ok(e) => encoders[c] = Some((e, sizes)),
                Err(e) => {
                    tracing::error!("annotated video {}: {}", paths[c].display(), crate::base::Chain(&e));
                    failed[c] = true;
                    continue;
                }
            }
        }
        let Some((encoder, sizes)) = &encoders[c] else { continue };
        let sizes_now = (
            frame.visible.as_ref().map_or(sizes.0, size_of),
            frame.thermal.as_ref().map_or(sizes.1, size_of),
        );
        if sizes_now != *sizes {
            continue; // a source changed resolution mid-stream: such frames are left out
        }
        // Timestamps must grow for the muxer.
        let pts = frame.pts_ns.unwrap_or(next_pts[c]).max(next_pts[c]);
        next_pts[c] = pts + 1;
        let result = compose(&frame, *sizes, labels).and_then(|m| {
            debug_assert_eq!((m.cols(), m.rows()), encoder.size);
            encoder.push(&m, pts)
        });
        if let Err(e) = result {
            tracing::error!("annotated video {}: {}", paths[c].display(), crate::base::Chain(&e));
            failed[c] = true;
        }
    }
    for (e, _) in encoders.into_iter().flatten() {
        e.finish();
    }
}
