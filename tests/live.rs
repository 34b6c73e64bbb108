//! `reid-pipe run` end to end on a generated camera-pair clip: people cross a visible and a
//! thermal view; the events must give each person one identity across both modalities.

mod common;

use common::{
    Truth, bin, box_iou as iou, broker, clip, free_port, ok, repo, scene_site, scene_truth as truth, terminate, text,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A site file for the clip with the ImageNet MobileNetV2 set-up converts; `extra` is appended.
fn site(dir: &Path, clip: &Path, thermal_location: Option<&str>, extra: &str) -> PathBuf {
    site_with_model(dir, clip, thermal_location, "", extra)
}

/// Like [`site`], with `model` added to the `[model]` table.
fn site_with_model(dir: &Path, clip: &Path, thermal_location: Option<&str>, model: &str, extra: &str) -> PathBuf {
    let model = format!(
        "backbone = \"mobilenetv2\"\nweights = \"{}\"\ninput_size = [256, 128]\n{model}",
        repo("models/weights/mobilenetv2_imagenet.safetensors").display()
    );
    scene_site(dir, clip, thermal_location, &model, extra)
}

fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("events file")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
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
fn run_clip(dir: &Path, clip: &Path, model: &str, extra: &str) -> (Vec<Value>, String) {
    let events_path = dir.join("out/events.jsonl");
    let cfg = site_with_model(
        dir,
        clip,
        None,
        model,
        &format!("[outputs]\nevents = \"{}\"\n{extra}", events_path.display()),
    );
    let text = ok(bin().args(["--log", "warn", "run"]).arg(&cfg).output().expect("run"));
    (events(&events_path), text)
}

/// Three clips; the last with the crops resized and normalised as tensors (the GPU's way, on the
/// CPU here) instead of on the host.
#[test]
fn people_keep_one_identity_across_modalities() {
    let (mut consistent, mut people) = (0, 0);
    for (seed, model) in [(3, ""), (4, ""), (5, "preprocess = \"tensor\"")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let clip = clip(dir.path(), 4, seed);
        let video = dir.path().join("out/annotated.mkv");
        let thumbs = dir.path().join("out/thumbs");
        let (ev, text) = run_clip(
            dir.path(),
            &clip,
            model,
            &format!(
                "video = \"{}\"\nthumbnails = \"{}\"\n",
                video.display(),
                thumbs.display()
            ),
        );
        // Every new identity comes with its thumbnail, a decodable JPEG.
        let created: Vec<&Value> = ev.iter().filter(|e| e["new_identity"] == true).collect();
        assert!(!created.is_empty());
        for e in &created {
            let path = e["thumbnail"].as_str().unwrap_or_else(|| panic!("no thumbnail: {e}"));
            let img = opencv::imgcodecs::imread(path, opencv::imgcodecs::IMREAD_COLOR).expect("imread");
            assert!(opencv::prelude::MatTraitConst::rows(&img) > 10, "{path}");
        }
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

#[test]
fn a_failing_source_does_not_stop_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = clip(dir.path(), 2, 7);
    let events_path = dir.path().join("out/events.jsonl");
    let cfg = site(
        dir.path(),
        &clip,
        Some("/nonexistent/thermal/%05d.png"),
        &format!("[outputs]\nevents = \"{}\"\n", events_path.display()),
    );
    let out = bin().args(["--log", "warn", "run"]).arg(&cfg).output().expect("run");
    let text = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed source is reported in the exit code: {text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    assert!(text.contains("1 source(s) failed"), "{text}");
    let visible = text
        .lines()
        .find(|l| l.starts_with("gate") && l.contains("visible"))
        .expect("visible row");
    assert!(
        visible.contains(" 120 "),
        "the visible source ran to its end: {visible}"
    );
    let ev = events(&events_path);
    assert!(
        ev.iter().any(|e| e["modality"] == "visible" && e["type"] == "end"),
        "visible tracks were reported"
    );
    assert!(ev.iter().all(|e| e["modality"] == "visible"));
}

#[test]
fn unwritable_events_path_is_named_and_earlier_lines_stay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = clip(dir.path(), 1, 8);
    // A path below a regular file cannot be created.
    std::fs::write(dir.path().join("plain"), "x").expect("file");
    let bad = dir.path().join("plain/events.jsonl");
    let cfg = site(
        dir.path(),
        &clip,
        None,
        &format!("[outputs]\nevents = \"{}\"\n", bad.display()),
    );
    let out = bin().args(["--log", "warn", "run"]).arg(&cfg).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&bad.display().to_string()), "{err}");
    // An existing events file is appended to, never truncated.
    let good = dir.path().join("events.jsonl");
    std::fs::write(&good, "{\"earlier\":1}\n{\"earlier\":2}\n").expect("seed");
    let cfg = site(
        dir.path(),
        &clip,
        None,
        &format!("[outputs]\nevents = \"{}\"\n", good.display()),
    );
    ok(bin().args(["--log", "warn", "run"]).arg(&cfg).output().expect("run"));
    let text = std::fs::read_to_string(&good).expect("events");
    assert!(text.starts_with("{\"earlier\":1}\n{\"earlier\":2}\n"), "{text}");
    assert!(text.lines().count() > 2, "new events follow");
}

#[test]
fn metrics_are_encoded_by_the_prometheus_client() {
    use reid_pipe::live::metrics::Metrics;
    use std::sync::atomic::Ordering;
    let metrics = Metrics::default();
    metrics
        .counter("reid_frames_in_total", &[("camera", "gate"), ("modality", "visible")])
        .fetch_add(7, Ordering::Relaxed);
    let body = metrics.render();
    assert!(
        body.contains("# TYPE reid_frames_in_total counter\n")
            && body.contains("reid_frames_in_total{camera=\"gate\",modality=\"visible\"} 7\n"),
        "{body}"
    );
}

/// Every drop is in `/metrics` by stage and reason, and frames are counted as their source
/// delivers them: here a thermal camera at half the visible rate with `unpaired = "drop"` (the
/// visible frames between thermal ones are dropped by the pairer) and an MQTT broker that is not
/// there with room for one event (the rest are dropped as `disconnected`).
#[test]
fn drops_are_exported_by_stage_and_reason() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = clip(dir.path(), 3, 8);
    let absent_broker = free_port();
    let path = site(
        dir.path(),
        &clip,
        None,
        &format!("[outputs.mqtt]\nhost = \"127.0.0.1\"\nport = {absent_broker}\nbuffer = 1\n"),
    );
    let text_of = std::fs::read_to_string(&path).expect("site");
    let halved = text_of
        .replacen(
            "pairing_tolerance_ms = 20\n",
            "pairing_tolerance_ms = 20\nunpaired = \"drop\"\n",
            1,
        )
        .replace(
            "thermal/%05d.png\", caps = \"image/png,framerate=10/1\"",
            "thermal/%05d.png\", caps = \"image/png,framerate=5/1\"",
        );
    assert_ne!(halved, text_of);
    std::fs::write(&path, halved).expect("site");
    let cfg = reid_pipe::config::SiteConfig::load(&path).expect("site");
    let stop = Arc::new(AtomicBool::new(false));
    let summary = reid_pipe::live::run(&cfg, &reid_pipe::live::RunOptions::default(), &stop).expect("run");
    let body = summary.metrics.render();
    let value = |series: &str| -> u64 {
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {series} in\n{body}"))
    };
    let visible_frames = std::fs::read_dir(clip.join("visible")).expect("clip").count() as u64;
    assert_eq!(
        value("reid_frames_in_total{camera=\"gate\",modality=\"visible\"}"),
        visible_frames,
        "every frame the source delivered is counted, dropped ones too"
    );
    let pairs = value("reid_pairs_total{camera=\"gate\"}");
    let dropped = value("reid_dropped_total{stage=\"pairing\",reason=\"unpaired\",camera=\"gate\"}");
    assert!(
        pairs > 0
            && dropped > visible_frames / 3
            && dropped
                == value("reid_unpaired_total{camera=\"gate\",modality=\"visible\"}")
                    + value("reid_unpaired_total{camera=\"gate\",modality=\"thermal\"}"),
        "pairs {pairs}, dropped {dropped} of {visible_frames}"
    );
    let mqtt = value("reid_dropped_total{stage=\"mqtt\",reason=\"disconnected\"}");
    assert!(
        mqtt > 0 && mqtt == summary.mqtt_dropped,
        "{mqtt} vs {}",
        summary.mqtt_dropped
    );
    assert!(
        body.contains(
            "reid_dropped_total{stage=\"source\",reason=\"queue_full\",camera=\"gate\",modality=\"thermal\"} 0"
        )
    );
}

/// A persistent-session QoS 1 subscriber printing `topic payload` lines to `out`.
fn subscriber(port: u16, out: &Path) -> std::process::Child {
    let child = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "reid-pipe/#",
            "-q",
            "1",
            "-c",
            "-i",
            "reid-test-sub",
            "-v",
        ])
        .stdout(std::fs::File::create(out).expect("out"))
        .spawn()
        .expect("mosquitto_sub");
    std::thread::sleep(std::time::Duration::from_millis(500));
    child
}

fn mqtt_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("subscriber output")
        .lines()
        .map(|l| {
            let (topic, payload) = l.split_once(' ').expect("topic payload");
            assert_eq!(topic, "reid-pipe/gate/events");
            serde_json::from_str(payload).expect("json payload")
        })
        .collect()
}

/// The identity of an event for comparing the file with what the broker delivered.
fn signature(e: &Value) -> String {
    format!("{} {} {} {}", e["type"], e["modality"], e["track_id"], e["time"])
}

/// Starts `reid-pipe run` on a site file in the background, its output captured.
fn spawn_run(cfg: &Path) -> std::process::Child {
    bin()
        .args(["--log", "warn", "run"])
        .arg(cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run")
}

/// Makes the site at `cfg` play its clip in real time (12 s) instead of as fast as possible.
fn realtime(dir: &Path, cfg: &Path) {
    let template = dir.join("realtime.pipeline");
    std::fs::write(
        &template,
        "multifilesrc location=${location} index=0 caps=${caps} ! pngdec ! identity sync=true ! videoconvert ! ${output}\n",
    )
    .expect("template");
    let text = std::fs::read_to_string(cfg).expect("cfg").replace(
        &repo("pipelines/images.pipeline").display().to_string(),
        &template.display().to_string(),
    );
    std::fs::write(cfg, text).expect("cfg");
}

/// A clip of `people` (seed `seed`) under `dir` and a site file playing it that writes events
/// to the returned path: (site file, events file).
fn clip_with_events(dir: &Path, people: usize, seed: u64) -> (PathBuf, PathBuf) {
    let clip = clip(dir, people, seed);
    let events_path = dir.join("out/events.jsonl");
    let cfg = site(
        dir,
        &clip,
        None,
        &format!("[outputs]\nevents = \"{}\"\n", events_path.display()),
    );
    (cfg, events_path)
}

#[test]
fn sigint_drains_ends_tracks_snapshots_and_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, events_path) = clip_with_events(dir.path(), 3, 10);
    realtime(dir.path(), &cfg);
    let run = spawn_run(&cfg);
    // Interrupted mid-stream: once the first events are out (how long the model takes to load
    // depends on how busy the machine is), well before the 12-second clip ends.
    let waiting = std::time::Instant::now();
    while std::fs::metadata(&events_path).map_or(true, |m| m.len() == 0) {
        assert!(waiting.elapsed().as_secs() < 60, "no event within 60 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    let asked = std::time::Instant::now();
    assert!(
        Command::new("kill")
            .args(["-INT", &run.id().to_string()])
            .status()
            .expect("kill")
            .success()
    );
    let out = run.wait_with_output().expect("run");
    let took = asked.elapsed();
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    // Generous for a loaded 2-core machine; a drain that hung would take the whole run.
    assert!(took.as_secs() < 30, "shutdown took {took:?}");
    let ev = events(&events_path);
    assert!(!ev.is_empty());
    lifecycle(&ev); // every track that began also ended
    assert!(std::fs::read_dir(dir.path().join("index")).expect("index").count() >= 1);
    let processed: u64 = text
        .lines()
        .find(|l| l.contains("frames processed"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("summary");
    assert!(processed < 240, "stopped early: {processed} of 240 frames");
}

#[test]
fn events_reach_mqtt_subscribers_even_across_a_broker_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = clip(dir.path(), 3, 9);
    let port = free_port();
    let store = dir.path().join("broker");
    std::fs::create_dir_all(&store).expect("store");
    let mut b = broker(&store, port);
    let received = dir.path().join("received.txt");
    let sub = subscriber(port, &received);
    let events_path = dir.path().join("out/events.jsonl");
    let cfg = site(
        dir.path(),
        &clip,
        None,
        &format!(
            "[outputs]\nevents = \"{}\"\n[outputs.mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nqos = 1\n",
            events_path.display()
        ),
    );
    // Play the clip in real time so the broker can go away and come back mid-run.
    realtime(dir.path(), &cfg);
    let run = spawn_run(&cfg);
    // Down from 4 s to 7 s of the 12 s clip.
    std::thread::sleep(std::time::Duration::from_secs(4));
    terminate(b);
    std::thread::sleep(std::time::Duration::from_secs(3));
    b = broker(&store, port);
    let out = run.wait_with_output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(std::time::Duration::from_secs(2));
    terminate(sub);
    terminate(b);
    let written = events(&events_path);
    let delivered = mqtt_lines(&received);
    let got: std::collections::HashSet<String> = delivered.iter().map(signature).collect();
    let missing: Vec<String> = written.iter().map(signature).filter(|s| !got.contains(s)).collect();
    println!(
        "{} events written, {} delivered over MQTT, {} missing",
        written.len(),
        delivered.len(),
        missing.len()
    );
    assert!(written.len() >= 10, "{}", written.len());
    assert!(missing.is_empty(), "lost across the restart: {missing:?}");
}

/// The embedding stage records, for every batch, the time of each phase; `runtime.threads` sets
/// libtorch's threads.
#[test]
fn the_embedder_reports_where_batch_time_goes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = clip(dir.path(), 2, 7);
    let path = site_with_model(dir.path(), &clip, None, "preprocess = \"tensor\"", "");
    // And `runtime.threads` reaches libtorch.
    let text = std::fs::read_to_string(&path)
        .expect("site")
        .replace("batch_size = 16", "batch_size = 16\nthreads = 1");
    std::fs::write(&path, text).expect("site");
    let cfg = reid_pipe::config::SiteConfig::load(&path).expect("site");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = reid_pipe::live::run(&cfg, &reid_pipe::live::RunOptions::default(), &stop).expect("run");
    let m = &s.metrics;
    let batches = m.histogram("reid_batch_size", &[], &[]).count();
    assert!(batches > 0, "no batch was embedded");
    for phase in ["prepare", "upload", "network", "download"] {
        let h = m.histogram("reid_embed_phase_seconds", &[("phase", phase)], &[]);
        assert_eq!(h.count(), batches, "{phase}: one observation per batch");
    }
    let network = m.histogram("reid_embed_phase_seconds", &[("phase", "network")], &[]);
    assert!(network.quantile(0.5).is_some_and(|q| q > 0.0));
    let text = m.render();
    assert!(
        text.contains("reid_embed_phase_seconds_bucket{phase=\"upload\",le=\"0.001\"}"),
        "{text}"
    );
    assert_eq!(tch::get_num_threads(), 1, "runtime.threads was applied");
}

/// A stage that fails stops the run with a non-zero exit naming it, after the rest of the
/// pipeline drained: the events before the failure are in the file and the index is
/// snapshotted.
#[test]
fn a_failing_stage_stops_the_run_naming_it_after_draining() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, events_path) = clip_with_events(dir.path(), 3, 8);
    let out = bin()
        .args(["--log", "warn", "run"])
        .arg(&cfg)
        .env("REID_PIPE_PANIC_AT", "embed:8")
        .output()
        .expect("run");
    let text = text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("the embed stage failed: fault injected by REID_PIPE_PANIC_AT=embed:8"),
        "{text}"
    );
    let ev = events(&events_path);
    assert!(
        ev.iter().any(|e| e["type"] == "update"),
        "the events of the first batches were flushed: {ev:?}"
    );
    assert!(
        std::fs::read_dir(dir.path().join("index")).expect("index dir").count() >= 1,
        "the index was snapshotted"
    );
}

/// Batches that keep failing (an injected error from the fourth batch on) stop the run after
/// `runtime.max_failed_batches` in a row, naming the stage and the last batch's cause; what came
/// before is flushed and snapshotted.
#[test]
fn batches_failing_in_a_row_stop_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, events_path) = clip_with_events(dir.path(), 3, 8);
    let text_of = std::fs::read_to_string(&cfg).expect("site");
    std::fs::write(
        &cfg,
        text_of.replacen("batch_size = 16\n", "batch_size = 16\nmax_failed_batches = 3\n", 1),
    )
    .expect("site");
    let out = bin()
        .args(["--log", "warn", "run"])
        .arg(&cfg)
        .env("REID_PIPE_FAIL_FROM", "embed:4")
        .output()
        .expect("run");
    let text = text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "the embed stage failed: 3 batches in a row failed (runtime.max_failed_batches); the last one: \
             fault injected by REID_PIPE_FAIL_FROM=embed:4"
        ),
        "{text}"
    );
    assert!(events(&events_path).iter().any(|e| e["type"] == "update"), "{text}");
    assert!(std::fs::read_dir(dir.path().join("index")).expect("index dir").count() >= 1);
}

/// A model change never throws the site's identity history away: a run whose model gives
/// vectors of another dimension than the snapshots refuses to start; with `--fresh-index` it
/// sets them aside and begins empty, and they are still there after it has written more than
/// the pruning keeps.
#[test]
fn another_models_snapshots_are_set_aside_not_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let clip = clip(d, 2, 9);
    let run = |cfg: &Path, extra: &[&str]| {
        let out = bin()
            .args(["--log", "warn", "run", "--max-frames", "15"])
            .args(extra)
            .arg(cfg)
            .output()
            .expect("run");
        (out.status.code(), text(&out))
    };
    // Model A: ImageNet MobileNetV2 (1280-d).
    let a = site(d, &clip, None, "");
    assert_eq!(run(&a, &[]).0, Some(0));
    let index = d.join("index");
    let names = |prefix: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&index)
            .expect("index dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix))
            .collect();
        v.sort();
        v
    };
    let from_a = names("snapshot-");
    assert!(!from_a.is_empty(), "model A wrote a snapshot");
    // Model B: a tiny network of another dimension, same snapshot folder.
    tch::manual_seed(0);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let spec = reid_pipe::model::ModelSpec::new(reid_pipe::base::Backbone::Tinyresnet, 0, (64, 32));
    let net = reid_pipe::model::LbaNet::new(&vs.root(), spec);
    let weights = d.join("b.safetensors");
    reid_pipe::model::weights::save(&vs, &net.spec, &Default::default(), &weights).expect("weights");
    let b_dir = d.join("b");
    std::fs::create_dir_all(&b_dir).expect("dir");
    let b = scene_site(
        &b_dir,
        &clip,
        None,
        &format!("backbone = \"tinyresnet\"\nweights = \"{}\"", weights.display()),
        "",
    );
    let text = std::fs::read_to_string(&b)
        .expect("site")
        .replace(&format!("{}/index", b_dir.display()), &index.display().to_string());
    std::fs::write(&b, text).expect("site");
    let (code, text) = run(&b, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("another model") && text.contains("--fresh-index"),
        "{text}"
    );
    assert_eq!(names("snapshot-"), from_a, "a refused run touches nothing");
    for _ in 0..reid_pipe::index::snapshot::KEEP + 1 {
        let (code, text) = run(&b, &["--fresh-index"]);
        assert_eq!(code, Some(0), "{text}");
    }
    let aside = names("set-aside-");
    assert_eq!(aside.len(), from_a.len(), "{aside:?}");
    for name in &from_a {
        assert!(aside.contains(&format!("set-aside-{name}")), "{name} kept: {aside:?}");
    }
    assert!(names("snapshot-").len() <= reid_pipe::index::snapshot::KEEP);
}
