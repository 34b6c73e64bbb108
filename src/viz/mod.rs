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
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Args(String),
    #[error(transparent)]
    Eval(#[from] crate::eval::EvalError),
    #[error(transparent)]
    Weights(#[from] crate::model::weights::WeightsError),
    #[error(transparent)]
    Embed(#[from] crate::model::embedder::EmbedError),
    #[error("drawing: {0}")]
    OpenCv(#[from] opencv::Error),
    #[error("libtorch: {0}")]
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
    let err = |message: String| VizError::File {
        path: path.to_path_buf(),
        message,
    };
    let mut bgr = Mat::default();
    imgproc::cvt_color_def(rgb, &mut bgr, imgproc::COLOR_RGB2BGR)?;
    let mut buf = Vector::<u8>::new();
    opencv::imgcodecs::imencode(".png", &bgr, &mut buf, &Vector::new())?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    crate::atomic::write(path, buf.as_slice()).map_err(|e| err(e.to_string()))
}
