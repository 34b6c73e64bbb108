//! `reid-pipe viz`: the figures researchers judge re-ID models by, as PNG files — retrieval
//! grids (Figs. S1–S3), person masks and co-attention (Fig. S4), dense correspondences
//! (Figs. S5–S6) and training curves.

pub mod alignment;
pub mod curves;
pub mod retrieval;

use opencv::core::{Mat, Point, Rect, Scalar, Vector};
use opencv::imgproc;
use opencv::prelude::*;
use std::path::{Path, PathBuf};

/// Errors of a figure, naming the file or argument involved.
#[derive(Debug, thiserror::Error)]
pub enum VizError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} line {line}: {problem}", path.display())]
    Log {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("{}: no loss values in the log", path.display())]
    NoLosses { path: PathBuf },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Args(String),
    #[error("preparing the network's input")]
    Preprocess(#[from] crate::model::preprocess::PreprocessError),
    #[error(transparent)]
    Eval(#[from] crate::eval::EvalError),
    #[error(transparent)]
    Device(#[from] reid_core::base::DeviceError),
    #[error("--out")]
    Output(#[from] reid_core::base::OutputError),
    #[error(transparent)]
    Weights(#[from] crate::model::weights::WeightsError),
    #[error(transparent)]
    Embed(#[from] crate::model::embedder::EmbedError),
    #[error("drawing")]
    OpenCv(#[from] opencv::Error),
    #[error("libtorch")]
    Torch(#[from] tch::TchError),
}

/// Border colour (RGB) of a correct match.
pub const GREEN: [u8; 3] = [0, 170, 0];
/// Border colour (RGB) of a wrong match.
pub const RED: [u8; 3] = [220, 0, 0];

pub(crate) fn scalar(rgb: [u8; 3]) -> Scalar {
    Scalar::new(f64::from(rgb[0]), f64::from(rgb[1]), f64::from(rgb[2]), 0.0)
}

/// A white RGB canvas.
pub(crate) fn canvas(width: i32, height: i32) -> opencv::Result<Mat> {
    Mat::new_rows_cols_with_default(height, width, opencv::core::CV_8UC3, Scalar::all(255.0))
}

/// Copies `tile` (RGB) resized to `size` into `canvas` at `at`.
pub(crate) fn paste(canvas: &mut Mat, tile: &Mat, at: Point, size: (i32, i32)) -> opencv::Result<()> {
    let mut resized = Mat::default();
    imgproc::resize(
        tile,
        &mut resized,
        opencv::core::Size::new(size.0, size.1),
        0.0,
        0.0,
        imgproc::INTER_AREA,
    )?;
    let mut target = Mat::roi_mut(canvas, Rect::new(at.x, at.y, size.0, size.1))?;
    resized.copy_to(&mut target)?;
    Ok(())
}

pub(crate) fn label(canvas: &mut Mat, text: &str, at: Point) -> opencv::Result<()> {
    imgproc::put_text(
        canvas,
        text,
        at,
        imgproc::FONT_HERSHEY_SIMPLEX,
        0.4,
        Scalar::all(0.0),
        1,
        imgproc::LINE_AA,
        false,
    )
}

/// Encodes an RGB canvas as PNG and writes it atomically.
pub(crate) fn save_png(path: &Path, rgb: &Mat) -> Result<(), VizError> {
    let err = |source| VizError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut bgr = Mat::default();
    imgproc::cvt_color_def(rgb, &mut bgr, imgproc::COLOR_RGB2BGR)?;
    let mut buf = Vector::<u8>::new();
    opencv::imgcodecs::imencode(".png", &bgr, &mut buf, &Vector::new())?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    reid_core::atomic::write(path, buf.as_slice()).map_err(err)
}

/// Writes the rows behind a figure as pretty JSON beside it (`<out>.json`), atomically.
pub(crate) fn save_json(out: &Path, rows: &impl serde::Serialize) -> Result<(), VizError> {
    let path = out.with_extension("json");
    let json = serde_json::to_vec_pretty(rows).map_err(|e| VizError::Write {
        path: path.clone(),
        source: e.into(),
    })?;
    reid_core::atomic::write(&path, &json).map_err(|source| VizError::Write { path, source })
}
