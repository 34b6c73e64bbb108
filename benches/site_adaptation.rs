//! `reid-pipe adapt` measured against ground truth, on a generated recording where people come
//! back (`synth --format scene`): the held-out part's pseudo-identities are relabelled with the
//! true person of their crops, then
//! - cross-modal retrieval (SYSU all-search single-shot, thermal queries, visible gallery) of the
//!   starting ImageNet weights and of the adapted weights of each seed;
//! - `reid-pipe run` on the held-out frames with each model and its thresholds (the site's for
//!   the starting weights, the report's suggestion for the adapted ones): identities per true
//!   person, purity (the share of all tracks whose person is their identity's majority
//!   person) and the share of the people's tracks that got an identity. Fragmentation trades
//!   against purity through the thresholds, so both models are also run with tighter ones (the
//!   starting weights at 7/8, 3/4 and 1/2 of the site's, the adapted ones at 3/4 of the
//!   suggestion), and the identities per person beyond one compared at equal purity: the
//!   starting weights' figure at the adapted models' mean purity, interpolated between the two
//!   of its runs whose purities bracket it. The camera starts new identities from fused tracks
//!   only (`cameras.new_identities = "fused"`, its views are aligned) unless `_FUSED` is 0.
//!
//!     cargo bench --bench site_adaptation
//!
//! Then the same on vtest.avi with its thermal stand-in, where there is no truth: `adapt` per
//! seed, and `run` on the held-out (later) frames with the starting and the adapted weights:
//! identities per track (the fusion joins a visible and a thermal track; the index joins
//! returning people).
//!
//! Settings (environment): `REID_BENCH_ADAPT_PEOPLE` (30), `_CLIPS` (48), `_EPOCHS` (10),
//! `_SEEDS` (3), `_RUN_FRAMES` (held-out frames `run` plays; 0, the default, plays them all),
//! `_SAMPLER` (`co-occurring` or `identity`), `_GROUP` (1; 0 trains on every pseudo-identity as
//! its own person: `adapt --keep-pseudo-identities`), `_FUSED` (1), `_VTEST` (1; 0 leaves
//! vtest.avi out; its runs keep the default `new_identities = "any"`),
//! `_DIR` (target/bench-adapt). A finished adaptation of the same recording, sampler, grouping,
//! epochs and seed is reused.

#[path = "../tests/common/mod.rs"]
mod test_common;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use test_common::{
    Truth, VTEST, boxed, majority, person_at, relabel_held_out as relabel, retrieval, scene_truth as truth,
};

use test_common::SCENE_FPS as FPS;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(format!("REID_BENCH_ADAPT_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn reid() -> Command {
    Command::new(env!("CARGO_BIN_EXE_reid-pipe"))
}

fn ok(cmd: &mut Command) -> String {
    let o = cmd.output().expect("reid-pipe");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{cmd:?}: {text}");
    text
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `reid-pipe adapt site` into `dir/adapt-<sampler>[-grouped]-e<epochs>-s<seed>` (`-grouped`:
/// pseudo-identities of one person grouped, `adapt`'s default; without, `--keep-pseudo-identities`),
/// unless a finished one is there.
fn adapted(site: &Path, dir: &Path, epochs: u64, seed: u64, sampler: &str) -> PathBuf {
    let grouped = setting("GROUP", 1) != 0;
    let out = dir.join(format!(
        "adapt-{sampler}{}-e{epochs}-s{seed}",
        if grouped { "-grouped" } else { "" }
    ));
    if !out.join("report.json").exists() {
        let _ = std::fs::remove_dir_all(&out);
        let started = std::time::Instant::now();
        let mut cmd = reid();
        cmd.arg("adapt").arg(site).arg("--out").arg(&out).args([
            "--epochs",
            &epochs.to_string(),
            "--seed",
            &seed.to_string(),
            "--sampler",
            sampler,
        ]);
        if !grouped {
            cmd.arg("--keep-pseudo-identities");
        }
        ok(&mut cmd);
        println!("{}: adapted in {:.0} s", out.display(), started.elapsed().as_secs_f64());
    }
    out
}

/// A site playing `clip` from frame `start`, `frames` of it (all with `None`).
fn site_text(clip: &Path, template: &Path, dir: &Path, start: u64, frames: Option<u64>, model: &str) -> String {
    let mut text = String::from(
        "[runtime]\ndevice = \"cpu\"\nbatch_size = 16\n[[cameras]]\nname = \"gate\"\npairing_tolerance_ms = 20\n",
    );
    if setting("FUSED", 1) != 0 {
        text += "new_identities = \"fused\"\n";
    }
    for (m, f) in [("visible", "rgb"), ("thermal", "gray8")] {
        text += &format!(
            "[cameras.{m}]\nkind = \"template\"\ntemplate = \"{}\"\nformat = \"{f}\"\n\
             params = {{ location = \"{}/{m}/%05d.png\", start = \"{start}\", stop = \"{}\", caps = \"image/png,framerate=10/1\" }}\n",
            template.display(),
            clip.display(),
            frames.map_or(-1, |n| (start + n - 1) as i64),
        );
    }
    text += &format!(
        "[detector]\nkind = \"motion\"\nmin_box = [16, 40]\n[thermal_detector]\nmin_area = 300\n\
         [harvest]\nmin_box_height = 40\n{model}\nsnapshot_dir = \"{}/index\"\n[outputs]\nevents = \"{}/events.jsonl\"\nstdout = false\n",
        dir.display(),
        dir.display()
    );
    text
}

/// vtest.avi's frames as PNG files in `dir` (decoded once, marked done), and how many there are.
fn vtest_frames(dir: &Path) -> usize {
    let done = dir.join("DONE");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("mkdir");
        let status = Command::new("gst-launch-1.0")
            .args([
                "-q",
                "filesrc",
                &format!("location={VTEST}"),
                "!",
                "decodebin",
                "!",
                "videoconvert",
                "!",
            ])
            .args(["pngenc", "!", "multifilesink"])
            .arg(format!("location={}/%05d.png", dir.display()))
            .status()
            .expect("gst-launch-1.0");
        assert!(status.success(), "decoding {VTEST}");
        std::fs::write(&done, "").expect("marker");
    }
    std::fs::read_dir(dir).map_or(0, |d| d.count()) - 1
}

/// Each identity's final id after the merges `run`'s events name (`merged_from`).
fn merges(events: &[Value]) -> impl Fn(i64) -> i64 {
    let mut into: HashMap<i64, i64> = HashMap::new();
    for e in events {
        if let (Some(id), Some(from)) = (e["identity"].as_i64(), e["merged_from"].as_array()) {
            for f in from.iter().filter_map(Value::as_i64).filter(|&f| f != id) {
                into.insert(f, id);
            }
        }
    }
    move |mut id| {
        // A merged-into id may be merged again later (a merged-away id never comes back, so
        // there is no cycle; the bound only guards against a malformed file).
        for _ in 0..into.len() {
            match into.get(&id) {
                Some(&next) => id = next,
                None => break,
            }
        }
        id
    }
}

fn read_events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("events")
        .lines()
        .map(|l| serde_json::from_str(l).expect("event"))
        .collect()
}

/// The embedded default site (`config/site.toml`: SSDLite, its thermal detector and stand-in)
/// playing vtest.avi's frames from `start`, with `model` (`[model]` and `[index]`).
fn vtest_site(frames: &Path, dir: &Path, start: usize, model: &str) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = |extra: &str| {
        format!(
            "multifilesrc location={}/%05d.png start-index={start} caps=image/png,framerate=10/1 ! pngdec ! videoconvert ! {extra}${{output}}",
            frames.display()
        )
    };
    let standin = std::fs::read_to_string(repo.join("pipelines/thermal-standin.pipeline")).expect("stand-in");
    let chain = standin
        .lines()
        .find(|l| l.starts_with("filesrc"))
        .and_then(|l| l.split_once("videoconvert ! "))
        .map(|(_, rest)| rest.trim_end_matches("${output}").to_owned())
        .expect("the stand-in's filters");
    std::fs::write(dir.join("visible.pipeline"), source("")).expect("template");
    std::fs::write(dir.join("thermal.pipeline"), source(&chain)).expect("template");
    format!(
        "[runtime]\ndevice = \"cpu\"\nbatch_size = 16\n[[cameras]]\nname = \"vtest\"\npairing_tolerance_ms = 20\n\
         [cameras.visible]\nkind = \"template\"\ntemplate = \"{d}/visible.pipeline\"\n\
         [cameras.thermal]\nkind = \"template\"\ntemplate = \"{d}/thermal.pipeline\"\nformat = \"gray8\"\n\
         [detector]\nkind = \"ssd\"\nmodel = \"{r}/models/weights/ssdlite_person.pb\"\nconfidence = 0.5\nnms_iou = 0.45\n\
         min_box = [24, 48]\ncrop_margin = 0.05\n[thermal_detector]\nsigma = 1.0\nmin_area = 300\naspect = [1.0, 5.0]\n\
         roi = [[0, 40], [768, 40], [768, 470], [0, 470]]\n\
         [tracker]\nmax_age = 30\nmin_hits = 3\niou_threshold = 0.3\nembed_interval_ms = 1000\n\
         {model}\nsnapshot_dir = \"{d}/index\"\n[outputs]\nevents = \"{d}/events.jsonl\"\nstdout = false\n",
        d = dir.display(),
        r = repo.display(),
    )
}

/// Tracks, identities and identities per track of `run`'s events (each track's last identity,
/// after the merges the events name).
fn identities_per_track(events: &Path) -> (usize, usize, f64) {
    let events = read_events(events);
    let canonical = merges(&events);
    let mut last: HashMap<(String, String, u64), i64> = HashMap::new();
    for e in &events {
        if let Some(identity) = e["identity"].as_i64().map(&canonical) {
            let key = (
                e["camera"].as_str().expect("camera").to_owned(),
                e["modality"].as_str().expect("modality").to_owned(),
                e["track_id"].as_u64().expect("track"),
            );
            last.insert(key, identity);
        }
    }
    let identities = last.values().collect::<BTreeSet<_>>().len();
    (last.len(), identities, identities as f64 / last.len().max(1) as f64)
}

/// The vtest.avi part (see the module's notes).
fn vtest(dir: &Path, epochs: u64, seeds: u64, sampler: &str) {
    let dir = dir.join("vtest");
    let frames = dir.join("frames");
    let total = vtest_frames(&frames);
    let start_model = imagenet_model(1.0);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let site = dir.join("site.toml");
    std::fs::write(&site, vtest_site(&frames, &dir, 0, &start_model)).expect("site");
    let mut rows = Vec::new();
    let mut cut = None;
    for seed in 0..seeds.max(1) {
        let out = adapted(&site, &dir, epochs, seed, sampler);
        let report = json(&out.join("report.json"));
        let manifest = json(&out.join("data/manifest.json"));
        cut = Some((manifest["cut_s"].as_f64().expect("cut") * FPS).ceil() as usize);
        rows.push((out, report));
    }
    let cut = cut.expect("a seed");
    let played = |name: &Path, model: &str| {
        let _ = std::fs::remove_dir_all(name);
        std::fs::create_dir_all(name).expect("mkdir");
        let site = name.join("site.toml");
        std::fs::write(&site, vtest_site(&frames, name, cut, model)).expect("site");
        ok(reid().arg("run").arg(&site));
        identities_per_track(&name.join("events.jsonl"))
    };
    println!("\nvtest.avi: {total} frames; held-out part from frame {cut}\n");
    println!("| weights | rank-1 (%) | mAP (%) | tracks | identities | identities per track |");
    println!("|---|---|---|---|---|---|");
    let before = rows[0].1["before"].clone();
    let (tracks, ids, per) = played(&dir.join("run-before"), &start_model);
    println!(
        "| ImageNet start | {:.1} | {:.1} | {tracks} | {ids} | {per:.2} |",
        before["rank1"][0].as_f64().unwrap_or(f64::NAN),
        before["map"][0].as_f64().unwrap_or(f64::NAN)
    );
    let mut per_seed = Vec::new();
    for (seed, (out, report)) in rows.iter().enumerate() {
        let (tracks, ids, per) = played(&out.join("run-held-out"), &adapted_model(report, 1.0));
        let after = &report["after"];
        let (r1, map) = (
            after["rank1"][0].as_f64().unwrap_or(f64::NAN),
            after["map"][0].as_f64().unwrap_or(f64::NAN),
        );
        println!("| adapted, seed {seed} | {r1:.1} | {map:.1} | {tracks} | {ids} | {per:.2} |");
        per_seed.push((r1, map, per));
    }
    let col = |f: &dyn Fn(&(f64, f64, f64)) -> f64| mean_std(&per_seed.iter().map(f).collect::<Vec<_>>());
    let (r1, map, per) = (col(&|r| r.0), col(&|r| r.1), col(&|r| r.2));
    println!(
        "| adapted, mean ± std | {:.1} ± {:.1} | {:.1} ± {:.1} | | | {:.2} ± {:.2} |",
        r1.0, r1.1, map.0, map.1, per.0, per.1
    );
}

/// A track of `run`'s events: camera, modality, track id.
type TrackOf = (String, String, u64);

/// What `run`'s identities did with the true people (see [`identities`]).
#[derive(Clone, Copy)]
struct Live {
    /// Identities per true person.
    fragmentation: f64,
    purity: f64,
    identities: usize,
    /// The share of the people's tracks that got an identity.
    covered: f64,
    /// People with an identified track, of the people seen.
    people: (usize, usize),
}

/// Identities per true person, purity and coverage of `run`'s identities, from its events: each
/// track's last identity (after the merges the events name) and its true person (most of its
/// boxes).
fn identities(events: &Path, truth: &Truth, start: u64) -> Live {
    let events = read_events(events);
    let canonical = merges(&events);
    // Per (camera, modality, track): its last identity, and the people its boxes overlap.
    let mut tracks: HashMap<TrackOf, (Option<i64>, Vec<i64>)> = HashMap::new();
    for e in &events {
        let Some(t) = e["stream_time_s"].as_f64() else {
            continue;
        };
        let identity = e["identity"].as_i64().map(&canonical);
        let modality = e["modality"].as_str().expect("modality").to_owned();
        let key = (
            e["camera"].as_str().expect("camera").to_owned(),
            modality.clone(),
            e["track_id"].as_u64().expect("track"),
        );
        let entry = tracks.entry(key).or_insert((None, Vec::new()));
        entry.0 = identity.or(entry.0);
        let frame = start as i64 + (t * FPS).round() as i64;
        if let Some(p) = person_at(truth, frame, &modality, &boxed(&e["box"])) {
            entry.1.push(p);
        }
    }
    let mut per_person: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    let mut per_identity: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    let mut people_tracks = 0;
    let mut seen = BTreeSet::new();
    for (identity, votes) in tracks.values() {
        if let Some((p, _, _)) = majority(votes.iter().copied()) {
            people_tracks += 1;
            seen.insert(p);
            if let Some(identity) = identity {
                per_person.entry(p).or_default().insert(*identity);
                per_identity.entry(*identity).or_default().push(p);
            }
        }
    }
    let fragmentation = per_person.values().map(|s| s.len() as f64).sum::<f64>() / per_person.len().max(1) as f64;
    let (pure, all) = per_identity.values().fold((0, 0), |(pure, all), ps| {
        let (_, c, n) = majority(ps.iter().copied()).expect("non-empty");
        (pure + c, all + n)
    });
    Live {
        fragmentation,
        purity: pure as f64 / all.max(1) as f64,
        identities: per_identity.len(),
        covered: all as f64 / people_tracks.max(1) as f64,
        people: (per_person.len(), seen.len()),
    }
}

/// `reid-pipe run` on `frames` of the clip from `start` (all with 0), with `model` (the site
/// file's `[model]` and `[index]`): see [`identities`].
fn live(clip: &Path, template: &Path, dir: &Path, start: u64, frames: u64, model: &str, truth: &Truth) -> Live {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("mkdir");
    let site = dir.join("site.toml");
    std::fs::write(
        &site,
        site_text(clip, template, dir, start, Some(frames).filter(|n| *n > 0), model),
    )
    .expect("site");
    ok(reid().arg("run").arg(&site));
    identities(&dir.join("events.jsonl"), truth, start)
}

/// The ImageNet weights the sites start from.
fn imagenet_weights() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/weights/mobilenetv2_imagenet.safetensors")
}

/// A site file's `[model]` and `[index]` for the starting ImageNet weights, at the site's
/// thresholds (0.04 / 0.08) times `scale`.
fn imagenet_model(scale: f64) -> String {
    format!(
        "[model]\nbackbone = \"mobilenetv2\"\nweights = \"{}\"\ninput_size = [128, 64]\n\
         [index]\nsame_modality_threshold = {}\ncross_modality_threshold = {}",
        imagenet_weights().display(),
        0.04 * scale,
        0.08 * scale
    )
}

/// A site file's `[model]` and `[index]` for an adaptation's weights and centre (none from an
/// adaptation older than the centre), at its report's suggested thresholds times `scale`
/// (rounded down to 4 decimals, as `adapt` prints them).
fn adapted_model(report: &Value, scale: f64) -> String {
    let threshold = |k: &str| {
        report[k]["distance"]
            .as_f64()
            .map_or(0.0, |d| (d * scale * 1e4).floor() / 1e4)
    };
    let centre = report["centre"]
        .as_str()
        .map_or(String::new(), |c| format!("centre = \"{c}\"\n"));
    format!(
        "[model]\nbackbone = \"mobilenetv2\"\nweights = \"{}\"\ninput_size = [128, 64]\n{centre}\
         [index]\nsame_modality_threshold = {}\ncross_modality_threshold = {}",
        report["adapted_weights"].as_str().expect("weights"),
        threshold("same_modality_threshold"),
        threshold("cross_modality_threshold")
    )
}

/// What one seed's adapted model measured.
struct Row {
    /// Rank-1 and mAP on the true labels.
    retrieval: (f64, f64),
    /// `run` with the suggested thresholds, and with three quarters of them.
    live: Live,
    tighter: Live,
    /// Rank-1 on the pseudo-identities (adapt's report), before and after.
    pseudo_before: f64,
    pseudo_after: f64,
}

/// Identities per person at `purity` along `curve` (runs of one model, purity rising),
/// interpolated linearly between the two runs whose purities bracket it.
fn at_purity(curve: &[Live], purity: f64) -> Option<f64> {
    curve.windows(2).find_map(|w| {
        let (a, b) = (w[0], w[1]);
        (a.purity <= purity && purity <= b.purity).then(|| {
            let t = if b.purity > a.purity {
                (purity - a.purity) / (b.purity - a.purity)
            } else {
                0.0
            };
            a.fragmentation + t * (b.fragmentation - a.fragmentation)
        })
    })
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64;
    (m, var.sqrt())
}

fn main() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os("REID_BENCH_ADAPT_DIR").map_or_else(|| repo.join("target/bench-adapt"), PathBuf::from);
    let (people, clips) = (setting("PEOPLE", 30), setting("CLIPS", 48));
    let (epochs, seeds, run_frames) = (setting("EPOCHS", 10), setting("SEEDS", 3), setting("RUN_FRAMES", 0));
    let sampler = std::env::var("REID_BENCH_ADAPT_SAMPLER").unwrap_or_else(|_| "co-occurring".into());
    std::fs::create_dir_all(&dir).expect("bench dir");
    let clip = dir.join(format!("clip-{people}x{clips}"));
    if !clip.join("truth.jsonl").exists() {
        ok(reid()
            .args(["synth", "--format", "scene", "--seed", "7"])
            .args([
                "--identities",
                &people.to_string(),
                "--clips",
                &clips.to_string(),
                "--out",
            ])
            .arg(&clip));
    }
    let truth = truth(&clip);
    let template = dir.join("images.pipeline");
    std::fs::write(
        &template,
        "multifilesrc location=${location} start-index=${start} stop-index=${stop} caps=${caps} ! pngdec ! videoconvert ! ${output}\n",
    )
    .expect("template");
    let start_weights = imagenet_weights();
    let site = dir.join("site.toml");
    std::fs::write(&site, site_text(&clip, &template, &dir, 0, None, &imagenet_model(1.0))).expect("site");
    let runs: Vec<PathBuf> = (0..seeds.max(1))
        .map(|seed| adapted(&site, &clip, epochs, seed, &sampler))
        .collect();
    let harvest = runs[0].join("data");
    let manifest = json(&harvest.join("manifest.json"));
    let cut_frame = (manifest["cut_s"].as_f64().expect("cut") * FPS).ceil() as u64;
    let held_out = dir.join("held-out-truth");
    let n_people = relabel(&harvest, &truth, &held_out);
    println!(
        "recording: {people} people, {clips} clips; {} pseudo-identities; held-out part from frame {cut_frame}: {n_people} true people",
        manifest["identities"].as_array().map_or(0, Vec::len)
    );
    let before = retrieval(&held_out, &start_weights, &dir.join("eval-before"), [128, 64]);
    let run_before =
        |name: &str, model: &str| live(&clip, &template, &dir.join(name), cut_frame, run_frames, model, &truth);
    let live_before = run_before("run-before", &imagenet_model(1.0));
    // (scale, outcome).
    let tighter_before: Vec<(f64, Live)> = [0.875, 0.75, 0.5]
        .into_iter()
        .map(|scale| {
            (
                scale,
                run_before(&format!("run-before-x{scale}"), &imagenet_model(scale)),
            )
        })
        .collect();
    let mut rows = Vec::new();
    for out in &runs {
        let report = json(&out.join("report.json"));
        let weights = PathBuf::from(report["adapted_weights"].as_str().expect("weights"));
        let after = retrieval(&held_out, &weights, &out.join("eval-truth"), [128, 64]);
        let run_after =
            |name: &str, model: &str| live(&clip, &template, &out.join(name), cut_frame, run_frames, model, &truth);
        let (live_after, tighter) = (
            run_after("run-truth", &adapted_model(&report, 1.0)),
            run_after("run-truth-tighter", &adapted_model(&report, 0.75)),
        );
        let pseudo = |side: &str| report[side]["rank1"][0].as_f64().unwrap_or(f64::NAN);
        rows.push(Row {
            retrieval: after,
            live: live_after,
            tighter,
            pseudo_before: pseudo("before"),
            pseudo_after: pseudo("after"),
        });
    }
    let played = if run_frames == 0 {
        "all".to_owned()
    } else {
        run_frames.to_string()
    };
    println!("\nHeld-out part, true labels; `run` on {played} held-out frames; sampler {sampler}, {epochs} epochs\n");
    println!(
        "| weights | rank-1 (%) | mAP (%) | identities per person | purity | tracks with an identity | identities | people with one |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let cells = |l: &Live| {
        format!(
            "{:.2} | {:.2} | {:.2} | {} | {} of {}",
            l.fragmentation, l.purity, l.covered, l.identities, l.people.0, l.people.1
        )
    };
    println!(
        "| ImageNet start | {:.1} | {:.1} | {} |",
        before.0,
        before.1,
        cells(&live_before)
    );
    for (seed, r) in rows.iter().enumerate() {
        println!(
            "| adapted, seed {seed} | {:.1} | {:.1} | {} |",
            r.retrieval.0,
            r.retrieval.1,
            cells(&r.live)
        );
    }
    let col = |f: &dyn Fn(&Row) -> f64| mean_std(&rows.iter().map(f).collect::<Vec<_>>());
    let (r1, map) = (col(&|r| r.retrieval.0), col(&|r| r.retrieval.1));
    let mean_cells = |l: &dyn Fn(&Row) -> Live| {
        let (frag, pur, cov) = (
            col(&|r| l(r).fragmentation),
            col(&|r| l(r).purity),
            col(&|r| l(r).covered),
        );
        format!(
            "{:.2} ± {:.2} | {:.2} ± {:.2} | {:.2} ± {:.2} |",
            frag.0, frag.1, pur.0, pur.1, cov.0, cov.1
        )
    };
    println!(
        "| adapted, mean ± std | {:.1} ± {:.1} | {:.1} ± {:.1} | {} | |",
        r1.0,
        r1.1,
        map.0,
        map.1,
        mean_cells(&|r| r.live)
    );
    println!("\nTighter thresholds: the site's (ImageNet) or the suggested ones (adapted), times the scale\n");
    println!(
        "| weights | scale | identities per person | purity | tracks with an identity | identities | people with one |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (scale, l) in &tighter_before {
        println!("| ImageNet start | {scale} | {} |", cells(l));
    }
    for (seed, r) in rows.iter().enumerate() {
        println!("| adapted, seed {seed} | 0.75 | {} |", cells(&r.tighter));
    }
    println!("| adapted, mean ± std | 0.75 | {} | |", mean_cells(&|r| r.tighter));
    let mut start_curve: Vec<Live> = std::iter::once(live_before)
        .chain(tighter_before.iter().map(|(_, l)| *l))
        .collect();
    start_curve.sort_by(|a, b| a.purity.total_cmp(&b.purity));
    let suggested = |r: &Row| r.live;
    let tighter = |r: &Row| r.tighter;
    for (name, of) in [
        ("the suggested", &suggested as &dyn Fn(&Row) -> Live),
        ("3/4 of the suggested", &tighter),
    ] {
        let (fragmentation, purity) = (col(&|r| of(r).fragmentation).0, col(&|r| of(r).purity).0);
        match at_purity(&start_curve, purity) {
            Some(start) => println!(
                "\nAdapted at {name} thresholds: {fragmentation:.2} identities per person at purity {purity:.2}; \
                 ImageNet at that purity: {start:.2}. Beyond one per person, adapted / ImageNet: {:.2} / {:.2} = {:.2}.",
                fragmentation - 1.0,
                start - 1.0,
                (fragmentation - 1.0) / (start - 1.0)
            ),
            None => println!("\nAdapted at {name} thresholds: purity {purity:.2}, outside ImageNet's runs."),
        }
    }
    let (pa, pb) = (col(&|r| r.pseudo_after), col(&|r| r.pseudo_before));
    println!(
        "\nOn the pseudo-identities (adapt's own report): rank-1 {:.1} before, {:.1} ± {:.1} after.\n\
         Adapted rank-1 / starting rank-1 (true labels): {:.2}×.",
        pb.0,
        pa.0,
        pa.1,
        r1.0 / before.0
    );
    if setting("VTEST", 1) != 0 && Path::new(VTEST).exists() {
        vtest(&dir, epochs, seeds, &sampler);
    }
}
