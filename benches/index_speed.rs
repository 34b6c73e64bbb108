//! Identity-index speed: reid-pipe's HNSW (hnsw_rs over int8-quantised vectors, SIMD distances,
//! exact f32 re-ranking), hnsw_rs's own
//! `DistDot`, exact search (libtorch) and hnswlib (Python, `benches/reference/hnswlib_bench.py`)
//! on the same vectors in the same invocation: build time, queries/s (2 threads), recall@1/@10
//! against exact search, at several ef. Clustered data (500 centres) and random unit vectors.
//!
//!     cargo bench --bench index_speed            # REID_BENCH_N (default 10000), dim 2048
//! hnswlib comes from PyPI: `$REID_TORCH_PYTHON -m pip install hnswlib==0.8.0` (the bench installs it
//! when missing).

mod common;

use hnsw_rs::anndists::dist::DistDot;
use hnsw_rs::hnsw::Hnsw;
use reid_pipe::index::backend::{Backend, ExactBackend, HnswBackend, HnswParams};
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

const DIM: usize = 2048;
const QUERIES: usize = 1000;
const EFS: [usize; 4] = [16, 32, 64, 128];

fn unit_rows(x: &Tensor) -> Vec<Vec<f32>> {
    let x = reid_pipe::base::normalize_rows(x).expect("normalise");
    (0..x.size()[0])
        .map(|i| Vec::<f32>::try_from(x.get(i)).expect("row"))
        .collect()
}

fn write_f32(path: &Path, rows: &[Vec<f32>]) {
    let bytes: Vec<u8> = rows.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).expect("write vectors");
}

/// Runs `search` over the queries on 2 threads; returns (queries/s, results).
fn parallel<F: Fn(&[f32]) -> Vec<usize> + Sync>(queries: &[Vec<f32>], search: F) -> (f64, Vec<Vec<usize>>) {
    let start = Instant::now();
    let halves: Vec<Vec<Vec<usize>>> = std::thread::scope(|s| {
        let mid = queries.len() / 2;
        let parts = [&queries[..mid], &queries[mid..]];
        let handles: Vec<_> = parts
            .iter()
            .map(|part| s.spawn(|| part.iter().map(|q| search(q)).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().map(|h| h.join().expect("search thread")).collect()
    });
    (
        queries.len() as f64 / start.elapsed().as_secs_f64(),
        halves.into_iter().flatten().collect(),
    )
}

fn recall(got: &[Vec<usize>], truth: &[Vec<usize>]) -> (f64, f64) {
    let n = got.len() as f64;
    let r1 = got.iter().zip(truth).filter(|(g, t)| g.first() == t.first()).count() as f64 / n;
    let r10 = got
        .iter()
        .zip(truth)
        .map(|(g, t)| g.iter().take(10).filter(|i| t.contains(i)).count() as f64 / 10.0)
        .sum::<f64>()
        / n;
    (r1, r10)
}

fn main() {
    reid_pipe::runtime::tune_allocator();
    let n: usize = std::env::var("REID_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let have_hnswlib = common::python()
        .args(["-c", "import hnswlib"])
        .status()
        .is_ok_and(|s| s.success())
        || common::python()
            .args(["-m", "pip", "install", "-q", "hnswlib==0.8.0"])
            .status()
            .is_ok_and(|s| s.success());
    println!("n={n}, dim={DIM}, {QUERIES} queries, M=16, ef_construction=200, 2 threads");
    let dir = tempfile::tempdir().expect("tempdir");
    for kind in ["clustered", "random"] {
        tch::manual_seed(0);
        let data_t = if kind == "clustered" {
            let centres = Tensor::randn([500, DIM as i64], (Kind::Float, Device::Cpu));
            let pick = Tensor::randint(500, [n as i64], (Kind::Int64, Device::Cpu));
            centres.index_select(0, &pick) + Tensor::randn([n as i64, DIM as i64], (Kind::Float, Device::Cpu)) * 0.5
        } else {
            Tensor::randn([n as i64, DIM as i64], (Kind::Float, Device::Cpu))
        };
        let data = unit_rows(&data_t);
        let queries = if kind == "clustered" {
            // New sightings: data points plus noise.
            let pick = Tensor::randint(n as i64, [QUERIES as i64], (Kind::Int64, Device::Cpu));
            unit_rows(
                &(data_t.index_select(0, &pick)
                    + Tensor::randn([QUERIES as i64, DIM as i64], (Kind::Float, Device::Cpu)) * 0.3),
            )
        } else {
            unit_rows(&Tensor::randn([QUERIES as i64, DIM as i64], (Kind::Float, Device::Cpu)))
        };
        let points: Vec<(&[f32], usize)> = data.iter().enumerate().map(|(i, v)| (v.as_slice(), i)).collect();
        // Ground truth: one matrix product and top-10.
        let q_t = Tensor::stack(&queries.iter().map(|q| Tensor::from_slice(q)).collect::<Vec<_>>(), 0);
        let d_t = Tensor::stack(&data.iter().map(|v| Tensor::from_slice(v)).collect::<Vec<_>>(), 0);
        let (_, top) = q_t.matmul(&d_t.transpose(0, 1)).topk(10, 1, true, true);
        let truth: Vec<Vec<usize>> = (0..QUERIES as i64)
            .map(|i| {
                Vec::<i64>::try_from(top.get(i))
                    .expect("row")
                    .into_iter()
                    .map(|x| x as usize)
                    .collect()
            })
            .collect();
        // The exact backend answering one query at a time (libtorch uses both cores inside).
        let mut exact = ExactBackend::new(DIM, Device::Cpu);
        exact.insert(&points);
        let start = Instant::now();
        let got: Vec<Vec<usize>> = queries
            .iter()
            .map(|q| exact.search(q, 10, &|_| true).into_iter().map(|(i, _)| i).collect())
            .collect();
        let exact_qps = QUERIES as f64 / start.elapsed().as_secs_f64();
        assert!(
            recall(&got, &truth).1 > 0.999,
            "exact search agrees with the ground truth"
        );
        println!(
            "\n### {kind}\n\n| engine | build s | ef | queries/s | recall@1 | recall@10 |\n|---|---|---|---|---|---|"
        );
        println!("| exact (libtorch) | - | - | {exact_qps:.0} | 1.000 | 1.000 |");
        let start = Instant::now();
        let mut ours = HnswBackend::new(
            n,
            HnswParams {
                max_connections: 16,
                ef_construction: 200,
                ef_search: 16,
            },
        );
        ours.insert(&points);
        let ours_build = start.elapsed().as_secs_f64();
        for ef in EFS {
            ours.set_ef(ef);
            let (qps, got) = parallel(&queries, |q| {
                ours.search(q, 10, &|_| true).into_iter().map(|(i, _)| i).collect()
            });
            let (r1, r10) = recall(&got, &truth);
            println!("| reid-pipe (int8 HNSW, f32 re-rank) | {ours_build:.1} | {ef} | {qps:.0} | {r1:.3} | {r10:.3} |");
        }
        let start = Instant::now();
        let dot: Hnsw<'static, f32, DistDot> = Hnsw::new(16, n, 16, 200, DistDot);
        dot.parallel_insert_slice(&points);
        let dot_build = start.elapsed().as_secs_f64();
        for ef in EFS {
            let (qps, got) = parallel(&queries, |q| {
                dot.search(q, 10, ef).into_iter().map(|n| n.d_id).collect()
            });
            let (r1, r10) = recall(&got, &truth);
            println!("| hnsw_rs DistDot | {dot_build:.1} | {ef} | {qps:.0} | {r1:.3} | {r10:.3} |");
        }
        if have_hnswlib {
            let (dp, qp) = (dir.path().join("data.f32"), dir.path().join("queries.f32"));
            write_f32(&dp, &data);
            write_f32(&qp, &queries);
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/reference/hnswlib_bench.py");
            let efs: Vec<String> = EFS.iter().map(usize::to_string).collect();
            let out = common::python()
                .arg(script)
                .arg(&dp)
                .arg(&qp)
                .arg(DIM.to_string())
                .arg(efs.join(","))
                .output()
                .expect("python");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
            let build = v["build_s"].as_f64().unwrap_or(0.0);
            for ef in EFS {
                let e = &v["ef"][ef.to_string()];
                println!(
                    "| hnswlib 0.8 | {build:.1} | {ef} | {:.0} | {:.3} | {:.3} |",
                    e["qps"].as_f64().unwrap_or(0.0),
                    e["recall1"].as_f64().unwrap_or(0.0),
                    e["recall10"].as_f64().unwrap_or(0.0)
                );
            }
            println!("\nbuild time ratio (hnswlib / reid-pipe): {:.2}", build / ours_build);
        }
    }
}
