//! Training curves from a run's `log.jsonl`: each loss term over epochs (left panel, each term
//! scaled to its own maximum so small and large terms share the axes) and the evaluation metrics
//! (rank-1, mAP, mINP in %, right panel) at the epochs that evaluated.

use super::{VizError, canvas, label, save_png};
use crate::eval::report::CURVE_COLOURS;
use opencv::core::{Point, Scalar, Vector};
use opencv::imgproc;
use std::collections::BTreeMap;
use std::path::Path;

/// Size (width, height) of one panel.
pub const PANEL: (i32, i32) = (520, 360);
const MARGIN: (i32, i32, i32, i32) = (50, 20, 30, 40); // left, right, top, bottom

/// Line colour (RGB) of series `i`: the CMC plot's palette (stored BGR there).
pub fn colour(i: usize) -> Scalar {
    let (b, g, r) = CURVE_COLOURS[i % CURVE_COLOURS.len()];
    Scalar::new(r, g, b, 0.0)
}

/// Series read from a log: name → (epoch, value) points.
pub type Series = BTreeMap<String, Vec<(f64, f64)>>;

/// Loss terms and evaluation metrics of every line of `log.jsonl`.
pub fn read(path: &Path) -> Result<(Series, Series), VizError> {
    let text = std::fs::read_to_string(path).map_err(|source| VizError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let err = |line: usize, problem: String| VizError::Log {
        path: path.to_path_buf(),
        line: line + 1,
        problem,
    };
    let (mut losses, mut metrics) = (Series::new(), Series::new());
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| err(n, e.to_string()))?;
        let epoch = v["epoch"].as_f64().ok_or_else(|| err(n, "no epoch".to_owned()))?;
        if !(epoch.fract() == 0.0 && (0.0..=1e6).contains(&epoch)) {
            return Err(err(
                n,
                format!("epoch {epoch} is not an epoch number (a whole number up to 10^6)"),
            ));
        }
        if let Some(terms) = v["loss"].as_object() {
            for (k, x) in terms {
                if let Some(x) = x.as_f64() {
                    losses.entry(k.clone()).or_default().push((epoch, x));
                }
            }
        }
        let e = &v["eval"];
        if let Some(r1) = e["cmc"].get(0).and_then(serde_json::Value::as_f64) {
            metrics.entry("rank-1".into()).or_default().push((epoch, 100.0 * r1));
            for (k, name) in [("map", "mAP"), ("minp", "mINP")] {
                if let Some(x) = e[k].as_f64() {
                    metrics.entry(name.into()).or_default().push((epoch, 100.0 * x));
                }
            }
        }
    }
    if losses.is_empty() {
        return Err(VizError::NoLosses {
            path: path.to_path_buf(),
        });
    }
    Ok((losses, metrics))
}

/// Draws both panels side by side into `out`.
pub fn draw(losses: &Series, metrics: &Series, out: &Path) -> Result<(), VizError> {
    let mut img = canvas(2 * PANEL.0, PANEL.1)?;
    let epochs = losses
        .values()
        .chain(metrics.values())
        .flatten()
        .map(|p| p.0)
        .fold(1.0, f64::max);
    // Each loss scaled to its own maximum.
    let scaled: Series = losses
        .iter()
        .map(|(k, pts)| {
            let max = pts.iter().map(|p| p.1.abs()).fold(1e-12, f64::max);
            (
                format!("{k} (max {max:.3})"),
                pts.iter().map(|&(e, x)| (e, x / max)).collect(),
            )
        })
        .collect();
    panel(&mut img, 0, "loss / max", &scaled, epochs, 1.0)?;
    panel(&mut img, PANEL.0, "eval %", metrics, epochs, 100.0)?;
    save_png(out, &img)
}

/// x pixel of `epoch` and y pixel of `value` in the panel at `x0`.
pub fn position(x0: i32, epoch: f64, epochs: f64, value: f64, top: f64) -> Point {
    let (l, r, t, b) = MARGIN;
    let x = x0 + l + ((epoch - 1.0).max(0.0) / (epochs - 1.0).max(1.0) * f64::from(PANEL.0 - l - r)).round() as i32;
    let y = t + ((1.0 - (value / top).clamp(0.0, 1.0)) * f64::from(PANEL.1 - t - b)).round() as i32;
    Point::new(x, y)
}

fn panel(
    img: &mut opencv::core::Mat,
    x0: i32,
    title: &str,
    series: &Series,
    epochs: f64,
    top: f64,
) -> Result<(), VizError> {
    let (l, r, t, b) = MARGIN;
    let black = Scalar::all(0.0);
    imgproc::rectangle_points(
        img,
        Point::new(x0 + l, t),
        Point::new(x0 + PANEL.0 - r, PANEL.1 - b),
        black,
        1,
        imgproc::LINE_8,
        0,
    )?;
    label(img, title, Point::new(x0 + 5, 14))?;
    label(
        img,
        &format!("epoch 1 .. {epochs}"),
        Point::new(x0 + PANEL.0 / 2 - 40, PANEL.1 - 12),
    )?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let colour = colour(i);
        let line: Vector<Point> = pts.iter().map(|&(e, v)| position(x0, e, epochs, v, top)).collect();
        let mut polys = Vector::<Vector<Point>>::new();
        polys.push(line.clone());
        imgproc::polylines(img, &polys, false, colour, 2, imgproc::LINE_8, 0)?;
        for p in line.iter() {
            imgproc::circle(img, p, 3, colour, -1, imgproc::LINE_8, 0)?;
        }
        let ly = t + 16 + 16 * i as i32;
        imgproc::line(
            img,
            Point::new(x0 + PANEL.0 - r - 200, ly - 4),
            Point::new(x0 + PANEL.0 - r - 180, ly - 4),
            colour,
            2,
            imgproc::LINE_8,
            0,
        )?;
        label(img, name, Point::new(x0 + PANEL.0 - r - 175, ly))?;
    }
    Ok(())
}
