//! The identity sampler of the LbA recipe (spec §5.1): every epoch, ⌊N/(P·K)⌋ + 1 batches, each
//! of P distinct identities with K visible and K infrared images per identity (drawn with
//! replacement), so that row q of the visible half and row q of the infrared half share an
//! identity slot. Deterministic for (seed, epoch), so a resumed run draws what it would have.
//!
//! Deviation: the reference draws with numpy's global generator, unseeded per epoch; this draws
//! with Python's Mersenne Twister ([`PyRandom`]) seeded from (seed, epoch). The distribution is
//! the same; the exact batches differ, which only matters for bit-exact reproduction.

use crate::base::PyRandom;

/// One batch: image indices into the visible and the infrared set, P·K each, slot-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub visible: Vec<usize>,
    pub infrared: Vec<usize>,
}

/// Draws the batches of one epoch. `*_by_label[l]` lists the images of label `l`.
pub fn epoch_batches(
    visible_by_label: &[Vec<usize>],
    infrared_by_label: &[Vec<usize>],
    p: usize,
    k: usize,
    seed: u64,
    epoch: u32,
) -> Vec<Batch> {
    let mut rng = PyRandom::new(seed.wrapping_mul(0x9e37_79b9).wrapping_add(u64::from(epoch)));
    let n_data = visible_by_label
        .iter()
        .map(Vec::len)
        .sum::<usize>()
        .max(infrared_by_label.iter().map(Vec::len).sum());
    let labels: Vec<usize> = (0..visible_by_label.len())
        .filter(|&l| !visible_by_label[l].is_empty() && !infrared_by_label[l].is_empty())
        .collect();
    let blocks = n_data / (p * k) + 1;
    let mut out = Vec::with_capacity(blocks);
    for _ in 0..blocks {
        let chosen = rng.sample(&labels, p.min(labels.len())).unwrap_or_default();
        let mut batch = Batch {
            visible: Vec::with_capacity(p * k),
            infrared: Vec::with_capacity(p * k),
        };
        for &l in &chosen {
            for _ in 0..k {
                batch
                    .visible
                    .push(*rng.choice(&visible_by_label[l]).expect("labels with images only"));
            }
            for _ in 0..k {
                batch
                    .infrared
                    .push(*rng.choice(&infrared_by_label[l]).expect("labels with images only"));
            }
        }
        out.push(batch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_identity_balanced_and_aligned() {
        // 12 labels; visible images 0..60 (5 per label), infrared 0..36 (3 per label).
        let vis: Vec<Vec<usize>> = (0..12).map(|l| (0..5).map(|i| l * 5 + i).collect()).collect();
        let ir: Vec<Vec<usize>> = (0..12).map(|l| (0..3).map(|i| l * 3 + i).collect()).collect();
        let batches = epoch_batches(&vis, &ir, 4, 2, 7, 0);
        assert_eq!(batches.len(), 60 / 8 + 1);
        for b in &batches {
            assert_eq!((b.visible.len(), b.infrared.len()), (8, 8));
            let slots: Vec<usize> = (0..4).map(|s| b.visible[2 * s] / 5).collect();
            let mut distinct = slots.clone();
            distinct.dedup();
            assert_eq!(distinct.len(), 4, "P distinct identities");
            for q in 0..8 {
                assert_eq!(
                    b.visible[q] / 5,
                    b.infrared[q] / 3,
                    "row {q}: both halves share the identity"
                );
                assert_eq!(b.visible[q] / 5, slots[q / 2]);
            }
        }
        assert_eq!(batches, epoch_batches(&vis, &ir, 4, 2, 7, 0), "deterministic");
        assert_ne!(
            batches,
            epoch_batches(&vis, &ir, 4, 2, 7, 1),
            "another epoch draws anew"
        );
    }
}
