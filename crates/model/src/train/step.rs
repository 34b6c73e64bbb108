//! One LbA training forward pass (spec §2.4, in its call order, which the BatchNorm running
//! statistics depend on) and its loss terms.

use super::losses::{batch_hard_triplet, cross_entropy};
use crate::model::LbaNet;
use crate::model::cmalign::{CmAlign, define_pairs};
use reid_core::base::{Modality, PyRandom};
use reid_core::config::train::{Loss, Stage};
use tch::{Kind, Tensor};

/// The loss terms of one step (unweighted) and their weighted sum.
pub struct StepLosses {
    /// (name, unweighted value) of each active term.
    pub terms: Vec<(&'static str, Tensor)>,
    pub total: Tensor,
}

/// Forward pass on a batch of `xv` visible and `xt` infrared images (N each, row q of both halves
/// sharing an identity slot of `k` rows), labels of the 2N rows, modalities of the two halves.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    net: &LbaNet,
    xv: &Tensor,
    xt: &Tensor,
    halves: (Modality, Modality),
    labels: &Tensor,
    loss: &Loss,
    (p, k): (usize, usize),
    pairs_rng: &mut PyRandom,
) -> StepLosses {
    let stems = Tensor::cat(&[net.stem(xv, halves.0, true), net.stem(xt, halves.1, true)], 0);
    let f3 = net.to_layer3(&stems, true);
    let f4 = net.layer4(&f3, true);
    let cmalign_on = loss.id_consistency_weight > 0.0 || loss.dense_triplet_weight > 0.0;
    let cm = CmAlign {
        temperature: loss.cmalign_temperature,
        margin: loss.dense_triplet_margin,
        weighting: loss.dense_triplet_weighting,
    };
    let mut ic = Vec::new();
    let mut dt = Vec::new();
    let mut draw = || define_pairs(pairs_rng, p, k).expect("P > K is checked when the configuration loads");
    if cmalign_on && loss.cmalign_stages.contains(&Stage::Layer3) {
        let (pos, neg) = draw();
        let out = cm.forward(&f3, &pos, &neg);
        // The layer3 reconstruction takes a second pass through layer4 (BN statistics update #2).
        let r4 = net.layer4(&out.reconstruction, true);
        ic.push(net.classify(&net.pool(&r4), true));
        dt.push(out.dense_triplet);
    }
    let feat = net.pool(&f4);
    if cmalign_on && loss.cmalign_stages.contains(&Stage::Layer4) {
        let (pos, neg) = draw();
        let out = cm.forward(&f4, &pos, &neg);
        ic.push(net.classify(&net.pool(&out.reconstruction), true));
        dt.push(out.dense_triplet);
    }
    let logits = net.classify(&feat, true);
    let mut terms: Vec<(&'static str, Tensor)> = Vec::new();
    let mut total = Tensor::zeros([], (Kind::Float, feat.device()));
    let mut add = |name: &'static str, weight: f64, value: Tensor| {
        total = &total + &value * weight;
        terms.push((name, value));
    };
    // With PCB parts, each part's cross-entropy is summed (as PCB does).
    let sum_ce = |all: &mut dyn Iterator<Item = Tensor>| {
        all.map(|l| cross_entropy(&l, labels))
            .fold(Tensor::zeros([], (Kind::Float, feat.device())), |a, b| a + b)
    };
    if !logits.is_empty() && loss.id_weight > 0.0 {
        add("id", loss.id_weight, sum_ce(&mut logits.into_iter()));
    }
    if loss.triplet_weight > 0.0 {
        add(
            "tri",
            loss.triplet_weight,
            batch_hard_triplet(&feat, labels, loss.triplet_margin),
        );
    }
    if loss.id_consistency_weight > 0.0 && !ic.is_empty() {
        add("ic", loss.id_consistency_weight, sum_ce(&mut ic.into_iter().flatten()));
    }
    if loss.dense_triplet_weight > 0.0 && !dt.is_empty() {
        let v = dt
            .into_iter()
            .fold(Tensor::zeros([], (Kind::Float, feat.device())), |a, b| a + b);
        add("dt", loss.dense_triplet_weight, v);
    }
    StepLosses { terms, total }
}
