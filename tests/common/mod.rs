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
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
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
