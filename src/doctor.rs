//! `reid-pipe doctor`: what this machine has, and whether a site file can run on it.

use crate::config::SiteConfig;
use crate::config::site::{DetectorKind, Input};
use crate::ingest::template;
use gstreamer as gst;
use std::fmt::Write as _;
use std::path::Path;

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub what: String,
    pub detail: String,
    /// `false` when something required is missing.
    pub ok: bool,
}

/// The whole report.
#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    fn push(&mut self, what: impl Into<String>, detail: impl Into<String>, ok: bool) {
        self.checks.push(Check {
            what: what.into(),
            detail: detail.into(),
            ok,
        });
    }

    /// True when nothing required is missing.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// Human-readable table.
    pub fn render(&self) -> String {
        let width = self.checks.iter().map(|c| c.what.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            let mark = if c.ok { "ok     " } else { "MISSING" };
            let _ = writeln!(out, "{mark}  {:width$}  {}", c.what, c.detail);
        }
        out
    }
}

/// Collects library facts and, with a site file, checks its elements and files.
pub fn run(site: Option<&Path>) -> Report {
    let mut r = Report::default();
    match gst::init() {
        Ok(()) => r.push("gstreamer", gst::version_string().to_string(), true),
        Err(e) => r.push("gstreamer", format!("cannot initialise: {e}"), false),
    }
    match opencv::core::get_version_string() {
        Ok(v) => r.push("opencv", v, true),
        Err(e) => r.push("opencv", e.to_string(), false),
    }
    let lib = option_env!("REID_LIBTORCH_LIB").unwrap_or("(unknown)");
    r.push(
        "libtorch",
        format!("{} ({lib})", option_env!("REID_LIBTORCH_VERSION").unwrap_or("unknown")),
        true,
    );
    let cuda = tch::Cuda::is_available();
    r.push(
        "cuda",
        if cuda {
            format!(
                "available, {} device(s), cuDNN {}",
                tch::Cuda::device_count(),
                tch::Cuda::cudnn_is_available()
            )
        } else {
            "not available (CPU only)".to_owned()
        },
        true,
    );
    r.push("cpu threads (libtorch)", tch::get_num_threads().to_string(), true);
    let Some(site) = site else { return r };
    let cfg = match SiteConfig::load(site) {
        Ok(cfg) => {
            r.push("site file", site.display().to_string(), true);
            cfg
        }
        Err(e) => {
            r.push("site file", e.to_string(), false);
            return r;
        }
    };
    check_sources(&cfg, &mut r);
    check_models(&cfg, &mut r);
    let aside = crate::index::snapshot::set_aside(&cfg.index.snapshot_dir);
    if !aside.is_empty() {
        r.push(
            "index snapshots set aside",
            format!(
                "{} of another model kept in {} (set-aside-*; never loaded or pruned)",
                aside.len(),
                cfg.index.snapshot_dir.display()
            ),
            true,
        );
    }
    r
}

fn check_sources(cfg: &SiteConfig, r: &mut Report) {
    let mut seen: Vec<String> = Vec::new();
    for cam in &cfg.cameras {
        for (modality, spec) in [("visible", &cam.visible), ("thermal", &cam.thermal)] {
            let what = format!("source {}/{modality}", cam.name);
            match template::render(spec) {
                Ok(rendered) => {
                    for element in template::elements(&rendered.shown) {
                        if seen.contains(&element) {
                            continue;
                        }
                        let found = gst::ElementFactory::find(&element).is_some();
                        let detail = if found {
                            "installed".to_owned()
                        } else {
                            "not installed (see README: set-up)".to_owned()
                        };
                        r.push(format!("element {element}"), detail, found);
                        seen.push(element);
                    }
                }
                Err(e) => r.push(what.clone(), crate::base::Chain(&e).to_string(), false),
            }
            if let Input::File { path } = &spec.input {
                r.push(what, path.display().to_string(), path.is_file());
            }
        }
    }
}

fn check_models(cfg: &SiteConfig, r: &mut Report) {
    let w = &cfg.model.weights;
    r.push(
        match cfg.model.backbone {
            Some(b) => format!("model weights ({b:?})").to_lowercase(),
            None => "model weights".to_owned(),
        },
        w.display().to_string(),
        w.is_file(),
    );
    if let Some(c) = &cfg.model.centre {
        r.push("embedding centre".to_owned(), c.display().to_string(), c.is_file());
    }
    // Loading each camera's detector checks its model files for real.
    for cam in &cfg.cameras {
        let d = &cam.detector;
        let name = format!("{:?} detector ({})", d.kind, cam.name).to_lowercase();
        match crate::detect::visible(d) {
            Ok(_) => {
                let file = match (d.kind, &d.model) {
                    (_, Some(m)) => m.display().to_string(),
                    (DetectorKind::Haar, None) => crate::detect::haar::DEFAULT_CASCADE.to_owned(),
                    _ => "built into OpenCV".to_owned(),
                };
                r.push(name, file, true);
            }
            Err(e) => r.push(name, crate::base::Chain(&e).to_string(), false),
        }
    }
}
