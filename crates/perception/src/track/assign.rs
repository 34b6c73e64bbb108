//! Minimum-cost assignment (Hungarian method with potentials, O(n²m)).

/// Assigns rows to columns minimising the summed cost of a `rows` × `cols` matrix (row-major).
/// Returns, for each row, its column, or `None` when there are more rows than columns and the
/// row was left out.
pub fn assign(cost: &[f64], rows: usize, cols: usize) -> Vec<Option<usize>> {
    assert_eq!(cost.len(), rows * cols, "cost matrix size");
    if rows == 0 || cols == 0 {
        return vec![None; rows];
    }
    if rows > cols {
        // Solve the transpose, then invert the mapping.
        let t: Vec<f64> = (0..cols * rows).map(|k| cost[(k % rows) * cols + k / rows]).collect();
        let by_col = assign(&t, cols, rows);
        let mut out = vec![None; rows];
        for (c, r) in by_col.into_iter().enumerate() {
            if let Some(r) = r {
                out[r] = Some(c);
            }
        }
        return out;
    }
    // Rows n ≤ columns m; 1-based arrays with a virtual column 0.
    let (n, m) = (rows, cols);
    let inf = f64::INFINITY;
    let mut u = vec![0.0; n + 1];
    let mut v = vec![0.0; m + 1];
    let mut p = vec![0usize; m + 1]; // row matched to each column
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![inf; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = inf;
            let mut j1 = 0;
            for j in 1..=m {
                if !used[j] {
                    let cur = cost[(i0 - 1) * m + (j - 1)] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut out = vec![None; n];
    for j in 1..=m {
        if p[j] != 0 {
            out[p[j] - 1] = Some(j - 1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(cost: &[f64], cols: usize, a: &[Option<usize>]) -> f64 {
        a.iter()
            .enumerate()
            .filter_map(|(r, c)| c.map(|c| cost[r * cols + c]))
            .sum()
    }

    /// Exhaustive minimum over all injective row → column maps (rows ≤ cols).
    fn brute(cost: &[f64], rows: usize, cols: usize) -> f64 {
        fn go(cost: &[f64], rows: usize, cols: usize, r: usize, used: &mut Vec<bool>) -> f64 {
            if r == rows {
                return 0.0;
            }
            let mut best = f64::INFINITY;
            for c in 0..cols {
                if !used[c] {
                    used[c] = true;
                    best = best.min(cost[r * cols + c] + go(cost, rows, cols, r + 1, used));
                    used[c] = false;
                }
            }
            best
        }
        go(cost, rows, cols, 0, &mut vec![false; cols])
    }

    #[test]
    fn greedy_would_be_wrong_here() {
        // Greedy takes (0,0)=1 and then (1,1)=10; the optimum is (0,1)+(1,0) = 2 + 3.
        let cost = [1.0, 2.0, 3.0, 10.0];
        assert_eq!(assign(&cost, 2, 2), vec![Some(1), Some(0)]);
    }

    #[test]
    fn matches_brute_force_on_random_matrices() {
        let mut state = 12345u64;
        let mut rnd = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % 100) as f64 / 10.0
        };
        for (rows, cols) in [(3, 3), (2, 5), (5, 2), (4, 6), (6, 6)] {
            let cost: Vec<f64> = (0..rows * cols).map(|_| rnd()).collect();
            let a = assign(&cost, rows, cols);
            assert_eq!(a.iter().flatten().count(), rows.min(cols));
            let mut seen = std::collections::HashSet::new();
            assert!(a.iter().flatten().all(|c| seen.insert(*c)), "a column used twice");
            let best = if rows <= cols {
                brute(&cost, rows, cols)
            } else {
                let t: Vec<f64> = (0..cols * rows).map(|k| cost[(k % rows) * cols + k / rows]).collect();
                brute(&t, cols, rows)
            };
            assert!((total(&cost, cols, &a) - best).abs() < 1e-9, "{rows}x{cols}");
        }
    }
}
