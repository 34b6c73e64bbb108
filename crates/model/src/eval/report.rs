//! Reporting: mean ± standard deviation over trials and runs (printed in the style of the LbA
//! supplementary's Table S1, e.g. `91.12 ± 0.44`), JSON, a per-query CSV and a CMC plot (PNG).

use super::TrialResult;
use super::metrics::Scores;
use opencv::core::{Mat, Point, Scalar, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};
use std::fmt::Write as _;
use std::path::Path;

/// Mean and standard deviation of one figure, in percent. The deviation is the population one
/// (numpy's default `np.std`), 0 for a single value.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
}

impl Stat {
    /// Mean and population standard deviation of `values`.
    pub fn of(values: &[f64]) -> Self {
        let n = values.len().max(1) as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        Self { mean, std: var.sqrt() }
    }
}

impl std::fmt::Display for Stat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} ± {:.2}", self.mean, self.std)
    }
}

/// The reported figures of an evaluation, in percent.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    pub rank1: Stat,
    pub rank5: Stat,
    pub rank10: Stat,
    pub rank20: Stat,
    pub map: Stat,
    pub minp: Stat,
    /// Mean CMC curve (ranks 1..=20), in percent.
    pub cmc: Vec<f64>,
}

impl Summary {
    /// Mean ± std over a set of metrics (the trials of one run, or the trial means of runs).
    pub fn of(metrics: &[Scores]) -> Self {
        let pick = |f: &dyn Fn(&Scores) -> f64| Stat::of(&metrics.iter().map(|m| 100.0 * f(m)).collect::<Vec<_>>());
        let len = metrics.iter().map(|m| m.cmc.len()).max().unwrap_or(0);
        let cmc = (1..=len).map(|k| pick(&|m| m.rank(k)).mean).collect();
        Self {
            rank1: pick(&|m| m.rank(1)),
            rank5: pick(&|m| m.rank(5)),
            rank10: pick(&|m| m.rank(10)),
            rank20: pick(&|m| m.rank(20)),
            map: pick(&|m| m.map),
            minp: pick(&|m| m.minp),
            cmc,
        }
    }

    /// The trial-mean of a run, as plain metrics (fractions) for averaging over runs.
    pub fn as_scores(&self) -> Scores {
        Scores {
            cmc: self.cmc.iter().map(|c| c / 100.0).collect(),
            map: self.map.mean / 100.0,
            minp: self.minp.mean / 100.0,
            valid_queries: 0,
            invalid_queries: 0,
        }
    }
}

/// A text table, one row per labelled summary.
pub fn table(rows: &[(String, Summary)]) -> String {
    let width = rows.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0).max(7);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:width$}  {:>14}  {:>14}  {:>14}  {:>14}  {:>14}  {:>14}",
        "setting", "Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "mINP"
    );
    for (label, s) in rows {
        let _ = writeln!(
            out,
            "{label:width$}  {:>14}  {:>14}  {:>14}  {:>14}  {:>14}  {:>14}",
            s.rank1.to_string(),
            s.rank5.to_string(),
            s.rank10.to_string(),
            s.rank20.to_string(),
            s.map.to_string(),
            s.minp.to_string()
        );
    }
    out
}

/// Per-query CSV: trial, query path, 1-based rank of the first correct match, CMC rank, AP, INP;
/// queries without a valid match have empty fields.
pub fn per_query_csv(trials: &[TrialResult]) -> String {
    let mut out = String::from("trial,query,first_correct_rank,cmc_rank,ap,inp\n");
    for t in trials {
        for (q, s) in &t.queries {
            let q = if q.contains([',', '"']) {
                format!("\"{}\"", q.replace('"', "\"\""))
            } else {
                q.clone()
            };
            match s {
                Some(s) => {
                    let _ = writeln!(
                        out,
                        "{},{q},{},{},{:.6},{:.6}",
                        t.name, s.first_match, s.cmc_rank, s.ap, s.inp
                    );
                }
                None => {
                    let _ = writeln!(out, "{},{q},,,,", t.name);
                }
            }
        }
    }
    out
}

/// Plot size in pixels.
pub const PLOT_SIZE: (i32, i32) = (720, 480);
const MARGIN: (i32, i32, i32, i32) = (70, 20, 30, 50); // left, right, top, bottom

/// Colours (BGR) of the curves, in order.
pub const CURVE_COLOURS: [(f64, f64, f64); 6] = [
    (180.0, 119.0, 31.0),
    (14.0, 127.0, 255.0),
    (44.0, 160.0, 44.0),
    (40.0, 39.0, 214.0),
    (189.0, 103.0, 148.0),
    (75.0, 86.0, 140.0),
];

/// Draws CMC curves (percent, rank 1 first) and encodes the PNG.
pub fn cmc_plot_png(curves: &[(String, Vec<f64>)]) -> opencv::Result<Vec<u8>> {
    let (w, h) = PLOT_SIZE;
    let (l, r, t, b) = MARGIN;
    let mut img = Mat::new_rows_cols_with_default(h, w, opencv::core::CV_8UC3, Scalar::all(255.0))?;
    let max_rank = curves.iter().map(|(_, c)| c.len()).max().unwrap_or(1).max(2);
    let x = |rank: usize| l + ((rank - 1) as f64 / (max_rank - 1) as f64 * f64::from(w - l - r)).round() as i32;
    let y = |pct: f64| t + ((100.0 - pct.clamp(0.0, 100.0)) / 100.0 * f64::from(h - t - b)).round() as i32;
    let grey = Scalar::new(220.0, 220.0, 220.0, 0.0);
    let black = Scalar::new(0.0, 0.0, 0.0, 0.0);
    let font = imgproc::FONT_HERSHEY_SIMPLEX;
    for pct in (0..=100).step_by(20) {
        let yy = y(f64::from(pct));
        imgproc::line(
            &mut img,
            Point::new(l, yy),
            Point::new(w - r, yy),
            grey,
            1,
            imgproc::LINE_8,
            0,
        )?;
        imgproc::put_text(
            &mut img,
            &pct.to_string(),
            Point::new(l - 40, yy + 5),
            font,
            0.45,
            black,
            1,
            imgproc::LINE_AA,
            false,
        )?;
    }
    for rank in [1, 5, 10, 15, 20].into_iter().filter(|&k| k <= max_rank) {
        let xx = x(rank);
        imgproc::line(
            &mut img,
            Point::new(xx, t),
            Point::new(xx, h - b),
            grey,
            1,
            imgproc::LINE_8,
            0,
        )?;
        imgproc::put_text(
            &mut img,
            &rank.to_string(),
            Point::new(xx - 6, h - b + 20),
            font,
            0.45,
            black,
            1,
            imgproc::LINE_AA,
            false,
        )?;
    }
    imgproc::rectangle_points(
        &mut img,
        Point::new(l, t),
        Point::new(w - r, h - b),
        black,
        1,
        imgproc::LINE_8,
        0,
    )?;
    imgproc::put_text(
        &mut img,
        "rank",
        Point::new(w / 2 - 15, h - 8),
        font,
        0.5,
        black,
        1,
        imgproc::LINE_AA,
        false,
    )?;
    imgproc::put_text(
        &mut img,
        "CMC %",
        Point::new(5, t + 12),
        font,
        0.45,
        black,
        1,
        imgproc::LINE_AA,
        false,
    )?;
    for (i, (label, curve)) in curves.iter().enumerate() {
        let (cb, cg, cr) = CURVE_COLOURS[i % CURVE_COLOURS.len()];
        let colour = Scalar::new(cb, cg, cr, 0.0);
        let pts: Vector<Point> = curve
            .iter()
            .enumerate()
            .map(|(k, &p)| Point::new(x(k + 1), y(p)))
            .collect();
        let mut polys = Vector::<Vector<Point>>::new();
        polys.push(pts);
        imgproc::polylines(&mut img, &polys, false, colour, 2, imgproc::LINE_AA, 0)?;
        let ly = h - b - 15 - 20 * (curves.len() - 1 - i) as i32;
        imgproc::line(
            &mut img,
            Point::new(w - r - 230, ly - 4),
            Point::new(w - r - 200, ly - 4),
            colour,
            2,
            imgproc::LINE_8,
            0,
        )?;
        imgproc::put_text(
            &mut img,
            label,
            Point::new(w - r - 195, ly),
            font,
            0.45,
            black,
            1,
            imgproc::LINE_AA,
            false,
        )?;
    }
    let mut buf = Vector::<u8>::new();
    imgcodecs::imencode(".png", &img, &mut buf, &Vector::new())?;
    Ok(buf.to_vec())
}

/// Writes the PNG of [`cmc_plot_png`] atomically.
pub fn write_cmc_plot(path: &Path, curves: &[(String, Vec<f64>)]) -> std::io::Result<()> {
    let png = cmc_plot_png(curves).map_err(|e| std::io::Error::other(format!("drawing the CMC plot: {e}")))?;
    reid_core::atomic::write(path, &png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_population_std() {
        // numpy: np.mean([90, 91, 92, 93]) = 91.5, np.std([90, 91, 92, 93]) = 1.118034
        let s = Stat::of(&[90.0, 91.0, 92.0, 93.0]);
        assert!((s.mean - 91.5).abs() < 1e-12 && (s.std - 1.118_034).abs() < 1e-6);
        assert_eq!(s.to_string(), "91.50 ± 1.12");
    }

    #[test]
    fn plot_draws_curves_in_their_colours() {
        let png = cmc_plot_png(&[("a".to_owned(), vec![50.0; 20]), ("b".to_owned(), vec![100.0; 20])]).expect("plot");
        let img = imgcodecs::imdecode(&Vector::<u8>::from_slice(&png), imgcodecs::IMREAD_COLOR).expect("decode");
        assert_eq!((img.cols(), img.rows()), PLOT_SIZE);
        // Curve "a" is flat at 50 %: the pixel in the middle of the plot at that height is its colour.
        let (l, r, t, b) = MARGIN;
        let mid_x = (l + PLOT_SIZE.0 - r) / 2;
        let y50 = t + (PLOT_SIZE.1 - t - b) / 2;
        let px = *img.at_2d::<opencv::core::Vec3b>(y50, mid_x).expect("pixel");
        let (cb, cg, cr) = CURVE_COLOURS[0];
        assert_eq!([px[0], px[1], px[2]], [cb as u8, cg as u8, cr as u8]);
    }
}
