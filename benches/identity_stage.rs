//! The identity stage's per-batch latency with a large index while snapshots are taken: 10,000
//! identities (two visible and two thermal exemplars each, 1280-d: the embedded default model's
//! dimension, HNSW), batches of 16 assignments, a snapshot every 25 batches. Two ways in the same
//! run: the snapshot encoded and written inside the stage (as before `live::writer`), and a
//! frozen copy handed to the disk writer thread (as `run` does now). Prints the median, p99 and
//! worst batch latency of each and the ratio.
//!
//!     cargo bench --bench identity_stage     # REID_BENCH_IDENTITIES (default 10000)

use reid_pipe::base::Modality;
use reid_pipe::config::site::IndexBackend;
use reid_pipe::index::backend::HnswParams;
use reid_pipe::index::identities::{IdentityIndex, Settings};
use reid_pipe::index::snapshot;
use reid_pipe::live::metrics::Metrics;
use reid_pipe::live::writer::DiskWriter;
use std::time::{Duration, Instant};

const DIM: usize = 1280;
const BATCH: usize = 16;
const BATCHES: usize = 400;
const SNAPSHOT_EVERY: usize = 25;

/// A deterministic pseudo-random unit vector.
fn vector(seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v: Vec<f32> = (0..DIM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.into_iter().map(|a| a / n).collect()
}

fn filled(identities: usize) -> IdentityIndex {
    let mut idx = IdentityIndex::new(Settings {
        dim: DIM,
        backend: IndexBackend::Hnsw,
        hnsw: HnswParams::default(),
        same_modality_threshold: 0.3,
        cross_modality_threshold: 0.5,
        max_exemplars: 16,
        expiry_s: f64::INFINITY,
        neighbours: 16,
        rebuild_dead_fraction: 0.5,
        also_fraction: 0.0,
        device: tch::Device::Cpu,
    });
    for i in 0..identities as u64 {
        // Random 1280-d unit vectors are ~1 apart: every first sighting is a new identity, and
        // its further exemplars join it through `extend`.
        let d = idx.assign(&vector(i * 4), Modality::Visible, "a", 0.0).expect("finite");
        for (k, m) in [(1, Modality::Visible), (2, Modality::Thermal), (3, Modality::Thermal)] {
            idx.extend(d.identity, &vector(i * 4 + k), m, "a", 0.0).expect("finite");
        }
    }
    idx
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Per-batch latencies of `BATCHES` batches, `snapshot` called every `SNAPSHOT_EVERY`.
fn batches(idx: &mut IdentityIndex, mut snapshot: impl FnMut(&IdentityIndex)) -> Vec<Duration> {
    let mut out = Vec::with_capacity(BATCHES);
    for b in 0..BATCHES {
        let started = Instant::now();
        for k in 0..BATCH {
            let seed = 1_000_000_007 + (b * BATCH + k) as u64;
            idx.assign(&vector(seed), Modality::Thermal, "b", b as f64)
                .expect("finite");
        }
        if b % SNAPSHOT_EVERY == SNAPSHOT_EVERY - 1 {
            snapshot(idx);
        }
        out.push(started.elapsed());
    }
    out.sort();
    out
}

fn report(name: &str, l: &[Duration]) -> (f64, f64) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (p50, p99, max) = (ms(percentile(l, 0.5)), ms(percentile(l, 0.99)), ms(l[l.len() - 1]));
    println!(
        "{name:<34} median {p50:8.2} ms   p99 {p99:8.2} ms   worst {max:8.2} ms   p99/median {:5.1}",
        p99 / p50
    );
    (p50, p99)
}

fn main() {
    let n: usize = std::env::var("REID_BENCH_IDENTITIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let mut idx = filled(n);
    println!(
        "{} identities, {} exemplars of {DIM} floats, built in {:.1} s; batches of {BATCH}, a snapshot every {SNAPSHOT_EVERY}",
        idx.identities().len(),
        idx.exemplars().len(),
        started.elapsed().as_secs_f64()
    );
    let inline_dir = dir.path().join("inline");
    std::fs::create_dir_all(&inline_dir).expect("mkdir");
    let inline = batches(&mut idx, |i| {
        snapshot::save(&snapshot::freeze(i), &inline_dir).expect("snapshot");
    });
    let metrics = Metrics::default();
    let writer = DiskWriter::start(&dir.path().join("writer"), &metrics).expect("writer");
    let handed = batches(&mut idx, |i| {
        writer.snapshot(|| snapshot::freeze(i));
    });
    let written = writer.finish(snapshot::freeze(&idx));
    assert!(written.error.is_none(), "{:?}", written.error);
    let (_, p99_inline) = report("snapshot inside the stage (before)", &inline);
    let (_, p99_writer) = report("snapshot on the writer (now)", &handed);
    println!(
        "p99 ratio before/now: {:.1}x; snapshots written by the writer: {}",
        p99_inline / p99_writer,
        metrics.total("reid_snapshots_total")
    );
}
