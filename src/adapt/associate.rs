//! Pseudo-identities that are one person. A harvest makes one pseudo-identity per fused
//! visible–thermal track pair, so a person who walks past twice is two of them, and training on
//! them as they are teaches the network to tell that person from themselves (measured on a
//! generated recording with ground truth: 35 training pseudo-identities of 18 people; trained on
//! the true people instead, held-out rank-1 rose from 36 % to 55 %).
//!
//! Before training, `adapt` joins two pseudo-identities whose tracks the starting weights find
//! closer, in the visible view *and* in the thermal one, than the closest two pseudo-identities
//! seen together by one camera (`exp/co_occurring.txt`: two people), closest pairs first, and
//! never puts two that were seen together in one group. Every two members of a group are that
//! close (complete linkage): joins that chained through a member close to both (A near B, B near
//! C, A far from C) put two or three people in one group of a later harvest (3 of its 15 groups,
//! 5 pseudo-identities in a group of another person; complete linkage: 2 of 17 groups, 2
//! pseudo-identities). Requiring both views keeps the grouping
//! cautious: on the first recording, ImageNet features grouped 8 pairs of one person and none of
//! two people (35 labels → 27, for 18 people). A pair listed as
//! seen together that is one person after all (a person boxed twice) lowers the limits: fewer
//! groups, never a wrong one. The groups go to `exp/same_person.txt`, and the trainer gives each
//! group one label.

use crate::config::train::DatasetKind;
use crate::data::sysu::{self, CoOccurring};
use crate::eval::EvalError;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Fewest pairs of pseudo-identities seen together (and both in both views) the limits are
/// taken from; with fewer, nothing is grouped.
pub const MIN_KNOWN_DIFFERENT: usize = 5;

/// Per pseudo-identity, the unit-length mean of its crops' unit-length embeddings in the visible
/// and in the thermal view.
pub type TrackMeans = BTreeMap<i64, [Vec<f32>; 2]>;

/// What the grouping found.
#[derive(Debug, Clone, PartialEq)]
pub struct Association {
    /// Groups of two pseudo-identities or more, ascending.
    pub groups: Vec<Vec<i64>>,
    /// Per view (visible, thermal): the distance between the closest two pseudo-identities seen
    /// together; pairs closer than both limits are joined.
    pub limits: [f64; 2],
    /// Pairs of pseudo-identities seen together that the limits come from.
    pub known_different: usize,
}

fn distance(a: &[f32], b: &[f32]) -> f64 {
    f64::from(1.0 - crate::index::distance::dot(a, b))
}

/// Groups the pseudo-identities of `means` (see the module's notes); `None` when fewer than
/// [`MIN_KNOWN_DIFFERENT`] pairs were seen together.
pub fn associate(means: &TrackMeans, co_occurring: &CoOccurring) -> Option<Association> {
    let together = |a: i64, b: i64| {
        let lists = |x: i64, y: i64| co_occurring.get(&x).is_some_and(|l| l.contains(&y));
        lists(a, b) || lists(b, a)
    };
    let ids: Vec<i64> = means.keys().copied().collect();
    let mut pairs = Vec::new();
    for (i, &a) in ids.iter().enumerate() {
        for &b in &ids[i + 1..] {
            let d = [0, 1].map(|v| distance(&means[&a][v], &means[&b][v]));
            pairs.push((a, b, d));
        }
    }
    let known: Vec<[f64; 2]> = pairs.iter().filter(|(a, b, _)| together(*a, *b)).map(|p| p.2).collect();
    if known.len() < MIN_KNOWN_DIFFERENT {
        return None;
    }
    let limits = [0, 1].map(|v| known.iter().map(|d| d[v]).fold(f64::INFINITY, f64::min));
    // Closest first (distances in units of each view's limit), then a group at a time.
    let mut candidates: Vec<(f64, i64, i64)> = pairs
        .iter()
        .filter(|(a, b, d)| d[0] < limits[0] && d[1] < limits[1] && !together(*a, *b))
        .map(|&(a, b, d)| (d[0] / limits[0] + d[1] / limits[1], a, b))
        .collect();
    candidates.sort_by(|x, y| x.0.total_cmp(&y.0).then((x.1, x.2).cmp(&(y.1, y.2))));
    // Two groups join only when every pair across them is a candidate (complete linkage).
    let close: BTreeSet<(i64, i64)> = candidates.iter().map(|&(_, a, b)| (a, b)).collect();
    let near = |x: i64, y: i64| close.contains(&(x.min(y), x.max(y)));
    let mut group_of: BTreeMap<i64, usize> = ids.iter().enumerate().map(|(g, &id)| (id, g)).collect();
    let mut groups: Vec<BTreeSet<i64>> = ids.iter().map(|&id| BTreeSet::from([id])).collect();
    for &(_, a, b) in &candidates {
        let (ga, gb) = (group_of[&a], group_of[&b]);
        if ga == gb || !groups[ga].iter().all(|&x| groups[gb].iter().all(|&y| near(x, y))) {
            continue;
        }
        let moved = std::mem::take(&mut groups[gb]);
        for id in &moved {
            group_of.insert(*id, ga);
        }
        groups[ga].extend(moved);
    }
    let mut groups: Vec<Vec<i64>> = groups
        .into_iter()
        .filter(|g| g.len() >= 2)
        .map(|g| g.into_iter().collect())
        .collect();
    groups.sort();
    Some(Association {
        groups,
        limits,
        known_different: known.len(),
    })
}

/// The track means of the training pseudo-identities of the SYSU-MM01-layout harvest in `data`
/// (train and val ids, both views), embedded with `weights` at `input_size` on `device`.
pub fn track_means(
    data: &Path,
    weights: &Path,
    input_size: (i64, i64),
    device: tch::Device,
) -> Result<TrackMeans, EvalError> {
    let kind = DatasetKind::Sysu;
    let items = super::crops::training_items(data, kind)?;
    let rows = super::crops::embed(data, &items, kind, weights, input_size, device)?;
    let rows: Vec<Vec<f32>> = Vec::<Vec<f32>>::try_from(&rows)?;
    let mut sums: BTreeMap<i64, [Vec<f32>; 2]> = BTreeMap::new();
    for (item, row) in items.iter().zip(&rows) {
        let view = usize::from(sysu::INFRARED_CAMS.contains(&item.cam));
        let sum = &mut sums.entry(item.pid).or_default()[view];
        if sum.is_empty() {
            sum.clone_from(row);
        } else {
            sum.iter_mut().zip(row).for_each(|(s, x)| *s += x);
        }
    }
    Ok(sums
        .into_iter()
        .filter(|(_, views)| views.iter().all(|v| !v.is_empty()))
        .map(|(pid, views)| {
            let unit = views.map(|v| {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::EPSILON);
                v.into_iter().map(|x| x / norm).collect()
            });
            (pid, unit)
        })
        .collect())
}

/// The text of [`sysu::SAME_PERSON`] for `groups`.
pub fn same_person_text(groups: &[Vec<i64>]) -> String {
    groups
        .iter()
        .map(|g| g.iter().map(i64::to_string).collect::<Vec<_>>().join(",") + "\n")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: [f32; 3]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    /// A pseudo-identity `angle` degrees from the x axis in the visible view and `thermal`
    /// degrees in the thermal one (both in the x–y plane).
    fn at(angle: f32, thermal: f32) -> [Vec<f32>; 2] {
        let ray = |deg: f32| unit([deg.to_radians().cos(), deg.to_radians().sin(), 0.0]);
        [ray(angle), ray(thermal)]
    }

    #[test]
    fn pseudo_identities_closer_in_both_views_than_any_two_seen_together_are_grouped() {
        // Pairs seen together: 1–2, 1–6, 2–5, 3–4, 5–6 (50° or more apart in some view) and
        // 5–10, the closest (30° visible, 25° thermal): the limits. 7 is 10° from 1 in both
        // views: 1's person back. 8 is 10° from 3 in the visible view only. 9 is 4° from 10 and
        // 26° / 21° from 5, but 10 was seen beside 5: 9 joins 10, and 5 stays alone.
        let means: TrackMeans = BTreeMap::from([
            (1, at(0.0, 0.0)),
            (2, at(60.0, 50.0)),
            (3, at(120.0, 100.0)),
            (4, at(180.0, 150.0)),
            (5, at(240.0, 200.0)),
            (6, at(310.0, 260.0)),
            (7, at(10.0, 10.0)),
            (8, at(130.0, 160.0)),
            (9, at(266.0, 221.0)),
            (10, at(270.0, 225.0)),
        ]);
        let co: CoOccurring = BTreeMap::from([
            (1, vec![2, 6]),
            (2, vec![1, 5]),
            (3, vec![4]),
            (4, vec![3]),
            (5, vec![6, 2, 10]),
            (6, vec![5, 1]),
            (10, vec![5]),
        ]);
        let a = associate(&means, &co).expect("enough pairs seen together");
        assert_eq!(a.known_different, 6);
        assert!((a.limits[0] - distance(&at(240.0, 0.0)[0], &at(270.0, 0.0)[0])).abs() < 1e-6);
        assert!((a.limits[1] - distance(&at(0.0, 200.0)[1], &at(0.0, 225.0)[1])).abs() < 1e-6);
        assert_eq!(a.groups, [vec![1, 7], vec![9, 10]]);
        // Too few pairs seen together to set the limits: nothing is grouped.
        let few: CoOccurring = BTreeMap::from([(1, vec![2]), (2, vec![1])]);
        assert!(associate(&means, &few).is_none());
    }

    #[test]
    fn every_two_members_of_a_group_are_close() {
        // 2 is 19° from 1 and 20° from 3, which are 39° apart; the closest pair seen together
        // (4–5) is 30° apart in both views. 1–2 is closer than 2–3: 1 and 2 are grouped, and 3,
        // close to 2 but not to 1, stays alone rather than chaining them.
        let means: TrackMeans = BTreeMap::from([
            (1, at(0.0, 0.0)),
            (2, at(19.0, 19.0)),
            (3, at(39.0, 39.0)),
            (4, at(150.0, 150.0)),
            (5, at(180.0, 180.0)),
            (6, at(270.0, 270.0)),
        ]);
        let co: CoOccurring = BTreeMap::from([(4, vec![5, 6, 1, 2, 3]), (5, vec![6]), (6, vec![3])]);
        let a = associate(&means, &co).expect("enough pairs seen together");
        assert_eq!(a.groups, [vec![1, 2]]);
    }

    #[test]
    fn the_groups_file_lists_one_group_a_line() {
        assert_eq!(same_person_text(&[vec![1, 7], vec![9, 10, 12]]), "1,7\n9,10,12\n");
        assert_eq!(same_person_text(&[]), "");
    }
}
