//! End-to-end throughput of `reid-pipe run` on generated camera-pair clips (6 people crossing a
//! 480×360 visible and thermal view, played as fast as possible) with 1, 2 and 4 camera pairs,
//! next to the embedder alone on the same crops in the same process: crops/s and their ratio,
//! frame-to-event latency (p50/p99 as histogram bucket bounds; also with the clip played in real
//! time, as a live camera delivers it) and resident memory.
//!
//!     cargo bench --bench live_speed
//!     REID_BENCH_SOAK_S=3600 cargo bench --bench live_speed  # also: a soak of 4 pairs in real time
//!
//! The soak (`REID_BENCH_SOAK_PAIRS`, default 4) loops the clip on every pair in real time and
//! prints RSS every minute, the drops by stage and reason, and the identity stage's latency.
//!
//! Last, the 1-pair run again with the operator's page served and 50 HTTP clients polling it
//! (page, API, frames, `/metrics`) without pause: frames/s against the run without clients.

use reid_pipe::base::{Backbone, Crop, Modality};
use reid_pipe::config::SiteConfig;
use reid_pipe::config::site::Model;
use reid_pipe::live::{self, RunOptions};
use reid_pipe::model::embedder::from_site_model;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

fn site(dir: &Path, clip: &Path, pairs: usize, looping: bool, realtime: bool) -> SiteConfig {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let template = dir.join("clip.pipeline");
    std::fs::write(
        &template,
        format!(
            "multifilesrc location=${{location}} index=0 loop={looping} caps=${{caps}} ! pngdec ! {} videoconvert ! ${{output}}\n",
            if realtime { "identity sync=true !" } else { "" }
        ),
    )
    .expect("template");
    let mut text =
        String::from("[runtime]\ndevice = \"auto\"\nbatch_size = 16\nqueue_capacity = 8\ndetector_workers = 1\n");
    for i in 0..pairs {
        for (m, f) in [("visible", "rgb"), ("thermal", "gray8")] {
            if m == "visible" {
                text += &format!("[[cameras]]\nname = \"pair{i}\"\npairing_tolerance_ms = 20\n");
            }
            text += &format!(
                "[cameras.{m}]\nkind = \"template\"\ntemplate = \"{}\"\nformat = \"{f}\"\n\
                 params = {{ location = \"{}/{m}/%05d.png\", caps = \"image/png,framerate=10/1\" }}\n",
                template.display(),
                clip.display()
            );
        }
    }
    text += &format!(
        "[detector]\nkind = \"motion\"\nmin_box = [16, 40]\n[thermal_detector]\nmin_area = 300\n\
         [model]\nbackbone = \"mobilenetv2\"\nweights = \"{}\"\ninput_size = [256, 128]\n\
         [index]\nsame_modality_threshold = 0.04\ncross_modality_threshold = 0.08\nsnapshot_dir = \"{}/index\"\n\
         [outputs]\nevents = \"{}/events.jsonl\"\n",
        repo.join("models/weights/mobilenetv2_imagenet.safetensors").display(),
        dir.display(),
        dir.display()
    );
    SiteConfig::from_bytes(&dir.join("site.toml"), text.as_bytes()).expect("site")
}

/// Crops/s of the embedder alone on batches of 16 crops of the clip's people (same sizes).
fn embedder_alone(clip: &Path, seconds: f64) -> f64 {
    use opencv::prelude::*;
    let model = Model {
        backbone: Some(Backbone::Mobilenetv2),
        weights: Path::new(env!("CARGO_MANIFEST_DIR")).join("models/weights/mobilenetv2_imagenet.safetensors"),
        input_size: Some((256, 128)),
        half: None,
        preprocess: Default::default(),
        centre: None,
    };
    let embedder = from_site_model(&model, tch::Device::cuda_if_available()).expect("model");
    let img =
        opencv::imgcodecs::imread(clip.join("visible/00060.png"), opencv::imgcodecs::IMREAD_COLOR).expect("frame");
    let px = img.data_bytes().expect("bytes").to_vec();
    let stride = img.cols() as usize * 3;
    let crops: Vec<Crop<'_>> = (0..16)
        .map(|i| Crop {
            pixels: &px[(60 + i) * stride + (20 * i) * 3..],
            width: 50,
            height: 140,
            stride,
            channels: 3,
            modality: Modality::Visible,
        })
        .collect();
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed().as_secs_f64() < seconds {
        let _ = embedder.embed(&crops).expect("embed");
        n += crops.len();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = dir.path().join("clip");
    reid_pipe::synth::scene::write_clips(&clip, 6, 1, 120, 11).expect("clip");
    let rss_start = rss_mb();
    let alone = embedder_alone(&clip, 10.0);
    println!("embedder alone (MobileNetV2 256x128, batch 16): {alone:.1} crops/s");
    println!("pairs   frames   crops   seconds   crops/s   ratio   p50 ms   p99 ms   RSS MB");
    let mut one_pair_fps = f64::NAN;
    for pairs in [1, 2, 4] {
        let run_dir = dir.path().join(format!("run{pairs}"));
        std::fs::create_dir_all(&run_dir).expect("dir");
        let cfg = site(&run_dir, &clip, pairs, false, false);
        let stop = Arc::new(AtomicBool::new(false));
        let s = live::run(&cfg, &RunOptions::default(), &stop).expect("run");
        let m = &s.metrics;
        let crops = m.total("reid_crops_embedded_total");
        let secs = s.elapsed.as_secs_f64();
        let lat = m.latency("reid_frame_to_event_seconds", &[]);
        let ms = |q: f64| lat.quantile(q).map_or(f64::NAN, |v| v * 1000.0);
        if pairs == 1 {
            one_pair_fps = m.total("reid_frames_processed_total") as f64 / secs;
        }
        println!(
            "{pairs:>5} {:>8} {crops:>7} {secs:>9.1} {:>9.1} {:>7.2} {:>8.0} {:>8.0} {:>8.0}",
            m.total("reid_frames_processed_total"),
            crops as f64 / secs,
            crops as f64 / secs / alone,
            ms(0.5),
            ms(0.99),
            rss_mb()
        );
    }
    println!("RSS at start {rss_start:.0} MB (before the model loads)");
    // Latency of a live camera: the clip played in real time (10 frames/s per source).
    let run_dir = dir.path().join("realtime");
    std::fs::create_dir_all(&run_dir).expect("dir");
    let cfg = site(&run_dir, &clip, 1, false, true);
    let s = live::run(&cfg, &RunOptions::default(), &Arc::new(AtomicBool::new(false))).expect("run");
    let lat = s.metrics.latency("reid_frame_to_event_seconds", &[]);
    let ms = |q: f64| lat.quantile(q).map_or(f64::NAN, |v| v * 1000.0);
    println!(
        "real time, 1 pair: frame-to-event p50 ≤ {:.0} ms, p99 ≤ {:.0} ms ({} events)",
        ms(0.5),
        ms(0.99),
        lat.count()
    );
    http_load(&dir.path().join("http"), &clip, one_pair_fps);
    let soak: f64 = std::env::var("REID_BENCH_SOAK_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    if soak > 0.0 {
        let run_dir = dir.path().join("soak");
        std::fs::create_dir_all(&run_dir).expect("dir");
        let pairs: usize = std::env::var("REID_BENCH_SOAK_PAIRS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(4);
        let cfg = site(&run_dir, &clip, pairs, true, true);
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        let sampler = std::thread::spawn(move || {
            let start = Instant::now();
            let mut samples = Vec::new();
            while start.elapsed().as_secs_f64() < soak {
                std::thread::sleep(std::time::Duration::from_secs(60).min(std::time::Duration::from_secs_f64(soak)));
                samples.push((start.elapsed().as_secs(), rss_mb()));
            }
            s2.store(true, std::sync::atomic::Ordering::Relaxed);
            samples
        });
        let s = live::run(&cfg, &RunOptions::default(), &stop).expect("soak");
        let samples = sampler.join().expect("sampler");
        println!(
            "soak {soak:.0} s, {pairs} pairs in real time: {} frames in, {} crops, {} identities; RSS MB every minute: {}",
            s.metrics.total("reid_frames_in_total"),
            s.metrics.total("reid_crops_embedded_total"),
            s.identities,
            samples
                .iter()
                .map(|(t, r)| format!("{t}s {r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let text = s.metrics.render();
        let drops: Vec<&str> = text.lines().filter(|l| l.starts_with("reid_dropped_total{")).collect();
        println!("drops by stage and reason:\n  {}", drops.join("\n  "));
        let identity = s.metrics.latency("reid_stage_seconds", &[("stage", "identity")]);
        let q = |p: f64| identity.quantile(p).map_or(f64::NAN, |v| v * 1e3);
        println!(
            "identity stage per message: p50 <= {:.0} ms, p99 <= {:.0} ms (bucket bounds), {} messages",
            q(0.5),
            q(0.99),
            identity.count()
        );
    }
}

/// The 1-pair run with the page served on a free port and 50 clients polling it until it ends.
fn http_load(run_dir: &Path, clip: &Path, without_clients_fps: f64) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    std::fs::create_dir_all(run_dir).expect("dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut cfg = site(run_dir, clip, 1, false, false);
    cfg.outputs.http_listen = Some(([127, 0, 0, 1], port).into());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let paths = [
        "/",
        "/api/stats",
        "/api/identities",
        "/api/events",
        "/metrics",
        "/api/cameras/pair0/latest.jpg",
    ];
    let clients: Vec<_> = (0..50)
        .map(|i| {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut times = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        continue;
                    };
                    let path = paths[i % paths.len()];
                    let _ = write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                    let mut body = Vec::new();
                    if c.read_to_end(&mut body).is_ok() && body.starts_with(b"HTTP/1.1 ") {
                        times.push(started.elapsed().as_secs_f64());
                    }
                }
                times
            })
        })
        .collect();
    let s = live::run(&cfg, &RunOptions::default(), &stop).expect("run");
    done.store(true, Ordering::Relaxed);
    let mut times: Vec<f64> = clients.into_iter().flat_map(|c| c.join().expect("client")).collect();
    times.sort_by(f64::total_cmp);
    let fps = s.metrics.total("reid_frames_processed_total") as f64 / s.elapsed.as_secs_f64();
    println!(
        "1 pair with 50 HTTP clients polling: {fps:.1} frames/s vs {without_clients_fps:.1} without ({:.2}×); \
         {} requests answered, p50 {:.1} ms, p99 {:.1} ms",
        fps / without_clients_fps,
        times.len(),
        times.get(times.len() / 2).map_or(f64::NAN, |t| t * 1e3),
        times.get(times.len() * 99 / 100).map_or(f64::NAN, |t| t * 1e3),
    );
}
