//! Crop resizing: crops/s of reid-pipe's Pillow-exact antialiased Lanczos
//! (`crates/core/src/resample.rs`, what every path uses) next to Pillow itself
//! (`benches/reference/resize_pil.py`, the reference code's resize, run in the same invocation)
//! and OpenCV's `resize` (INTER_AREA when shrinking, Lanczos-4 when enlarging: the faster, not
//! identical, alternative), on person-sized crops of 48–198 × 110–360 pixels to 288×144, one
//! thread.
//!
//!     cargo bench --bench resize_speed          # REID_BENCH_SECONDS=3 per engine by default

mod common;

use opencv::core::{Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;
use reid_pipe::resample::{self, View};
use std::time::Instant;

const OUT: (usize, usize) = (288, 144);
/// (width, height) of the crops, the spread the live pipeline sees.
const CROPS: [(usize, usize); 8] = [
    (48, 110),
    (64, 150),
    (80, 200),
    (96, 240),
    (120, 280),
    (150, 300),
    (170, 340),
    (198, 360),
];

/// Best of two timed rounds of `f` over all crops, in crops/s.
fn rate(seconds: f64, mut f: impl FnMut(usize)) -> f64 {
    (0..2)
        .map(|_| {
            let (mut n, start) = (0usize, Instant::now());
            while start.elapsed().as_secs_f64() < seconds / 2.0 {
                for i in 0..CROPS.len() {
                    f(i);
                }
                n += CROPS.len();
            }
            n as f64 / start.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

fn main() {
    let seconds: f64 = std::env::var("REID_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    opencv::core::set_num_threads(1).expect("opencv threads");
    let crops: Vec<Vec<u8>> = CROPS
        .iter()
        .enumerate()
        .map(|(i, (w, h))| {
            (0..w * h * 3)
                .map(|k| ((k * 2_654_435_761 + i * 97) >> 7) as u8)
                .collect()
        })
        .collect();
    let mut dst = vec![0u8; OUT.0 * OUT.1 * 3];
    let ours = rate(seconds, |i| {
        let (w, h) = CROPS[i];
        resample::lanczos_rgb(View::packed(&crops[i], w, h, 3), OUT.1, OUT.0, &mut dst);
    });
    let mats: Vec<Mat> = crops
        .iter()
        .zip(CROPS)
        .map(|(c, (_, h))| {
            Mat::new_rows_cols_with_data(h as i32, (c.len() / h) as i32, c)
                .and_then(|m| m.reshape(3, h as i32).and_then(|m| m.try_clone()))
                .expect("mat")
        })
        .collect();
    let mut out = Mat::default();
    let opencv = rate(seconds, |i| {
        let (w, h) = CROPS[i];
        let shrink = w >= OUT.1 && h >= OUT.0;
        let interp = if shrink {
            imgproc::INTER_AREA
        } else {
            imgproc::INTER_LANCZOS4
        };
        let size = Size::new(OUT.1 as i32, OUT.0 as i32);
        imgproc::resize(&mats[i], &mut out, size, 0.0, 0.0, interp).expect("resize");
    });
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/reference/resize_pil.py");
    let output = common::python()
        .arg(script)
        .args([OUT.0.to_string(), OUT.1.to_string(), seconds.to_string()])
        .args(CROPS.iter().map(|(w, h)| format!("{w}x{h}")))
        .output()
        .expect("the reference Python runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let pillow = v["crops_per_s"].as_f64().unwrap_or(f64::NAN);
    println!("| engine | crops/s (one thread) | ratio to Pillow |");
    println!("|---|---|---|");
    println!(
        "| reid-pipe (Pillow-exact Lanczos) | {ours:.0} | {:.2} |",
        ours / pillow
    );
    println!("| Pillow 13 `Image.resize(LANCZOS)` | {pillow:.0} | 1.00 |");
    println!(
        "| OpenCV area / Lanczos-4 (not identical) | {opencv:.0} | {:.2} |",
        opencv / pillow
    );
}
