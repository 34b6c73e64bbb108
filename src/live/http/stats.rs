//! `/api/stats`: per camera pair and modality, frames in and processed per second, detections per
//! second, drops by reason, queue depths, embedding throughput and latency, and the process's CPU
//! and memory. Rates come from samples of the counters taken every second (the last five seconds).

use super::Shared;
use crate::live::metrics::Metrics;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Samples kept: rates span up to five seconds.
const SAMPLES: usize = 6;

/// Counter totals at one moment, by `kind|camera|modality`.
#[derive(Clone, Default)]
struct Sample {
    counts: BTreeMap<String, u64>,
    /// CPU seconds the process has used (None where `/proc` cannot tell).
    cpu_s: Option<f64>,
}

/// The recent samples.
#[derive(Default)]
pub struct Rates {
    samples: Mutex<VecDeque<(Instant, Sample)>>,
}

fn label<'a>(labels: &'a [(&'static str, String)], key: &str) -> &'a str {
    labels.iter().find(|(k, _)| *k == key).map_or("", |(_, v)| v.as_str())
}

fn take(metrics: &Metrics) -> Sample {
    let mut counts = BTreeMap::new();
    for (kind, name) in [
        ("in", "reid_frames_in_total"),
        ("processed", "reid_frames_processed_total"),
        ("detections", "reid_detections_total"),
        ("pairs", "reid_pairs_total"),
        ("crops", "reid_crops_embedded_total"),
    ] {
        for (labels, v) in metrics.counters_named(name) {
            let key = format!("{kind}|{}|{}", label(&labels, "camera"), label(&labels, "modality"));
            *counts.entry(key).or_default() += v;
        }
    }
    Sample {
        counts,
        cpu_s: process_cpu_seconds(),
    }
}

/// Samples the counters every second until the task is aborted.
pub async fn sample_every_second(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let sample = take(&shared.metrics);
        let mut s = shared.rates.samples.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() == SAMPLES {
            s.pop_front();
        }
        s.push_back((Instant::now(), sample));
    }
}

/// Per-second rates between the oldest sample and now.
struct Window {
    oldest: Sample,
    now: Sample,
    seconds: f64,
}

impl Window {
    fn rate(&self, key: &str) -> f64 {
        let (a, b) = (self.oldest.counts.get(key), self.now.counts.get(key));
        if self.seconds <= 0.0 {
            return 0.0;
        }
        (b.copied().unwrap_or(0).saturating_sub(a.copied().unwrap_or(0))) as f64 / self.seconds
    }
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The `/api/stats` document.
pub fn report(s: &Shared) -> Value {
    let now = take(&s.metrics);
    let window = {
        let samples = s.rates.samples.lock().unwrap_or_else(|e| e.into_inner());
        match samples.front() {
            Some((t, oldest)) => Window {
                oldest: oldest.clone(),
                now: now.clone(),
                seconds: t.elapsed().as_secs_f64(),
            },
            None => Window {
                oldest: now.clone(),
                now: now.clone(),
                seconds: 0.0,
            },
        }
    };
    let m = &s.metrics;
    let active: BTreeMap<String, i64> = m
        .gauges_named("reid_active_tracks")
        .into_iter()
        .map(|(l, v)| (label(&l, "camera").to_owned(), v))
        .collect();
    let present = s.board.present();
    let mut cameras = Map::new();
    for name in s.board.cameras() {
        let mut cam = Map::new();
        for modality in ["visible", "thermal"] {
            let key = |kind: &str| format!("{kind}|{name}|{modality}");
            cam.insert(
                modality.to_owned(),
                json!({
                    "fps_in": round(window.rate(&key("in"))),
                    "fps_processed": round(window.rate(&key("processed"))),
                    "detections_per_s": round(window.rate(&key("detections"))),
                    "frames_in": now.counts.get(&key("in")).copied().unwrap_or(0),
                    "frames_processed": now.counts.get(&key("processed")).copied().unwrap_or(0),
                }),
            );
        }
        cam.insert(
            "pairs_per_s".into(),
            json!(round(window.rate(&format!("pairs|{name}|")))),
        );
        cam.insert("tracks_alive".into(), json!(active.get(name).copied().unwrap_or(0)));
        cam.insert("people_present".into(), json!(present.get(name).map_or(0, |p| p.0)));
        cameras.insert(name.clone(), Value::Object(cam));
    }
    let dropped: Vec<Value> = m
        .counters_named("reid_dropped_total")
        .into_iter()
        .map(|(labels, v)| {
            let mut o: Map<String, Value> = labels.into_iter().map(|(k, v)| (k.to_owned(), json!(v))).collect();
            o.insert("count".into(), json!(v));
            Value::Object(o)
        })
        .collect();
    let queues: Map<String, Value> = m
        .gauges_named("reid_queue_depth")
        .into_iter()
        .map(|(l, v)| (label(&l, "queue").to_owned(), json!(v)))
        .collect();
    let quantile = |name: &str, labels: &[(&'static str, &str)], q: f64| {
        m.find_histogram(name, labels)
            .and_then(|h| h.quantile(q))
            .filter(|v| v.is_finite())
    };
    let phases: Map<String, Value> = ["prepare", "upload", "network", "download"]
        .iter()
        .map(|p| {
            let v = quantile("reid_embed_phase_seconds", &[("phase", p)], 0.5);
            ((*p).to_owned(), json!(v))
        })
        .collect();
    let events: Map<String, Value> = m
        .counters_named("reid_events_total")
        .into_iter()
        .map(|(l, v)| (label(&l, "type").to_owned(), json!(v)))
        .collect();
    let cpu_percent = match (now.cpu_s, window.oldest.cpu_s) {
        (Some(b), Some(a)) if window.seconds > 0.0 => Some(round(100.0 * (b - a) / window.seconds)),
        _ => None,
    };
    json!({
        "uptime_s": round(super::now() - s.board.started),
        "device": s.board.device,
        "identities": m.gauges_named("reid_identities").first().map_or(0, |g| g.1),
        "cameras": cameras,
        "dropped": dropped,
        "queues": queues,
        "embed": {
            "crops_per_s": round(window.rate("crops||")),
            "crops": now.counts.get("crops||").copied().unwrap_or(0),
            "batches": m.find_histogram("reid_batch_size", &[]).map_or(0, |h| h.count()),
            "latency_p50_s": quantile("reid_stage_seconds", &[("stage", "embed")], 0.5),
            "latency_p95_s": quantile("reid_stage_seconds", &[("stage", "embed")], 0.95),
            "phase_p50_s": phases,
        },
        "frame_to_event_p50_s": quantile("reid_frame_to_event_seconds", &[], 0.5),
        "events": events,
        "process": {
            "cpu_percent": cpu_percent,
            "rss_bytes": resident_bytes(),
        },
    })
}

/// CPU seconds (user + system) the process has used, from `/proc/self/stat` (Linux clock ticks
/// of 1/100 s, the value of `CLK_TCK` on every Linux architecture reid-pipe builds for).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Resident memory of the process, from `VmRSS` in `/proc/self/status` (in kB there).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
