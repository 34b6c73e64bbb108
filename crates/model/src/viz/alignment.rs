//! What CMAlign sees in one RGB/IR pair of the same person: the person masks and co-attention
//! maps (Fig. S4), and the dense correspondences — the top matches of visible positions among
//! infrared positions by matching probability, drawn as lines (Figs. S5–S6).

use super::{VizError, canvas, label, paste, save_png};
use crate::eval::extract::{crop_of, read_rgb};
use crate::model::cmalign::{CmAlign, CmAlignOutput};
use crate::model::embedder::LbaEmbedder;
use crate::model::preprocess::{batch_pixels, normalise};
use opencv::core::{Mat, Point, Scalar};
use opencv::imgproc;
use reid_core::base::Modality;
use reid_core::config::train::DenseTripletWeighting;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Size (width, height) of one image in the figures.
pub const TILE: (i32, i32) = (128, 256);
/// Matches drawn per pair.
pub const MATCHES: usize = 20;
const GAP: i32 = 10;

/// Which feature map CMAlign runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    Layer3,
    Layer4,
}

/// Loads a checkpoint on the CPU.
fn load(weights: &Path, input_size: Option<(i64, i64)>) -> Result<LbaEmbedder, VizError> {
    Ok(LbaEmbedder::open(weights, input_size, tch::Device::Cpu, false)?)
}

/// CMAlign on a visible/infrared pair: row 0 visible, row 1 infrared, each the other's positive
/// (τ = 50 as in training). Returns the output and the map size (h, w).
fn align(
    embedder: &LbaEmbedder,
    visible: &Mat,
    thermal: &Mat,
    stage: Stage,
) -> Result<(CmAlignOutput, (i64, i64)), VizError> {
    let net = embedder.net();
    let spec = &net.spec;
    let map = |img: &Mat, m: Modality| -> Result<Tensor, VizError> {
        let crop = crop_of(img, m)?;
        let pixels = batch_pixels(&[crop], spec.input_size)?;
        let x = normalise(&pixels, &spec.normalisation(), embedder.device(), Kind::Float)?.contiguous();
        let l3 = net.to_layer3(&net.stem(&x, m, false), false);
        Ok(match stage {
            Stage::Layer3 => l3,
            Stage::Layer4 => net.layer4(&l3, false),
        })
    };
    let _guard = tch::no_grad_guard();
    let feat = Tensor::cat(&[map(visible, Modality::Visible)?, map(thermal, Modality::Thermal)?], 0).contiguous();
    let size = feat.size();
    let cm = CmAlign {
        temperature: 50.0,
        margin: 0.3,
        weighting: DenseTripletWeighting::Code,
    };
    Ok((cm.forward(&feat, &[1, 0], &[1, 0]), (size[2], size[3])))
}

/// A map (h×w, values in [0, 1]) blended over an image as a JET heat map, at tile size.
fn overlay(img: &Mat, map: &Tensor) -> Result<Mat, VizError> {
    let (h, w) = (map.size()[0], map.size()[1]);
    let values = Vec::<f32>::try_from(map.to_kind(Kind::Float).contiguous().view([-1]))?;
    let bytes: Vec<u8> = values
        .iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let small = Mat::new_rows_cols_with_data(h as i32, w as i32, &bytes)?;
    let mut big = Mat::default();
    imgproc::resize(
        &small,
        &mut big,
        opencv::core::Size::new(TILE.0, TILE.1),
        0.0,
        0.0,
        imgproc::INTER_LINEAR,
    )?;
    let mut heat_bgr = Mat::default();
    imgproc::apply_color_map(&big, &mut heat_bgr, imgproc::COLORMAP_JET)?;
    let mut heat = Mat::default();
    imgproc::cvt_color_def(&heat_bgr, &mut heat, imgproc::COLOR_BGR2RGB)?;
    let mut base = Mat::default();
    imgproc::resize(
        img,
        &mut base,
        opencv::core::Size::new(TILE.0, TILE.1),
        0.0,
        0.0,
        imgproc::INTER_AREA,
    )?;
    let mut out = Mat::default();
    opencv::core::add_weighted(&base, 0.5, &heat, 0.5, 0.0, &mut out, -1)?;
    Ok(out)
}

/// Fig. S4 for each (visible, infrared) pair: both images with their person masks, then both
/// with their co-attention maps. One row per pair.
/// Weights without a recorded input size are read at `input_size` (default: the recipe's).
pub fn coattention(
    weights: &Path,
    input_size: Option<(i64, i64)>,
    pairs: &[(PathBuf, PathBuf)],
    stage: Stage,
    out: &Path,
) -> Result<(), VizError> {
    let width = 4 * TILE.0 + 5 * GAP;
    let height = pairs.len() as i32 * (TILE.1 + 2 * GAP) + GAP;
    let mut img = canvas(width, height)?;
    let embedder = load(weights, input_size)?;
    for (r, (v, t)) in pairs.iter().enumerate() {
        let (visible, thermal) = (read_rgb(v)?, read_rgb(t)?);
        let (o, (h, w)) = align(&embedder, &visible, &thermal, stage)?;
        let y = GAP + r as i32 * (TILE.1 + 2 * GAP);
        let panels = [
            overlay(&visible, &o.mask.get(0).view([h, w]))?,
            overlay(&thermal, &o.mask.get(1).view([h, w]))?,
            overlay(&visible, &o.coattention.get(0).view([h, w]))?,
            overlay(&thermal, &o.coattention.get(1).view([h, w]))?,
        ];
        for (k, p) in panels.iter().enumerate() {
            paste(&mut img, p, Point::new(GAP + k as i32 * (TILE.0 + GAP), y), TILE)?;
        }
        for (k, text) in ["mask RGB", "mask IR", "co-attention RGB", "co-attention IR"]
            .iter()
            .enumerate()
        {
            label(
                &mut img,
                text,
                Point::new(GAP + k as i32 * (TILE.0 + GAP), y + TILE.1 + GAP - 1),
            )?;
        }
    }
    save_png(out, &img)
}

/// One correspondence: visible and infrared points (figure pixels once drawn) and the matching
/// probability.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Match {
    pub from: (i32, i32),
    pub to: (i32, i32),
    pub probability: f32,
}

/// The `MATCHES` visible positions inside the person (mask ≥ 0.3) whose best infrared match is
/// most probable, with that match. Positions are cell centres in tile pixels.
fn top_matches(o: &CmAlignOutput, (h, w): (i64, i64)) -> Result<Vec<Match>, VizError> {
    let p = o.matching.get(0); // hw × hw, visible rows over infrared columns
    let (best, arg) = p.max_dim(1, false);
    let best = Vec::<f32>::try_from(best.contiguous())?;
    let arg = Vec::<i64>::try_from(arg.contiguous())?;
    let mask = Vec::<f32>::try_from(o.mask.get(0).contiguous().view([-1]))?;
    let centre = |i: i64| {
        let (cy, cx) = (i / w, i % w);
        (
            ((cx as f32 + 0.5) / w as f32 * TILE.0 as f32) as i32,
            ((cy as f32 + 0.5) / h as f32 * TILE.1 as f32) as i32,
        )
    };
    let mut order: Vec<usize> = (0..best.len()).filter(|&i| mask[i] >= 0.3).collect();
    order.sort_by(|&a, &b| best[b].total_cmp(&best[a]));
    Ok(order
        .into_iter()
        .take(MATCHES)
        .map(|i| Match {
            from: centre(i as i64),
            to: centre(arg[i]),
            probability: best[i],
        })
        .collect())
}

/// Figs. S5–S6: for each checkpoint a row with the visible and infrared image side by side and
/// lines for the top matches; writes the matches as JSON beside the PNG.
pub fn correspondence(
    checkpoints: &[PathBuf],
    input_size: Option<(i64, i64)>,
    visible: &Path,
    thermal: &Path,
    stage: Stage,
    out: &Path,
) -> Result<Vec<Vec<Match>>, VizError> {
    let (v, t) = (read_rgb(visible)?, read_rgb(thermal)?);
    let width = 2 * TILE.0 + 3 * GAP;
    let height = checkpoints.len() as i32 * (TILE.1 + 2 * GAP) + GAP;
    let mut img = canvas(width, height)?;
    let mut all = Vec::new();
    for (r, weights) in checkpoints.iter().enumerate() {
        let (o, size) = align(&load(weights, input_size)?, &v, &t, stage)?;
        let y = GAP + r as i32 * (TILE.1 + 2 * GAP);
        let (left, right) = (Point::new(GAP, y), Point::new(2 * GAP + TILE.0, y));
        paste(&mut img, &v, left, TILE)?;
        paste(&mut img, &t, right, TILE)?;
        // The run folder tells checkpoints named alike apart (runs/a/last…, runs/b/last…).
        let tail: Vec<String> = weights
            .iter()
            .rev()
            .take(2)
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        let name = tail.into_iter().rev().collect::<Vec<_>>().join("/");
        label(&mut img, &name, Point::new(GAP, y + TILE.1 + GAP - 1))?;
        let mut row = Vec::new();
        for (k, m) in top_matches(&o, size)?.into_iter().enumerate() {
            let from = Point::new(left.x + m.from.0, left.y + m.from.1);
            let to = Point::new(right.x + m.to.0, right.y + m.to.1);
            let c = line_colour(k);
            imgproc::line(&mut img, from, to, c, 1, imgproc::LINE_8, 0)?;
            imgproc::circle(&mut img, from, 2, c, -1, imgproc::LINE_8, 0)?;
            imgproc::circle(&mut img, to, 2, c, -1, imgproc::LINE_8, 0)?;
            row.push(Match {
                from: (from.x, from.y),
                to: (to.x, to.y),
                probability: m.probability,
            });
        }
        all.push(row);
    }
    save_png(out, &img)?;
    super::save_json(out, &all)?;
    Ok(all)
}

/// Distinct, saturated line colours (RGB).
pub fn line_colour(k: usize) -> Scalar {
    const C: [(f64, f64, f64); 6] = [
        (255.0, 0.0, 255.0),
        (0.0, 200.0, 255.0),
        (255.0, 140.0, 0.0),
        (0.0, 220.0, 0.0),
        (255.0, 0.0, 0.0),
        (0.0, 0.0, 255.0),
    ];
    let (r, g, b) = C[k % C.len()];
    Scalar::new(r, g, b, 0.0)
}
