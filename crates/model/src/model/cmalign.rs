//! CMAlign (spec §3): parameter-free dense cross-modal alignment. For every image it softly
//! matches each local feature to an image of the other modality (a positive of the same identity
//! and a negative of another), reconstructs the feature map from the matched features inside the
//! person region, and scores the reconstructions with a co-attention-weighted dense triplet loss.

use reid_core::base::PyRandom;
use reid_core::config::train::DenseTripletWeighting;
use tch::{Kind, Tensor};

/// Everything CMAlign computes that losses and figures use.
#[derive(Debug)]
pub struct CmAlignOutput {
    /// R⁺: the positive reconstruction, B×C×h×w (with gradient).
    pub reconstruction: Tensor,
    /// L_DT, a scalar.
    pub dense_triplet: Tensor,
    /// M: per-image person masks in [0, 1], B×1×h×w (detached).
    pub mask: Tensor,
    /// A: co-attention of each image with its positive, B×1×h×w (detached).
    pub coattention: Tensor,
    /// P⁺: matching probabilities of each image's positions (rows) over its positive's positions
    /// (columns), B×hw×hw.
    pub matching: Tensor,
}

/// CMAlign's settings (the reference hard-codes τ = 50 and m = 0.3).
#[derive(Debug, Clone, Copy)]
pub struct CmAlign {
    /// Scale multiplying the cosine similarity inside the softmax.
    pub temperature: f64,
    /// Margin of the dense triplet loss.
    pub margin: f64,
    pub weighting: DenseTripletWeighting,
}

/// Per-image min-max normalisation over positions: (x − min) / (max(x − min) + 1e-12); x is B×n.
fn min_max(x: &Tensor) -> Tensor {
    let shifted = x - x.amin([1i64].as_slice(), true);
    &shifted / (shifted.amax([1i64].as_slice(), true) + 1e-12)
}

impl CmAlign {
    /// Aligns `feat` (B×C×h×w; rows [0, N) visible, [N, 2N) infrared) with the rows `pos` and
    /// `neg` (length B) name for each image.
    pub fn forward(&self, feat: &Tensor, pos: &[i64], neg: &[i64]) -> CmAlignOutput {
        let (b, c, h, w) = feat.size4().expect("CMAlign takes B×C×h×w feature maps");
        let hw = h * w;
        let device = feat.device();
        let flat = feat.view([b, c, hw]);
        // Person mask from each image's own features, detached.
        let mask = tch::no_grad(|| min_max(&flat.norm_scalaropt_dim(2, [1i64].as_slice(), false)));
        let normalised = &flat / flat.norm_scalaropt_dim(2, [1i64].as_slice(), true).clamp_min(1e-12);
        let pos_idx = Tensor::from_slice(pos).to_device(device);
        let neg_idx = Tensor::from_slice(neg).to_device(device);
        let align = |idx: &Tensor| {
            let target = flat.index_select(0, idx);
            let target_n = normalised.index_select(0, idx);
            // S(i, j) = <F̂(:, i), T̂(:, j)>; softmax over target positions j.
            let sim = normalised.transpose(1, 2).bmm(&target_n);
            let prob = (sim * self.temperature).softmax(-1, Kind::Float);
            // W(:, i) = Σ_j P(i, j) T(:, j), then R = M W + (1 − M) F.
            let warped = target.bmm(&prob.transpose(1, 2));
            let m = mask.unsqueeze(1);
            let recon = &m * warped + (1.0 - &m) * &flat;
            (prob, recon)
        };
        let (prob_pos, recon_pos) = align(&pos_idx);
        let (_, recon_neg) = align(&neg_idx);
        let coattention = tch::no_grad(|| {
            let target_mask = mask.index_select(0, &pos_idx).unsqueeze(-1);
            let a = &mask * prob_pos.bmm(&target_mask).squeeze_dim(-1);
            min_max(&a)
        });
        // d = ||F − R + 1e-6||₂ over channels (PyTorch 1.7's pairwise_distance), B×hw.
        let dist = |r: &Tensor| (&flat - r + 1e-6).norm_scalaropt_dim(2, [1i64].as_slice(), false);
        let hinge = (dist(&recon_pos) - dist(&recon_neg) + self.margin).clamp_min(0.0);
        let dense_triplet = match self.weighting {
            // mean over (a, b, i) of A_a(i) ℓ_b(i): the reference's broadcast (spec §3.6).
            DenseTripletWeighting::Code => (coattention.mean_dim([0i64].as_slice(), false, Kind::Float)
                * hinge.mean_dim([0i64].as_slice(), false, Kind::Float))
            .mean(Kind::Float),
            DenseTripletWeighting::Intended => (&coattention * &hinge).mean(Kind::Float),
        };
        CmAlignOutput {
            reconstruction: recon_pos.view([b, c, h, w]),
            dense_triplet,
            mask: mask.view([b, 1, h, w]),
            coattention: coattention.view([b, 1, h, w]),
            matching: prob_pos,
        }
    }
}

/// One half of the reference's `random_pairs()` for P identity slots of K images: positives
/// are a permutation within the slot, negatives K distinct other slots.
fn random_pairs(rng: &mut PyRandom, p: usize, k: usize) -> (Vec<i64>, Vec<i64>) {
    let mut pos = vec![0i64; p * k];
    let mut neg = vec![0i64; p * k];
    let ks: Vec<usize> = (0..k).collect();
    for s in 0..p {
        let perm = rng.sample(&ks, k).expect("k of k");
        for (i, &j) in perm.iter().enumerate() {
            pos[k * s + i] = (k * s + j) as i64;
        }
    }
    for s in 0..p {
        let others: Vec<usize> = (0..p).filter(|&t| t != s).collect();
        let slots = rng.sample(&others, k).expect("P − 1 ≥ K is checked by the caller");
        let perm = rng.sample(&ks, k).expect("k of k");
        for i in 0..k {
            neg[k * s + i] = (k * slots[i] + perm[i]) as i64;
        }
    }
    (pos, neg)
}

/// The reference's `define_pairs()`: positive and negative rows for a batch of B = 2·P·K images
/// (visible first), always in the other modality. Needs `p > k`.
pub fn define_pairs(rng: &mut PyRandom, p: usize, k: usize) -> Option<(Vec<i64>, Vec<i64>)> {
    if p <= k {
        return None;
    }
    let n = (p * k) as i64;
    let (pos_v, neg_v) = random_pairs(rng, p, k);
    let (pos_t, neg_t) = random_pairs(rng, p, k);
    let pos = pos_v.iter().map(|i| i + n).chain(pos_t).collect();
    let neg = neg_v.iter().map(|i| i + n).chain(neg_t).collect();
    Some((pos, neg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_cross_modalities_and_keep_identities() {
        let (p, k) = (8, 4);
        let n = (p * k) as i64;
        let (pos, neg) = define_pairs(&mut PyRandom::new(3), p, k).expect("p > k");
        assert_eq!(pos.len(), 2 * p * k);
        for b in 0..2 * n {
            let other_half = if b < n { n..2 * n } else { 0..n };
            assert!(other_half.contains(&pos[b as usize]) && other_half.contains(&neg[b as usize]));
            let slot = |i: i64| (i % n) / k as i64;
            assert_eq!(slot(pos[b as usize]), slot(b), "positive shares the identity slot");
            assert_ne!(slot(neg[b as usize]), slot(b), "negative has another identity");
        }
        // The K negatives of one slot come from K distinct slots.
        let slots: std::collections::BTreeSet<i64> = (0..k as i64).map(|i| (neg[i as usize] % n) / k as i64).collect();
        assert_eq!(slots.len(), k);
        assert!(define_pairs(&mut PyRandom::new(0), 4, 4).is_none());
    }
}
