//! Ranking metrics: CMC (standard or identity-de-duplicated), AP and INP per query, and their
//! means over the valid queries (those with at least one true match left after exclusion).

/// How the CMC of one query is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CmcMode {
    /// Match at rank k if a true match is among the first k gallery entries (RegDB, Market).
    Standard,
    /// Match at rank k if the true identity is among the first k *distinct* identities of the
    /// ranked list (the SYSU-MM01 code's `new_cmc`).
    Deduplicated,
}

/// The scores of one valid query.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryScore {
    /// 1-based rank of the first true match in the kept, ranked gallery.
    pub first_match: usize,
    /// 1-based CMC rank: where the first match counts for CMC (differs from `first_match` when
    /// the CMC is de-duplicated).
    pub cmc_rank: usize,
    pub ap: f64,
    pub inp: f64,
}

/// Scores one query from its ranked gallery (best first). `keep` says which gallery entries
/// survive the protocol's exclusion rule; `None` when no true match is left (an invalid query).
pub fn score_query(
    ranked: impl IntoIterator<Item = usize>,
    gallery_ids: &[i64],
    query_id: i64,
    keep: impl Fn(usize) -> bool,
    mode: CmcMode,
) -> Option<QueryScore> {
    let mut rank = 0usize;
    let mut hits = 0usize;
    let mut precision_sum = 0.0;
    let mut last_hit = 0usize;
    let mut first_match = None;
    let mut distinct_before: Vec<i64> = Vec::new();
    let mut cmc_rank = None;
    for g in ranked {
        if !keep(g) {
            continue;
        }
        rank += 1;
        let id = gallery_ids[g];
        if id == query_id {
            hits += 1;
            precision_sum += hits as f64 / rank as f64;
            last_hit = rank;
            if first_match.is_none() {
                first_match = Some(rank);
                cmc_rank = Some(match mode {
                    CmcMode::Standard => rank,
                    CmcMode::Deduplicated => distinct_before.len() + 1,
                });
            }
        } else if mode == CmcMode::Deduplicated && first_match.is_none() && !distinct_before.contains(&id) {
            distinct_before.push(id);
        }
    }
    let first_match = first_match?;
    Some(QueryScore {
        first_match,
        cmc_rank: cmc_rank.unwrap_or(first_match),
        ap: precision_sum / hits as f64,
        inp: hits as f64 / last_hit as f64,
    })
}

/// Means over the valid queries of one evaluation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Scores {
    /// CMC at ranks 1..=max_rank, as fractions.
    pub cmc: Vec<f64>,
    pub map: f64,
    pub minp: f64,
    pub valid_queries: usize,
    /// Queries without any true match after exclusion; left out of every mean.
    pub invalid_queries: usize,
}

impl Scores {
    /// Aggregates per-query scores (`None` = invalid query) with CMC truncated at `max_rank`.
    pub fn from_queries<'a>(scores: impl IntoIterator<Item = &'a Option<QueryScore>>, max_rank: usize) -> Self {
        let mut cmc = vec![0.0; max_rank];
        let (mut ap, mut inp, mut valid, mut invalid) = (0.0, 0.0, 0usize, 0usize);
        for s in scores {
            match s {
                None => invalid += 1,
                Some(s) => {
                    valid += 1;
                    ap += s.ap;
                    inp += s.inp;
                    for c in cmc.iter_mut().skip(s.cmc_rank - 1) {
                        *c += 1.0;
                    }
                }
            }
        }
        let n = valid.max(1) as f64;
        cmc.iter_mut().for_each(|c| *c /= n);
        Self {
            cmc,
            map: ap / n,
            minp: inp / n,
            valid_queries: valid,
            invalid_queries: invalid,
        }
    }

    /// CMC at 1-based rank `k` (0 beyond the truncation).
    pub fn rank(&self, k: usize) -> f64 {
        self.cmc.get(k.wrapping_sub(1)).copied().unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Gallery ids; the ranked order is given explicitly in each test.
    const IDS: [i64; 6] = [7, 3, 7, 5, 3, 9];

    #[test]
    fn ap_inp_and_rank_by_hand() {
        // Ranked: g1(3) g0(7) g4(3) g3(5) g2(7) g5(9); query 7 → hits at ranks 2 and 5.
        let s = score_query([1, 0, 4, 3, 2, 5], &IDS, 7, |_| true, CmcMode::Standard).expect("valid");
        assert_eq!(s.first_match, 2);
        assert_eq!(s.cmc_rank, 2);
        // AP = (1/2 + 2/5) / 2 = 0.45; INP = 2 / 5.
        assert!((s.ap - 0.45).abs() < 1e-12);
        assert!((s.inp - 0.4).abs() < 1e-12);
    }

    #[test]
    fn deduplicated_cmc_counts_distinct_identities() {
        // Ranked ids: 3 3 5 7 … → the true id is the 3rd distinct identity, 4th entry.
        let s = score_query([1, 4, 3, 0, 2, 5], &IDS, 7, |_| true, CmcMode::Deduplicated).expect("valid");
        assert_eq!((s.first_match, s.cmc_rank), (4, 3));
        // AP is never de-duplicated: (1/4 + 2/5) / 2.
        assert!((s.ap - 0.325).abs() < 1e-12);
    }

    #[test]
    fn exclusion_removes_entries_before_ranking() {
        // Excluding g1 and g4 (the two 3s) moves the first hit from rank 2 to rank 1.
        let s = score_query([1, 0, 4, 3, 2, 5], &IDS, 7, |g| g != 1 && g != 4, CmcMode::Standard).expect("valid");
        assert_eq!(s.first_match, 1);
        // Kept ranking: 7 5 7 9 → AP = (1 + 2/3) / 2, INP = 2/3.
        assert!((s.ap - 5.0 / 6.0).abs() < 1e-12);
        assert!((s.inp - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn query_without_match_is_invalid_and_left_out() {
        assert_eq!(score_query([0, 1, 2], &IDS, 42, |_| true, CmcMode::Standard), None);
        // All true matches excluded → invalid too.
        assert_eq!(
            score_query([0, 1, 2], &IDS, 7, |g| IDS[g] != 7, CmcMode::Standard),
            None
        );
        let good = score_query([0, 1], &IDS, 7, |_| true, CmcMode::Standard);
        let m = Scores::from_queries(&[good, None], 3);
        assert_eq!((m.valid_queries, m.invalid_queries), (1, 1));
        assert_eq!(m.cmc, vec![1.0, 1.0, 1.0]);
        assert!((m.map - 1.0).abs() < 1e-12);
    }

    #[test]
    fn cmc_is_cumulative_and_truncated() {
        let a = Some(QueryScore {
            first_match: 1,
            cmc_rank: 1,
            ap: 1.0,
            inp: 1.0,
        });
        let b = Some(QueryScore {
            first_match: 3,
            cmc_rank: 3,
            ap: 0.5,
            inp: 0.25,
        });
        let c = Some(QueryScore {
            first_match: 30,
            cmc_rank: 30,
            ap: 0.1,
            inp: 0.1,
        });
        let m = Scores::from_queries(&[a, b, c], 5);
        assert_eq!(m.cmc.len(), 5);
        let third = 1.0 / 3.0;
        for (got, want) in m.cmc.iter().zip([third, third, 2.0 * third, 2.0 * third, 2.0 * third]) {
            assert!((got - want).abs() < 1e-12, "{:?}", m.cmc);
        }
        assert!((m.map - (1.6 / 3.0)).abs() < 1e-12);
        assert!((m.minp - (1.35 / 3.0)).abs() < 1e-12);
        assert_eq!(m.rank(1), third);
        assert_eq!(m.rank(20), 0.0);
    }
}
