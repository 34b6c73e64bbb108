//! Weight files, one way in: whatever file a user brings is read the same way wherever weights
//! are accepted (`eval --checkpoint`, a site's `model.weights`, `train`'s `model.pretrained`,
//! `export`, `viz`, `import`).
//!
//! - reid-pipe files: safetensors with metadata `format` = `reid-pipe-weights` and `spec` = the
//!   [`ModelSpec`] as JSON (plus, where known, `dataset`, `trial`, `epoch`, `imported_from`);
//!   written atomically by [`save`] and [`save_vars`].
//! - `torch.save` files, recognised by their content whatever their extension, read without
//!   Python ([`torch_file`]): official LbA checkpoints (`sysu_pretrained.t`: the state dict under
//!   `net`), other checkpoint dicts (`state_dict`, `model`), bare state dicts (torchvision's
//!   `resnet50-19c8e357.pth`); DataParallel's `module.` prefix is dropped.
//! - safetensors files without reid-pipe metadata (e.g. `models/weights/mobilenetv2_imagenet.safetensors`).
//!
//! A file without a description has its network inferred from its tensors ([`layout`]): the key
//! layout, the backbone, the classifier's identities and the PCB parts; the input size comes from
//! the caller (command line or configuration), by default the recipe's 288×144.

pub mod layout;
pub mod torch_file;

use super::{LbaNet, ModelSpec};
use layout::{Layout, Tensors};
use reid_core::safetensors::{self, SafetensorsError};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// The input size of the LbA recipe (height, width), for files that do not record one.
pub const RECIPE_INPUT_SIZE: (i64, i64) = (288, 144);

/// Errors of reading, loading or saving weights; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Safetensors(#[from] SafetensorsError),
    #[error("{}: not a readable torch.save file", path.display())]
    TorchSave {
        path: PathBuf,
        #[source]
        source: Box<pytorch_reader::PytorchError>,
    },
    #[error("{}: tensor `{name}`: {message}", path.display())]
    Tensor {
        path: PathBuf,
        name: String,
        message: String,
    },
    #[error("{}: metadata `spec` is not a model description", path.display())]
    BadSpec {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: metadata `spec`", path.display())]
    InvalidSpec {
        path: PathBuf,
        #[source]
        source: crate::model::SpecError,
    },
    #[error("{}: holds no tensors", path.display())]
    Empty { path: PathBuf },
    #[error("{}: neither a torch.save file (ZIP, pickle or TAR) nor safetensors", path.display())]
    UnknownFormat { path: PathBuf },
    #[error(
        "{}: not a known weight layout; {found}\nknown layouts:\n  {}\n  {}\n  {}",
        path.display(), Layout::Lba.expects(), Layout::TorchvisionResnet.expects(), Layout::Mobilenetv2.expects()
    )]
    UnknownLayout { path: PathBuf, found: String },
    #[error("{}: {layout:?} layout, but {message}", path.display())]
    UnknownNetwork {
        path: PathBuf,
        layout: Layout,
        message: String,
    },
    #[error("{}: the weights do not fit the network:{}", path.display(), describe(missing, unexpected, misshaped))]
    Mismatch {
        path: PathBuf,
        missing: Vec<String>,
        unexpected: Vec<String>,
        misshaped: Vec<(String, Vec<i64>, Vec<i64>)>,
    },
    #[error("{}: cannot check the values of `{name}`", path.display())]
    Check {
        path: PathBuf,
        name: String,
        #[source]
        source: Box<tch::TchError>,
    },
    #[error("{}: copying `{name}` into the network", path.display())]
    Copy {
        path: PathBuf,
        name: String,
        #[source]
        source: tch::TchError,
    },
    #[error("{}: cannot describe the network as JSON", path.display())]
    Describe {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn describe(missing: &[String], unexpected: &[String], misshaped: &[(String, Vec<i64>, Vec<i64>)]) -> String {
    const SHOWN: usize = 12;
    let mut s = String::new();
    let mut list = |title: &str, items: Vec<String>| {
        if items.is_empty() {
            return;
        }
        s.push_str(&format!(
            "\n  {} {title}: {}",
            items.len(),
            items.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ")
        ));
        if items.len() > SHOWN {
            s.push_str(&format!(", … ({} more)", items.len() - SHOWN));
        }
    };
    list("missing", missing.to_vec());
    list("unexpected", unexpected.to_vec());
    list(
        "mis-shaped (file vs network)",
        misshaped
            .iter()
            .map(|(n, f, w)| format!("{n} {f:?} vs {w:?}"))
            .collect(),
    );
    s
}

/// Where a network came from: metadata stored beside its description.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// The dataset it was trained on (`sysu`, `regdb`, `market`, `duke`).
    pub dataset: Option<String>,
    /// The RegDB trial (1..=10) it was trained on.
    pub trial: Option<u32>,
    /// Epochs it was trained for.
    pub epoch: Option<i64>,
    /// The file name it was imported from.
    pub imported_from: Option<String>,
}

impl Provenance {
    fn from_metadata(m: &BTreeMap<String, String>) -> Self {
        Self {
            dataset: m.get("dataset").cloned(),
            trial: m.get("trial").and_then(|t| t.parse().ok()),
            epoch: m.get("epoch").and_then(|t| t.parse().ok()),
            imported_from: m.get("imported_from").cloned(),
        }
    }

    fn to_metadata(&self, m: &mut BTreeMap<String, String>) {
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                m.insert(k.to_owned(), v);
            }
        };
        put("dataset", self.dataset.clone());
        put("trial", self.trial.map(|t| t.to_string()));
        put("epoch", self.epoch.map(|t| t.to_string()));
        put("imported_from", self.imported_from.clone());
    }
}

/// A weight file read into memory, whatever its format.
pub struct WeightFile {
    pub path: PathBuf,
    /// Tensors by name (a checkpoint dict's container key and `module.` prefixes removed).
    pub tensors: Tensors,
    /// The description a reid-pipe file carries.
    pub spec: Option<ModelSpec>,
    pub provenance: Provenance,
}

impl WeightFile {
    /// Reads a reid-pipe file, a `torch.save` file or a plain safetensors state dict.
    pub fn read(path: &Path) -> Result<Self, WeightsError> {
        let io = |source| WeightsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut head = Vec::with_capacity(512);
        std::fs::File::open(path)
            .and_then(|f| f.take(512).read_to_end(&mut head))
            .map_err(io)?;
        if !torch_file::is_torch_save(&head) && head.get(8) != Some(&b'{') {
            return Err(WeightsError::UnknownFormat {
                path: path.to_path_buf(),
            });
        }
        let (named, spec, provenance) = if torch_file::is_torch_save(&head) {
            let file = torch_file::read(path)?;
            let provenance = Provenance {
                epoch: file.scalars.get("epoch").and_then(|e| e.parse().ok()),
                ..Provenance::default()
            };
            (file.tensors, None, provenance)
        } else {
            let file = safetensors::read(path)?;
            let spec = match file.metadata.get("spec") {
                Some(json) => {
                    let spec: ModelSpec = serde_json::from_str(json).map_err(|source| WeightsError::BadSpec {
                        path: path.to_path_buf(),
                        source,
                    })?;
                    spec.validate().map_err(|source| WeightsError::InvalidSpec {
                        path: path.to_path_buf(),
                        source,
                    })?;
                    Some(spec)
                }
                None => None,
            };
            (file.tensors, spec, Provenance::from_metadata(&file.metadata))
        };
        let tensors: Tensors = named
            .into_iter()
            .map(|(k, t)| (k.strip_prefix("module.").map(str::to_owned).unwrap_or(k), t))
            .collect();
        if tensors.is_empty() {
            return Err(WeightsError::Empty {
                path: path.to_path_buf(),
            });
        }
        // Weights with NaN or infinite values give garbage embeddings: refused, naming the tensor.
        for (name, t) in tensors.iter().filter(|(_, t)| t.is_floating_point()) {
            let finite = t
                .f_isfinite()
                .and_then(|f| f.f_all())
                .and_then(|a| a.f_int64_value(&[]))
                .map_err(|source| WeightsError::Check {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    source: Box::new(source),
                })?;
            if finite == 0 {
                return Err(WeightsError::Tensor {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    message: "has NaN or infinite values".to_owned(),
                });
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            spec,
            provenance,
        })
    }

    /// The key layout of the file.
    pub fn layout(&self) -> Result<Layout, WeightsError> {
        layout::detect(&self.tensors).ok_or_else(|| WeightsError::UnknownLayout {
            path: self.path.clone(),
            found: layout::describe_found(&self.tensors),
        })
    }

    /// The network the file holds: its own description, or one inferred from its tensors with
    /// `input_size` (default [`RECIPE_INPUT_SIZE`]) and the recipe's other settings (ImageNet
    /// normalisation, last stride 1).
    pub fn spec(&self, input_size: Option<(i64, i64)>) -> Result<ModelSpec, WeightsError> {
        if let Some(spec) = &self.spec {
            return Ok(spec.clone());
        }
        let layout = self.layout()?;
        let inferred = layout::infer(layout, &self.tensors).map_err(|message| WeightsError::UnknownNetwork {
            path: self.path.clone(),
            layout,
            message,
        })?;
        let spec = ModelSpec {
            parts: inferred.parts,
            ..ModelSpec::new(
                inferred.backbone,
                inferred.classes,
                input_size.unwrap_or(RECIPE_INPUT_SIZE),
            )
        };
        spec.validate().map_err(|source| WeightsError::InvalidSpec {
            path: self.path.clone(),
            source,
        })?;
        Ok(spec)
    }
}

/// How strictly a file must fit the network it is loaded into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Stems and body entirely from the file; the head (BN neck, classifier) from the file where
    /// it has one, and a head of another shape is an error.
    Exact,
    /// Initialisation for training: stems and body from the file; the head from the file only
    /// where its shapes fit (a classifier of other identities starts fresh).
    Initialise,
}

/// What a load did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    pub loaded: usize,
    /// Network variables left at their initial values (a head the file lacks or that does not fit).
    pub initialised: Vec<String>,
    /// File entries deliberately not used (unused parts of official checkpoints, ImageNet heads,
    /// BN counters).
    pub ignored: usize,
    /// Head entries of the file the network does not have (a classifier inference does not use).
    pub unused_head: Vec<String>,
}

/// Loads `file` into the network variables of `vs`, as `fit` says.
pub fn load(vs: &mut VarStore, file: &WeightFile, fit: Fit) -> Result<LoadReport, WeightsError> {
    let layout = file.layout()?;
    let mut source: BTreeMap<String, &Tensor> = BTreeMap::new();
    let mut ignored = 0;
    for (key, t) in &file.tensors {
        let targets = layout::targets(layout, key);
        if targets.is_empty() {
            ignored += 1;
        }
        for target in targets {
            source.insert(target, t);
        }
    }
    let mut vars = vs.variables();
    let (mut missing, mut initialised, mut misshaped) = (Vec::new(), Vec::new(), Vec::new());
    let mut names: Vec<String> = vars.keys().cloned().collect();
    names.sort();
    let mut take = Vec::new();
    for name in &names {
        let want = vars[name].size();
        match source.get(name) {
            Some(t) if t.size() == want => take.push(name.clone()),
            Some(_) if fit == Fit::Initialise && layout::is_head(name) => initialised.push(name.clone()),
            Some(t) => misshaped.push((name.clone(), t.size(), want)),
            None if layout::is_head(name) => initialised.push(name.clone()),
            None => missing.push(name.clone()),
        }
    }
    let (unused_head, unexpected): (Vec<String>, Vec<String>) = source
        .keys()
        .filter(|k| !vars.contains_key(*k))
        .cloned()
        .partition(|k| layout::is_head(k));
    if !missing.is_empty() || !unexpected.is_empty() || !misshaped.is_empty() {
        return Err(WeightsError::Mismatch {
            path: file.path.clone(),
            missing,
            unexpected,
            misshaped,
        });
    }
    if !unused_head.is_empty() {
        tracing::debug!(
            "{}: not using {} (the network has no classifier: inference does not need it)",
            file.path.display(),
            unused_head.join(", ")
        );
    }
    let device = vs.device();
    tch::no_grad(|| {
        for name in &take {
            if let (Some(var), Some(src)) = (vars.get_mut(name), source.get(name)) {
                var.f_copy_(&src.to_device(device).to_kind(var.kind()))
                    .map_err(|source| WeightsError::Copy {
                        path: file.path.clone(),
                        name: name.clone(),
                        source,
                    })?;
            }
        }
        Ok::<(), WeightsError>(())
    })?;
    Ok(LoadReport {
        loaded: take.len(),
        initialised,
        ignored,
        unused_head,
    })
}

/// Which head a network built from a file gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// An embedding network: no classifier (a classifier in the file is not used).
    Embedding,
    /// The file's classifier as well.
    Classifier,
}

/// A network built from a weight file and loaded with it.
pub struct Opened {
    pub net: LbaNet,
    /// Owns the variables `net` refers to.
    pub vs: VarStore,
    pub report: LoadReport,
    pub provenance: Provenance,
}

/// Builds the network `file` holds on `device` (its description, or one inferred with
/// `input_size`) and loads the file into it.
pub fn open(
    file: &WeightFile,
    input_size: Option<(i64, i64)>,
    head: Head,
    device: Device,
) -> Result<Opened, WeightsError> {
    let mut spec = file.spec(input_size)?;
    if head == Head::Embedding {
        spec.classes = 0;
    }
    let mut vs = VarStore::new(device);
    let net = LbaNet::new(&vs.root(), spec);
    let report = load(&mut vs, file, Fit::Exact)?;
    Ok(Opened {
        net,
        vs,
        report,
        provenance: file.provenance.clone(),
    })
}

/// Saves every variable of `vs` with `spec` and `provenance` in the metadata, atomically.
pub fn save(vs: &VarStore, spec: &ModelSpec, provenance: &Provenance, path: &Path) -> Result<(), WeightsError> {
    let vars = vs.variables();
    save_vars(path, vars.iter().map(|(n, t)| (n.as_str(), t)), spec, provenance)
}

/// Saves named tensors as a reid-pipe weight file, atomically.
pub fn save_vars<'a>(
    path: &Path,
    vars: impl Iterator<Item = (&'a str, &'a Tensor)>,
    spec: &ModelSpec,
    provenance: &Provenance,
) -> Result<(), WeightsError> {
    let mut tensors: Vec<(&str, &Tensor)> = vars.collect();
    tensors.sort_by(|a, b| a.0.cmp(b.0));
    let spec_json = serde_json::to_string(spec).map_err(|source| WeightsError::Describe {
        path: path.to_path_buf(),
        source,
    })?;
    let mut meta = BTreeMap::from([
        ("format".to_owned(), "reid-pipe-weights".to_owned()),
        ("spec".to_owned(), spec_json),
    ]);
    provenance.to_metadata(&mut meta);
    tch::no_grad(|| safetensors::write(path, &tensors, &meta))?;
    Ok(())
}
