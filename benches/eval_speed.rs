//! Evaluation speed: 5,000 queries × 20,000 gallery features of dimension 2048 (Market-style
//! protocol with exclusion), ranked in blocks on CUDA when present, else the CPU (the distance
//! blocks run on the features' device, the per-query bookkeeping on the CPU). Run with
//! `cargo bench --bench eval_speed`.

use reid_pipe::data::Item;
use reid_pipe::eval::metrics::CmcMode;
use reid_pipe::eval::protocols::{Exclusion, Protocol, Trial};
use reid_pipe::eval::{FeatureBank, evaluate};
use std::time::Instant;
use tch::{Kind, Tensor};

fn main() {
    let (nq, ng, dim, ids) = (5_000usize, 20_000usize, 2048i64, 1_000i64);
    tch::manual_seed(0);
    let item = |i: usize, prefix: &str| Item {
        path: format!("{prefix}/{i}"),
        pid: (i as i64 * 7919) % ids,
        cam: (i % 6) as i64,
    };
    let query: Vec<Item> = (0..nq).map(|i| item(i, "q")).collect();
    let gallery: Vec<Item> = (0..ng).map(|i| item(i, "g")).collect();
    let centres = Tensor::randn([ids, dim], (Kind::Float, tch::Device::Cpu));
    let pids: Vec<i64> = query.iter().chain(&gallery).map(|i| i.pid).collect();
    let features = centres.index_select(0, &Tensor::from_slice(&pids))
        + Tensor::randn([(nq + ng) as i64, dim], (Kind::Float, tch::Device::Cpu));
    let paths = query.iter().chain(&gallery).map(|i| i.path.clone()).collect();
    let mut bank = FeatureBank::new("bench".into(), features, paths).expect("bank");
    let device = tch::Device::cuda_if_available();
    bank.features = bank.features.to_device(device);
    let protocol = Protocol {
        name: "bench".to_owned(),
        cmc: CmcMode::Standard,
        exclusion: Exclusion::SameIdSameCam,
        trials: vec![Trial {
            name: "t".to_owned(),
            query,
            gallery,
        }],
    };
    println!("device {device:?}, threads: {}", tch::get_num_threads());
    for block in [256i64, 1024] {
        let start = Instant::now();
        let r = evaluate(&protocol, &bank, block).expect("evaluate");
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{nq} queries x {ng} gallery x {dim}-d, block {block}: {secs:.2} s ({:.0} queries/s), rank-1 {:.2}%, mAP {:.2}%",
            nq as f64 / secs,
            100.0 * r[0].metrics.rank(1),
            100.0 * r[0].metrics.map
        );
    }
}
