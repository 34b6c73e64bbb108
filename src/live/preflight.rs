//! Everything a run opens before its first frame, checked without starting a source or writing
//! a result: each camera's detector loads, the snapshot folder can be written, and the model
//! embeds a test crop of each modality into finite vectors of the dimension it announces.
//! `check` runs the same checks, so a site that passes `check` starts.

use super::LiveError;
use crate::config::SiteConfig;
use crate::config::site::Input;
use crate::index::snapshot::crc32_update;
use crate::model::embedder::{self, Embed};
use std::io::Read;
use std::path::Path;

/// What the checks loaded, for the run to use.
pub struct Ready {
    pub embedder: Box<dyn Embed>,
    /// An id of the model's weights (see [`model_id`]), recorded in index snapshots.
    pub model_id: String,
}

/// Runs the checks.
pub fn preflight(cfg: &SiteConfig) -> Result<Ready, LiveError> {
    for cam in &cfg.cameras {
        crate::detect::visible(&cam.detector).map_err(|source| LiveError::Detector {
            camera: cam.name.clone(),
            kind: cam.detector.kind,
            source,
        })?;
    }
    crate::index::snapshot::check_writable(&cfg.index.snapshot_dir)?;
    let embedder = load_embedder(cfg)?;
    let model_id = model_id(
        &cfg.model.weights,
        cfg.model.centre.as_deref(),
        embedder.stager().input_size(),
    )
    .map_err(|source| LiveError::ModelId {
        path: cfg.model.weights.clone(),
        source,
    })?;
    Ok(Ready { embedder, model_id })
}

/// The source files, templates and devices that are not there now, each with its key. A run
/// isolates its sources, so it starts without these and reports each as failed; `check` warns.
pub fn absent_sources(cfg: &SiteConfig) -> Vec<String> {
    let mut absent = Vec::new();
    for (i, cam) in cfg.cameras.iter().enumerate() {
        for (side, spec) in [("visible", &cam.visible), ("thermal", &cam.thermal)] {
            let (key, path) = match &spec.input {
                Input::File { path } => ("path", path),
                Input::Template { template, .. } => ("template", template),
                Input::V4l2 { device } => ("device", device),
                Input::Rtsp { .. } | Input::Test { .. } => continue,
            };
            if !path.exists() {
                absent.push(format!("cameras[{i}].{side}.{key}: {} not found", path.display()));
            }
        }
    }
    absent
}

/// An id of the model, so that a snapshot knows whose vectors it holds: the CRC-32 of the
/// weight file (of a TorchScript manifest and the two modules it names), of the centre file if
/// any, and the input size the network runs at. The same weights copied elsewhere keep their id;
/// any change to them gives a new one.
pub fn model_id(weights: &Path, centre: Option<&Path>, input_size: (i64, i64)) -> Result<String, std::io::Error> {
    let mut files = vec![weights.to_path_buf()];
    files.extend(centre.map(Path::to_path_buf));
    if weights.extension().is_some_and(|e| e == "toml") {
        let manifest: toml::Table = std::fs::read_to_string(weights)?
            .parse()
            .map_err(std::io::Error::other)?;
        let dir = weights.parent().unwrap_or(Path::new("."));
        for side in ["visible", "thermal"] {
            if let Some(module) = manifest.get(side).and_then(toml::Value::as_str) {
                files.push(dir.join(module));
            }
        }
    }
    let mut crc = crc32_update(0, format!("{input_size:?}").as_bytes());
    let mut chunk = vec![0u8; 1 << 20];
    for f in files {
        let mut file = std::fs::File::open(f)?;
        loop {
            match file.read(&mut chunk)? {
                0 => break,
                n => crc = crc32_update(crc, &chunk[..n]),
            }
        }
    }
    Ok(format!("{crc:08x}"))
}

/// The embedder of `model`, on `runtime.device`, checked on a test crop of each modality.
fn load_embedder(cfg: &SiteConfig) -> Result<Box<dyn Embed>, LiveError> {
    let device = cfg.runtime.device.resolve("runtime.device")?;
    embedder::from_site_model(&cfg.model, device)
        .and_then(|e| embedder::probe(e.as_ref()).map(|()| e))
        .map_err(|source| LiveError::Model {
            path: cfg.model.weights.clone(),
            source: Box::new(source),
        })
}
