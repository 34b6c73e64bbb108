//! Metrics of the live pipeline in the Prometheus text format, served over HTTP (`GET /metrics`)
//! on the configured address (127.0.0.1 unless configured otherwise).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets.
const LATENCY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Upper bounds of the batch-size histogram's buckets.
pub const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// Upper bounds (seconds) of the embedder's per-batch phase histograms.
pub const PHASE_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A histogram with fixed buckets.
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    /// Sum in millionths.
    sum_micro: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &[f64]) -> Self {
        Self {
            bounds: bounds.to_vec(),
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micro.fetch_add((v.max(0.0) * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The smallest bucket bound below which at least `q` of the observations lie.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count.load(Ordering::Relaxed);
        if total == 0 {
            return None;
        }
        let mut seen = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            seen += c.load(Ordering::Relaxed);
            if seen as f64 >= q * total as f64 {
                return Some(*b);
            }
        }
        Some(f64::INFINITY)
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

type Key = (&'static str, String);

/// Every metric of a run, by name and label set (`camera="a",modality="visible"`).
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<Key, Arc<AtomicU64>>>,
    gauges: Mutex<BTreeMap<Key, Arc<AtomicI64>>>,
    histograms: Mutex<BTreeMap<Key, Arc<Histogram>>>,
}

fn help(name: &str) -> &'static str {
    match name {
        "reid_frames_in_total" => "Frames delivered by a source (counted as they leave it)",
        "reid_frames_processed_total" => "Frames that went through detection and tracking",
        "reid_dropped_total" => "Items dropped, by stage and reason",
        "reid_source_reconnects_total" => "Restarts of a live source after it was lost",
        "reid_pairs_total" => "Visible and thermal frames paired",
        "reid_unpaired_total" => "Frames that found no partner within the pairing tolerance",
        "reid_detections_total" => "Detections after filtering",
        "reid_crops_embedded_total" => "Crops embedded",
        "reid_events_total" => "Identity events emitted, by type",
        "reid_queue_depth" => "Items waiting in a queue",
        "reid_identities" => "Identities in the index",
        "reid_snapshots_total" => "Index snapshots written",
        "reid_snapshot_errors_total" => "Index snapshots that could not be written",
        "reid_snapshot_last_success_timestamp_seconds" => "Unix time of the last index snapshot written",
        "reid_snapshot_seconds" => "Time to encode and write an index snapshot (on the writer thread)",
        "reid_active_tracks" => "Confirmed tracks alive",
        "reid_batch_size" => "Embedder batch sizes",
        "reid_stage_seconds" => "Time spent per item in a stage",
        "reid_embed_phase_seconds" => {
            "Time per embedder batch: prepare (host), upload (and device preprocessing), network, download"
        }
        "reid_frame_to_event_seconds" => "From a frame arriving from its source to the event it caused",
        _ => "",
    }
}

impl Metrics {
    pub fn counter(&self, name: &'static str, labels: &str) -> Arc<AtomicU64> {
        let mut m = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(m.entry((name, labels.to_owned())).or_default())
    }

    /// Exports a counter kept elsewhere (a source's, the MQTT client's) under `name` and `labels`.
    pub fn adopt(&self, name: &'static str, labels: &str, counter: Arc<AtomicU64>) {
        let mut m = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        m.insert((name, labels.to_owned()), counter);
    }

    pub fn gauge(&self, name: &'static str, labels: &str) -> Arc<AtomicI64> {
        let mut m = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(m.entry((name, labels.to_owned())).or_default())
    }

    /// A latency histogram (seconds).
    pub fn latency(&self, name: &'static str, labels: &str) -> Arc<Histogram> {
        self.histogram(name, labels, &LATENCY_BUCKETS)
    }

    pub fn histogram(&self, name: &'static str, labels: &str, bounds: &[f64]) -> Arc<Histogram> {
        let mut m = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(
            m.entry((name, labels.to_owned()))
                .or_insert_with(|| Arc::new(Histogram::new(bounds))),
        )
    }

    /// Sum of a counter over all label sets.
    pub fn total(&self, name: &str) -> u64 {
        let m = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        m.iter()
            .filter(|((n, _), _)| *n == name)
            .map(|(_, v)| v.load(Ordering::Relaxed))
            .sum()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let header = |out: &mut String, name: &str, kind: &str, last: &mut String| {
            if last != name {
                let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {kind}", help(name));
                *last = name.to_owned();
            }
        };
        let braces = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        let mut last = String::new();
        for ((name, labels), v) in self.counters.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            header(&mut out, name, "counter", &mut last);
            let _ = writeln!(out, "{name}{} {}", braces(labels), v.load(Ordering::Relaxed));
        }
        for ((name, labels), v) in self.gauges.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            header(&mut out, name, "gauge", &mut last);
            let _ = writeln!(out, "{name}{} {}", braces(labels), v.load(Ordering::Relaxed));
        }
        for ((name, labels), h) in self.histograms.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            header(&mut out, name, "histogram", &mut last);
            let sep = if labels.is_empty() { "" } else { "," };
            let mut cumulative = 0;
            for (b, c) in h.bounds.iter().zip(&h.counts) {
                cumulative += c.load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
            }
            let count = h.count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
            let sum = h.sum_micro.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "{name}_sum{} {sum}\n{name}_count{} {count}",
                braces(labels),
                braces(labels)
            );
        }
        out
    }
}

/// Reads a request up to the end of its headers (at most 8 KiB, or what arrives before the read
/// timeout): answering and closing with part of a request unread makes the kernel reset the
/// connection, and the client loses the answer.
fn read_head(conn: &mut std::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while head.len() < 8192 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Serves `metrics` on `addr` until `stop` is set. Returns the bound address (port 0 picks one).
pub fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let thread = std::thread::Builder::new().name("metrics".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                    let request = read_head(&mut conn);
                    let (status, body) = if request.starts_with("GET /metrics") {
                        ("200 OK", metrics.render())
                    } else {
                        ("404 Not Found", "not found; try /metrics\n".to_owned())
                    };
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    tracing::warn!("metrics listener: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    })?;
    Ok((bound, thread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let m = Metrics::default();
        m.counter("reid_events_total", "type=\"new\"")
            .fetch_add(3, Ordering::Relaxed);
        let h = m.latency("reid_stage_seconds", "stage=\"embed\"");
        h.observe(0.02);
        h.observe(0.3);
        let text = m.render();
        assert!(
            text.contains("# TYPE reid_events_total counter\nreid_events_total{type=\"new\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("reid_stage_seconds_bucket{stage=\"embed\",le=\"0.025\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("reid_stage_seconds_bucket{stage=\"embed\",le=\"0.5\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("reid_stage_seconds_count{stage=\"embed\"} 2\n"), "{text}");
        assert_eq!(h.quantile(0.5), Some(0.025));
        assert_eq!(h.quantile(0.99), Some(0.5));
    }
}
