//! Training throughput: images/s of one full LbA step (ResNet-50, 288×144, CMAlign at layer3 and
//! layer4, all four loss terms, SGD) next to the same step in PyTorch eager
//! (benches/reference/train_step.py) on the same device in the same invocation, with the ratio.
//! On CUDA also in mixed precision (`schedule.amp`: bfloat16 autocast where native, else float16
//! with loss scaling) against PyTorch's `torch.autocast` (+ `GradScaler` for float16).
//!
//!     cargo bench --bench train_speed        # REID_BENCH_STEPS (default 3); P=4, K=2 (16 images)
//!                                            # on the CPU, the paper's P=8, K=4 (64) on CUDA

mod common;

use reid_pipe::base::{Backbone, Modality, PyRandom};
use reid_pipe::config::train::AmpDtype;
use reid_pipe::config::train::{DenseTripletWeighting, Loss, Stage};
use reid_pipe::model::{LbaNet, ModelSpec};
use reid_pipe::train::amp::Precision;
use reid_pipe::train::sgd::{Group, Sgd};
use reid_pipe::train::step;
use std::path::Path;
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const SIZE: (i64, i64) = (288, 144);

fn main() {
    reid_pipe::runtime::tune_allocator();
    let steps: usize = std::env::var("REID_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let device = Device::cuda_if_available();
    // The paper's batch (P=8, K=4) on CUDA; a smaller one on the CPU.
    let (p, k): (usize, usize) = if device.is_cuda() { (8, 4) } else { (4, 2) };
    println!(
        "device {device:?}, libtorch threads {}, P={p} K={k} ({} images a step), {steps} steps",
        tch::get_num_threads(),
        2 * p * k
    );
    let modes: &[bool] = if device.is_cuda() { &[false, true] } else { &[false] };
    let mut float32 = None;
    for &amp in modes {
        let precision = Precision::new(amp, AmpDtype::Auto, device).expect("precision");
        let name = precision.name();
        let theirs = reference(device, (p, k), steps, name);
        let ours = rate(device, (p, k), steps, precision);
        let vs_float32 = float32.map_or(String::new(), |f: f64| format!(", {:.2}x reid-pipe float32", ours / f));
        float32.get_or_insert(ours);
        match theirs {
            Some(theirs) => println!(
                "{name}: reid-pipe {ours:.2} images/s, PyTorch eager {theirs:.2} images/s, ratio {:.2}{vs_float32}",
                ours / theirs
            ),
            None => println!("{name}: reid-pipe {ours:.2} images/s{vs_float32}"),
        }
    }
}

/// PyTorch's images/s for the same step in `precision` ("float32", "bfloat16", "float16").
fn reference(device: Device, (p, k): (usize, usize), steps: usize, precision: &str) -> Option<f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/reference/train_step.py");
    let out = common::python()
        .arg(script)
        .args([p, k].map(|v| v.to_string()))
        .args([SIZE.0, SIZE.1].map(|v| v.to_string()))
        .arg(steps.to_string())
        .arg(if device.is_cuda() { "cuda" } else { "cpu" })
        .arg(precision)
        .output();
    match out {
        Ok(out) if out.status.success() => serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v["images_per_s"].as_f64()),
        Ok(out) => {
            eprintln!("the PyTorch reference failed: {}", String::from_utf8_lossy(&out.stderr));
            None
        }
        Err(e) => {
            eprintln!("the PyTorch reference cannot run (set REID_TORCH_PYTHON): {e}");
            None
        }
    }
}

/// reid-pipe's images/s over `steps` steps after one warm-up step.
fn rate(device: Device, (p, k): (usize, usize), steps: usize, mut precision: Precision) -> f64 {
    tch::manual_seed(0);
    let vs = VarStore::new(device);
    let net = LbaNet::new(&vs.root(), ModelSpec::new(Backbone::Resnet50, 395, SIZE));
    reid_pipe::model::vars_channels_last(&vs);
    let mut sgd = Sgd::new(&vs.variables(), 0.9, true, 5e-4);
    let loss = Loss {
        id_weight: 1.0,
        triplet_weight: 1.0,
        triplet_margin: 0.3,
        id_consistency_weight: 1.0,
        dense_triplet_weight: 0.5,
        dense_triplet_margin: 0.3,
        dense_triplet_weighting: DenseTripletWeighting::Code,
        cmalign_temperature: 50.0,
        cmalign_stages: vec![Stage::Layer3, Stage::Layer4],
    };
    let labels: Vec<i64> = (0..2 * p * k).map(|i| ((i % (p * k)) / k) as i64).collect();
    let labels = Tensor::from_slice(&labels).to_device(device);
    let mut rng = PyRandom::new(0);
    let mut one_step = || {
        let n = (p * k) as i64;
        let xv = reid_pipe::model::channels_last(&Tensor::randn([n, 3, SIZE.0, SIZE.1], (Kind::Float, device)));
        let xt = reid_pipe::model::channels_last(&Tensor::randn([n, 3, SIZE.0, SIZE.1], (Kind::Float, device)));
        let out = precision
            .forward(|| {
                step::forward(
                    &net,
                    &xv,
                    &xt,
                    (Modality::Visible, Modality::Thermal),
                    &labels,
                    &loss,
                    (p, k),
                    &mut rng,
                )
            })
            .expect("forward");
        // The trainer reads every loss term each step (its non-finite guard); so does this.
        for (_, v) in &out.terms {
            let _ = v.double_value(&[]);
        }
        precision
            .backward_and_step(&out.total, &mut sgd, |g| if g == Group::Backbone { 0.01 } else { 0.1 })
            .expect("step");
    };
    one_step();
    reid_pipe::runtime::synchronize(device);
    let start = Instant::now();
    for _ in 0..steps {
        one_step();
    }
    reid_pipe::runtime::synchronize(device);
    (steps * 2 * p * k) as f64 / start.elapsed().as_secs_f64()
}
