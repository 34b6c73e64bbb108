//! Outputs may not be inputs: a site whose `outputs.events`, `outputs.video` (each camera's file)
//! or `outputs.thumbnails` names one of the run's own inputs (the site file, a source file or
//! template, the model weights, a detector model) is refused when it is loaded, so neither `check`
//! nor `run` accepts it and nothing the user has is written over.

use super::{DetectorKind, Input, SiteConfig};
use crate::base::outputs::input_named;
use crate::config::{ConfigError, Source};
use std::ops::Range;
use std::path::PathBuf;

/// Where the output keys are in the file.
pub(super) struct OutputSpans {
    pub events: Option<Range<usize>>,
    pub video: Option<Range<usize>>,
    pub thumbnails: Option<Range<usize>>,
}

/// Every file the run reads, with what it is.
fn inputs(cfg: &SiteConfig) -> Vec<(String, PathBuf)> {
    let mut out = vec![
        ("the site file".to_owned(), cfg.file.clone()),
        ("model.weights".to_owned(), cfg.model.weights.clone()),
    ];
    if let Some(centre) = &cfg.model.centre {
        out.push(("model.centre".to_owned(), centre.clone()));
    }
    for (i, cam) in cfg.cameras.iter().enumerate() {
        for (side, spec) in [("visible", &cam.visible), ("thermal", &cam.thermal)] {
            match &spec.input {
                Input::File { path } => out.push((format!("cameras[{i}].{side}.path"), path.clone())),
                Input::Template { template, .. } => {
                    out.push((format!("cameras[{i}].{side}.template"), template.clone()));
                }
                _ => {}
            }
        }
        if let Some(model) = &cam.detector.model {
            out.push((format!("cameras[{i}].detector.model"), model.clone()));
            if cam.detector.kind == DetectorKind::Ssd {
                out.push((
                    format!("cameras[{i}].detector.model's text graph"),
                    model.with_extension("pbtxt"),
                ));
            }
        }
    }
    out
}

/// Refuses outputs that are inputs of the run, naming the output key and the input.
pub(super) fn outputs_clear_of_inputs(
    cfg: &SiteConfig,
    spans: &OutputSpans,
    src: &Source<'_>,
) -> Result<(), ConfigError> {
    let inputs = inputs(cfg);
    let mut outputs: Vec<(&str, &Option<Range<usize>>, PathBuf)> = Vec::new();
    if let Some(p) = &cfg.outputs.events {
        outputs.push(("outputs.events", &spans.events, p.clone()));
    }
    for p in cfg.video_paths() {
        outputs.push(("outputs.video", &spans.video, p));
    }
    for (key, span, out) in outputs {
        if let Some((what, input)) = input_named(&out, &inputs) {
            return Err(src.error(
                key,
                span.clone().unwrap_or_default(),
                format!(
                    "{} is {what} ({}): an output may not be an input of the run",
                    out.display(),
                    input.display()
                ),
            ));
        }
    }
    if let Some(dir) = &cfg.outputs.thumbnails
        && let Some((what, input)) = input_named(dir, &inputs)
    {
        return Err(src.error(
            "outputs.thumbnails",
            spans.thumbnails.clone().unwrap_or_default(),
            format!(
                "{} is {what} ({}): an output may not be an input of the run, and thumbnails go into a folder",
                dir.display(),
                input.display()
            ),
        ));
    }
    Ok(())
}
