//! Retrieval grids (Figs. S1–S3): each row a query and its top-k gallery images by cosine
//! similarity, framed green when the identity is right and red when it is wrong. A JSON file
//! beside the PNG lists the same rows.

use super::{GREEN, RED, VizError, canvas, label, paste, save_png, scalar};
use crate::cli::EvalArgs;
use crate::eval::extract::read_rgb;
use crate::eval::pyrandom::PyRandom;
use crate::eval::{FeatureBank, command, ranking};
use crate::model::weights::WeightFile;
use opencv::core::{Point, Rect};
use opencv::imgproc;
use std::path::Path;

/// Tile size (width, height) of one image.
pub const TILE: (i32, i32) = (64, 128);
/// Border width around gallery tiles.
pub const BORDER: i32 = 4;
const GAP: i32 = 8;

/// One drawn row.
#[derive(Debug, serde::Serialize)]
pub struct Row {
    pub query: String,
    /// Gallery paths, best first, and whether each has the query's identity.
    pub ranked: Vec<(String, bool)>,
}

/// Draws `queries` rows (chosen with `seed` from the first trial, or all when fewer) of the `top`
/// best gallery images to `out` (PNG) and `out` with extension `json`.
pub fn run(args: &EvalArgs, queries: usize, top: usize, seed: u64, out: &Path) -> Result<Vec<Row>, VizError> {
    let device = crate::config::site::parse_device(&args.device)
        .ok_or_else(|| {
            VizError::Args(format!(
                "--device: expected auto, cpu, cuda or cuda:N, found {:?}",
                args.device
            ))
        })
        .and_then(|d| crate::model::device(d, "--device").map_err(|e| VizError::Args(e.to_string())))?;
    let model = match (args.features.first(), args.checkpoint.first()) {
        (None, Some(w)) => {
            let file = WeightFile::read(w)?;
            Some((
                command::embedder(&file, args, device)?,
                command::trained_trial(args, &file),
            ))
        }
        _ => None,
    };
    let protocol = command::protocol(args, model.as_ref().and_then(|(_, t)| *t))?;
    let trial = protocol
        .trials
        .first()
        .ok_or_else(|| VizError::Args("the protocol has no trials".into()))?;
    let bank = match (args.features.first(), &model) {
        (Some(f), _) => FeatureBank::load(f)?,
        (None, Some((embedder, _))) => command::extract_with(embedder, &protocol, args)?,
        (None, None) => return Err(VizError::Args("give --checkpoint or --features".into())),
    };
    let mut chosen: Vec<usize> = (0..trial.query.len()).collect();
    if queries < chosen.len() {
        let mut rng = PyRandom::new(seed);
        chosen = rng
            .sample(&chosen, queries)
            .ok_or_else(|| VizError::Args("cannot draw the queries".into()))?;
    }
    let picked: Vec<_> = chosen.iter().map(|&i| trial.query[i].clone()).collect();
    let q = bank.gather(&picked, &protocol.name, &trial.name)?;
    let g = bank.gather(&trial.gallery, &protocol.name, &trial.name)?;
    let mut rows = Vec::new();
    ranking::rank(&q, &g, 256, |r, order| {
        let q = &picked[r];
        let ranked = order
            .iter()
            .map(|&g| &trial.gallery[g as usize])
            .filter(|g| protocol.exclusion.keeps(q, g))
            .take(top)
            .map(|g| (g.path.clone(), g.pid == q.pid))
            .collect();
        rows.push(Row {
            query: q.path.clone(),
            ranked,
        });
    })?;
    draw(&args.root, &rows, top, out)?;
    let json = serde_json::to_string_pretty(&rows).map_err(|e| VizError::Args(e.to_string()))?;
    let json_path = out.with_extension("json");
    crate::atomic::write(&json_path, json.as_bytes()).map_err(|e| VizError::File {
        path: json_path,
        message: e.to_string(),
    })?;
    Ok(rows)
}

/// Left edge of gallery tile `k` (0-based) in a row.
pub fn tile_x(k: usize) -> i32 {
    TILE.0 + 3 * GAP + k as i32 * (TILE.0 + 2 * BORDER + GAP)
}

/// Top edge of row `r`.
pub fn row_y(r: usize) -> i32 {
    GAP + r as i32 * (TILE.1 + 2 * BORDER + GAP)
}

fn draw(root: &Path, rows: &[Row], top: usize, out: &Path) -> Result<(), VizError> {
    let width = tile_x(top) + GAP;
    let height = row_y(rows.len()) + GAP;
    let mut img = canvas(width, height.max(1))?;
    for (r, row) in rows.iter().enumerate() {
        let y = row_y(r);
        paste(
            &mut img,
            &read_rgb(&root.join(&row.query))?,
            Point::new(GAP, y + BORDER),
            TILE,
        )?;
        label(&mut img, "query", Point::new(GAP, y + TILE.1 + 2 * BORDER))?;
        for (k, (path, right)) in row.ranked.iter().enumerate() {
            let x = tile_x(k);
            let colour = scalar(if *right { GREEN } else { RED });
            let frame = Rect::new(x, y, TILE.0 + 2 * BORDER, TILE.1 + 2 * BORDER);
            imgproc::rectangle(&mut img, frame, colour, -1, imgproc::LINE_8, 0)?;
            paste(
                &mut img,
                &read_rgb(&root.join(path))?,
                Point::new(x + BORDER, y + BORDER),
                TILE,
            )?;
        }
    }
    save_png(out, &img)
}
