//! `reid-pipe run` end to end on a generated camera-pair clip: people cross a visible and a
//! thermal view; the events must give each person one identity across both modalities.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_reid-pipe"))
}

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn ok(out: Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "exit {:?}: {text}", out.status.code());
    text
}

/// Writes a clip of `people` walkers under `dir/clip`.
fn clip(dir: &Path, people: usize, seed: u64) -> PathBuf {
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

/// A site file for the clip; `extra` is appended (more sections or overrides).
fn site(dir: &Path, clip: &Path, thermal_location: Option<&str>, extra: &str) -> PathBuf {
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
backbone = "mobilenetv2"
weights = "{weights}"
input_size = [256, 128]
[index]
same_modality_threshold = 0.04
cross_modality_threshold = 0.08
snapshot_dir = "{dir}/index"
{extra}"#,
        template = template.display(),
        clip = clip.display(),
        weights = repo("models/weights/mobilenetv2_imagenet.safetensors").display(),
        dir = dir.display(),
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, text).expect("site");
    path
}

fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("events file")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// True boxes: (frame, modality) → [(pid, [x, y, w, h])].
type Truth = HashMap<(i64, String), Vec<(i64, [f64; 4])>>;

fn truth(clip: &Path) -> Truth {
    let mut out: HashMap<_, Vec<_>> = HashMap::new();
    for line in std::fs::read_to_string(clip.join("truth.jsonl"))
        .expect("truth")
        .lines()
    {
        let v: Value = serde_json::from_str(line).expect("json");
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

fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let ix = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let iy = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    if ix <= 0.0 || iy <= 0.0 {
        return 0.0;
    }
    ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)
}

/// How the run's identities relate to the true people.
struct Scored {
    /// People whose visible and thermal tracks all ended with one identity shared by no one else.
    consistent: usize,
    people: usize,
    report: String,
}

fn score(events: &[Value], truth: &Truth) -> Scored {
    // Each track is one person: the person its boxes overlap most.
    let mut votes: BTreeMap<(String, u64), BTreeMap<i64, usize>> = BTreeMap::new();
    let mut final_identity: BTreeMap<(String, u64), Option<u64>> = BTreeMap::new();
    for e in events {
        let key = (
            e["modality"].as_str().expect("modality").to_owned(),
            e["track_id"].as_u64().expect("id"),
        );
        if let (Some(b), Some(t)) = (e["box"].as_array(), e["stream_time_s"].as_f64()) {
            let b = [0, 1, 2, 3].map(|i| b[i].as_f64().expect("f64"));
            let frame = (t * 10.0).round() as i64;
            if let Some((pid, _)) = truth
                .get(&(frame, key.0.clone()))
                .into_iter()
                .flatten()
                .map(|(pid, g)| (pid, iou(&b, g)))
                .filter(|(_, v)| *v >= 0.3)
                .max_by(|a, b| a.1.total_cmp(&b.1))
            {
                *votes.entry(key.clone()).or_default().entry(*pid).or_default() += 1;
            }
        }
        if e["type"] == "end" {
            final_identity.insert(key, e["identity"].as_u64());
        }
    }
    let mut per_person: BTreeMap<i64, Vec<(String, Option<u64>)>> = BTreeMap::new();
    for (key, v) in &votes {
        let pid = *v.iter().max_by_key(|(_, n)| **n).expect("votes").0;
        per_person
            .entry(pid)
            .or_default()
            .push((key.0.clone(), final_identity.get(key).copied().flatten()));
    }
    let mut owners: HashMap<u64, std::collections::HashSet<i64>> = HashMap::new();
    for (pid, tracks) in &per_person {
        for (_, id) in tracks {
            if let Some(id) = id {
                owners.entry(*id).or_default().insert(*pid);
            }
        }
    }
    let mut consistent = 0;
    let mut report = String::new();
    for (pid, tracks) in &per_person {
        let ids: std::collections::BTreeSet<_> = tracks.iter().map(|t| t.1).collect();
        let both = tracks.iter().any(|t| t.0 == "visible") && tracks.iter().any(|t| t.0 == "thermal");
        let single = ids.len() == 1
            && ids
                .iter()
                .next()
                .copied()
                .flatten()
                .is_some_and(|id| owners[&id].len() == 1);
        if both && single {
            consistent += 1;
        }
        report += &format!("person {pid}: {tracks:?}\n");
    }
    Scored {
        consistent,
        people: per_person.len(),
        report,
    }
}

/// Runs the binary on a clip with an events file (and `extra` outputs); returns the events and
/// the run's output.
fn run_clip(dir: &Path, clip: &Path, extra: &str) -> (Vec<Value>, String) {
    let events_path = dir.join("out/events.jsonl");
    let cfg = site(
        dir,
        clip,
        None,
        &format!("[outputs]\nevents = \"{}\"\n{extra}", events_path.display()),
    );
    let text = ok(bin().args(["--log", "warn", "run"]).arg(&cfg).output().expect("run"));
    (events(&events_path), text)
}

#[test]
fn people_keep_one_identity_across_modalities() {
    let (mut consistent, mut people) = (0, 0);
    for seed in [3, 4, 5] {
        let dir = tempfile::tempdir().expect("tempdir");
        let clip = clip(dir.path(), 4, seed);
        let video = dir.path().join("out/annotated.mkv");
        let (ev, text) = run_clip(dir.path(), &clip, &format!("video = \"{}\"\n", video.display()));
        let scored = score(&ev, &truth(&clip));
        println!(
            "clip {seed}:\n{}{}/{} people consistent",
            scored.report, scored.consistent, scored.people
        );
        assert!(
            text.contains("120 frames processed") || text.contains("240 frames processed"),
            "{text}"
        );
        assert!(
            std::fs::read_dir(dir.path().join("index")).expect("index dir").count() >= 1,
            "snapshot written"
        );
        assert!(std::fs::metadata(&video).expect("video").len() > 10_000);
        assert_eq!(scored.people, 4, "every person was tracked");
        lifecycle(&ev);
        consistent += scored.consistent;
        people += scored.people;
    }
    let rate = consistent as f64 / people as f64;
    println!(
        "{consistent}/{people} people ({:.0}%) kept one identity across both modalities",
        rate * 100.0
    );
    assert!(rate > 0.5, "{consistent}/{people}");
}

/// Per track: one `new` first, `end` last and once, updates in between; the identity of an
/// update is the one the end reports unless a later update changed it.
fn lifecycle(events: &[Value]) {
    let mut seen: BTreeMap<(String, u64), Vec<&Value>> = BTreeMap::new();
    for e in events {
        seen.entry((
            e["modality"].as_str().expect("m").to_owned(),
            e["track_id"].as_u64().expect("id"),
        ))
        .or_default()
        .push(e);
    }
    assert!(!seen.is_empty());
    for (key, list) in seen {
        assert_eq!(list[0]["type"], "new", "{key:?} starts with new");
        assert_eq!(list.last().expect("last")["type"], "end", "{key:?} ends with end");
        assert_eq!(list.iter().filter(|e| e["type"] == "end").count(), 1, "{key:?}");
        let last_update = list.iter().rev().find(|e| e["type"] == "update");
        if let Some(u) = last_update {
            assert_eq!(u["identity"], list.last().expect("end")["identity"], "{key:?}");
        }
    }
}
