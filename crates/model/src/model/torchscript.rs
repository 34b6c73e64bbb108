//! Bring-your-own embedders: TorchScript modules (`tch::CModule`) described by a small TOML
//! manifest, and export of the built-in network to the same form so a model trained here runs
//! anywhere libtorch runs.
//!
//! Manifest (paths relative to the manifest):
//! ```toml
//! visible = "net.pt"          # module for visible crops: normalised B×3×H×W → B×D
//! thermal = "net.pt"          # module for thermal crops (may be the same file)
//! input_size = [256, 128]     # height, width
//! mean = [0.485, 0.456, 0.406]
//! std = [0.229, 0.224, 0.225]
//! output_dim = 512
//! ```
//! Outputs are L2-normalised by reid-pipe whatever the module returns.

use super::embedder::{Embed, EmbedError, LbaEmbedder, Phases, run_staged};
use super::preprocess::{Staged, Stager};
use super::{IMAGENET_MEAN, IMAGENET_STD, ModelSpec};
use reid_core::base::{Backbone, Modality};
use reid_core::config::site::Preprocess;
use std::path::{Path, PathBuf};
use tch::{CModule, Device, Kind, Tensor};

/// The manifest file of a TorchScript embedder.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub visible: PathBuf,
    pub thermal: PathBuf,
    pub input_size: (i64, i64),
    #[serde(default = "imagenet_mean")]
    pub mean: [f64; 3],
    #[serde(default = "imagenet_std")]
    pub std: [f64; 3],
    pub output_dim: i64,
}

fn imagenet_mean() -> [f64; 3] {
    IMAGENET_MEAN
}

fn imagenet_std() -> [f64; 3] {
    IMAGENET_STD
}

/// A TorchScript embedder.
pub struct ScriptEmbedder {
    visible: CModule,
    thermal: CModule,
    manifest: Manifest,
    spec: ModelSpec,
    device: Device,
    stager: Stager,
}

impl ScriptEmbedder {
    /// Loads the manifest and its modules onto `device`. Errors name the module files, not the
    /// manifest: the caller names the manifest (the site's `model.weights`).
    pub fn load(manifest_path: &Path, device: Device) -> Result<Self, EmbedError> {
        let bad = EmbedError::Model;
        let text = std::fs::read_to_string(manifest_path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let sides = 8..=2048;
        if !(1..=65_536).contains(&manifest.output_dim)
            || !sides.contains(&manifest.input_size.0)
            || !sides.contains(&manifest.input_size.1)
        {
            return Err(bad(format!(
                "output_dim {} must be in [1, 65536] and input_size {:?} each in [8, 2048]",
                manifest.output_dim, manifest.input_size
            )));
        }
        if manifest.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) || manifest.mean.iter().any(|m| !m.is_finite()) {
            return Err(bad(format!(
                "mean {:?} and std {:?}: the std must be positive and both finite",
                manifest.mean, manifest.std
            )));
        }
        let dir = manifest_path.parent().unwrap_or(Path::new("."));
        let open = |p: &Path| {
            let p = dir.join(p);
            CModule::load_on_device(&p, device)
                .map_err(|e| bad(format!("cannot load TorchScript module {}: {e}", p.display())))
        };
        let (mut visible, mut thermal) = (open(&manifest.visible)?, open(&manifest.thermal)?);
        visible.set_eval();
        thermal.set_eval();
        let spec = ModelSpec {
            backbone: Backbone::Resnet50, // unused for scripted modules; only the input settings matter
            classes: 0,
            input_size: manifest.input_size,
            mean: manifest.mean,
            std: manifest.std,
            last_stride: 1,
            parts: 1,
        };
        let stager = Stager::new(spec.input_size, Preprocess::Auto, device);
        Ok(Self {
            visible,
            thermal,
            manifest,
            spec,
            device,
            stager,
        })
    }
}

impl ScriptEmbedder {
    /// Prepares crops the given way (`model.preprocess`).
    pub fn with_preprocess(mut self, preprocess: Preprocess) -> Self {
        self.stager = Stager::new(self.spec.input_size, preprocess, self.device);
        self
    }
}

impl Embed for ScriptEmbedder {
    fn dim(&self) -> i64 {
        self.manifest.output_dim
    }

    fn stager(&self) -> Stager {
        self.stager.clone()
    }

    fn infer(&self, staged: Staged, phases: &mut Phases) -> Result<Tensor, EmbedError> {
        let norm = self.spec.normalisation();
        let dim = self.dim();
        run_staged(
            staged,
            phases,
            &norm,
            (self.device, Kind::Float),
            dim,
            |part, modality| {
                let module = if modality == Modality::Visible {
                    &self.visible
                } else {
                    &self.thermal
                };
                let y = tch::no_grad(|| module.forward_ts(&[part]))?;
                let rows = part.size()[0];
                if y.size() != [rows, dim] {
                    return Err(EmbedError::Model(format!(
                        "the {modality} TorchScript module returned shape {:?}, expected [{rows}, {dim}]",
                        y.size()
                    )));
                }
                // Scripted modules may return unnormalised vectors.
                Ok(reid_core::base::normalize_rows(&y.f_to_kind(Kind::Float)?)?)
            },
        )
    }
}

/// Exports the built-in network as two traced TorchScript modules (`<stem>-visible.pt`,
/// `<stem>-thermal.pt`) and a manifest `<stem>.toml` in `dir`. Returns the manifest path.
pub fn export(embedder: &LbaEmbedder, dir: &Path, stem: &str) -> Result<PathBuf, EmbedError> {
    let spec = embedder.spec().clone();
    let io = |e: std::io::Error| EmbedError::Model(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let (h, w) = spec.input_size;
    let example = Tensor::zeros([2, 3, h, w], (Kind::Float, Device::Cpu));
    let mut names = Vec::new();
    for modality in [Modality::Visible, Modality::Thermal] {
        let module = CModule::create_by_tracing(
            "ReidPipeEmbedder",
            "forward",
            &[example.shallow_clone()],
            &mut |inputs| vec![embedder.embed_input(&inputs[0], modality)],
        )?;
        let name = format!("{stem}-{modality}.pt");
        let tmp = dir.join(format!(".{name}.tmp"));
        module.save(&tmp)?;
        std::fs::rename(&tmp, dir.join(&name)).map_err(io)?;
        names.push(PathBuf::from(name));
    }
    let manifest = Manifest {
        visible: names[0].clone(),
        thermal: names[1].clone(),
        input_size: spec.input_size,
        mean: spec.mean,
        std: spec.std,
        output_dim: spec.feature_dim(),
    };
    let path = dir.join(format!("{stem}.toml"));
    let text = toml::to_string(&manifest).map_err(|e| EmbedError::Model(e.to_string()))?;
    reid_core::atomic::write(&path, text.as_bytes()).map_err(io)?;
    Ok(path)
}

/// Exports the LbA network a site file's `[model]` names (on the CPU, float32).
pub fn export_site(model: &reid_core::config::site::Model, dir: &Path, stem: &str) -> Result<PathBuf, EmbedError> {
    if model.weights.extension().is_some_and(|e| e == "toml") {
        return Err(EmbedError::Model(format!(
            "{} is already a TorchScript manifest",
            model.weights.display()
        )));
    }
    let file = super::embedder::site_weights(model)?;
    let embedder = LbaEmbedder::from_file(&file, super::embedder::site_input_size(model), Device::Cpu, false)?;
    export(&embedder, dir, stem)
}
