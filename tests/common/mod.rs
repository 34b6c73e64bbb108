//! Helpers the integration tests share: the built binary, repository paths, the reference Python.
#![allow(dead_code)] // each test binary uses its own subset

use reid_pipe::config::site::{Input, SourceSpec};

use reid_pipe::base::{Modality, PixelFormat};
use reid_pipe::ingest::{Frame, SourcePipeline};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// The real pedestrian video Debian's `opencv-doc` installs (768×576, 795 frames).
pub const VTEST: &str = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";

/// The `reid-pipe` binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_reid-pipe"))
}

/// A path inside the repository.
pub fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Stdout and stderr of a command that must have succeeded.
pub fn ok(out: Output) -> String {
    let text = text(&out);
    assert!(out.status.success(), "exit {:?}: {text}", out.status.code());
    text
}

/// Stdout and stderr of a command that must have failed cleanly (exit 1 or 2: no panic, no
/// abort).
pub fn fails(out: Output) -> String {
    let text = text(&out);
    assert!(
        matches!(out.status.code(), Some(1 | 2)) && !text.contains("panicked"),
        "expected a clean failure, got exit {:?}: {text}",
        out.status.code()
    );
    text
}

/// Stdout and stderr of a command, together.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The Python interpreter with the reference torch, torchvision and Pillow: `REID_TORCH_PYTHON`,
/// else the venv `scripts/setup.sh` makes.
pub fn python() -> Command {
    Command::new(std::env::var_os("REID_TORCH_PYTHON").unwrap_or_else(|| "/opt/reid-torch/bin/python".into()))
}

/// A TCP port free on 127.0.0.1 at the time of the call.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free ports on 127.0.0.1: all held open together while they are chosen, so none
/// is handed out twice.
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    held.iter().map(|l| l.local_addr().expect("addr").port()).collect()
}

/// Runs a script of `tests/reference/` with arguments; panics with its stderr on failure.
pub fn reference<S: AsRef<std::ffi::OsStr>>(script: &str, args: impl IntoIterator<Item = S>) {
    let out = python()
        .arg(repo(&format!("tests/reference/{script}")))
        .args(args)
        .output()
        .expect("the reference Python runs");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The first `n` frames of vtest.avi, RGB.
pub fn vtest_frames(n: usize) -> Vec<Frame> {
    let spec = SourceSpec {
        input: Input::File { path: VTEST.into() },
        size: None,
        fps: None,
        format: PixelFormat::Rgb,
        looping: false,
    };
    let source = SourcePipeline::build("vtest", Modality::Visible, &spec, 4, false).expect("pipeline");
    source.start().expect("start");
    let mut frames = Vec::new();
    while frames.len() < n {
        match source.pull(Duration::from_secs(10)).expect("pull") {
            Some(f) => frames.push(f),
            None => break,
        }
    }
    assert_eq!(frames.len(), n, "vtest.avi has at least {n} frames");
    frames
}

/// Writes a generated camera-pair clip of `people` walkers under `dir/clip`.
pub fn clip(dir: &Path, people: usize, seed: u64) -> PathBuf {
    let root = dir.join("clip");
    ok(bin()
        .args([
            "synth",
            "--format",
            "scene",
            "--identities",
            &people.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
        ])
        .arg(&root)
        .output()
        .expect("synth"));
    root
}

/// A site file playing `clip` (thermal frames from `thermal_location` if given) with the motion
/// detector, `model` as the body of its `[model]` table; `extra` is appended.
pub fn scene_site(dir: &Path, clip: &Path, thermal_location: Option<&str>, model: &str, extra: &str) -> PathBuf {
    let template = repo("pipelines/images.pipeline");
    let thermal = thermal_location.map_or_else(|| format!("{}/thermal/%05d.png", clip.display()), str::to_owned);
    let text = format!(
        r#"[runtime]
device = "cpu"
batch_size = 16
[[cameras]]
name = "gate"
pairing_tolerance_ms = 20
[cameras.visible]
kind = "template"
template = "{template}"
params = {{ location = "{clip}/visible/%05d.png", caps = "image/png,framerate=10/1" }}
[cameras.thermal]
kind = "template"
template = "{template}"
params = {{ location = "{thermal}", caps = "image/png,framerate=10/1" }}
format = "gray8"
[detector]
kind = "motion"
min_box = [16, 40]
[thermal_detector]
min_area = 300
[model]
{model}
[index]
same_modality_threshold = 0.04
cross_modality_threshold = 0.08
snapshot_dir = "{dir}/index"
{extra}"#,
        template = template.display(),
        clip = clip.display(),
        dir = dir.display(),
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, text).expect("site");
    path
}

/// True boxes of a generated clip: (frame, modality) → [(pid, [x, y, w, h])].
pub type Truth = std::collections::HashMap<(i64, String), Vec<(i64, [f64; 4])>>;

/// Reads a generated clip's `truth.jsonl`.
pub fn scene_truth(clip: &Path) -> Truth {
    let mut out = Truth::new();
    for line in std::fs::read_to_string(clip.join("truth.jsonl"))
        .expect("truth")
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let b: Vec<f64> = v["box"]
            .as_array()
            .expect("box")
            .iter()
            .map(|x| x.as_f64().expect("f64"))
            .collect();
        out.entry((
            v["frame"].as_i64().expect("frame"),
            v["modality"].as_str().expect("m").to_owned(),
        ))
        .or_default()
        .push((v["pid"].as_i64().expect("pid"), [b[0], b[1], b[2], b[3]]));
    }
    out
}

/// Intersection over union of two [x, y, w, h] boxes.
pub fn box_iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let ix = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let iy = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    if ix <= 0.0 || iy <= 0.0 {
        return 0.0;
    }
    ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)
}

/// A mosquitto broker on 127.0.0.1:`port` with a persistent store in `dir`.
pub fn broker(dir: &Path, port: u16) -> std::process::Child {
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n",
            dir.display()
        ),
    )
    .expect("conf");
    let child = std::process::Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mosquitto (scripts/setup.sh installs it)");
    wait_for_port(port);
    child
}

/// Waits (up to five seconds) until something listens on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nothing listens on {port}");
}

/// Stops a process with SIGTERM (mosquitto then writes its persistent store) and waits for it.
pub fn terminate(mut child: std::process::Child) {
    let _ = std::process::Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}

/// Every file under `dir`, as paths relative to it (`/`-separated), sorted.
pub fn files_under(dir: &Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                folders.push(path);
            } else {
                let relative = path.strip_prefix(dir).expect("under the folder");
                out.insert(relative.to_str().expect("utf-8 path").to_owned());
            }
        }
    }
    out
}

/// A NATS server, stopped (SIGTERM) when dropped, so that a failing test leaves none behind.
pub struct NatsServer(Option<std::process::Child>);

impl NatsServer {
    /// Stops it now.
    pub fn stop(mut self) {
        if let Some(c) = self.0.take() {
            terminate(c);
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            terminate(c);
        }
    }
}

/// A NATS server with JetStream on 127.0.0.1:`port`, its store in `dir`; `cluster`: this server's
/// route port and the other servers' route ports, for a cluster named `reid`.
pub fn nats_server(dir: &Path, port: u16, cluster: Option<(u16, &[u16])>) -> NatsServer {
    let mut cmd = std::process::Command::new("nats-server");
    cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
        .arg("-sd")
        .arg(dir)
        .args(["--server_name", &format!("s{port}")]);
    if let Some((route_port, others)) = cluster {
        let routes: Vec<String> = others.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect();
        cmd.args([
            "--cluster_name",
            "reid",
            "--cluster",
            &format!("nats://127.0.0.1:{route_port}"),
        ])
        .args(["--routes", &routes.join(",")]);
    }
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server (scripts/setup.sh installs it)");
    wait_for_port(port);
    NatsServer(Some(child))
}

/// Frames per second of `synth --format scene` recordings.
pub const SCENE_FPS: f64 = 10.0;

/// The person whose true box overlaps `b` most (IoU > 0.3) in `frame`.
pub fn person_at(truth: &Truth, frame: i64, modality: &str, b: &[f64; 4]) -> Option<i64> {
    truth
        .get(&(frame, modality.to_owned()))?
        .iter()
        .map(|(p, t)| (box_iou(t, b), *p))
        .filter(|(o, _)| *o > 0.3)
        .max_by(|x, y| x.0.total_cmp(&y.0))
        .map(|(_, p)| p)
}

/// The most frequent of `votes`: (value, its count, all votes).
pub fn majority(votes: impl IntoIterator<Item = i64>) -> Option<(i64, usize, usize)> {
    let mut count: std::collections::BTreeMap<i64, usize> = std::collections::BTreeMap::new();
    let mut n = 0;
    for v in votes {
        *count.entry(v).or_default() += 1;
        n += 1;
    }
    count.into_iter().max_by_key(|(_, c)| *c).map(|(p, c)| (p, c, n))
}

/// A JSON `[x, y, w, h]`.
pub fn boxed(v: &serde_json::Value) -> [f64; 4] {
    let b: Vec<f64> = v
        .as_array()
        .expect("box")
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    [b[0], b[1], b[2], b[3]]
}

/// The true person of most crops of each pseudo-identity of the harvest in `harvest`.
pub fn true_people(harvest: &Path, truth: &Truth) -> std::collections::BTreeMap<i64, i64> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(harvest.join("manifest.json")).expect("manifest"))
            .expect("manifest json");
    let mut out = std::collections::BTreeMap::new();
    for id in manifest["identities"].as_array().expect("identities") {
        let votes = id["crops"].as_array().expect("crops").iter().filter_map(|c| {
            let frame = (c["pts_s"].as_f64().expect("pts") * SCENE_FPS).round() as i64;
            person_at(
                truth,
                frame,
                c["modality"].as_str().expect("modality"),
                &boxed(&c["box"]),
            )
        });
        if let Some((person, _, _)) = majority(votes) {
            out.insert(id["pid"].as_i64().expect("pid"), person);
        }
    }
    out
}

/// A copy (hard links) of the harvest's held-out part with the crops of every pseudo-identity
/// and modality renamed to the true person of most of them (a wrong fusion thus keeps each
/// side's own person): the SYSU layout `eval` reads, with true labels.
pub fn relabel_held_out(harvest: &Path, truth: &Truth, out: &Path) -> usize {
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out.join("exp")).expect("mkdir");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(harvest.join("manifest.json")).expect("manifest"))
            .expect("manifest json");
    let mut people = std::collections::BTreeMap::<i64, std::collections::BTreeSet<&str>>::new();
    for id in manifest["identities"].as_array().expect("identities") {
        if id["split"] != "test" {
            continue;
        }
        for modality in ["visible", "thermal"] {
            let crops: Vec<&serde_json::Value> = id["crops"]
                .as_array()
                .expect("crops")
                .iter()
                .filter(|c| c["modality"] == modality)
                .collect();
            let votes = crops.iter().filter_map(|c| {
                let frame = (c["pts_s"].as_f64().expect("pts") * SCENE_FPS).round() as i64;
                person_at(truth, frame, modality, &boxed(&c["box"]))
            });
            let Some((person, _, _)) = majority(votes) else {
                continue;
            };
            people.entry(person).or_default().insert(modality);
            for c in crops {
                let file = c["file"].as_str().expect("file");
                let (cam, rest) = file.split_once('/').expect("cam/pid/file");
                let dir = out.join(cam).join(format!("{person:04}"));
                std::fs::create_dir_all(&dir).expect("mkdir");
                std::fs::hard_link(harvest.join(file), dir.join(rest.replace('/', "-"))).expect("link");
            }
        }
    }
    // Queries need a gallery: people seen in one modality only are left out.
    let both: Vec<String> = people
        .iter()
        .filter(|(_, m)| m.len() == 2)
        .map(|(p, _)| p.to_string())
        .collect();
    std::fs::write(out.join("exp/test_id.txt"), both.join(",") + "\n").expect("ids");
    std::fs::write(out.join("exp/train_id.txt"), "\n").expect("ids");
    std::fs::write(out.join("exp/val_id.txt"), "\n").expect("ids");
    both.len()
}

/// Rank-1 and mAP (means over the protocol's draws) of `weights` on a SYSU-MM01 set at `root`
/// (thermal queries, visible gallery), crops resized to `input` (height, width); `eval` writes
/// to `out`.
pub fn retrieval(root: &Path, weights: &Path, out: &Path, input: [u32; 2]) -> (f64, f64) {
    ok(bin()
        .args([
            "eval",
            "--dataset",
            "sysu",
            "--device",
            "cpu",
            "--overwrite",
            "--input-size",
        ])
        .args(input.map(|n| n.to_string()))
        .arg("--root")
        .arg(root)
        .arg("--checkpoint")
        .arg(weights)
        .arg("--out")
        .arg(out)
        .output()
        .expect("eval"));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary")).expect("summary json");
    let mean = |metric: &str| summary["overall"][metric]["mean"].as_f64().expect("score");
    (mean("rank1"), mean("map"))
}
