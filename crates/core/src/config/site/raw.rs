//! The site file's layout as read (every value with its location), and the checks that turn it
//! into a [`SiteConfig`].

use super::cluster::RawCluster;
use super::detectors::{RawCalibration, RawDetector, RawThermalDetector, RawTracker};
use super::guard::{OutputSpans, outputs_clear_of_inputs};
use super::harvest::RawHarvest;
use super::sources::{RawSource, check_source};
use super::*;
use crate::config::checks::{self, Pair};
use std::collections::HashSet;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSite {
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
    #[serde(default)]
    harvest: RawHarvest,
    cluster: Option<RawCluster>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    device: Option<Spanned<String>>,
    threads: Option<Spanned<i64>>,
    batch_size: Option<Spanned<i64>>,
    max_batch_wait_ms: Option<Spanned<i64>>,
    max_failed_batches: Option<Spanned<i64>>,
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
    new_identities: Option<Spanned<NewIdentities>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    backbone: Option<Backbone>,
    weights: Spanned<PathBuf>,
    input_size: Option<Spanned<Pair<i64>>>,
    half: Option<bool>,
    #[serde(default)]
    preprocess: Preprocess,
    centre: Option<Spanned<PathBuf>>,
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
    events: Option<Spanned<PathBuf>>,
    events_max_mb: Option<Spanned<f64>>,
    events_keep: Option<Spanned<i64>>,
    #[serde(default)]
    stdout: bool,
    video: Option<Spanned<PathBuf>>,
    thumbnails: Option<Spanned<PathBuf>>,
    /// The earlier name, `metrics_listen`, is still read.
    #[serde(alias = "metrics_listen")]
    http_listen: Option<Spanned<String>>,
    /// Annotated view restreamed over RTSP.
    rtsp: Option<RawRtsp>,
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
    /// Home Assistant MQTT discovery.
    #[serde(default)]
    home_assistant: bool,
    discovery_prefix: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRtsp {
    listen: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    fps: Option<Spanned<f64>>,
}

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

impl RawSite {
    pub(super) fn check(self, src: &Source<'_>) -> Result<SiteConfig, ConfigError> {
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
            let pairing_tolerance_ms = checks::float(
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
            let fuse_iou = checks::float(src, &format!("{key}.fuse_iou"), &cam.fuse_iou, 0.3, 0.0, 1.0)? as f32;
            let new_identities = match cam.new_identities {
                Some(n) if *n.get_ref() == NewIdentities::Fused && fuse_iou <= 0.0 => {
                    return Err(src.error(
                        &format!("{key}.new_identities"),
                        n.span(),
                        "\"fused\" needs fusion on: this camera's `fuse_iou` is 0, so no track would \
                         ever start an identity",
                    ));
                }
                Some(n) => n.into_inner(),
                None => NewIdentities::Any,
            };
            cameras.push(CameraPair {
                name,
                visible,
                thermal,
                pairing_tolerance_ms,
                unpaired: cam.unpaired.unwrap_or(UnpairedPolicy::Process),
                detector: camera_detector,
                thermal_detector: camera_thermal,
                calibration,
                fuse_iou,
                new_identities,
            });
        }
        let spans = OutputSpans {
            events: self.outputs.events.as_ref().map(Spanned::span),
            video: self.outputs.video.as_ref().map(Spanned::span),
            thumbnails: self.outputs.thumbnails.as_ref().map(Spanned::span),
        };
        let index = self.index.check(src)?;
        let cfg = SiteConfig {
            file: src.file.to_path_buf(),
            runtime,
            cameras,
            detector,
            tracker: self.tracker.check(src)?,
            model: self.model.check(src)?,
            outputs: self.outputs.check(src)?,
            harvest: self.harvest.check(src)?,
            cluster: match self.cluster {
                Some(c) => Some(c.check(src, index.max_exemplars)?),
                None => None,
            },
            index,
        };
        outputs_clear_of_inputs(&cfg, &spans, src)?;
        Ok(cfg)
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
            threads: checks::int(src, "runtime.threads", &self.threads, 2, 1, 1024)? as usize,
            batch_size: checks::int(src, "runtime.batch_size", &self.batch_size, 16, 1, 4096)? as usize,
            max_batch_wait_ms: checks::int(src, "runtime.max_batch_wait_ms", &self.max_batch_wait_ms, 20, 0, 60_000)?
                as u64,
            max_failed_batches: checks::int(
                src,
                "runtime.max_failed_batches",
                &self.max_failed_batches,
                20,
                1,
                1_000_000,
            )? as u64,
            queue_capacity: checks::int(src, "runtime.queue_capacity", &self.queue_capacity, 8, 1, max)? as usize,
            detector_workers: checks::int(src, "runtime.detector_workers", &self.detector_workers, 1, 1, 256)? as usize,
        })
    }
}

impl RawModel {
    fn check(self, src: &Source<'_>) -> Result<Model, ConfigError> {
        let input_size = match &self.input_size {
            None => None,
            Some(s) => {
                let Pair([h, w]) = *s.get_ref();
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
        if let Some(c) = &self.centre
            && c.get_ref().as_os_str().is_empty()
        {
            return Err(src.error(
                "model.centre",
                c.span(),
                "expected the path of a centre file (leave the key out for none)",
            ));
        }
        Ok(Model {
            backbone: self.backbone,
            weights: src.resolve(self.weights.get_ref()),
            input_size,
            half: self.half,
            preprocess: self.preprocess,
            centre: self.centre.map(|c| src.resolve(c.get_ref())),
        })
    }
}

impl RawIndex {
    fn check(self, src: &Source<'_>) -> Result<Index, ConfigError> {
        let same = checks::float(
            src,
            "index.same_modality_threshold",
            &self.same_modality_threshold,
            0.3,
            0.0,
            2.0,
        )?;
        let cross = checks::float(
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
            max_exemplars: checks::int(src, "index.max_exemplars", &self.max_exemplars, 16, 1, 100_000)? as usize,
            expiry_s: checks::positive(src, "index.expiry_s", &self.expiry_s, 3600.0)?,
            snapshot_dir: src.resolve(self.snapshot_dir.as_deref().unwrap_or(Path::new("out/index"))),
            snapshot_interval_s: checks::positive(src, "index.snapshot_interval_s", &self.snapshot_interval_s, 60.0)?,
        })
    }
}

impl RawOutputs {
    fn check(self, src: &Source<'_>) -> Result<Outputs, ConfigError> {
        let http_listen = match &self.http_listen {
            None => None,
            Some(s) => Some(s.get_ref().parse().map_err(|_| {
                src.error(
                    "outputs.http_listen",
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
                    port: checks::int(src, "outputs.mqtt.port", &m.port, 1883, 1, 65_535)? as u16,
                    topic_prefix: m.topic_prefix.unwrap_or_else(|| "reid-pipe".to_owned()),
                    qos: checks::int(src, "outputs.mqtt.qos", &m.qos, 1, 0, 2)? as u8,
                    username: m.username,
                    password_env: m.password_env,
                    tls: m.tls,
                    buffer: checks::int(src, "outputs.mqtt.buffer", &m.buffer, 1000, 1, 1_000_000)? as usize,
                    home_assistant: m.home_assistant,
                    discovery_prefix: topic_part(
                        src,
                        "outputs.mqtt.discovery_prefix",
                        m.discovery_prefix,
                        "homeassistant",
                    )?,
                })
            }
        };
        let rtsp = match self.rtsp {
            None => None,
            Some(r) => Some(r.check(src)?),
        };
        Ok(Outputs {
            events: self.events.map(|p| src.resolve(p.get_ref())),
            events_max_bytes: (checks::positive(src, "outputs.events_max_mb", &self.events_max_mb, 100.0)? * 1e6)
                as u64,
            events_keep: checks::int(src, "outputs.events_keep", &self.events_keep, 5, 0, 1000)? as usize,
            stdout: self.stdout,
            video: self.video.map(|p| src.resolve(p.get_ref())),
            thumbnails: self.thumbnails.map(|p| src.resolve(p.get_ref())),
            http_listen,
            rtsp,
            mqtt,
        })
    }
}

impl RawRtsp {
    fn check(self, src: &Source<'_>) -> Result<Rtsp, ConfigError> {
        let listen = match &self.listen {
            None => std::net::SocketAddr::from(([127, 0, 0, 1], 8554)),
            Some(s) => s.get_ref().parse().map_err(|_| {
                src.error(
                    "outputs.rtsp.listen",
                    s.span(),
                    format!(
                        "expected an address such as \"127.0.0.1:8554\", found {:?}",
                        s.get_ref()
                    ),
                )
            })?,
        };
        let path = match &self.path {
            None => "/annotated".to_owned(),
            Some(p) => {
                let v = p.get_ref().trim_end_matches('/');
                let fine = v.starts_with('/')
                    && v[1..].split('/').all(|part| {
                        !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                    });
                if !fine {
                    return Err(src.error(
                        "outputs.rtsp.path",
                        p.span(),
                        format!(
                            "expected a path such as \"/annotated\" (letters, digits, '-', '_', '.'), found {:?}",
                            p.get_ref()
                        ),
                    ));
                }
                v.to_owned()
            }
        };
        Ok(Rtsp {
            listen,
            path,
            fps: checks::float(src, "outputs.rtsp.fps", &self.fps, 10.0, 1.0, 60.0)?,
        })
    }
}

/// An MQTT topic level: letters, digits, `-`, `_`, `.` (no wildcards, no `/`).
fn topic_part(
    src: &Source<'_>,
    key: &str,
    value: Option<Spanned<String>>,
    default: &str,
) -> Result<String, ConfigError> {
    let Some(v) = value else {
        return Ok(default.to_owned());
    };
    let text = v.get_ref();
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(src.error(
            key,
            v.span(),
            format!("expected one topic level of letters, digits, '-', '_' or '.', found {text:?}"),
        ));
    }
    Ok(text.clone())
}
