//! The site file (`reid-pipe run site.toml`): camera pairs, detector, model, index, outputs and
//! runtime settings. See README.md for the reference of every key.
//!
//! This module holds the checked settings the rest of reid-pipe reads; [`raw`] the file's layout
//! and the checks that turn one into the other, [`sources`] those of a camera's sources, and
//! [`detectors`] the detector and tracker sections.

pub mod cluster;
pub mod detectors;
mod guard;
pub mod harvest;
mod raw;
mod sources;

pub use cluster::{Cluster, VectorEncoding};
pub use detectors::{Calibration, Detector, DetectorKind, ThermalDetector, Tracker, YoloLayout};
pub use harvest::Harvest;

use super::{ConfigError, Source};
use crate::base::{Backbone, Device, PixelFormat};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A validated site configuration; relative paths are resolved against the file's directory.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    /// The file it was loaded from.
    pub file: PathBuf,
    pub runtime: Runtime,
    pub cameras: Vec<CameraPair>,
    /// Site-wide visible detector (each camera's `detector` holds its effective settings).
    pub detector: Detector,
    pub tracker: Tracker,
    pub model: Model,
    pub index: Index,
    pub outputs: Outputs,
    /// How `reid-pipe harvest` builds a training set from the site's tracks.
    pub harvest: Harvest,
    /// The other nodes this one shares its identities with (`[cluster]`), if any.
    pub cluster: Option<Cluster>,
}

/// Where and how the work runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Runtime {
    pub device: Device,
    /// CPU threads for libtorch and OpenCV.
    pub threads: usize,
    /// Largest embedder batch.
    pub batch_size: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    pub max_batch_wait_ms: u64,
    /// Embedder batches failing in a row that stop the run (a fault that is not going away).
    pub max_failed_batches: u64,
    /// Capacity of every bounded queue between stages.
    pub queue_capacity: usize,
    /// Worker threads for detection.
    pub detector_workers: usize,
}

/// A visible + thermal camera pair.
#[derive(Debug, Clone)]
pub struct CameraPair {
    pub name: String,
    pub visible: SourceSpec,
    pub thermal: SourceSpec,
    /// Largest timestamp difference for a visible and a thermal frame to count as a pair.
    pub pairing_tolerance_ms: f64,
    /// What happens to frames without a partner.
    pub unpaired: UnpairedPolicy,
    /// Detector for the visible stream (site-wide settings with this camera's overrides).
    pub detector: Detector,
    /// Hot-region detector for the thermal stream.
    pub thermal_detector: ThermalDetector,
    /// Radiometric calibration of 16-bit thermal frames.
    pub calibration: Option<Calibration>,
    /// Least IoU between a visible and a thermal track's boxes (thermal scaled to the visible
    /// frame) in a pair of frames for the frames to count towards fusing the two tracks into one
    /// identity; 0 turns fusion off (for camera pairs whose views are not aligned).
    pub fuse_iou: f32,
    /// Which of the camera's tracks may start a new identity.
    pub new_identities: NewIdentities,
}

/// Which tracks may start a new identity (any track may join a known one by appearance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NewIdentities {
    /// Every track.
    Any,
    /// Only a track fused with a track of the other view: a person seen warm and moving in both
    /// (aligned views that see the same area); an unfused track (a shadow, a reflection, a
    /// detector's split box) joins a known identity or stays without one.
    Fused,
}

/// What to do with a frame that found no partner within the tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnpairedPolicy {
    /// Process it alone.
    Process,
    /// Drop it (counted).
    Drop,
}

/// One video source and the frames wanted from it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    pub input: Input,
    /// Output width and height (scaled inside GStreamer); `None` keeps the source size.
    pub size: Option<(u32, u32)>,
    /// Target frame rate (rate-limited inside GStreamer); `None` keeps the source rate.
    pub fps: Option<f64>,
    /// Pixel format handed to the pipeline.
    pub format: PixelFormat,
    /// Restart a file source at its end.
    pub looping: bool,
}

/// Where frames come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Anything `decodebin` plays.
    File { path: PathBuf },
    /// An RTSP stream.
    Rtsp {
        url: RtspUrl,
        transport: RtspTransport,
        latency_ms: u32,
    },
    /// A Video4Linux2 device.
    V4l2 { device: PathBuf },
    /// GStreamer's `videotestsrc` with a pattern name (e.g. `ball`, `smpte`); `frames` ends it.
    Test { pattern: String, frames: Option<u64> },
    /// A custom pipeline template from `pipelines/` with `${name}` placeholders.
    Template {
        template: PathBuf,
        params: BTreeMap<String, Param>,
    },
}

/// A template parameter's value. A secret one (a URL with a password, or a parameter the source
/// lists in `secret_params`) prints redacted wherever it is printed: `Debug`, [`Param::shown`].
#[derive(Clone, PartialEq, Eq)]
pub struct Param {
    value: String,
    /// The whole value is secret (listed in `secret_params`), not only a URL's password.
    whole: bool,
}

impl Param {
    /// A value; `secret` marks the whole of it secret.
    pub fn new(value: impl Into<String>, secret: bool) -> Self {
        Param {
            value: value.into(),
            whole: secret,
        }
    }

    /// The value itself, for the pipeline only: never print it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// The value as it may be printed: `***` for a secret one, a URL's password replaced by `***`.
    pub fn shown(&self) -> String {
        if self.whole {
            "***".to_owned()
        } else {
            super::url::redact(&self.value)
        }
    }

    /// The secret part of the value, if any: all of it, or a URL's password (never empty).
    pub fn secret(&self) -> Option<String> {
        let secret = if self.whole {
            Some(self.value.clone())
        } else {
            super::url::split(&self.value).password
        };
        secret.filter(|s| !s.is_empty())
    }
}

impl From<&str> for Param {
    fn from(value: &str) -> Self {
        Param::new(value, false)
    }
}

impl fmt::Debug for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.shown())
    }
}

/// RTSP lower transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    Tcp,
    Udp,
}

/// An RTSP URL whose password is never printed: `Display` and `Debug` redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct RtspUrl {
    url: String,
    /// Name of an environment variable holding the password, read when the stream opens.
    pub password_env: Option<String>,
}

impl RtspUrl {
    /// The URL with credentials, for the pipeline only.
    pub fn expose(&self) -> &str {
        &self.url
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        super::url::redact(&self.url)
    }
}

impl fmt::Display for RtspUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for RtspUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RtspUrl({})", self.redacted())
    }
}

/// Embedding model settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The backbone the weights must be (checked when given; otherwise read from the file).
    pub backbone: Option<Backbone>,
    /// Weights file: any format `reid-pipe import` reads, or a TorchScript manifest (`.toml`).
    pub weights: PathBuf,
    /// Network input height × width for weights that do not record theirs (default: the
    /// recipe's 288 × 144).
    pub input_size: Option<(u32, u32)>,
    /// Half precision (float16): `None` is the default, on for CUDA and off on the CPU.
    pub half: Option<bool>,
    /// Where crops are resized and normalised.
    pub preprocess: Preprocess,
    /// The site's mean embedding (a file `adapt` writes), taken off every embedding before it
    /// is matched; thresholds suggested for it hold only with it.
    pub centre: Option<PathBuf>,
}

/// Where an embedder resizes and normalises its crops (`model.preprocess`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preprocess {
    /// `tensor` on CUDA, `host` on the CPU.
    #[default]
    Auto,
    /// On the CPU, one crop at a time, Pillow's Lanczos exactly.
    Host,
    /// As batched tensor operations on the model's device (the same taps; within one grey level
    /// of `host`).
    Tensor,
}

/// Identity index settings. Distances are cosine distances, 1 − cos, in [0, 2].
#[derive(Debug, Clone, PartialEq)]
pub struct Index {
    pub backend: IndexBackend,
    pub same_modality_threshold: f32,
    pub cross_modality_threshold: f32,
    pub max_exemplars: usize,
    pub expiry_s: f64,
    pub snapshot_dir: PathBuf,
    pub snapshot_interval_s: f64,
}

/// Search backend of the identity index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexBackend {
    Hnsw,
    Exact,
}

/// Where results go.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    /// JSON-lines event file.
    pub events: Option<PathBuf>,
    /// Size in bytes at which the event file is rotated (`events.jsonl` → `events.jsonl.1` …).
    pub events_max_bytes: u64,
    /// Rotated event files kept.
    pub events_keep: usize,
    /// Also print events on standard output.
    pub stdout: bool,
    /// Annotated side-by-side video file.
    pub video: Option<PathBuf>,
    /// Directory for a thumbnail (JPEG) of each new identity.
    pub thumbnails: Option<PathBuf>,
    /// The operator's HTTP server (page, JSON API, `/metrics`), e.g. `127.0.0.1:9464`.
    pub http_listen: Option<std::net::SocketAddr>,
    /// RTSP restream of the annotated view.
    pub rtsp: Option<Rtsp>,
    pub mqtt: Option<Mqtt>,
}

/// The RTSP restream of the annotated view: one mount per camera pair, `<path>/<camera>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rtsp {
    /// Address and port of the RTSP server (127.0.0.1:8554 unless configured).
    pub listen: std::net::SocketAddr,
    /// Mount prefix, e.g. `/annotated`.
    pub path: String,
    /// At most this many frames per second sent (frames in between are left out).
    pub fps: f64,
}

/// MQTT publishing.
#[derive(Debug, Clone, PartialEq)]
pub struct Mqtt {
    pub host: String,
    pub port: u16,
    pub topic_prefix: String,
    pub qos: u8,
    pub username: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    pub tls: bool,
    /// Events held while the broker is unreachable; more are dropped and counted.
    pub buffer: usize,
    /// MQTT client id: the same across restarts, so the broker resumes the persistent session
    /// (default `reid-pipe-<host>-<site file name>`).
    pub client_id: String,
    /// Publish Home Assistant discovery messages and sensor states (retained).
    pub home_assistant: bool,
    /// Home Assistant's discovery topic prefix (`homeassistant`).
    pub discovery_prefix: String,
}

impl SiteConfig {
    /// Loads and validates a site file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (raw, text) = super::read::<raw::RawSite>(path)?;
        raw.check(&Source::new(path, &text))
    }

    /// Parses and validates site TOML; `path` names the file in errors and anchors relative paths.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, ConfigError> {
        let raw = super::parse::<raw::RawSite>(path, bytes)?;
        let text = String::from_utf8_lossy(bytes);
        raw.check(&Source::new(path, &text))
    }

    /// The annotated video file of each camera pair (`outputs.video`; none when unset): the
    /// file itself for one pair, `out.mkv` → `out-<name>.mkv` for several.
    pub fn video_paths(&self) -> Vec<PathBuf> {
        let Some(base) = &self.outputs.video else {
            return Vec::new();
        };
        if self.cameras.len() <= 1 {
            return vec![base.clone()];
        }
        let stem = base
            .file_stem()
            .map_or_else(|| "video".into(), |s| s.to_string_lossy().into_owned());
        let ext = base
            .extension()
            .map_or_else(|| "mkv".into(), |s| s.to_string_lossy().into_owned());
        self.cameras
            .iter()
            .map(|c| base.with_file_name(format!("{stem}-{}.{ext}", c.name)))
            .collect()
    }

    /// The camera pair with this name.
    pub fn camera(&self, name: &str) -> Option<&CameraPair> {
        self.cameras.iter().find(|c| c.name == name)
    }
}
