//! The RTSP restream of the annotated view (`outputs.rtsp`): one mount per camera pair,
//! `rtsp://<listen>/<path>/<camera>`, H.264 (openh264) over RTP, served by gst-rtsp-server on a
//! GLib main loop of its own thread. The media is shared: the first client starts the encoder and
//! later ones join it. The video stage pushes its drawn frames while a client is connected, at
//! most `outputs.rtsp.fps` a second; a client that goes away stops the pushing, never the pipeline.

use crate::config::site::Rtsp;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server::prelude::*;
use gstreamer_rtsp_server::{RTSPFilterResult, RTSPMediaFactory, RTSPServer};
use opencv::core::Mat;
use opencv::prelude::*;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Why the restream cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RtspError {
    #[error("outputs.rtsp: GStreamer")]
    Gst(#[from] gst::glib::Error),
    #[error("outputs.rtsp.listen {addr}: cannot listen ({cause})")]
    Listen { addr: std::net::SocketAddr, cause: String },
    #[error("outputs.rtsp: the server has no mount points")]
    Mounts,
    #[error("outputs.rtsp: cannot start the server thread")]
    Thread(#[source] std::io::Error),
}

/// The source of one camera pair's mount, while a client plays it.
#[derive(Default)]
struct Mount {
    src: Option<gst_app::AppSrc>,
    /// The source's caps are set (from the first frame; a camera pair's frames keep their size).
    caps_set: bool,
    last_push: Option<Instant>,
}

/// The running RTSP server.
pub struct Restream {
    mounts: Vec<Arc<Mutex<Mount>>>,
    interval: Duration,
    main_loop: gst::glib::MainLoop,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The pipeline each client's media runs: drawn RGB frames → I420 → H.264 → RTP.
const LAUNCH: &str = "( appsrc name=src is-live=true format=time do-timestamp=true max-buffers=2 leaky-type=downstream \
     ! videoconvert ! video/x-raw,format=I420 ! openh264enc ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )";

impl Restream {
    /// Listens on `cfg.listen` and mounts `<path>/<camera>` for each camera pair.
    pub fn start(cfg: &Rtsp, cameras: &[String]) -> Result<Arc<Self>, RtspError> {
        gst::init()?;
        let ctx = gst::glib::MainContext::new();
        let server = RTSPServer::new();
        server.set_address(&cfg.listen.ip().to_string());
        server.set_service(&cfg.listen.port().to_string());
        let points = server.mount_points().ok_or(RtspError::Mounts)?;
        let mut mounts = Vec::new();
        for camera in cameras {
            let mount = Arc::new(Mutex::new(Mount::default()));
            let factory = RTSPMediaFactory::new();
            factory.set_launch(LAUNCH);
            factory.set_shared(true);
            let slot = Arc::clone(&mount);
            factory.connect_media_configure(move |_, media| {
                let src = media
                    .element()
                    .downcast::<gst::Bin>()
                    .ok()
                    .and_then(|bin| bin.by_name_recurse_up("src"))
                    .and_then(|e| e.downcast::<gst_app::AppSrc>().ok());
                let mut m = slot.lock().unwrap_or_else(|e| e.into_inner());
                m.src = src;
                m.caps_set = false;
            });
            points.add_factory(&format!("{}/{camera}", cfg.path), factory);
            mounts.push(mount);
        }
        let source = server.attach(Some(&ctx)).map_err(|e| RtspError::Listen {
            addr: cfg.listen,
            cause: e.to_string(),
        })?;
        let port = server.bound_port().max(0) as u16;
        for camera in cameras {
            tracing::info!("outputs.rtsp: rtsp://{}:{port}{}/{camera}", cfg.listen.ip(), cfg.path);
        }
        let main_loop = gst::glib::MainLoop::new(Some(&ctx), false);
        let ml = main_loop.clone();
        let thread = std::thread::Builder::new()
            .name("rtsp".into())
            .spawn(move || {
                let _ = ctx.with_thread_default(|| ml.run());
                // Stopped: close the listening socket and every client session.
                if let Some(s) = ctx.find_source_by_id(&source) {
                    s.destroy();
                }
                server.client_filter(Some(&mut |_, _| RTSPFilterResult::Remove));
                while ctx.iteration(false) {}
            })
            .map_err(RtspError::Thread)?;
        Ok(Arc::new(Self {
            mounts,
            interval: Duration::from_secs_f64(1.0 / cfg.fps),
            main_loop,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Whether camera pair `camera` has a client and a frame is due.
    pub fn wants(&self, camera: usize) -> bool {
        self.mounts.get(camera).is_some_and(|m| {
            let m = m.lock().unwrap_or_else(|e| e.into_inner());
            m.src.is_some() && m.last_push.is_none_or(|t| t.elapsed() >= self.interval)
        })
    }

    /// Sends a drawn frame (RGB; a camera pair's frames all have one size) to camera pair
    /// `camera`'s clients. A media that stopped taking frames (its clients left) is forgotten; the
    /// next client's media takes its place.
    pub fn push(&self, camera: usize, canvas: &Mat) {
        let Some(mount) = self.mounts.get(camera) else { return };
        let mut m = mount.lock().unwrap_or_else(|e| e.into_inner());
        let Some(src) = m.src.clone() else { return };
        if !m.caps_set {
            let caps = gst::Caps::builder("video/x-raw")
                .field("format", "RGB")
                .field("width", canvas.cols())
                .field("height", canvas.rows())
                .field("framerate", gst::Fraction::new(0, 1))
                .build();
            src.set_caps(Some(&caps));
            m.caps_set = true;
        }
        m.last_push = Some(Instant::now());
        let Ok(bytes) = canvas.data_bytes() else { return };
        if src.push_buffer(gst::Buffer::from_slice(bytes.to_vec())).is_err() {
            m.src = None;
        }
    }

    /// Stops the server and disconnects its clients (once; later calls do nothing).
    pub fn stop(&self) {
        for m in &self.mounts {
            m.lock().unwrap_or_else(|e| e.into_inner()).src = None;
        }
        let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        // A quit before the thread's loop runs would be lost: ask until the thread ends.
        while !t.is_finished() {
            self.main_loop.quit();
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = t.join();
    }
}

impl Drop for Restream {
    fn drop(&mut self) {
        self.stop();
    }
}
