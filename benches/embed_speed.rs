//! Embedder throughput: crops/s of reid-pipe's ResNet-50 and MobileNetV2 (288×144 input, last
//! stride 1, GeM, L2) at batch 1, 8 and 32, next to the same networks in PyTorch eager at its best
//! settings (benches/reference/embed_eager.py, run in the same invocation), with the ratio.
//!
//!     cargo bench --bench embed_speed            # REID_BENCH_SECONDS=3 per configuration by default

use reid_pipe::config::site::Backbone;
use reid_pipe::ingest::Modality;
use reid_pipe::model::{LbaNet, ModelSpec};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const SIZE: (i64, i64) = (288, 144);
const BATCHES: [i64; 3] = [1, 8, 32];

/// Best of two timed rounds (the machine is shared and noisy).
fn rate(net: &LbaNet, x: &Tensor, seconds: f64) -> f64 {
    (0..2).map(|_| round(net, x, seconds / 2.0)).fold(0.0, f64::max)
}

fn round(net: &LbaNet, x: &Tensor, seconds: f64) -> f64 {
    tch::no_grad(|| {
        for _ in 0..2 {
            let _ = net.embed(x, Modality::Visible);
        }
        let (mut n, start) = (0, Instant::now());
        while start.elapsed().as_secs_f64() < seconds {
            let _ = net.embed(x, Modality::Visible);
            n += 1;
        }
        f64::from(n) * x.size()[0] as f64 / start.elapsed().as_secs_f64()
    })
}

fn main() {
    // As the reid-pipe binary does at start-up.
    reid_pipe::runtime::tune_allocator();
    let seconds: f64 = std::env::var("REID_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let device = Device::cuda_if_available();
    println!(
        "device {device:?}, libtorch threads {}, {seconds} s per configuration",
        tch::get_num_threads()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/reference/embed_eager.py");
    let mut args = vec![
        script.display().to_string(),
        SIZE.0.to_string(),
        SIZE.1.to_string(),
        seconds.to_string(),
    ];
    args.extend(BATCHES.iter().map(i64::to_string));
    let mut reference: HashMap<(String, i64), (f64, String)> = HashMap::new();
    if device == Device::Cpu {
        let out = Command::new("/opt/reid-torch/bin/python")
            .args(&args)
            .output()
            .expect("the torch venv runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            let key = (
                v["backbone"].as_str().unwrap_or("").to_owned(),
                v["batch"].as_i64().unwrap_or(0),
            );
            reference.insert(
                key,
                (
                    v["crops_per_s"].as_f64().unwrap_or(0.0),
                    v["setting"].as_str().unwrap_or("").to_owned(),
                ),
            );
        }
    }
    println!("| backbone | batch | reid-pipe crops/s | PyTorch eager crops/s (setting) | ratio |");
    println!("|---|---|---|---|---|");
    for (backbone, name) in [(Backbone::Resnet50, "resnet50"), (Backbone::Mobilenetv2, "mobilenetv2")] {
        let vs = VarStore::new(device);
        let net = LbaNet::new(&vs.root(), ModelSpec::new(backbone, 0, SIZE));
        reid_pipe::model::vars_channels_last(&vs);
        for b in BATCHES {
            let x = reid_pipe::model::channels_last(&Tensor::randn([b, 3, SIZE.0, SIZE.1], (Kind::Float, device)));
            let ours = rate(&net, &x, seconds);
            match reference.get(&(name.to_owned(), b)) {
                Some((theirs, setting)) => {
                    println!(
                        "| {name} | {b} | {ours:.1} | {theirs:.1} ({setting}) | {:.2} |",
                        ours / theirs
                    )
                }
                None => println!("| {name} | {b} | {ours:.1} | - | - |"),
            }
        }
    }
}
