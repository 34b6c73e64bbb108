//! Index thresholds that suit a model, from held-out pseudo-identities: the cosine distances
//! between crops of the same pseudo-identity and of different ones, per modality pairing, and
//! the largest distance at which a pair within it is at least [`MIN_LIKELIHOOD_RATIO`] times
//! likelier to be of one identity than of two (the share of same-identity pairs within it over
//! the share of different-identity pairs within it: the positive likelihood ratio of a join),
//! with the shares of same-identity pairs it splits and different ones it merges.
//!
//! Why a likelihood ratio: the index holds many identities, and a track that joins one was
//! closer to it than the threshold, not necessarily its own. Among `G` live identities, at equal
//! priors, the odds that such a join is right are about the ratio over `G − 1` on average over
//! the joins within the threshold (those near it are worse, and a track meets several exemplars
//! of each identity, so this is an upper estimate): 1000 keeps a join right about nine times in
//! ten with a hundred identities live. It implies a merge rate of at most 0.1 %
//! (the ratio cannot pass 1000 otherwise), and it is stricter where same-identity pairs are
//! rarely close: a cross-modal pairing that splits 70–80 % of its same-identity pairs at a 0.1 %
//! merge rate makes mostly wrong joins there. Measured on a generated recording (BENCHMARKS.md,
//! "Site adaptation"): with the 0.1 % rule's cross-modal thresholds (0.30–0.34) the live index
//! kept purity 0.87; with this rule's (0: joined by fusion only, and same-modality ones about
//! 4 % lower) 0.95, at 1.11 identities per person instead of 1.12. Where few same-identity pairs
//! are close within one modality too (vtest.avi), it joins less by appearance than the 0.1 % rule
//! did. Sample size matters: with `n` different pairs the closest cut needs `1000 / n` of the
//! same pairs within it, so a small harvest's suggestion rests on its few closest pairs.
//!
//! Which pairs are "different": a harvest's pseudo-identities are tracks, and a person who walks
//! past twice is two of them, so pairs of different pseudo-identities include pairs of one
//! person, the very pairs the index should join; counted as merges, they push the threshold
//! towards 0 (measured: 0.0004 instead of 0.0022 on a recording where people come back). Pairs
//! of pseudo-identities seen by one camera at the same time (`exp/co_occurring.txt`) are
//! certainly different people, and are what the merges are counted on when there are at least
//! [`MIN_KNOWN_DIFFERENT`] of them (pairs of crops: a few pairs of people can give that many);
//! otherwise every pair of different pseudo-identities is (the threshold is then usually lower
//! than it needs to be).
//!
//! Why not the distance with the least balanced error: the index compares every new track with
//! every exemplar of every identity and keeps what joins, so a pairwise merge rate of a few
//! percent joins most people within minutes. Measured on a generated recording (BENCHMARKS.md,
//! "Site adaptation", the first recording): balanced-error thresholds left 4–5 identities for 21
//! people (purity 0.15); at a 0.1 % merge rate the adapted model kept purity 0.93.

use serde::Serialize;

/// How many times likelier than of two identities a pair within a suggested threshold must be
/// of one (see the module's notes).
pub const MIN_LIKELIHOOD_RATIO: f64 = 1000.0;

/// Fewest pairs of certainly different people (co-occurring) a threshold is computed from.
pub const MIN_KNOWN_DIFFERENT: usize = 1000;

/// A threshold that still splits more than this share of same-identity pairs joins almost no one
/// by appearance, while each merge it makes is a wrong one: 0 is suggested instead (that
/// modality pairing then joins by fusion only).
pub const MAX_SPLIT_RATE: f64 = 0.9;

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
    /// The different pairs are of identities seen together by one camera (certainly other
    /// people), rather than every pair of different identities.
    pub co_occurring: bool,
}

/// The largest distance (one of the different-identity distances, or 0 when none qualifies, or
/// when it would split more than [`MAX_SPLIT_RATE`] of the `same` pairs) at which the share of
/// `same` pairs within it is at least `ratio` times the share of `different` pairs within it;
/// `None` when either list is empty.
pub fn at_likelihood_ratio(same: &[f64], different: &[f64], ratio: f64) -> Option<Threshold> {
    if same.is_empty() || different.is_empty() {
        return None;
    }
    let mut d = different.to_vec();
    d.sort_by(f64::total_cmp);
    let mut s = same.to_vec();
    s.sort_by(f64::total_cmp);
    let within = |distance: f64| s.partition_point(|x| *x <= distance) as f64 / s.len() as f64;
    // Candidates: each different-pair distance, counting every pair tied with it as within.
    let mut distance = 0.0;
    for (i, &cut) in d.iter().enumerate() {
        if d.get(i + 1) == Some(&cut) {
            continue;
        }
        let merged = (i + 1) as f64 / d.len() as f64;
        if within(cut) >= ratio * merged {
            distance = cut;
        }
    }
    if 1.0 - within(distance) > MAX_SPLIT_RATE {
        distance = 0.0;
    }
    let within_different = d.partition_point(|x| *x <= distance);
    Some(Threshold {
        distance,
        split_rate: 1.0 - within(distance),
        merge_rate: within_different as f64 / d.len() as f64,
        same_pairs: s.len(),
        different_pairs: d.len(),
        co_occurring: false,
    })
}

/// The distances of one modality pairing's pairs of crops.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pairs {
    /// Pairs of one label.
    pub same: Vec<f64>,
    /// Pairs of different labels.
    pub different: Vec<f64>,
    /// Those of [`Pairs::different`] known to be other people.
    pub known_different: Vec<f64>,
}

/// Distances of every pair of rows of unit-length `features` (N×D, row-major), split by
/// whether their modalities (`thermal`) are the same (`[same-modality, cross-modal]`) and by
/// label; `known(a, b)`: labels `a` and `b` are known to be other people.
pub fn pair_distances(
    features: &[Vec<f32>],
    labels: &[i64],
    thermal: &[bool],
    known: impl Fn(i64, i64) -> bool,
) -> [Pairs; 2] {
    let mut out: [Pairs; 2] = Default::default();
    for i in 0..features.len() {
        for j in i + 1..features.len() {
            let dot = crate::index::distance::dot(&features[i], &features[j]);
            let distance = f64::from((1.0 - dot).max(0.0));
            let pairing = &mut out[usize::from(thermal[i] != thermal[j])];
            if labels[i] == labels[j] {
                pairing.same.push(distance);
            } else {
                pairing.different.push(distance);
                if known(labels[i], labels[j]) {
                    pairing.known_different.push(distance);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_the_farthest_where_a_join_is_likely_enough_of_one_identity() {
        // 1,000 different pairs at 0.001, 0.002, … 1.000; three of four same pairs within 0.002.
        let different: Vec<f64> = (1..=1000).map(|i| f64::from(i) / 1000.0).collect();
        let same = [0.0005, 0.0008, 0.002, 0.5];
        // Ratio 100: 0.75 of the same pairs within 0.007 against 0.7 % of the different ones.
        let t = at_likelihood_ratio(&same, &different, 100.0).expect("threshold");
        assert_eq!((t.distance, t.merge_rate, t.split_rate), (0.007, 0.007, 0.25));
        assert_eq!((t.same_pairs, t.different_pairs), (4, 1000));
        // Ratio 1000 would need the whole same share within 0.001, half of it is: nothing joins.
        let t = at_likelihood_ratio(&same, &different, 1000.0).expect("threshold");
        assert_eq!((t.distance, t.merge_rate, t.split_rate), (0.0, 0.0, 1.0));
        // Every same pair within 0.001: at ratio 400, two merges in a thousand still hold.
        let t = at_likelihood_ratio(&[0.0005; 4], &different, 400.0).expect("threshold");
        assert_eq!((t.distance, t.merge_rate, t.split_rate), (0.002, 0.002, 0.0));
        // The farthest cut that holds, not the first run of them: none of the same pairs is
        // within 0.001, all are within 0.002 (one exactly on it counts).
        for at in [0.0015, 0.002] {
            let t = at_likelihood_ratio(&[at; 4], &different, 400.0).expect("threshold");
            assert_eq!((t.distance, t.merge_rate, t.split_rate), (0.002, 0.002, 0.0), "{at}");
        }
    }

    #[test]
    fn a_threshold_that_joins_almost_no_one_is_not_suggested() {
        // Ratio 8: one of 20 same pairs within reaches 0.006, where 19 of 20 are still split.
        let different: Vec<f64> = (1..=1000).map(|i| f64::from(i) / 1000.0).collect();
        let mut same = vec![0.0005];
        same.extend((0..19).map(|i| 0.3 + f64::from(i) / 100.0));
        let t = at_likelihood_ratio(&same, &different, 8.0).expect("threshold");
        assert_eq!((t.distance, t.merge_rate, t.split_rate), (0.0, 0.0, 1.0));
        // Two of 20 within reach 0.012 (90 % split, not more): kept.
        same[1] = 0.0009;
        let t = at_likelihood_ratio(&same, &different, 8.0).expect("threshold");
        assert_eq!((t.distance, t.merge_rate, t.split_rate), (0.012, 0.012, 0.9));
    }

    #[test]
    fn too_few_pairs_or_ties_at_the_cut_give_a_tighter_threshold() {
        // One merge in 100 is already 1 %: no ratio of 1000 is possible, nothing joins.
        let different: Vec<f64> = (1..=100).map(|i| f64::from(i) / 100.0).collect();
        let t = at_likelihood_ratio(&[0.005, 0.5], &different, 1000.0).expect("threshold");
        assert_eq!((t.distance, t.merge_rate, t.split_rate), (0.0, 0.0, 1.0));
        // Ratio 60 of 200 pairs: 0.1 holds (half the same pairs against 0.5 %); at 0.2, counting
        // one of the tied pairs would hold too (0.75 against 1 %), counting both does not (1.5 %).
        let mut tied = vec![0.1, 0.2, 0.2];
        tied.extend((0..197).map(|i| 0.5 + f64::from(i) / 1000.0));
        let t = at_likelihood_ratio(&[0.05, 0.08, 0.15, 0.6], &tied, 60.0).expect("threshold");
        assert_eq!((t.distance, t.merge_rate), (0.1, 0.005));
        assert!(at_likelihood_ratio(&[], &[0.1], 10.0).is_none());
        assert!(at_likelihood_ratio(&[0.1], &[], 10.0).is_none());
    }

    #[test]
    fn pairs_are_sorted_by_modality_and_label() {
        let f = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![1.0, 0.0], vec![0.0, 1.0]];
        let labels = [1, 2, 1, 3];
        let thermal = [false, false, true, false];
        // Labels 1 and 3 are known to be other people; 1 and 2 may be one person.
        let [same_modality, cross] = pair_distances(&f, &labels, &thermal, |a, b| a.min(b) == 1 && a.max(b) == 3);
        assert!(same_modality.same.is_empty());
        assert_eq!(same_modality.different, [1.0, 1.0, 0.0]);
        assert_eq!(same_modality.known_different, [1.0]);
        assert_eq!(cross.same, [0.0]);
        assert_eq!(cross.different, [1.0, 1.0]);
        assert_eq!(cross.known_different, [1.0]);
    }
}
