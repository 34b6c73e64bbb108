//! The site file (`reid-pipe run site.toml`): camera pairs, detector, model, index, outputs and
//! runtime settings. See README.md for the reference of every key.

pub use super::detect::{Calibration, Detector, DetectorKind, ThermalDetector, Tracker, YoloLayout};
use super::detect::{RawCalibration, RawDetector, RawThermalDetector, RawTracker};
use super::{ConfigError, Source};
use crate::base::{Backbone, Device, PixelFormat};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

// ---------------------------------------------------------------------------------------------
// Checked configuration
// ---------------------------------------------------------------------------------------------

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
        params: BTreeMap<String, String>,
    },
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
        redact_url(&self.url)
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

/// Replaces the password of `scheme://user:password@host…` with `***`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!("{}{}:***{}", &url[..scheme_end + 3], &rest[..colon], &rest[at..]),
        None => url.to_owned(),
    }
}

/// Whether a URL's authority has a user part (`scheme://user@host…`).
fn url_has_user(url: &str) -> bool {
    let Some(rest) = url.split_once("://").map(|(_, r)| r) else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    authority.rfind('@').is_some_and(|at| at > 0)
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
    /// Prometheus metrics listener, e.g. `127.0.0.1:9464`.
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub mqtt: Option<Mqtt>,
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
}

impl SiteConfig {
    /// Loads and validates a site file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (raw, text) = super::read::<RawSite>(path)?;
        raw.check(&Source::new(path, &text))
    }

    /// Parses and validates site TOML; `path` names the file in errors and anchors relative paths.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, ConfigError> {
        let raw = super::parse::<RawSite>(path, bytes)?;
        let text = String::from_utf8_lossy(bytes);
        raw.check(&Source::new(path, &text))
    }

    /// The camera pair with this name.
    pub fn camera(&self, name: &str) -> Option<&CameraPair> {
        self.cameras.iter().find(|c| c.name == name)
    }
}

// ---------------------------------------------------------------------------------------------
// Raw file layout
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    #[serde(default)]
    runtime: RawRuntime,
    cameras: Spanned<Vec<RawCamera>>,
    detector: RawDetector,
    #[serde(default)]
    thermal_detector: RawThermalDetector,
    #[serde(default)]
    tracker: RawTracker,
    model: RawModel,
    #[serde(default)]
    index: RawIndex,
    #[serde(default)]
    outputs: RawOutputs,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    device: Option<Spanned<String>>,
    threads: Option<Spanned<i64>>,
    batch_size: Option<Spanned<i64>>,
    max_batch_wait_ms: Option<Spanned<i64>>,
    queue_capacity: Option<Spanned<i64>>,
    detector_workers: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCamera {
    name: Spanned<String>,
    visible: Spanned<RawSource>,
    thermal: Spanned<RawSource>,
    pairing_tolerance_ms: Option<Spanned<f64>>,
    unpaired: Option<UnpairedPolicy>,
    detector: Option<RawDetector>,
    thermal_detector: Option<RawThermalDetector>,
    calibration: Option<RawCalibration>,
    fuse_iou: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    kind: Spanned<SourceKind>,
    path: Option<Spanned<PathBuf>>,
    uri: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    transport: Option<Spanned<RtspTransport>>,
    latency_ms: Option<Spanned<i64>>,
    device: Option<Spanned<PathBuf>>,
    pattern: Option<Spanned<String>>,
    frames: Option<Spanned<i64>>,
    template: Option<Spanned<PathBuf>>,
    params: Option<Spanned<BTreeMap<String, String>>>,
    width: Option<Spanned<i64>>,
    height: Option<Spanned<i64>>,
    fps: Option<Spanned<f64>>,
    format: Option<Spanned<PixelFormat>>,
    #[serde(rename = "loop")]
    looping: Option<Spanned<bool>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum SourceKind {
    File,
    Rtsp,
    V4l2,
    Test,
    Template,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    backbone: Option<Backbone>,
    weights: Spanned<PathBuf>,
    input_size: Option<Spanned<[i64; 2]>>,
    half: Option<bool>,
    #[serde(default)]
    preprocess: Preprocess,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIndex {
    backend: Option<IndexBackend>,
    same_modality_threshold: Option<Spanned<f64>>,
    cross_modality_threshold: Option<Spanned<f64>>,
    max_exemplars: Option<Spanned<i64>>,
    expiry_s: Option<Spanned<f64>>,
    snapshot_dir: Option<PathBuf>,
    snapshot_interval_s: Option<Spanned<f64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOutputs {
    events: Option<PathBuf>,
    events_max_mb: Option<Spanned<f64>>,
    events_keep: Option<Spanned<i64>>,
    #[serde(default)]
    stdout: bool,
    video: Option<PathBuf>,
    thumbnails: Option<PathBuf>,
    metrics_listen: Option<Spanned<String>>,
    mqtt: Option<RawMqtt>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqtt {
    host: Spanned<String>,
    port: Option<Spanned<i64>>,
    topic_prefix: Option<String>,
    qos: Option<Spanned<i64>>,
    username: Option<String>,
    password_env: Option<String>,
    #[serde(default)]
    tls: bool,
    buffer: Option<Spanned<i64>>,
    client_id: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/// `reid-pipe-<host>-<site file stem>`, with characters other than letters, digits, `-` and `_`
/// replaced by `-`: stable across restarts of one site on one machine, distinct between sites.
fn default_client_id(site: &Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = if host.trim().is_empty() {
        "localhost"
    } else {
        host.trim()
    };
    let stem = site.file_stem().map_or_else(|| "site".into(), |s| s.to_string_lossy());
    format!("reid-pipe-{host}-{stem}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Range checks shared by the site and training files.
pub(crate) mod check {
    use super::super::{ConfigError, Source};
    use toml::Spanned;

    /// An integer in `[min, max]`.
    pub(crate) fn int(
        src: &Source<'_>,
        key: &str,
        v: &Option<Spanned<i64>>,
        default: i64,
        min: i64,
        max: i64,
    ) -> Result<i64, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let x = *v.get_ref();
        if x < min || x > max {
            let range = if max == i64::MAX {
                format!("≥ {min}")
            } else {
                format!("in [{min}, {max}]")
            };
            return Err(src.error(key, v.span(), format!("expected an integer {range}, found {x}")));
        }
        Ok(x)
    }

    /// A finite number in `[min, max]`.
    pub(crate) fn float(
        src: &Source<'_>,
        key: &str,
        v: &Option<Spanned<f64>>,
        default: f64,
        min: f64,
        max: f64,
    ) -> Result<f64, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let x = *v.get_ref();
        if !x.is_finite() || x < min || x > max {
            let range = if max == f64::INFINITY {
                format!("≥ {min}")
            } else {
                format!("in [{min}, {max}]")
            };
            return Err(src.error(key, v.span(), format!("expected a number {range}, found {x}")));
        }
        Ok(x)
    }

    /// A strictly positive, finite number.
    pub(crate) fn positive(
        src: &Source<'_>,
        key: &str,
        v: &Option<Spanned<f64>>,
        default: f64,
    ) -> Result<f64, ConfigError> {
        if let Some(s) = v
            && (*s.get_ref() <= 0.0 || !s.get_ref().is_finite())
        {
            return Err(src.error(key, s.span(), format!("expected a number > 0, found {}", s.get_ref())));
        }
        float(src, key, v, default, 0.0, f64::INFINITY)
    }
}

impl RawSite {
    fn check(self, src: &Source<'_>) -> Result<SiteConfig, ConfigError> {
        let runtime = self.runtime.check(src)?;
        let detector = self.detector.check(src, "detector", None)?;
        let thermal_detector = self
            .thermal_detector
            .check(src, "thermal_detector", &ThermalDetector::default())?;
        if self.cameras.get_ref().is_empty() {
            return Err(src.error("cameras", self.cameras.span(), "at least one camera pair is required"));
        }
        let mut names = HashSet::new();
        let mut cameras = Vec::new();
        for (i, cam) in self.cameras.into_inner().into_iter().enumerate() {
            let key = format!("cameras[{i}]");
            let name = cam.name.get_ref().trim().to_owned();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                return Err(src.error(
                    &format!("{key}.name"),
                    cam.name.span(),
                    format!(
                        "expected a non-empty name of letters, digits, '-', '_' or '.', found {:?}",
                        cam.name.get_ref()
                    ),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(src.error(
                    &format!("{key}.name"),
                    cam.name.span(),
                    format!("duplicate camera name {name:?}: every camera pair needs its own name"),
                ));
            }
            let visible = check_source(src, &format!("{key}.visible"), cam.visible, PixelFormat::Rgb)?;
            let thermal = check_source(src, &format!("{key}.thermal"), cam.thermal, PixelFormat::Gray8)?;
            let pairing_tolerance_ms = check::float(
                src,
                &format!("{key}.pairing_tolerance_ms"),
                &cam.pairing_tolerance_ms,
                40.0,
                0.0,
                10_000.0,
            )?;
            let camera_detector = match cam.detector {
                Some(d) => d.check(src, &format!("{key}.detector"), Some(&detector))?,
                None => detector.clone(),
            };
            let camera_thermal = match cam.thermal_detector {
                Some(d) => d.check(src, &format!("{key}.thermal_detector"), &thermal_detector)?,
                None => thermal_detector.clone(),
            };
            let calibration = match cam.calibration {
                Some(c) => Some(c.check(src, &format!("{key}.calibration"))?),
                None => None,
            };
            if camera_thermal.min_celsius.is_some() && (calibration.is_none() || thermal.format != PixelFormat::Gray16)
            {
                return Err(src.error(
                    &format!("{key}.calibration"),
                    cam.name.span(),
                    "`min_celsius` needs 16-bit thermal frames (`format = \"gray16\"`) and a `calibration` \
                     (gain, offset) for this camera",
                ));
            }
            cameras.push(CameraPair {
                name,
                visible,
                thermal,
                pairing_tolerance_ms,
                unpaired: cam.unpaired.unwrap_or(UnpairedPolicy::Process),
                detector: camera_detector,
                thermal_detector: camera_thermal,
                calibration,
                fuse_iou: check::float(src, &format!("{key}.fuse_iou"), &cam.fuse_iou, 0.3, 0.0, 1.0)? as f32,
            });
        }
        Ok(SiteConfig {
            file: src.file.to_path_buf(),
            runtime,
            cameras,
            detector,
            tracker: self.tracker.check(src)?,
            model: self.model.check(src)?,
            index: self.index.check(src)?,
            outputs: self.outputs.check(src)?,
        })
    }
}

impl RawRuntime {
    fn check(self, src: &Source<'_>) -> Result<Runtime, ConfigError> {
        let device = match &self.device {
            None => Device::AUTO,
            Some(d) => Device::parse(d.get_ref()).ok_or_else(|| {
                src.error(
                    "runtime.device",
                    d.span(),
                    format!(
                        "expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\", found {:?}",
                        d.get_ref()
                    ),
                )
            })?,
        };
        let max = i64::from(u16::MAX);
        Ok(Runtime {
            device,
            threads: check::int(src, "runtime.threads", &self.threads, 2, 1, 1024)? as usize,
            batch_size: check::int(src, "runtime.batch_size", &self.batch_size, 16, 1, 4096)? as usize,
            max_batch_wait_ms: check::int(src, "runtime.max_batch_wait_ms", &self.max_batch_wait_ms, 20, 0, 60_000)?
                as u64,
            queue_capacity: check::int(src, "runtime.queue_capacity", &self.queue_capacity, 8, 1, max)? as usize,
            detector_workers: check::int(src, "runtime.detector_workers", &self.detector_workers, 1, 1, 256)? as usize,
        })
    }
}

fn check_source(
    src: &Source<'_>,
    key: &str,
    raw: Spanned<RawSource>,
    default_format: PixelFormat,
) -> Result<SourceSpec, ConfigError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let kind = *raw.kind.get_ref();
    // Keys each kind accepts beyond the common ones; anything else set is an error.
    let allowed: &[&str] = match kind {
        SourceKind::File => &["path"],
        SourceKind::Rtsp => &["uri", "password_env", "transport", "latency_ms"],
        SourceKind::V4l2 => &["device"],
        SourceKind::Test => &["pattern", "frames"],
        SourceKind::Template => &["template", "params"],
    };
    let set: [(&str, Option<std::ops::Range<usize>>); 9] = [
        ("path", raw.path.as_ref().map(Spanned::span)),
        ("uri", raw.uri.as_ref().map(Spanned::span)),
        ("password_env", raw.password_env.as_ref().map(Spanned::span)),
        ("transport", raw.transport.as_ref().map(Spanned::span)),
        ("latency_ms", raw.latency_ms.as_ref().map(Spanned::span)),
        ("device", raw.device.as_ref().map(Spanned::span)),
        ("pattern", raw.pattern.as_ref().map(Spanned::span)),
        ("frames", raw.frames.as_ref().map(Spanned::span)),
        ("template", raw.template.as_ref().map(Spanned::span)),
    ];
    let params_span = raw.params.as_ref().map(Spanned::span);
    for (name, s) in set.into_iter().chain([("params", params_span)]) {
        if let Some(s) = s
            && !allowed.contains(&name)
        {
            return Err(src.error(
                &format!("{key}.{name}"),
                s,
                format!(
                    "`{name}` does not apply to a `{kind:?}` source; it takes {}",
                    allowed.join(", ")
                )
                .to_lowercase(),
            ));
        }
    }
    let missing = |name: &str| {
        src.error(
            &format!("{key}.{name}"),
            span.clone(),
            format!("a `{}` source needs `{name}`", format!("{kind:?}").to_lowercase()),
        )
    };
    let input = match kind {
        SourceKind::File => Input::File {
            path: src.resolve(raw.path.as_ref().ok_or_else(|| missing("path"))?.get_ref()),
        },
        SourceKind::Rtsp => {
            let uri = raw.uri.as_ref().ok_or_else(|| missing("uri"))?;
            if !uri.get_ref().starts_with("rtsp://") && !uri.get_ref().starts_with("rtsps://") {
                return Err(src.error(
                    &format!("{key}.uri"),
                    uri.span(),
                    format!(
                        "expected an rtsp:// or rtsps:// URL, found {:?}",
                        redact_url(uri.get_ref())
                    ),
                ));
            }
            if let Some(env) = &raw.password_env
                && !url_has_user(uri.get_ref())
            {
                return Err(src.error(
                    &format!("{key}.password_env"),
                    env.span(),
                    format!(
                        "set, but {key}.uri names no user to go with the password (rtsp://user@host/…): {:?}",
                        redact_url(uri.get_ref())
                    ),
                ));
            }
            Input::Rtsp {
                url: RtspUrl {
                    url: uri.get_ref().clone(),
                    password_env: raw.password_env.as_ref().map(|p| p.get_ref().clone()),
                },
                transport: raw.transport.as_ref().map_or(RtspTransport::Tcp, |t| *t.get_ref()),
                latency_ms: check::int(src, &format!("{key}.latency_ms"), &raw.latency_ms, 200, 0, 60_000)? as u32,
            }
        }
        SourceKind::V4l2 => Input::V4l2 {
            device: raw.device.as_ref().ok_or_else(|| missing("device"))?.get_ref().clone(),
        },
        SourceKind::Test => Input::Test {
            pattern: raw
                .pattern
                .as_ref()
                .map_or_else(|| "ball".to_owned(), |p| p.get_ref().clone()),
            frames: match &raw.frames {
                None => None,
                Some(_) => Some(check::int(src, &format!("{key}.frames"), &raw.frames, 0, 1, i64::MAX)? as u64),
            },
        },
        SourceKind::Template => Input::Template {
            template: src.resolve(raw.template.as_ref().ok_or_else(|| missing("template"))?.get_ref()),
            params: raw.params.map(Spanned::into_inner).unwrap_or_default(),
        },
    };
    let size = match (&raw.width, &raw.height) {
        (None, None) => None,
        (Some(_), Some(_)) => Some((
            check::int(src, &format!("{key}.width"), &raw.width, 0, 16, 16_384)? as u32,
            check::int(src, &format!("{key}.height"), &raw.height, 0, 16, 16_384)? as u32,
        )),
        (Some(w), None) => {
            return Err(src.error(
                &format!("{key}.height"),
                w.span(),
                "`width` is set, so `height` is needed too",
            ));
        }
        (None, Some(h)) => {
            return Err(src.error(
                &format!("{key}.width"),
                h.span(),
                "`height` is set, so `width` is needed too",
            ));
        }
    };
    let fps = match &raw.fps {
        None => None,
        Some(_) => Some(check::float(src, &format!("{key}.fps"), &raw.fps, 0.0, 0.01, 1000.0)?),
    };
    let looping = raw.looping.as_ref().is_some_and(|l| *l.get_ref());
    if looping
        && kind != SourceKind::File
        && let Some(l) = &raw.looping
    {
        return Err(src.error(
            &format!("{key}.loop"),
            l.span(),
            "`loop` applies only to `file` sources",
        ));
    }
    let format = raw.format.as_ref().map_or(default_format, |f| *f.get_ref());
    if default_format == PixelFormat::Rgb
        && format != PixelFormat::Rgb
        && let Some(f) = &raw.format
    {
        return Err(src.error(
            &format!("{key}.format"),
            f.span(),
            "visible sources deliver `rgb` frames",
        ));
    }
    if default_format != PixelFormat::Rgb
        && format == PixelFormat::Rgb
        && let Some(f) = &raw.format
    {
        return Err(src.error(
            &format!("{key}.format"),
            f.span(),
            "thermal sources deliver `gray8` or `gray16` frames",
        ));
    }
    Ok(SourceSpec {
        input,
        size,
        fps,
        format,
        looping,
    })
}

impl RawModel {
    fn check(self, src: &Source<'_>) -> Result<Model, ConfigError> {
        let input_size = match &self.input_size {
            None => None,
            Some(s) => {
                let [h, w] = *s.get_ref();
                if !(16..=2048).contains(&h) || !(16..=2048).contains(&w) {
                    return Err(src.error(
                        "model.input_size",
                        s.span(),
                        format!("expected [height, width], each in [16, 2048], found [{h}, {w}]"),
                    ));
                }
                Some((h as u32, w as u32))
            }
        };
        if self.weights.get_ref().as_os_str().is_empty() {
            return Err(src.error(
                "model.weights",
                self.weights.span(),
                "expected the path of a weights file",
            ));
        }
        Ok(Model {
            backbone: self.backbone,
            weights: src.resolve(self.weights.get_ref()),
            input_size,
            half: self.half,
            preprocess: self.preprocess,
        })
    }
}

impl RawIndex {
    fn check(self, src: &Source<'_>) -> Result<Index, ConfigError> {
        let same = check::float(
            src,
            "index.same_modality_threshold",
            &self.same_modality_threshold,
            0.3,
            0.0,
            2.0,
        )?;
        let cross = check::float(
            src,
            "index.cross_modality_threshold",
            &self.cross_modality_threshold,
            0.5,
            0.0,
            2.0,
        )?;
        Ok(Index {
            backend: self.backend.unwrap_or(IndexBackend::Hnsw),
            same_modality_threshold: same as f32,
            cross_modality_threshold: cross as f32,
            max_exemplars: check::int(src, "index.max_exemplars", &self.max_exemplars, 16, 1, 100_000)? as usize,
            expiry_s: check::positive(src, "index.expiry_s", &self.expiry_s, 3600.0)?,
            snapshot_dir: src.resolve(self.snapshot_dir.as_deref().unwrap_or(Path::new("out/index"))),
            snapshot_interval_s: check::positive(src, "index.snapshot_interval_s", &self.snapshot_interval_s, 60.0)?,
        })
    }
}

impl RawOutputs {
    fn check(self, src: &Source<'_>) -> Result<Outputs, ConfigError> {
        let metrics_listen = match &self.metrics_listen {
            None => None,
            Some(s) => Some(s.get_ref().parse().map_err(|_| {
                src.error(
                    "outputs.metrics_listen",
                    s.span(),
                    format!(
                        "expected an address such as \"127.0.0.1:9464\", found {:?}",
                        s.get_ref()
                    ),
                )
            })?),
        };
        let mqtt = match self.mqtt {
            None => None,
            Some(m) => {
                if m.host.get_ref().trim().is_empty() {
                    return Err(src.error(
                        "outputs.mqtt.host",
                        m.host.span(),
                        "expected a broker host name or address",
                    ));
                }
                let client_id = match &m.client_id {
                    Some(id) => {
                        let v = id.get_ref();
                        if v.is_empty() || v.len() > 128 || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                            return Err(src.error(
                                "outputs.mqtt.client_id",
                                id.span(),
                                "expected 1 to 128 characters without spaces",
                            ));
                        }
                        v.clone()
                    }
                    None => default_client_id(src.file),
                };
                Some(Mqtt {
                    client_id,
                    host: m.host.get_ref().clone(),
                    port: check::int(src, "outputs.mqtt.port", &m.port, 1883, 1, 65_535)? as u16,
                    topic_prefix: m.topic_prefix.unwrap_or_else(|| "reid-pipe".to_owned()),
                    qos: check::int(src, "outputs.mqtt.qos", &m.qos, 1, 0, 2)? as u8,
                    username: m.username,
                    password_env: m.password_env,
                    tls: m.tls,
                    buffer: check::int(src, "outputs.mqtt.buffer", &m.buffer, 1000, 1, 1_000_000)? as usize,
                })
            }
        };
        Ok(Outputs {
            events: self.events.map(|p| src.resolve(&p)),
            events_max_bytes: (check::positive(src, "outputs.events_max_mb", &self.events_max_mb, 100.0)? * 1e6) as u64,
            events_keep: check::int(src, "outputs.events_keep", &self.events_keep, 5, 0, 1000)? as usize,
            stdout: self.stdout,
            video: self.video.map(|p| src.resolve(&p)),
            thumbnails: self.thumbnails.map(|p| src.resolve(&p)),
            metrics_listen,
            mqtt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("rtsp://admin:s3cret@10.0.0.2:554/live"),
            "rtsp://admin:***@10.0.0.2:554/live"
        );
        assert_eq!(redact_url("rtsp://admin@cam/live"), "rtsp://admin@cam/live");
        assert_eq!(redact_url("rtsp://cam/a@b"), "rtsp://cam/a@b");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
