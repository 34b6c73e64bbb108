//! Frames per second of every detector on 768×576 frames (vtest.avi; the thermal detector on the
//! same frames in grey), single-threaded and through the worker pool with 2 workers. The motion
//! detector's background is per worker and stream: on the pool each worker's learns from every
//! other frame.
//!
//!     cargo bench --bench detect_speed          # REID_BENCH_SECONDS (default 5) per measurement

use reid_pipe::config::site::{Detector, DetectorKind, Input, SourceSpec, ThermalDetector};

use reid_pipe::base::{Image, Modality, PixelFormat};
use reid_pipe::detect::pool::{DetectPool, DetectorFactory, Job};
use reid_pipe::detect::{self, StreamDetector};
use reid_pipe::ingest::{Frame, SourcePipeline};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const VTEST: &str = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";

fn frames(format: PixelFormat, n: usize) -> Vec<Frame> {
    let spec = SourceSpec {
        input: Input::File { path: VTEST.into() },
        size: None,
        fps: None,
        format,
        looping: false,
    };
    let modality = if format == PixelFormat::Rgb {
        Modality::Visible
    } else {
        Modality::Thermal
    };
    let source = SourcePipeline::build("bench", modality, &spec, 4, false).expect("source");
    source.start().expect("start");
    (0..n)
        .map_while(|_| source.pull(Duration::from_secs(10)).expect("frame"))
        .collect()
}

fn visible(kind: DetectorKind) -> Detector {
    let model = (kind == DetectorKind::Ssd)
        .then(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models/weights/ssdlite_person.pb"));
    Detector::with_defaults(kind, model)
}

fn single(d: &mut StreamDetector, frames: &[Frame], seconds: f64) -> f64 {
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed().as_secs_f64() < seconds {
        let f = &frames[n % frames.len()];
        let map = f.buffer.map_readable().expect("map");
        let image = Image::new(map.as_slice(), f.width, f.height, f.stride, f.format).expect("image");
        d.run(&image).expect("detect");
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn pooled(factory: DetectorFactory, frames: &[Frame], seconds: f64) -> f64 {
    let mut pool = DetectPool::new(2, 8, factory);
    let results = pool.take_results().expect("results");
    let counter = std::thread::spawn(move || results.iter().count());
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed().as_secs_f64() < seconds {
        let frame = frames[n % frames.len()].clone();
        if pool
            .submit(Job {
                stream: reid_pipe::base::StreamId::new(0, reid_pipe::base::Modality::Visible),
                frame,
                tag: (),
            })
            .is_err()
        {
            break;
        }
        n += 1;
    }
    pool.close();
    drop(pool);
    let done = counter.join().expect("counter");
    done as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let seconds: f64 = std::env::var("REID_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let rgb = frames(PixelFormat::Rgb, 50);
    let grey = frames(PixelFormat::Gray8, 50);
    println!(
        "detector   frames/s (1 thread)   frames/s (pool of 2)   on {}x{}",
        rgb[0].width, rgb[0].height
    );
    for kind in [
        DetectorKind::Ssd,
        DetectorKind::Hog,
        DetectorKind::Haar,
        DetectorKind::Motion,
    ] {
        let cfg = visible(kind);
        let mut d = detect::visible(&cfg).expect("detector");
        let one = single(&mut d, &rgb, seconds);
        let factory: DetectorFactory = Arc::new(move |_| detect::visible(&cfg));
        let two = pooled(factory, &rgb, seconds);
        println!("{:<10} {one:>10.1} {two:>22.1}", format!("{kind:?}").to_lowercase());
    }
    let thermal = ThermalDetector::default();
    let mut d = detect::thermal(&thermal, None);
    let one = single(&mut d, &grey, seconds);
    let factory: DetectorFactory = Arc::new(move |_| Ok(detect::thermal(&thermal, None)));
    let two = pooled(factory, &grey, seconds);
    println!("{:<10} {one:>10.1} {two:>22.1}", "thermal");
}
