//! Retrieval grids (Figs. S1–S3): each row a query and its top-k gallery images by cosine
//! similarity, framed green when the identity is right and red when it is wrong. A JSON file
//! beside the PNG lists the same rows.

use super::{GREEN, RED, VizError, canvas, label, paste, save_png, scalar};
use crate::eval::extract::read_rgb;
use crate::eval::{EvalInput, EvalRequest, FeatureBank, command, ranking};
use crate::model::weights::WeightFile;
use opencv::core::{Point, Rect};
use opencv::imgproc;
use reid_core::base::PyRandom;
use std::path::{Path, PathBuf};

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

/// A retrieval grid: the evaluation whose first trial it draws from, and what to draw.
#[derive(Debug, Clone)]
pub struct RetrievalRequest {
    pub eval: EvalRequest,
    /// Queries drawn from the first trial (all when it has fewer).
    pub queries: usize,
    /// Gallery images per query.
    pub top: usize,
    /// Seed of the query draw.
    pub seed: u64,
    /// Output PNG; the rows go to the same path with extension `json`.
    pub out: PathBuf,
}

/// Draws the grid the request names to `req.out` (PNG) and `req.out` with extension `json`.
pub fn run(req: &RetrievalRequest) -> Result<Vec<Row>, VizError> {
    let args = &req.eval;
    let device = args.device.resolve("--device")?;
    let outputs = [req.out.clone(), req.out.with_extension("json")];
    reid_core::base::outputs::check(&outputs, &args.input_files(), args.overwrite)?;
    let model = match args.inputs.first() {
        Some(EvalInput::Checkpoint(w)) => {
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
    let bank = match (args.inputs.first(), &model) {
        (Some(EvalInput::Features(f)), _) => FeatureBank::load(f)?,
        (_, Some((embedder, _))) => command::extract_with(embedder, &protocol, args)?,
        _ => return Err(VizError::Args("give --checkpoint or --features".into())),
    };
    let mut chosen: Vec<usize> = (0..trial.query.len()).collect();
    if req.queries < chosen.len() {
        let mut rng = PyRandom::new(req.seed);
        chosen = rng
            .sample(&chosen, req.queries)
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
            .take(req.top)
            .map(|g| (g.path.clone(), g.pid == q.pid))
            .collect();
        rows.push(Row {
            query: q.path.clone(),
            ranked,
        });
    })?;
    draw(&req.eval.root, &rows, req.top, &req.out)?;
    super::save_json(&req.out, &rows)?;
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
