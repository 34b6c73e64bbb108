//! Everything a run opens before its first frame, checked without starting a source or writing
//! a result: each camera's detector loads, the snapshot folder can be written, and the model
//! embeds a test crop of each modality into finite vectors of the dimension it announces.
//! `check` runs the same checks, so a site that passes `check` starts.

use super::LiveError;
use crate::config::SiteConfig;
use crate::config::site::Input;
use crate::index::snapshot::{crc32_file_update, crc32_update};
use crate::model::embedder::{self, Embed};
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
    if let Some(centre) = &cfg.model.centre {
        centre_matches_weights(centre, &cfg.model.weights)?;
    }
    let embedder = load_embedder(cfg)?;
    let model_id = model_id(
        &cfg.model.weights,
        cfg.model.centre.as_deref(),
        embedder.stager().input_size(),
    )?;
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
pub fn model_id(weights: &Path, centre: Option<&Path>, input_size: (i64, i64)) -> Result<String, LiveError> {
    let unreadable = |key: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| LiveError::ModelId { key, path, source }
    };
    let mut files = vec![("model.weights", weights.to_path_buf())];
    if weights.extension().is_some_and(|e| e == "toml") {
        let manifest: toml::Table = std::fs::read_to_string(weights)
            .and_then(|t| t.parse().map_err(std::io::Error::other))
            .map_err(unreadable("model.weights", weights))?;
        let dir = weights.parent().unwrap_or(Path::new("."));
        for side in ["visible", "thermal"] {
            if let Some(module) = manifest.get(side).and_then(toml::Value::as_str) {
                files.push(("model.weights", dir.join(module)));
            }
        }
    }
    files.extend(centre.map(|c| ("model.centre", c.to_path_buf())));
    let mut crc = crc32_update(0, format!("{input_size:?}").as_bytes());
    for (key, f) in files {
        crc = crc32_file_update(crc, &f).map_err(unreadable(key, &f))?;
    }
    Ok(format!("{crc:08x}"))
}

/// Refuses a centre file that records other weights than `weights` (one without a record, made
/// by hand, is taken as it is; so is any with a TorchScript export, whose manifest is not the
/// file the centre was computed with).
fn centre_matches_weights(centre: &Path, weights: &Path) -> Result<(), LiveError> {
    if weights.extension().is_some_and(|e| e == "toml") {
        return Ok(());
    }
    let made_for = crate::model::centre::made_for(centre).map_err(|e| LiveError::Centre {
        path: centre.to_path_buf(),
        source: Box::new(e.into()),
    })?;
    let Some(made_for) = made_for else { return Ok(()) };
    let weights_crc = crc32_file_update(0, weights).map_err(|source| LiveError::ModelId {
        key: "model.weights",
        path: weights.to_path_buf(),
        source,
    })?;
    if made_for == weights_crc {
        Ok(())
    } else {
        Err(LiveError::CentreOfOtherWeights {
            centre: centre.to_path_buf(),
            weights: weights.to_path_buf(),
            made_for,
            weights_crc,
        })
    }
}

/// The embedder of `model`, on `runtime.device`, checked on a test crop of each modality.
fn load_embedder(cfg: &SiteConfig) -> Result<Box<dyn Embed>, LiveError> {
    let device = cfg.runtime.device.resolve("runtime.device")?;
    embedder::from_site_model(&cfg.model, device)
        .and_then(|e| embedder::probe(e.as_ref()).map(|()| e))
        .map_err(|source| match (&source, &cfg.model.centre) {
            (embedder::EmbedError::Centre(_), Some(centre)) => LiveError::Centre {
                path: centre.clone(),
                source: Box::new(source),
            },
            _ => LiveError::Model {
                path: cfg.model.weights.clone(),
                source: Box::new(source),
            },
        })
}
