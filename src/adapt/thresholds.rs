//! Index thresholds that suit a model, from held-out pseudo-identities: the cosine distances
//! between crops of the same pseudo-identity and of different ones, per modality pairing, and
//! the distance that separates them with the least balanced error (the mean of the share of
//! same-identity pairs above it, which would split a person, and the share of different-identity
//! pairs at or below it, which would merge two).

use serde::Serialize;

/// A suggested threshold and how well it separates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Threshold {
    pub distance: f64,
    /// Same-identity pairs farther apart than `distance`.
    pub split_rate: f64,
    /// Different-identity pairs at or within `distance`.
    pub merge_rate: f64,
    pub same_pairs: usize,
    pub different_pairs: usize,
}

/// The threshold with the least balanced error between `same` and `different` distances;
/// `None` when either is empty. Ties go to the smallest distance (the fewest merges).
pub fn separating(same: &[f64], different: &[f64]) -> Option<Threshold> {
    if same.is_empty() || different.is_empty() {
        return None;
    }
    let mut s = same.to_vec();
    let mut d = different.to_vec();
    s.sort_by(f64::total_cmp);
    d.sort_by(f64::total_cmp);
    let mut best: Option<(f64, Threshold)> = None;
    for &t in s.iter().chain(&d) {
        let within_same = s.partition_point(|x| *x <= t);
        let within_different = d.partition_point(|x| *x <= t);
        let split_rate = 1.0 - within_same as f64 / s.len() as f64;
        let merge_rate = within_different as f64 / d.len() as f64;
        let error = (split_rate + merge_rate) / 2.0;
        let better = best
            .as_ref()
            .is_none_or(|(e, b)| error < *e || (error == *e && t < b.distance));
        if better {
            best = Some((
                error,
                Threshold {
                    distance: t,
                    split_rate,
                    merge_rate,
                    same_pairs: s.len(),
                    different_pairs: d.len(),
                },
            ));
        }
    }
    best.map(|(_, t)| t)
}

/// Distances of every pair of rows of unit-length `features` (N×D, row-major), split by
/// whether the rows share a label and whether their modalities (`thermal`) are the same:
/// (same-modality same-label, same-modality different-label, cross-modal same-label,
/// cross-modal different-label).
pub fn pair_distances(features: &[Vec<f32>], labels: &[i64], thermal: &[bool]) -> [Vec<f64>; 4] {
    let mut out: [Vec<f64>; 4] = Default::default();
    for i in 0..features.len() {
        for j in i + 1..features.len() {
            let dot: f32 = features[i].iter().zip(&features[j]).map(|(a, b)| a * b).sum();
            let distance = f64::from((1.0 - dot).max(0.0));
            let slot = match (thermal[i] != thermal[j], labels[i] == labels[j]) {
                (false, true) => 0,
                (false, false) => 1,
                (true, true) => 2,
                (true, false) => 3,
            };
            out[slot].push(distance);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separated_distances_give_a_threshold_between_them() {
        let t = separating(&[0.01, 0.02, 0.03], &[0.2, 0.3]).expect("threshold");
        assert_eq!(t.distance, 0.03);
        assert_eq!((t.split_rate, t.merge_rate), (0.0, 0.0));
    }

    #[test]
    fn overlapping_distances_balance_splits_and_merges() {
        // At 0.3: one of four same pairs split (0.25), one of four different pairs merged (0.25)
        // → 0.25; at 0.2: 0.5 split, 0 merged → 0.25 too, and the smaller distance wins; at
        // 0.4: 0 split, 0.5 merged → 0.25. Every other candidate is worse.
        let t = separating(&[0.1, 0.2, 0.3, 0.4], &[0.25, 0.4, 0.5, 0.6]).expect("threshold");
        assert_eq!(t.distance, 0.2);
        assert_eq!((t.split_rate, t.merge_rate), (0.5, 0.0));
        assert!(separating(&[], &[0.1]).is_none());
    }

    #[test]
    fn pairs_are_sorted_by_modality_and_label() {
        let f = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![1.0, 0.0]];
        let [same_mod_same, same_mod_diff, cross_same, cross_diff] =
            pair_distances(&f, &[1, 2, 1], &[false, false, true]);
        assert!(same_mod_same.is_empty());
        assert_eq!(same_mod_diff, [1.0]);
        assert_eq!(cross_same, [0.0]);
        assert_eq!(cross_diff, [1.0]);
    }
}
