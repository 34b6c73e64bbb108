//! The identity sampler of the LbA recipe (spec §5.1): every epoch, ⌊N/(P·K)⌋ + 1 batches, each
//! of P distinct identities with K visible and K infrared images per identity (drawn with
//! replacement), so that row q of the visible half and row q of the infrared half share an
//! identity slot. Deterministic for (seed, epoch), so a resumed run draws what it would have.
//!
//! Deviation: the reference draws with numpy's global generator, unseeded per epoch; this draws
//! with Python's Mersenne Twister ([`PyRandom`]) seeded from (seed, epoch). The distribution is
//! the same; the exact batches differ, which only matters for bit-exact reproduction.
//!
//! With the co-occurrence lists of a harvested set (`schedule.sampler = "co-occurring"`), a
//! batch's identities are one drawn at random, then those seen at the same time by the same
//! camera (certainly other people, so the triplet and alignment losses get true hard negatives
//! from the same scene, where pseudo-identities drawn at random may be the same person seen
//! twice), then random ones up to P.

use reid_core::base::PyRandom;

/// One batch: image indices into the visible and the infrared set, P·K each, slot-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub visible: Vec<usize>,
    pub infrared: Vec<usize>,
}

/// Draws the batches of one epoch. `*_by_label[l]` lists the images of label `l`;
/// `co_occurring[l]`, where given, the labels seen at the same time as `l`.
pub fn epoch_batches(
    visible_by_label: &[Vec<usize>],
    infrared_by_label: &[Vec<usize>],
    co_occurring: Option<&[Vec<usize>]>,
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
        let chosen = match co_occurring {
            None => rng.sample(&labels, p.min(labels.len())).unwrap_or_default(),
            Some(lists) => with_co_occurring(&mut rng, &labels, lists, p),
        };
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

/// A random label, the labels seen beside it (at most P − 1, drawn at random), then random
/// others: P distinct labels in all (fewer if the set has fewer).
fn with_co_occurring(rng: &mut PyRandom, labels: &[usize], lists: &[Vec<usize>], p: usize) -> Vec<usize> {
    let p = p.min(labels.len());
    let Some(&anchor) = rng.choice(labels).filter(|_| p > 0) else {
        return Vec::new();
    };
    let mut beside: Vec<usize> = lists
        .get(anchor)
        .map(|l| {
            l.iter()
                .copied()
                .filter(|o| labels.contains(o) && *o != anchor)
                .collect()
        })
        .unwrap_or_default();
    // Distinct identities: a list may name one twice.
    beside.sort_unstable();
    beside.dedup();
    let mut chosen = vec![anchor];
    chosen.extend(rng.sample(&beside, beside.len().min(p - 1)).unwrap_or_default());
    let rest: Vec<usize> = labels.iter().copied().filter(|l| !chosen.contains(l)).collect();
    let missing = p - chosen.len();
    chosen.extend(rng.sample(&rest, missing).unwrap_or_default());
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_identity_balanced_and_aligned() {
        // 12 labels; visible images 0..60 (5 per label), infrared 0..36 (3 per label).
        let vis: Vec<Vec<usize>> = (0..12).map(|l| (0..5).map(|i| l * 5 + i).collect()).collect();
        let ir: Vec<Vec<usize>> = (0..12).map(|l| (0..3).map(|i| l * 3 + i).collect()).collect();
        let batches = epoch_batches(&vis, &ir, None, 4, 2, 7, 0);
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
        assert_eq!(batches, epoch_batches(&vis, &ir, None, 4, 2, 7, 0), "deterministic");
        assert_ne!(
            batches,
            epoch_batches(&vis, &ir, None, 4, 2, 7, 1),
            "another epoch draws anew"
        );
    }

    #[test]
    fn co_occurring_identities_share_the_anchors_batch() {
        // 10 labels of 3 images each; 0, 1 and 2 were seen together, 7 beside 8.
        let vis: Vec<Vec<usize>> = (0..10).map(|l| (0..3).map(|i| l * 3 + i).collect()).collect();
        let mut lists = vec![Vec::new(); 10];
        for (a, b) in [(0, 1), (0, 2), (1, 2), (7, 8)] {
            lists[a].push(b);
            lists[b].push(a);
        }
        let batches = epoch_batches(&vis, &vis, Some(&lists), 4, 2, 3, 0);
        assert_eq!(batches.len(), 30 / 8 + 1);
        let mut anchored = 0;
        for b in &batches {
            let ids: Vec<usize> = (0..4).map(|s| b.visible[2 * s] / 3).collect();
            let mut distinct = ids.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), 4, "P distinct identities: {ids:?}");
            // Every label seen beside the first one is in its batch (there are fewer than P).
            for &o in &lists[ids[0]] {
                assert!(ids.contains(&o), "{o} was seen beside {}: {ids:?}", ids[0]);
            }
            anchored += usize::from(!lists[ids[0]].is_empty());
            for q in 0..8 {
                assert_eq!(b.visible[q] / 3, b.infrared[q] / 3, "row {q} shares the identity");
            }
        }
        assert!(anchored > 0, "some batch starts from a label with co-occurring ones");
        assert_eq!(
            batches,
            epoch_batches(&vis, &vis, Some(&lists), 4, 2, 3, 0),
            "deterministic"
        );
    }
}
