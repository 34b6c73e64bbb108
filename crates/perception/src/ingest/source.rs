//! One video source: a GStreamer pipeline rendered from a template, ending in an appsink that
//! hands out frames as owned, ref-counted buffers (no pixel copies).

use super::template::{self, TemplateError};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use reid_core::base::{Modality, PixelFormat};
use reid_core::config::site::{Input, SourceSpec};
use std::time::Duration;

/// Errors of a source, each naming its camera and modality.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("camera {camera} ({modality})")]
    Template {
        camera: String,
        modality: Modality,
        #[source]
        source: TemplateError,
    },
    #[error("camera {camera} ({modality}): no such file {}", path.display())]
    NoFile {
        camera: String,
        modality: Modality,
        path: std::path::PathBuf,
    },
    #[error("camera {camera} ({modality}): cannot build the pipeline{}", if description.is_empty() { String::new() } else { format!(" `{description}`") })]
    Build {
        camera: String,
        modality: Modality,
        description: String,
        #[source]
        source: BuildFailure,
    },
    #[error("camera {camera} ({modality}): cannot start the pipeline: {message}")]
    Start {
        camera: String,
        modality: Modality,
        message: String,
    },
    #[error("camera {camera} ({modality}): error from element {element}: {message}")]
    Stream {
        camera: String,
        modality: Modality,
        element: String,
        message: String,
    },
    #[error("camera {camera} ({modality}): cannot rewind")]
    Rewind {
        camera: String,
        modality: Modality,
        #[source]
        source: gst::glib::BoolError,
    },
    #[error("camera {camera} ({modality}): sample without {what}")]
    BadSample {
        camera: String,
        modality: Modality,
        what: &'static str,
    },
}

/// Why a pipeline could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildFailure {
    /// GStreamer's message, with secret parameter values scrubbed from it.
    #[error("GStreamer: {0}")]
    Gst(String),
    #[error("the description is not a pipeline")]
    NotAPipeline,
    #[error("no appsink named `sink`")]
    NoSink,
}

/// One decoded frame; the pixels stay in the GStreamer buffer.
#[derive(Debug, Clone)]
pub struct Frame {
    pub camera: String,
    pub modality: Modality,
    /// Presentation timestamp in nanoseconds from the start of the stream.
    pub pts_ns: Option<u64>,
    pub width: u32,
    pub height: u32,
    /// Bytes per row (rows may be padded).
    pub stride: usize,
    pub format: PixelFormat,
    pub buffer: gst::Buffer,
    /// When the frame left its pipeline: latencies are measured from here.
    pub arrived: std::time::Instant,
}

/// A running source pipeline.
pub struct SourcePipeline {
    camera: String,
    modality: Modality,
    format: PixelFormat,
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    /// The last caps seen and their parsed form.
    info: std::sync::Mutex<Option<(gst::Caps, gstreamer_video::VideoInfo)>>,
    /// What the pipeline was built from: its secrets are scrubbed from GStreamer's messages.
    rendered: template::Rendered,
}

impl SourcePipeline {
    /// Builds (but does not start) the pipeline of one source. `queue` bounds the appsink; with
    /// `drop_oldest` the appsink discards the oldest frames when full (live sources), otherwise
    /// it blocks upstream (files never lose frames).
    pub fn build(
        camera: &str,
        modality: Modality,
        spec: &SourceSpec,
        queue: usize,
        drop_oldest: bool,
    ) -> Result<Self, IngestError> {
        gst::init().map_err(|e| IngestError::Build {
            camera: camera.to_owned(),
            modality,
            description: String::new(),
            source: BuildFailure::Gst(e.to_string()),
        })?;
        if let Input::File { path } = &spec.input
            && !path.is_file()
        {
            return Err(IngestError::NoFile {
                camera: camera.to_owned(),
                modality,
                path: path.clone(),
            });
        }
        let rendered = template::render(spec).map_err(|source| IngestError::Template {
            camera: camera.to_owned(),
            modality,
            source,
        })?;
        let build_err = |source: BuildFailure| IngestError::Build {
            camera: camera.to_owned(),
            modality,
            description: rendered.shown.clone(),
            source,
        };
        let element = gst::parse::launch(&rendered.description)
            .map_err(|e| build_err(BuildFailure::Gst(rendered.scrub(&e.to_string()))))?;
        let pipeline = element
            .downcast::<gst::Pipeline>()
            .map_err(|_| build_err(BuildFailure::NotAPipeline))?;
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| build_err(BuildFailure::NoSink))?;
        sink.set_max_buffers(queue as u32);
        sink.set_drop(drop_oldest);
        sink.set_property("sync", false);
        if let Some((user, password)) = &rendered.rtsp_credentials
            && let Some(src) = pipeline.by_name("src")
        {
            src.set_property("user-id", user);
            src.set_property("user-pw", password);
        }
        Ok(Self {
            camera: camera.to_owned(),
            modality,
            format: spec.format,
            pipeline,
            sink,
            info: std::sync::Mutex::new(None),
            rendered,
        })
    }

    /// Sets the pipeline playing.
    pub fn start(&self) -> Result<(), IngestError> {
        if let Err(e) = self.pipeline.set_state(gst::State::Playing) {
            // The bus usually holds the real reason.
            let message = self
                .bus_error()
                .map_or_else(|| e.to_string(), |(element, m)| format!("{element}: {m}"));
            let message = self.rendered.scrub(&message);
            let _ = self.pipeline.set_state(gst::State::Null);
            return Err(IngestError::Start {
                camera: self.camera.clone(),
                modality: self.modality,
                message,
            });
        }
        Ok(())
    }

    /// Waits up to `timeout` for the next frame. `Ok(None)` means end of stream or timeout; call
    /// [`SourcePipeline::is_eos`] to tell them apart. Errors posted on the bus are returned.
    pub fn pull(&self, timeout: Duration) -> Result<Option<Frame>, IngestError> {
        let Some(sample) = self
            .sink
            .try_pull_sample(gst::ClockTime::from_nseconds(timeout.as_nanos() as u64))
        else {
            // An error stops the flow of samples, so the bus is read only when none came.
            if let Some((element, message)) = self.bus_error() {
                return Err(IngestError::Stream {
                    camera: self.camera.clone(),
                    modality: self.modality,
                    element,
                    message,
                });
            }
            return Ok(None);
        };
        let bad = |what| IngestError::BadSample {
            camera: self.camera.clone(),
            modality: self.modality,
            what,
        };
        let buffer = sample.buffer_owned().ok_or_else(|| bad("a buffer"))?;
        let caps = sample.caps().ok_or_else(|| bad("caps"))?;
        // Caps rarely change: parse them once per new caps object.
        let info = {
            let mut cached = self.info.lock().map_err(|_| bad("a usable caps cache"))?;
            match &*cached {
                Some((c, info)) if c.as_ptr() == caps.as_ptr() => info.clone(),
                _ => {
                    let info = gstreamer_video::VideoInfo::from_caps(caps).map_err(|_| bad("video caps"))?;
                    *cached = Some((caps.to_owned(), info.clone()));
                    info
                }
            }
        };
        Ok(Some(Frame {
            camera: self.camera.clone(),
            modality: self.modality,
            pts_ns: buffer.pts().map(gst::ClockTime::nseconds),
            width: info.width(),
            height: info.height(),
            stride: info.stride()[0] as usize,
            format: self.format,
            buffer,
            arrived: std::time::Instant::now(),
        }))
    }

    /// True once the appsink has seen end of stream.
    pub fn is_eos(&self) -> bool {
        self.sink.is_eos()
    }

    /// Seeks back to the start (for looping file sources).
    pub fn rewind(&self) -> Result<(), IngestError> {
        self.pipeline
            .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT, gst::ClockTime::ZERO)
            .map_err(|source| IngestError::Rewind {
                camera: self.camera.clone(),
                modality: self.modality,
                source,
            })
    }

    /// The first error message waiting on the bus, with the element that posted it.
    fn bus_error(&self) -> Option<(String, String)> {
        let bus = self.pipeline.bus()?;
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(err) = msg.view() {
                let element = msg
                    .src()
                    .map_or_else(|| "?".to_owned(), |s| s.path_string().to_string());
                return Some((element, self.rendered.scrub(&err.error().to_string())));
            }
        }
        None
    }
}

impl Drop for SourcePipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
