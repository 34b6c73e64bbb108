//! Everything a run opens before its first frame, checked without starting a source or writing
//! a result: each camera's detector loads, the snapshot folder can be written, and the model
//! embeds a test crop of each modality into finite vectors of the dimension it announces.
//! `check` runs the same checks, so a site that passes `check` starts.

use super::LiveError;
use crate::config::SiteConfig;
use crate::model::embedder::{self, Embed};

/// Runs the checks; returns the loaded embedder for the run to use.
pub fn preflight(cfg: &SiteConfig) -> Result<Box<dyn Embed>, LiveError> {
    for cam in &cfg.cameras {
        crate::detect::visible(&cam.detector).map_err(|source| LiveError::Detector {
            camera: cam.name.clone(),
            source,
        })?;
    }
    crate::index::snapshot::check_writable(&cfg.index.snapshot_dir)?;
    load_embedder(cfg)
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
