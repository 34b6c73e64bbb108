//! The constant-velocity Kalman filter of SORT (Bewley et al., 2016) over box centre, area and
//! aspect ratio: state (u, v, s, r, u̇, v̇, ṡ), measurement (u, v, s, r). Noise settings are SORT's.

// Index loops read as the matrix formulas they implement.
#![allow(clippy::needless_range_loop)]

use crate::detect::BBox;

type M7 = [[f64; 7]; 7];

/// One track's filter.
#[derive(Debug, Clone)]
pub struct BoxFilter {
    x: [f64; 7],
    p: M7,
}

const R: [f64; 4] = [1.0, 1.0, 10.0, 10.0];
const Q: [f64; 7] = [1.0, 1.0, 1.0, 1.0, 0.01, 0.01, 0.0001];

fn measure(b: &BBox) -> [f64; 4] {
    let (w, h) = (f64::from(b.w), f64::from(b.h));
    [
        f64::from(b.x) + w / 2.0,
        f64::from(b.y) + h / 2.0,
        w * h,
        w / h.max(1e-6),
    ]
}

impl BoxFilter {
    /// Starts at `b` with no velocity and a large velocity uncertainty.
    pub fn new(b: &BBox) -> Self {
        let z = measure(b);
        let mut p = [[0.0; 7]; 7];
        for (i, row) in p.iter_mut().enumerate() {
            row[i] = if i < 4 { 10.0 } else { 10_000.0 };
        }
        Self {
            x: [z[0], z[1], z[2], z[3], 0.0, 0.0, 0.0],
            p,
        }
    }

    /// Advances one frame and returns the predicted box.
    pub fn predict(&mut self) -> BBox {
        if self.x[2] + self.x[6] <= 0.0 {
            self.x[6] = 0.0;
        }
        for i in 0..3 {
            self.x[i] += self.x[i + 4];
        }
        // P = F P Fᵀ + Q with F = I + E, E moving velocity i+4 into position i (i < 3).
        let mut fp = self.p;
        for i in 0..3 {
            for j in 0..7 {
                fp[i][j] += self.p[i + 4][j];
            }
        }
        let mut fpf = fp;
        for row in fpf.iter_mut() {
            for j in 0..3 {
                row[j] += row[j + 4];
            }
        }
        for (i, q) in Q.iter().enumerate() {
            fpf[i][i] += q;
        }
        self.p = fpf;
        self.bbox()
    }

    /// Corrects the state with a measured box.
    pub fn update(&mut self, b: &BBox) {
        let z = measure(b);
        // S = H P Hᵀ + R (top-left 4×4 of P), K = P Hᵀ S⁻¹ (first 4 columns of P times S⁻¹).
        let mut s = [[0.0; 4]; 4];
        for i in 0..4 {
            for j in 0..4 {
                s[i][j] = self.p[i][j] + if i == j { R[i] } else { 0.0 };
            }
        }
        let Some(si) = invert4(&s) else { return };
        let mut k = [[0.0; 4]; 7];
        for i in 0..7 {
            for j in 0..4 {
                k[i][j] = (0..4).map(|m| self.p[i][m] * si[m][j]).sum();
            }
        }
        let y: Vec<f64> = (0..4).map(|i| z[i] - self.x[i]).collect();
        for i in 0..7 {
            self.x[i] += (0..4).map(|j| k[i][j] * y[j]).sum::<f64>();
        }
        // P = (I − K H) P: subtract K times the first four rows of P.
        let old = self.p;
        for i in 0..7 {
            for j in 0..7 {
                self.p[i][j] = old[i][j] - (0..4).map(|m| k[i][m] * old[m][j]).sum::<f64>();
            }
        }
    }

    /// The current state as a box.
    pub fn bbox(&self) -> BBox {
        let s = self.x[2].max(0.0);
        let w = (s * self.x[3].max(0.0)).sqrt();
        let h = if w > 0.0 { s / w } else { 0.0 };
        BBox::new(
            (self.x[0] - w / 2.0) as f32,
            (self.x[1] - h / 2.0) as f32,
            w as f32,
            h as f32,
        )
    }
}

/// Inverse of a 4×4 matrix by Gauss–Jordan elimination with partial pivoting.
fn invert4(a: &[[f64; 4]; 4]) -> Option<[[f64; 4]; 4]> {
    let mut m = [[0.0; 8]; 4];
    for i in 0..4 {
        m[i][..4].copy_from_slice(&a[i]);
        m[i][4 + i] = 1.0;
    }
    for c in 0..4 {
        let pivot = (c..4).max_by(|&i, &j| m[i][c].abs().total_cmp(&m[j][c].abs()))?;
        if m[pivot][c].abs() < 1e-12 {
            return None;
        }
        m.swap(c, pivot);
        let d = m[c][c];
        for v in m[c].iter_mut() {
            *v /= d;
        }
        for r in 0..4 {
            if r != c {
                let f = m[r][c];
                let row = m[c];
                for (v, p) in m[r].iter_mut().zip(row) {
                    *v -= f * p;
                }
            }
        }
    }
    let mut inv = [[0.0; 4]; 4];
    for i in 0..4 {
        inv[i].copy_from_slice(&m[i][4..]);
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_times_matrix_is_identity() {
        let a = [
            [4.0, 1.0, 0.0, 2.0],
            [1.0, 3.0, 1.0, 0.0],
            [0.0, 1.0, 5.0, 1.0],
            [2.0, 0.0, 1.0, 6.0],
        ];
        let inv = invert4(&a).unwrap();
        for i in 0..4 {
            for j in 0..4 {
                let v: f64 = (0..4).map(|k| a[i][k] * inv[k][j]).sum();
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn first_steps_match_sorts_filter() {
        // Reference numbers from SORT's filterpy set-up (P, Q, R as in sort.py), computed by hand:
        // after update with z1 at frame 1 the velocity estimate is K[4][0] · (z1 − x̂).
        let mut f = BoxFilter::new(&BBox::new(0.0, 0.0, 10.0, 20.0));
        let p = f.predict();
        assert_eq!(p, BBox::new(0.0, 0.0, 10.0, 20.0));
        f.update(&BBox::new(4.0, 0.0, 10.0, 20.0));
        // Predicted P: P00 = 10 + 10000 + 1 = 10011, P04 = P40 = 10000, P44 = 10000.01; S00 = 10012.
        // K40 = 10000 / 10012, so the velocity is 4 · 10000 / 10012.
        let v = f.x[4];
        assert!((v - 4.0 * 10_000.0 / 10_012.0).abs() < 1e-9, "{v}");
        assert!((f.x[0] - (5.0 + 4.0 * 10_011.0 / 10_012.0)).abs() < 1e-9);
    }

    #[test]
    fn follows_constant_motion() {
        let mut f = BoxFilter::new(&BBox::new(0.0, 0.0, 10.0, 20.0));
        for t in 1..20 {
            f.predict();
            f.update(&BBox::new(3.0 * t as f32, 0.0, 10.0, 20.0));
        }
        let next = f.predict();
        assert!((next.x - 60.0).abs() < 0.5, "{next:?}");
        assert!((next.w - 10.0).abs() < 0.1 && (next.h - 20.0).abs() < 0.1);
    }
}
