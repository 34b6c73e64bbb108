//! Metrics of the live pipeline: counters, gauges and histograms kept in atomics that the stages
//! update without locking, named and labelled as Prometheus series. The exposition text (served as
//! `GET /metrics` by [`super::http`]) is written by TiKV's Prometheus client (`prometheus`), in
//! the Prometheus text format 0.0.4 that every scraper and `promtool` read, from metric families
//! built from these atomics at each scrape.

use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Upper bounds (seconds) of the latency histograms' buckets.
const LATENCY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Upper bounds of the batch-size histogram's buckets.
pub const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// Upper bounds (seconds) of the embedder's per-batch phase histograms.
pub const PHASE_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A histogram with fixed buckets.
#[derive(Debug)]
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

/// A series' labels, in order: `&[("camera", "gate"), ("modality", "visible")]`.
pub type Labels<'a> = &'a [(&'static str, &'a str)];

/// A series' labels as stored.
type OwnedLabels = Vec<(&'static str, String)>;

type Key = (&'static str, OwnedLabels);

fn key(name: &'static str, labels: Labels<'_>) -> Key {
    (name, labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect())
}

/// Every metric of a run, by name and label set.
#[derive(Debug, Default)]
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
        "reid_identities_settled_total" => {
            "Provisional identities merged into a known one (a whole track or a fusion found the person)"
        }
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
        "reid_cluster_queued_total" => "Exemplars this node queued for the cluster's stream",
        "reid_cluster_published_total" => "Exemplars this node stored in the cluster's stream",
        "reid_cluster_duplicates_total" => "Publications the stream had stored already (retries)",
        "reid_cluster_publish_retries_total" => "Publications sent again after an error or a lost acknowledgement",
        "reid_cluster_dropped_total" => "Cluster items dropped or refused, by reason",
        "reid_cluster_applied_total" => "Exemplars of other nodes (or of an earlier run) added to the index",
        "reid_cluster_merges_recorded_total" => "Identity merges this node recorded",
        "reid_cluster_merges_applied_total" => "Identity merges applied to the index",
        "reid_cluster_connected" => "1 while connected to a NATS server",
        _ => "",
    }
}

impl Metrics {
    /// The counter `name` with `labels` (created at zero on first use). Look it up once, outside
    /// per-frame loops: the look-up takes a lock.
    pub fn counter(&self, name: &'static str, labels: Labels<'_>) -> Arc<AtomicU64> {
        let mut m = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(m.entry(key(name, labels)).or_default())
    }

    /// Exports a counter kept elsewhere (a source's, the MQTT client's) under `name` and `labels`.
    pub fn adopt(&self, name: &'static str, labels: Labels<'_>, counter: Arc<AtomicU64>) {
        let mut m = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(key(name, labels), counter);
    }

    pub fn gauge(&self, name: &'static str, labels: Labels<'_>) -> Arc<AtomicI64> {
        let mut m = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(m.entry(key(name, labels)).or_default())
    }

    /// A latency histogram (seconds).
    pub fn latency(&self, name: &'static str, labels: Labels<'_>) -> Arc<Histogram> {
        self.histogram(name, labels, &LATENCY_BUCKETS)
    }

    /// The histogram `name` with `labels`; `bounds` are used when it is created.
    pub fn histogram(&self, name: &'static str, labels: Labels<'_>, bounds: &[f64]) -> Arc<Histogram> {
        let mut m = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(
            m.entry(key(name, labels))
                .or_insert_with(|| Arc::new(Histogram::new(bounds))),
        )
    }

    /// Sum of a counter over all label sets.
    pub fn total(&self, name: &str) -> u64 {
        self.counters_named(name).iter().map(|(_, v)| v).sum()
    }

    /// Every series of the counter `name`: its labels and value.
    pub fn counters_named(&self, name: &str) -> Vec<(OwnedLabels, u64)> {
        let m = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        m.iter()
            .filter(|((n, _), _)| *n == name)
            .map(|((_, l), v)| (l.clone(), v.load(Ordering::Relaxed)))
            .collect()
    }

    /// Every series of the gauge `name`: its labels and value.
    pub fn gauges_named(&self, name: &str) -> Vec<(OwnedLabels, i64)> {
        let m = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        m.iter()
            .filter(|((n, _), _)| *n == name)
            .map(|((_, l), v)| (l.clone(), v.load(Ordering::Relaxed)))
            .collect()
    }

    /// The histogram `name` with `labels`, if any stage created it.
    pub fn find_histogram(&self, name: &str, labels: Labels<'_>) -> Option<Arc<Histogram>> {
        let m = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        m.iter()
            .find(|((n, l), _)| {
                *n == name && l.len() == labels.len() && l.iter().zip(labels).all(|(a, b)| a.0 == b.0 && a.1 == b.1)
            })
            .map(|(_, h)| Arc::clone(h))
    }

    /// Every metric as Prometheus metric families, in name order.
    pub fn families(&self) -> Vec<MetricFamily> {
        let mut out = Vec::new();
        let counters = by_name(&self.counters.lock().unwrap_or_else(|e| e.into_inner()));
        for (name, series) in counters {
            out.push(family(name, MetricType::COUNTER, series, |m, v| {
                let mut c = proto::Counter::default();
                c.set_value(v.load(Ordering::Relaxed) as f64);
                m.set_counter(c);
            }));
        }
        let gauges = by_name(&self.gauges.lock().unwrap_or_else(|e| e.into_inner()));
        for (name, series) in gauges {
            out.push(family(name, MetricType::GAUGE, series, |m, v| {
                let mut g = proto::Gauge::default();
                g.set_value(v.load(Ordering::Relaxed) as f64);
                m.set_gauge(g);
            }));
        }
        let histograms = by_name(&self.histograms.lock().unwrap_or_else(|e| e.into_inner()));
        for (name, series) in histograms {
            out.push(family(name, MetricType::HISTOGRAM, series, |m, h| {
                // Bucket counts as read, one at a time, made cumulative; the count is at least
                // their sum, so the `+Inf` bucket the encoder adds never falls below the others.
                let mut cumulative = 0;
                let buckets: Vec<proto::Bucket> = h
                    .bounds
                    .iter()
                    .zip(&h.counts)
                    .map(|(bound, c)| {
                        cumulative += c.load(Ordering::Relaxed);
                        let mut b = proto::Bucket::default();
                        b.set_upper_bound(*bound);
                        b.set_cumulative_count(cumulative);
                        b
                    })
                    .collect();
                let mut p = proto::Histogram::default();
                p.set_sample_count(h.count.load(Ordering::Relaxed).max(cumulative));
                p.set_sample_sum(h.sum_micro.load(Ordering::Relaxed) as f64 / 1e6);
                p.set_bucket(buckets);
                m.set_histogram(p);
            }));
        }
        out
    }

    /// The exposition of every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&self.families(), &mut out) {
            tracing::error!("encoding the metrics: {e}");
        }
        out
    }
}

/// The content type of [`Metrics::render`]'s text.
pub fn content_type() -> String {
    TextEncoder::new().format_type().to_owned()
}

/// Groups series by metric name, in name order.
fn by_name<V: Clone>(map: &BTreeMap<Key, V>) -> Vec<(&'static str, Vec<(OwnedLabels, V)>)> {
    let mut out: Vec<(&'static str, Vec<(OwnedLabels, V)>)> = Vec::new();
    for ((name, labels), v) in map {
        match out.last_mut() {
            Some((n, series)) if n == name => series.push((labels.clone(), v.clone())),
            _ => out.push((name, vec![(labels.clone(), v.clone())])),
        }
    }
    out
}

/// One metric family: its help, type and a metric per label set, filled in by `value`.
fn family<V>(
    name: &str,
    kind: MetricType,
    series: Vec<(OwnedLabels, V)>,
    value: impl Fn(&mut proto::Metric, &V),
) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_owned());
    f.set_help(help(name).to_owned());
    f.set_field_type(kind);
    for (labels, v) in series {
        let pairs = labels
            .into_iter()
            .map(|(k, val)| {
                let mut l = proto::LabelPair::default();
                l.set_name(k.to_owned());
                l.set_value(val);
                l
            })
            .collect();
        let mut m = proto::Metric::default();
        m.set_label(pairs);
        value(&mut m, &v);
        f.mut_metric().push(m);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let m = Metrics::default();
        m.counter("reid_events_total", &[("type", "new")])
            .fetch_add(3, Ordering::Relaxed);
        let h = m.latency("reid_stage_seconds", &[("stage", "embed")]);
        h.observe(0.02);
        h.observe(0.3);
        h.observe(99.0);
        let text = m.render();
        assert!(
            text.contains("# TYPE reid_events_total counter\nreid_events_total{type=\"new\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("reid_stage_seconds_bucket{stage=\"embed\",le=\"0.025\"} 1\n"),
            "cumulative buckets: {text}"
        );
        assert!(
            text.contains("reid_stage_seconds_bucket{stage=\"embed\",le=\"0.5\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("reid_stage_seconds_bucket{stage=\"embed\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("reid_stage_seconds_count{stage=\"embed\"} 3\n"), "{text}");
        assert_eq!(h.quantile(0.5), Some(0.5));
        assert_eq!(h.quantile(0.3), Some(0.025));
        assert_eq!(h.quantile(0.99), Some(f64::INFINITY));
    }
}
