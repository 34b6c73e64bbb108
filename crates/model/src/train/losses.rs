//! The LbA loss terms (spec §4) other than the dense triplet term, which CMAlign computes.

use tch::{Kind, Tensor};

/// Mean cross-entropy of logits (B×C) against labels (B), no label smoothing.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Tensor {
    logits.log_softmax(-1, Kind::Float).nll_loss(labels)
}

/// Batch-hard triplet loss (the reference's `OriTripletLoss`): for each anchor the farthest
/// same-label and the nearest other-label sample by Euclidean distance
/// sqrt(clamp(‖a‖² + ‖b‖² − 2⟨a, b⟩, 1e-12)), then mean(max(0, d_ap − d_an + margin)).
pub fn batch_hard_triplet(features: &Tensor, labels: &Tensor, margin: f64) -> Tensor {
    let sq = features
        .pow_tensor_scalar(2)
        .sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
    let dist = (&sq + sq.transpose(0, 1) - features.matmul(&features.transpose(0, 1)) * 2.0)
        .clamp_min(1e-12)
        .sqrt();
    let same = labels.unsqueeze(1).eq_tensor(&labels.unsqueeze(0));
    // Farthest positive: max over same-label entries; nearest negative: min over the others.
    let big = dist.max().detach() + 1.0;
    let d_ap = dist
        .where_self(&same, &Tensor::zeros_like(&dist))
        .amax([1i64].as_slice(), false);
    let d_an = dist
        .where_self(&same.logical_not(), &(Tensor::ones_like(&dist) * &big))
        .amin([1i64].as_slice(), false);
    // MarginRankingLoss(margin)(d_an, d_ap, y=1) = mean(max(0, -(d_an - d_ap) + margin)).
    (d_ap - d_an + margin).clamp_min(0.0).mean(Kind::Float)
}
