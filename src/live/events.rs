//! Identity events and where they go: a JSON-lines file (appended, rotated by size), standard
//! output, and MQTT.
//!
//! Lifecycle per track, as camera-site tools expect from Frigate-style events: `new` when a track
//! is confirmed (no identity yet), `update` each time the track's embedding is matched (with
//! `identity_changed` when the global identity differs from the previous one), `end` when the
//! track is lost, with its final identity. When a visible and a thermal track of one camera pair
//! are fused, both report the same identity from then on (`partner_track_id`). A thermal track
//! may carry further visible tracks (fragments of its person): each of those names the thermal
//! track, while the thermal track names its first visible partner.

use crate::base::Modality;
use crate::detect::BBox;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Wall-clock time, seconds since the Unix epoch (as in events).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The kind of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    New,
    Update,
    End,
}

impl EventKind {
    /// `"new"`, `"update"` or `"end"`, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::New => "new",
            EventKind::Update => "update",
            EventKind::End => "end",
        }
    }
}

/// One identity event (one JSON line).
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// Wall-clock time, seconds since the Unix epoch.
    pub time: f64,
    /// Camera pair.
    pub camera: String,
    pub modality: Modality,
    /// Track id, unique within (camera, modality) for the whole run.
    pub track_id: u64,
    /// Stream time of the latest frame behind the event, seconds.
    pub stream_time_s: Option<f64>,
    /// Last box, [x, y, width, height] in frame pixels.
    #[serde(rename = "box")]
    pub bbox: Option<[f32; 4]>,
    /// Detection confidence of that box.
    pub score: Option<f32>,
    /// Global identity (None until the first match; for the whole life of an unfused track that
    /// joined none where `cameras.new_identities = "fused"`).
    pub identity: Option<u64>,
    pub previous_identity: Option<u64>,
    pub identity_changed: bool,
    /// The identity was created by this match.
    pub new_identity: bool,
    /// Cosine distance to the matched identity's nearest exemplar.
    pub distance: Option<f32>,
    /// The match came from the other modality.
    pub cross_modal: bool,
    /// Embeddings averaged into this match.
    pub embeddings: usize,
    /// The track of the other modality fused with this one (same camera pair, same person): a
    /// thermal track names its first visible partner; further visible partners (fragments of the
    /// same person) name the thermal track.
    pub partner_track_id: Option<u64>,
    /// Thumbnail written for a new identity.
    pub thumbnail: Option<String>,
    /// The identities just merged into `identity`: a track's provisional identity that the
    /// whole track, or a fusion, found to be a known person, or, in a cluster, a person first
    /// met at two nodes; absent otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<u64>,
}

impl Event {
    /// An event of track `track_id` with nothing known yet beyond the track.
    pub fn of_track(kind: EventKind, time: f64, camera: String, modality: Modality, track_id: u64) -> Self {
        Self {
            kind,
            time,
            camera,
            modality,
            track_id,
            stream_time_s: None,
            bbox: None,
            score: None,
            identity: None,
            previous_identity: None,
            identity_changed: false,
            new_identity: false,
            distance: None,
            cross_modal: false,
            embeddings: 0,
            partner_track_id: None,
            thumbnail: None,
            merged_from: Vec::new(),
        }
    }

    pub fn with_box(mut self, b: BBox, score: f32) -> Self {
        self.bbox = Some([b.x, b.y, b.w, b.h]);
        self.score = Some(score);
        self
    }
}

/// Errors of the event file, naming it.
#[derive(Debug, thiserror::Error)]
#[error("events file {}{}", path.display(), if *rotating { ": rotating" } else { "" })]
pub struct EventFileError {
    pub path: PathBuf,
    /// Whether it failed while rotating the files.
    pub rotating: bool,
    #[source]
    pub source: std::io::Error,
}

/// The JSON-lines event file. Lines are only ever appended; at `max_bytes` the file moves to
/// `<name>.1` (older ones shift up to `<name>.<keep>`, the oldest is deleted) and a new one starts.
/// `keep = 0` never rotates.
pub struct EventLog {
    path: PathBuf,
    file: BufWriter<File>,
    size: u64,
    max_bytes: u64,
    keep: usize,
}

impl EventLog {
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> Result<Self, EventFileError> {
        let err = |e: std::io::Error| EventFileError {
            path: path.to_path_buf(),
            rotating: false,
            source: e,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(err)?;
        let size = file.metadata().map_err(err)?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file: BufWriter::new(file),
            size,
            max_bytes,
            keep,
        })
    }

    /// Appends one line (buffered; see [`EventLog::flush`]).
    pub fn write(&mut self, line: &str) -> Result<(), EventFileError> {
        if self.keep > 0 && self.size > 0 && self.size + line.len() as u64 + 1 > self.max_bytes {
            self.rotate()?;
        }
        let err = |e: std::io::Error| EventFileError {
            path: self.path.clone(),
            rotating: false,
            source: e,
        };
        self.file.write_all(line.as_bytes()).map_err(err)?;
        self.file.write_all(b"\n").map_err(err)?;
        self.size += line.len() as u64 + 1;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), EventFileError> {
        self.file.flush().map_err(|e| EventFileError {
            path: self.path.clone(),
            rotating: false,
            source: e,
        })
    }

    fn rotate(&mut self) -> Result<(), EventFileError> {
        self.flush()?;
        let numbered = |n: usize| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        let err = |e: std::io::Error| EventFileError {
            path: self.path.clone(),
            rotating: true,
            source: e,
        };
        let _ = std::fs::remove_file(numbered(self.keep));
        for n in (1..self.keep).rev() {
            if numbered(n).exists() {
                std::fs::rename(numbered(n), numbered(n + 1)).map_err(err)?;
            }
        }
        std::fs::rename(&self.path, numbered(1)).map_err(err)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(err)?;
        self.file = BufWriter::new(file);
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_rotates_without_losing_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "earlier\n").unwrap();
        let mut log = EventLog::open(&path, 40, 2).unwrap();
        for i in 0..10 {
            log.write(&format!("line {i:02} ........")).unwrap(); // 19 bytes + newline
        }
        log.flush().unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let current = read(&path);
        let one = read(&dir.path().join("events.jsonl.1"));
        let two = read(&dir.path().join("events.jsonl.2"));
        assert!(!dir.path().join("events.jsonl.3").exists(), "only `keep` rotated files");
        // At most two 20-byte lines per file: the newest five lines survive, in order, and the
        // older ones went with the deleted third file.
        let all = format!("{two}{one}{current}");
        let expected: String = (5..10).map(|i| format!("line {i:02} ........\n")).collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn unwritable_path_is_named() {
        let e = EventLog::open(Path::new("/proc/no/such/events.jsonl"), 100, 1)
            .err()
            .unwrap();
        assert!(e.to_string().contains("/proc/no/such/events.jsonl"), "{e}");
    }
}
