//! Ingest with real GStreamer elements: a file encoded here and decoded back, errors that name
//! their camera, and an RTSP server on 127.0.0.1 stopped and restarted while a camera reads it.

mod common;

use common::free_port;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_rtsp_server::prelude::*;
use gstreamer_rtsp_server::{RTSPFilterResult, RTSPMediaFactory, RTSPServer};
use reid_pipe::base::{Modality, PixelFormat};
use reid_pipe::config::site::{Input, RtspTransport, SiteConfig, SourceSpec};
use reid_pipe::ingest::stream::{self, Backoff, SourceHandle};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn spec(input: Input, format: PixelFormat) -> SourceSpec {
    SourceSpec {
        input,
        size: None,
        fps: None,
        format,
        looping: false,
    }
}

fn collect(h: SourceHandle) -> Vec<reid_pipe::ingest::Frame> {
    let frames: Vec<_> = h.frames.iter().collect();
    let _ = h.thread.join();
    frames
}

#[test]
fn a_file_encoded_here_decodes_with_its_frame_count_and_timestamps() {
    gst::init().expect("gstreamer");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("clip.avi");
    let encode = format!(
        "videotestsrc num-buffers=30 pattern=ball ! video/x-raw,width=160,height=120,framerate=15/1 ! jpegenc ! avimux ! filesink location=\"{}\"",
        file.display()
    );
    let pipeline = gst::parse::launch(&encode).expect("encoder");
    pipeline.set_state(gst::State::Playing).expect("play");
    let bus = pipeline.bus().expect("bus");
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(20),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    assert!(
        matches!(msg.map(|m| m.type_()), Some(gst::MessageType::Eos)),
        "encoding finished"
    );
    pipeline.set_state(gst::State::Null).expect("stop");
    let stop = Arc::new(AtomicBool::new(false));
    // A queue of 2 and a file source: the reader must wait for the consumer, never drop.
    let h = stream::spawn(
        "gate",
        Modality::Thermal,
        spec(Input::File { path: file }, PixelFormat::Gray16),
        2,
        Backoff::default(),
        None,
        stop,
    )
    .expect("spawn");
    let counters = Arc::clone(&h.counters);
    std::thread::sleep(Duration::from_millis(300));
    let frames = collect(h);
    assert_eq!(frames.len(), 30);
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!((f.width, f.height, f.format), (160, 120, PixelFormat::Gray16));
        assert_eq!(f.stride, 320, "16-bit grey rows");
        assert_eq!(f.buffer.size(), 160 * 120 * 2);
        let want = i as u64 * 1_000_000_000 / 15;
        assert!(
            f.pts_ns.is_some_and(|p| p.abs_diff(want) < 1_000_000),
            "frame {i}: pts {:?}, want {want}",
            f.pts_ns
        );
    }
}

#[test]
fn errors_name_their_camera_and_cause() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad_element = dir.path().join("bad.pipeline");
    std::fs::write(&bad_element, "videotestsrc num-buffers=5 ! nosuchfilter ! ${output}\n").expect("write");
    let bad_uri = dir.path().join("uri.pipeline");
    std::fs::write(&bad_uri, "uridecodebin uri=${uri} ! ${output}\n").expect("write");
    let cases = [
        (
            "lobby",
            Input::File {
                path: dir.path().join("missing.mp4"),
            },
            "no such file",
        ),
        (
            "dock",
            Input::Template {
                template: bad_element,
                params: Default::default(),
            },
            "nosuchfilter",
        ),
        (
            "roof",
            Input::Template {
                template: bad_uri,
                params: [("uri".to_owned(), "bogus://nowhere".into())].into(),
            },
            "bogus",
        ),
    ];
    for (camera, input, cause) in cases {
        let stop = Arc::new(AtomicBool::new(false));
        let h = stream::spawn(
            camera,
            Modality::Visible,
            spec(input, PixelFormat::Rgb),
            4,
            Backoff::default(),
            None,
            stop,
        )
        .expect("spawn");
        let counters = Arc::clone(&h.counters);
        let frames = collect(h);
        assert!(frames.is_empty());
        let err = counters.last_error.lock().expect("lock").clone().unwrap_or_default();
        assert!(
            err.contains(&format!("camera {camera} (visible)")) && err.to_lowercase().contains(cause),
            "{camera}: {err}"
        );
    }
}

/// An RTSP server on 127.0.0.1 serving a live test pattern as JPEG over RTP, on its own main loop.
struct Server {
    main_loop: gst::glib::MainLoop,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(port: u16) -> Self {
        let ctx = gst::glib::MainContext::new();
        let server = RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service(&port.to_string());
        let factory = RTSPMediaFactory::new();
        // rtpjpegpay takes 4:2:0 JPEG only.
        factory.set_launch(
            "( videotestsrc is-live=true ! video/x-raw,format=I420,width=160,height=120,framerate=20/1 ! jpegenc ! rtpjpegpay name=pay0 pt=96 )",
        );
        factory.set_protocols(gstreamer_rtsp::RTSPLowerTrans::TCP);
        factory.set_shared(true);
        server.mount_points().expect("mounts").add_factory("/cam", factory);
        let source = server.attach(Some(&ctx)).expect("attach");
        let main_loop = gst::glib::MainLoop::new(Some(&ctx), false);
        let ml = main_loop.clone();
        let thread = std::thread::spawn(move || {
            ctx.with_thread_default(|| ml.run()).expect("context");
            // Stopped: close the listening socket and every client session.
            if let Some(s) = ctx.find_source_by_id(&source) {
                s.destroy();
            }
            server.client_filter(Some(&mut |_, _| RTSPFilterResult::Remove));
            while ctx.iteration(false) {}
        });
        Self {
            main_loop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread");
        }
    }
}

fn wait_until(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn rtsp_camera_resumes_after_a_server_restart_while_the_other_camera_carries_on() {
    gst::init().expect("gstreamer");
    let port = free_port();
    let server = Server::start(port);
    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("rtsp://viewer:s3cret@127.0.0.1:{port}/cam");
    let site = SiteConfig::from_bytes(
        Path::new("site.toml"),
        format!(
            "[[cameras]]\nname = \"door\"\n[cameras.visible]\nkind = \"rtsp\"\nuri = \"{url}\"\ntransport = \"tcp\"\nlatency_ms = 50\n\
             [cameras.thermal]\nkind = \"test\"\n[detector]\nkind = \"hog\"\n[model]\nbackbone = \"tinyresnet\"\nweights = \"w\"\n"
        )
        .as_bytes(),
    )
    .expect("site");
    let cam = &site.cameras[0];
    assert!(matches!(
        &cam.visible.input,
        Input::Rtsp {
            transport: RtspTransport::Tcp,
            ..
        }
    ));
    assert!(
        !format!("{:?}", cam.visible).contains("s3cret"),
        "the password never shows in logs"
    );
    let backoff = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(1),
    };
    let rtsp = stream::spawn(
        "door",
        Modality::Visible,
        cam.visible.clone(),
        4,
        backoff,
        None,
        Arc::clone(&stop),
    )
    .expect("spawn");
    let other = stream::spawn(
        "yard",
        Modality::Thermal,
        cam.thermal.clone(),
        4,
        backoff,
        None,
        Arc::clone(&stop),
    )
    .expect("spawn");
    // Consume both as a pipeline would, counting arrivals.
    let (n_rtsp, n_other) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let consumers: Vec<_> = [
        (rtsp.frames.clone(), Arc::clone(&n_rtsp)),
        (other.frames.clone(), Arc::clone(&n_other)),
    ]
    .into_iter()
    .map(|(rx, n)| {
        std::thread::spawn(move || {
            for _ in rx.iter() {
                n.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    })
    .collect();
    wait_until("RTSP frames", Duration::from_secs(20), || {
        n_rtsp.load(Ordering::Relaxed) >= 20
    });
    server.stop();
    std::thread::sleep(Duration::from_millis(1500));
    let during_outage = n_rtsp.load(Ordering::Relaxed);
    let other_before = n_other.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        n_rtsp.load(Ordering::Relaxed) <= during_outage + 2,
        "no frames while the server is down"
    );
    assert!(
        n_other.load(Ordering::Relaxed) > other_before,
        "the other camera never stops"
    );
    let server = Server::start(port);
    wait_until("frames after the restart", Duration::from_secs(30), || {
        n_rtsp.load(Ordering::Relaxed) >= during_outage + 20
    });
    assert!(rtsp.counters.reconnects.load(Ordering::Relaxed) >= 1);
    stop.store(true, Ordering::Relaxed);
    let counters = Arc::clone(&rtsp.counters);
    drop(rtsp.frames);
    drop(other.frames);
    rtsp.thread.join().expect("rtsp thread");
    other.thread.join().expect("other thread");
    for c in consumers {
        c.join().expect("consumer");
    }
    server.stop();
    let last = counters.last_error.lock().expect("lock").clone().unwrap_or_default();
    assert!(!last.contains("s3cret"), "{last}");
}
