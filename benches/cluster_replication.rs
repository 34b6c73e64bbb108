//! The cluster on one NATS server over loopback (`nats-server` with JetStream, started here),
//! against the same index working alone, in the same run:
//! - rates: exemplars one node publishes (stored, acknowledged) and another applies (decoded and
//!   inserted into its HNSW index) per second, beside a single node's own assignments per second;
//! - replication latency: exemplar added at node A → queryable at node B, p50/p99, beside the
//!   single node's assignment latency;
//! - memory: resident memory per identity of an index holding REID_BENCH_CLUSTER_IDENTITIES
//!   identities (one exemplar each) built alone, and built by a new node from the stream (each in
//!   a process of its own, the two at once).
//!
//! Run: `cargo bench --bench cluster_replication`; sizes from `REID_BENCH_CLUSTER_DIM` (2048),
//! `_RATE_N` (20000), `_LATENCY_N` (1000) and `_IDENTITIES` (100000).

#[path = "../tests/common/mod.rs"]
mod test_common;

use reid_pipe::base::Modality;
use reid_pipe::cluster::{Counters, Node};
use reid_pipe::config::site::{Cluster, IndexBackend};
use reid_pipe::index::backend::HnswParams;
use reid_pipe::index::identities::{IdentityIndex, Settings};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn settings(dim: usize) -> Settings {
    Settings {
        dim,
        backend: IndexBackend::Hnsw,
        hnsw: HnswParams::default(),
        same_modality_threshold: 0.2,
        cross_modality_threshold: 0.4,
        max_exemplars: 16,
        expiry_s: 1e12,
        neighbours: 16,
        rebuild_dead_fraction: 0.5,
        also_fraction: 0.8,
        device: tch::Device::Cpu,
    }
}

fn cluster(port: u16, node: &str, outbox: usize) -> Cluster {
    Cluster {
        max_age_s: 86_400.0,
        max_bytes: 4_000_000_000,
        outbox,
        connect_timeout_s: 20.0,
        flush_timeout_s: 60.0,
        ..Cluster::new(vec![format!("nats://127.0.0.1:{port}")], node.to_owned(), 16)
    }
}

/// Random unit vectors, drawn one at a time (a fixed generator: every process draws the same).
fn vectors(n: usize, dim: usize, seed: u64) -> impl Iterator<Item = Vec<f32>> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f32 / (1u64 << 53) as f32 - 0.5
    };
    (0..n).map(move |_| {
        let v: Vec<f32> = (0..dim).map(|_| next()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect()
    })
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Pumps `node` into `index` until `applied` reaches `target`.
fn pump(node: &mut Node, index: &mut IdentityIndex, counters: &Counters, target: u64) {
    let until = Instant::now() + Duration::from_secs(3600);
    while counters.applied.load(Ordering::Relaxed) < target {
        assert!(Instant::now() < until, "replication stalled");
        if let Ok(item) = node.incoming().recv_timeout(Duration::from_millis(100)) {
            node.apply(index, item);
        }
    }
}

/// Child process: builds an index of `n` identities alone or from the stream; prints the
/// resident memory it added.
fn memory_child(mode: &str, port: u16, n: usize, dim: usize) {
    let before = rss_bytes();
    let mut index = IdentityIndex::new(settings(dim)).with_model("bench".into());
    if mode == "single" {
        // Drawn as inserted: the measurement holds the index, not the input.
        for (i, v) in vectors(n, dim, 3).enumerate() {
            index
                .add_replicated(i as u64 + 1, &v, Modality::Visible, "c", now())
                .expect("unit vector");
        }
        println!("RSS {}", rss_bytes() - before);
        return;
    }
    let counters = Counters::default();
    let mut node = Node::start(&cluster(port, "memory", 16), &mut index, "bench", counters.clone()).expect("join");
    pump(&mut node, &mut index, &counters, n as u64);
    println!("RSS {}", rss_bytes() - before);
    node.finish();
}

/// Runs the two memory children at once (each measures only itself) and returns their figures:
/// (alone, from the stream).
fn memory_of_both(port: u16, n: usize, dim: usize) -> (u64, u64) {
    let spawn = |mode: &str| {
        std::process::Command::new(std::env::current_exe().expect("bench binary"))
            .env("REID_BENCH_CLUSTER_CHILD", format!("{mode}:{port}:{n}:{dim}"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("memory child")
    };
    let children = [("single", spawn("single")), ("replicated", spawn("replicated"))];
    let [single, replicated] = children.map(|(mode, child)| {
        let out = child.wait_with_output().expect("memory child");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("RSS "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "memory child ({mode}) failed: {text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    });
    (single, replicated)
}

fn main() {
    if let Ok(spec) = std::env::var("REID_BENCH_CLUSTER_CHILD") {
        let p: Vec<&str> = spec.split(':').collect();
        memory_child(
            p[0],
            p[1].parse().unwrap(),
            p[2].parse().unwrap(),
            p[3].parse().unwrap(),
        );
        return;
    }
    let dim = env("REID_BENCH_CLUSTER_DIM", 2048);
    let rate_n = env("REID_BENCH_CLUSTER_RATE_N", 20_000);
    let latency_n = env("REID_BENCH_CLUSTER_LATENCY_N", 1000);
    let identities = env("REID_BENCH_CLUSTER_IDENTITIES", 100_000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = test_common::free_port();
    let server = test_common::nats_server(&tmp.path().join("nats"), port, None);
    println!("dim {dim}, f16 on the wire, HNSW index, one nats-server on 127.0.0.1 (JetStream, file storage)");

    // A single node's own assignments (query + insert), the figure a node alone reaches.
    let mut alone = IdentityIndex::new(settings(dim)).with_model("bench".into());
    let data: Vec<Vec<f32>> = vectors(rate_n, dim, 1).collect();
    let t = Instant::now();
    for v in &data {
        alone.assign(v, Modality::Visible, "c", now()).expect("unit vector");
    }
    let alone_rate = rate_n as f64 / t.elapsed().as_secs_f64();

    // Rates through the cluster.
    let (a_counters, b_counters) = (Counters::default(), Counters::default());
    let mut a_index = IdentityIndex::new(settings(dim)).with_model("bench".into());
    let a = Node::start(
        &cluster(port, "a", rate_n + latency_n),
        &mut a_index,
        "bench",
        a_counters.clone(),
    )
    .expect("A");
    let mut b_index = IdentityIndex::new(settings(dim)).with_model("bench".into());
    let mut b = Node::start(&cluster(port, "b", 16), &mut b_index, "bench", b_counters.clone()).expect("B");
    let t = Instant::now();
    for (i, v) in data.iter().enumerate() {
        assert!(
            a.added(i as u64 + 1, v, Modality::Visible, "c", now()),
            "A's queue is large enough"
        );
    }
    let queued = t.elapsed().as_secs_f64();
    while a_counters.published.load(Ordering::Relaxed) < rate_n as u64 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let publish_rate = rate_n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    pump(&mut b, &mut b_index, &b_counters, rate_n as u64);
    let apply_rate = rate_n as f64 / t.elapsed().as_secs_f64();

    // Latency: one exemplar at a time, A → queryable at B.
    let probes: Vec<Vec<f32>> = vectors(latency_n, dim, 2).collect();
    let (mut replicated, mut local) = (Vec::new(), Vec::new());
    for (i, v) in probes.iter().enumerate() {
        let t = Instant::now();
        let d = a_index.assign(v, Modality::Visible, "c", now()).expect("unit vector");
        local.push(t.elapsed().as_secs_f64() * 1e3);
        a.added(d.identity, v, Modality::Visible, "c", now());
        pump(&mut b, &mut b_index, &b_counters, (rate_n + i + 1) as u64);
        replicated.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(b_index.identities().contains_key(&d.identity));
    }
    for l in [&mut replicated, &mut local] {
        l.sort_by(f64::total_cmp);
    }
    a.finish();
    b.finish();

    println!("\n| figure | cluster | single node | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| exemplars/s published (A, {rate_n}, stored and acknowledged; queued in {queued:.2} s) | {publish_rate:.0} | {alone_rate:.0} (assignments/s) | {:.2} |",
        publish_rate / alone_rate
    );
    println!(
        "| exemplars/s applied (B: decode + HNSW insert) | {apply_rate:.0} | {alone_rate:.0} (assignments/s) | {:.2} |",
        apply_rate / alone_rate
    );
    println!(
        "| latency p50, ms (added at A → queryable at B; alone: assignment) | {:.2} | {:.2} | {:.1} |",
        percentile(&replicated, 0.5),
        percentile(&local, 0.5),
        percentile(&replicated, 0.5) / percentile(&local, 0.5)
    );
    println!(
        "| latency p99, ms | {:.2} | {:.2} | {:.1} |",
        percentile(&replicated, 0.99),
        percentile(&local, 0.99),
        percentile(&replicated, 0.99) / percentile(&local, 0.99)
    );

    // Memory: a fresh stream holding `identities` exemplars, read by a new node.
    if identities > 0 {
        let mem_port = test_common::free_port();
        let mem_server = test_common::nats_server(&tmp.path().join("nats-memory"), mem_port, None);
        let counters = Counters::default();
        let mut index = IdentityIndex::new(settings(dim)).with_model("bench".into());
        let writer = Node::start(
            &cluster(mem_port, "writer", identities),
            &mut index,
            "bench",
            counters.clone(),
        )
        .expect("writer");
        for (i, v) in vectors(identities, dim, 3).enumerate() {
            writer.added(i as u64 + 1, &v, Modality::Visible, "c", now());
        }
        writer.finish();
        let (single, replicated) = memory_of_both(mem_port, identities, dim);
        println!(
            "| resident memory per identity, bytes ({identities} identities, one exemplar each) | {} | {} | {:.2} |",
            replicated / identities as u64,
            single / identities as u64,
            replicated as f64 / single as f64
        );
        mem_server.stop();
    }
    server.stop();
}
