//! Decode throughput of a source pair (visible RGB and thermal GRAY8 from the same file,
//! vtest.avi by default) through reid-pipe's sources into consumers, next to `gst-launch-1.0`
//! running the same two pipelines into `fakesink` in parallel, in the same invocation.
//!
//!     cargo bench --bench ingest_speed           # REID_BENCH_VIDEO=/path/to/video to change

use reid_pipe::config::site::{Input, SourceSpec};

use reid_pipe::base::{Modality, PixelFormat};
use reid_pipe::ingest::stream::{self, Backoff};
use reid_pipe::ingest::template;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

fn main() {
    let video = std::env::var("REID_BENCH_VIDEO")
        .unwrap_or_else(|_| "/usr/share/doc/opencv-doc/examples/data/vtest.avi".to_owned());
    let specs = [
        (Modality::Visible, PixelFormat::Rgb),
        (Modality::Thermal, PixelFormat::Gray8),
    ]
    .map(|(m, format)| {
        (
            m,
            SourceSpec {
                input: Input::File {
                    path: video.clone().into(),
                },
                size: None,
                fps: None,
                format,
                looping: false,
            },
        )
    });
    let rounds = 3;
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..rounds {
        // reid-pipe: both sources on their threads, consumed as the pipeline consumes them.
        let start = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = specs
            .iter()
            .map(|(m, s)| {
                stream::spawn("bench", *m, s.clone(), 8, Backoff::default(), None, Arc::clone(&stop)).expect("spawn")
            })
            .collect();
        // One consumer per source, as the pairing stage drains both at once.
        let consumers: Vec<_> = handles
            .into_iter()
            .map(|h| {
                std::thread::spawn(move || {
                    let n = h.frames.iter().count();
                    let _ = h.thread.join();
                    n
                })
            })
            .collect();
        let frames: usize = consumers.into_iter().map(|c| c.join().expect("consumer")).sum();
        ours.push(frames as f64 / start.elapsed().as_secs_f64());
        // gst-launch: the same descriptions into fakesink, both at once.
        let start = Instant::now();
        let children: Vec<_> = specs
            .iter()
            .map(|(_, s)| {
                let desc = template::render(s)
                    .expect("render")
                    .description
                    .replace("appsink name=sink", "fakesink sync=false");
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("gst-launch-1.0 -q {desc}"))
                    .spawn()
                    .expect("gst-launch")
            })
            .collect();
        for mut c in children {
            assert!(c.wait().expect("wait").success());
        }
        theirs.push(frames as f64 / start.elapsed().as_secs_f64());
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!("{video}: source pair (RGB + GRAY8), best of {rounds} rounds");
    println!("| | frames/s |\n|---|---|");
    println!("| reid-pipe sources | {:.0} |", best(&ours));
    println!("| gst-launch-1.0 → fakesink | {:.0} |", best(&theirs));
    println!("| ratio | {:.2} |", best(&ours) / best(&theirs));
}
