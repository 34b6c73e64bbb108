//! Embedder throughput, crops/s, on CUDA when present (else the CPU): reid-pipe's ResNet-50 and
//! MobileNetV2 (288×144 input, last stride 1, GeM, L2), random weights, next to the same networks
//! in PyTorch eager at its best settings (benches/reference/embed_eager.py, same device, same
//! invocation), with the ratio. Two measurements:
//! - network: a device-resident batch through the network alone;
//! - end to end: `Embed::embed` on crops of 48–198 × 110–360 pixels (staging, upload, resize and
//!   normalisation, network, download); the PyTorch reference resizes with Pillow per crop, as
//!   the LbA code does. On CUDA also reid-pipe's host way (`model.preprocess = "host"`), and
//!   "e2e-pipelined": a second thread stages batch n+1 while batch n runs, as the live
//!   pipeline's embedding stage does. For each end-to-end row, where a batch's time went.
//!
//! The clock is read after a device synchronisation. On CUDA the bench also prints how far
//! float16 embeddings are from float32 ones (lowest cosine over the crops).
//!
//!     cargo bench --bench embed_speed     # REID_BENCH_SECONDS=3 per configuration by default
//!     REID_TORCH_PYTHON=python3 …          # the reference's interpreter (default: the setup venv)

mod common;

use reid_pipe::config::site::Preprocess;

use reid_pipe::base::{Backbone, Crop, Modality};
use reid_pipe::model::embedder::{Embed, LbaEmbedder, Phases};
use reid_pipe::model::preprocess::Stager;
use reid_pipe::model::{LbaNet, ModelSpec};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const SIZE: (i64, i64) = (288, 144);

/// One measurement: backbone, precision, what is timed, batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Config {
    backbone: Backbone,
    half: bool,
    mode: Mode,
    batch: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Mode {
    Network,
    EndToEnd,
    /// End to end with the crops resized on the host.
    EndToEndHost,
    /// End to end, staging on a second thread.
    Pipelined,
}

impl Config {
    fn names(&self) -> (&'static str, &'static str, &'static str) {
        let backbone = match self.backbone {
            Backbone::Mobilenetv2 => "mobilenetv2",
            _ => "resnet50",
        };
        let kind = if self.half { "float16" } else { "float32" };
        let mode = match self.mode {
            Mode::Network => "network",
            Mode::EndToEnd => "e2e",
            Mode::EndToEndHost => "e2e-host",
            Mode::Pipelined => "e2e-pipelined",
        };
        (backbone, kind, mode)
    }
}

fn configs(cuda: bool) -> Vec<Config> {
    let c = |backbone, half, mode, batch| Config {
        backbone,
        half,
        mode,
        batch,
    };
    use Backbone::{Mobilenetv2 as M, Resnet50 as R};
    use Mode::{EndToEnd as E, EndToEndHost as H, Network as N, Pipelined as P};
    if cuda {
        vec![
            c(R, false, N, 32),
            c(R, false, N, 256),
            c(R, false, E, 128),
            c(R, true, N, 1),
            c(R, true, N, 32),
            c(R, true, N, 128),
            c(R, true, N, 256),
            c(R, true, E, 32),
            c(R, true, E, 128),
            c(R, true, E, 256),
            c(R, true, H, 128),
            c(R, true, P, 128),
            c(R, true, P, 256),
            c(M, true, N, 256),
            c(M, true, E, 256),
        ]
    } else {
        let mut v: Vec<Config> = [R, M]
            .into_iter()
            .flat_map(|b| [1, 8, 32].map(|n| c(b, false, N, n)))
            .collect();
        v.extend([c(R, false, E, 32), c(M, false, E, 32)]);
        v
    }
}

/// Crop i of the bench, RGB: sizes 48–198 × 110–360, pixels from a fixed formula (the same in
/// embed_eager.py).
fn crop_pixels(n: usize) -> Vec<(Vec<u8>, usize, usize)> {
    (0..n)
        .map(|i| {
            let (w, h) = (48 + (i * 37) % 151, 110 + (i * 53) % 251);
            let px = (0..w * h * 3)
                .map(|j| ((j * 7 + j / 97 + i * 13) % 256) as u8)
                .collect();
            (px, w, h)
        })
        .collect()
}

fn crops(pixels: &[(Vec<u8>, usize, usize)]) -> Vec<Crop<'_>> {
    pixels
        .iter()
        .map(|(px, w, h)| Crop {
            pixels: px,
            width: *w,
            height: *h,
            stride: w * 3,
            channels: 3,
            modality: Modality::Visible,
        })
        .collect()
}

/// Phases summed over batches.
#[derive(Default)]
struct Total {
    sum: Phases,
    batches: u32,
}

impl Total {
    fn add(&mut self, p: &Phases) {
        self.sum.prepare += p.prepare;
        self.sum.upload += p.upload;
        self.sum.network += p.network;
        self.sum.download += p.download;
        self.batches += 1;
    }
}

/// Best of two timed rounds of `step` (which handles `batch` crops), synchronised.
fn rate(device: Device, batch: usize, seconds: f64, mut step: impl FnMut()) -> f64 {
    let mut best = 0.0f64;
    for _ in 0..2 {
        for _ in 0..2 {
            step();
        }
        reid_pipe::runtime::synchronize(device);
        let (mut n, start) = (0usize, Instant::now());
        while start.elapsed().as_secs_f64() < seconds / 2.0 {
            step();
            n += 1;
        }
        reid_pipe::runtime::synchronize(device);
        best = best.max((n * batch) as f64 / start.elapsed().as_secs_f64());
    }
    best
}

fn embedder(backbone: Backbone, half: bool, device: Device, preprocess: Preprocess) -> LbaEmbedder {
    tch::manual_seed(0);
    let vs = VarStore::new(device);
    let net = LbaNet::new(&vs.root(), ModelSpec::new(backbone, 0, SIZE));
    LbaEmbedder::new(net, vs, half)
        .expect("embedder")
        .with_preprocess(preprocess)
}

/// The PyTorch eager reference's crops/s per configuration.
fn reference(device: Device, seconds: f64, configs: &[Config]) -> HashMap<Config, (f64, String)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/reference/embed_eager.py");
    let wanted: Vec<&Config> = configs
        .iter()
        .filter(|c| matches!(c.mode, Mode::Network | Mode::EndToEnd))
        .collect();
    let device_name = if device.is_cuda() { "cuda" } else { "cpu" };
    let mut cmd = common::python();
    cmd.arg(script)
        .arg(device_name)
        .args([SIZE.0, SIZE.1].map(|v| v.to_string()))
        .arg(seconds.to_string());
    for c in &wanted {
        let (b, k, m) = c.names();
        cmd.arg(format!("{b}:{k}:{m}:{}", c.batch));
    }
    let out = match cmd.output() {
        Ok(out) if out.status.success() => out,
        Ok(out) => {
            eprintln!("the PyTorch reference failed: {}", String::from_utf8_lossy(&out.stderr));
            return HashMap::new();
        }
        Err(e) => {
            eprintln!("the PyTorch reference cannot run (set REID_TORCH_PYTHON): {e}");
            return HashMap::new();
        }
    };
    let lines = String::from_utf8_lossy(&out.stdout).into_owned();
    wanted
        .into_iter()
        .zip(lines.lines())
        .filter_map(|(c, line)| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            Some((
                *c,
                (
                    v["crops_per_s"].as_f64()?,
                    v["setting"].as_str().unwrap_or("").to_owned(),
                ),
            ))
        })
        .collect()
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
    let configs = configs(device.is_cuda());
    let theirs = reference(device, seconds, &configs);
    let biggest = configs.iter().map(|c| c.batch).max().unwrap_or(1);
    let pixels = crop_pixels(biggest);
    let all_crops = crops(&pixels);
    let mut ours = HashMap::new();
    let mut phases = Vec::new();
    println!("| backbone | precision | what | batch | reid-pipe crops/s | PyTorch eager crops/s (setting) | ratio |");
    println!("|---|---|---|---|---|---|---|");
    for c in &configs {
        let preprocess = if c.mode == Mode::EndToEndHost {
            Preprocess::Host
        } else {
            Preprocess::Auto
        };
        let e = embedder(c.backbone, c.half, device, preprocess);
        let r = match c.mode {
            Mode::Network => {
                let x = reid_pipe::model::channels_last(
                    &Tensor::randn([c.batch as i64, 3, SIZE.0, SIZE.1], (Kind::Float, device)).to_kind(e.kind()),
                );
                rate(device, c.batch, seconds, || {
                    let _ = e.embed_input(&x, Modality::Visible);
                })
            }
            Mode::EndToEnd | Mode::EndToEndHost => {
                let batch = &all_crops[..c.batch];
                let stager = e.stager();
                let mut total = Total::default();
                let r = rate(device, c.batch, seconds, || {
                    let mut p = Phases::default();
                    let _ = e.infer(stager.stage(batch).expect("stage"), &mut p).expect("embed");
                    total.add(&p);
                });
                phases.push((*c, total));
                r
            }
            Mode::Pipelined => {
                let batch = &all_crops[..c.batch];
                let stager = e.stager();
                let (tx, rx) = crossbeam_channel::bounded(1);
                let mut total = Total::default();
                let r = std::thread::scope(|scope| {
                    scope.spawn(move || {
                        while let Ok(staged) = stager.stage(batch) {
                            if tx.send(staged).is_err() {
                                return;
                            }
                        }
                    });
                    let r = rate(device, c.batch, seconds, || {
                        let mut p = Phases::default();
                        let staged = rx.recv().expect("staged");
                        let _ = e.infer(staged, &mut p).expect("embed");
                        total.add(&p);
                    });
                    drop(rx);
                    r
                });
                phases.push((*c, total));
                r
            }
        };
        ours.insert(*c, r);
        let (b, k, m) = c.names();
        match theirs.get(c) {
            Some((t, setting)) => println!(
                "| {b} | {k} | {m} | {} | {r:.1} | {t:.1} ({setting}) | {:.2} |",
                c.batch,
                r / t
            ),
            None => println!("| {b} | {k} | {m} | {} | {r:.1} | - | - |", c.batch),
        }
    }
    println!("\nEnd to end over the network alone (reid-pipe, same run):\n");
    println!("| backbone | precision | what | batch | ratio |\n|---|---|---|---|---|");
    for c in configs.iter().filter(|c| c.mode != Mode::Network) {
        let alone = Config {
            mode: Mode::Network,
            ..*c
        };
        if let (Some(e2e), Some(net)) = (ours.get(c), ours.get(&alone)) {
            let (b, k, m) = c.names();
            println!("| {b} | {k} | {m} | {} | {:.2} |", c.batch, e2e / net);
        }
    }
    println!(
        "\nWhere a batch's time went (ms per batch, mean; prepare runs on the staging thread in e2e-pipelined):\n"
    );
    println!("| backbone | precision | what | batch | prepare | upload + device resize | network | download |");
    println!("|---|---|---|---|---|---|---|---|");
    for (c, t) in &phases {
        let (b, k, m) = c.names();
        let ms = |d: std::time::Duration| 1000.0 * d.as_secs_f64() / t.batches.max(1) as f64;
        println!(
            "| {b} | {k} | {m} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            c.batch,
            ms(t.sum.prepare),
            ms(t.sum.upload),
            ms(t.sum.network),
            ms(t.sum.download)
        );
    }
    if device.is_cuda() {
        let batch = &all_crops[..biggest.min(128)];
        let full = embedder(Backbone::Resnet50, false, device, Preprocess::Auto)
            .embed(batch)
            .expect("float32");
        let half = embedder(Backbone::Resnet50, true, device, Preprocess::Auto)
            .embed(batch)
            .expect("float16");
        let cos = (&full * &half).sum_dim_intlist(1, false, Kind::Float);
        println!(
            "\nResNet-50 float16 vs float32 embeddings of {} crops: lowest cosine {:.6}, mean {:.6}",
            batch.len(),
            cos.min().double_value(&[]),
            cos.mean(Kind::Float).double_value(&[])
        );
        // The tensor way on this device against Pillow's pixels (the host way), in grey levels.
        let norm = reid_pipe::model::ModelSpec::new(Backbone::Resnet50, 0, SIZE).normalisation();
        let input = |way| {
            let staged = Stager::new(SIZE, way, device).stage(batch).expect("stage");
            staged
                .input(&norm, device, Kind::Float)
                .expect("input")
                .to_device(Device::Cpu)
        };
        let std = Tensor::from_slice(&norm.std).to_kind(Kind::Float).view([1, 3, 1, 1]) * 255.0;
        let diff = ((input(Preprocess::Host) - input(Preprocess::Tensor)) * std).abs();
        println!(
            "tensor way on {device:?} vs Pillow: largest difference {:.3} grey levels, {:.4}% of samples off",
            diff.max().double_value(&[]),
            diff.gt(0.01).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]) * 100.0
        );
    }
}
