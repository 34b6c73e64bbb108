//! Feature extraction for evaluation: decodes dataset images, embeds them in batches and returns
//! a [`FeatureBank`] (which `eval --checkpoint` also saves for later `--features` runs).

use super::{EvalError, FeatureBank};
use crate::data::Item;
use crate::ingest::Modality;
use crate::model::embedder::{Crop, Embed};
use opencv::core::Mat;
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};
use std::path::Path;
use tch::Tensor;

/// Embeds every item (paths relative to `root`), `batch` images at a time, with a progress bar.
pub fn extract(
    embedder: &dyn Embed,
    root: &Path,
    items: &[Item],
    modality_of: impl Fn(&Item) -> Modality,
    batch: usize,
) -> Result<FeatureBank, EvalError> {
    let bar = indicatif::ProgressBar::new(items.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("extracting {bar:40} {pos}/{len} images, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut rows = Vec::with_capacity(items.len().div_ceil(batch.max(1)));
    for chunk in items.chunks(batch.max(1)) {
        let images = chunk
            .iter()
            .map(|it| read_rgb(&root.join(&it.path)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut crops = Vec::with_capacity(chunk.len());
        for (it, img) in chunk.iter().zip(&images) {
            let bytes = img.data_bytes().map_err(|e| image_error(&root.join(&it.path), e))?;
            crops.push(Crop {
                pixels: bytes,
                width: img.cols() as usize,
                height: img.rows() as usize,
                // `read_rgb` returns continuous matrices.
                stride: img.cols() as usize * 3,
                channels: 3,
                modality: modality_of(it),
            });
        }
        let emb = embedder.embed(&crops).map_err(|e| EvalError::Features {
            path: root.to_path_buf(),
            message: e.to_string(),
        })?;
        rows.push(emb);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let features = if rows.is_empty() {
        Tensor::zeros([0, embedder.dim()], tch::kind::FLOAT_CPU)
    } else {
        Tensor::cat(&rows, 0)
    };
    FeatureBank::new(
        root.to_path_buf(),
        features,
        items.iter().map(|i| i.path.clone()).collect(),
    )
}

fn image_error(path: &Path, e: opencv::Error) -> EvalError {
    EvalError::Features {
        path: path.to_path_buf(),
        message: format!("cannot decode the image: {e}"),
    }
}

/// Decodes an image file as contiguous 8-bit RGB (grey images are replicated to 3 channels).
pub fn read_rgb(path: &Path) -> Result<Mat, EvalError> {
    let bgr = imgcodecs::imread(path, imgcodecs::IMREAD_COLOR).map_err(|e| image_error(path, e))?;
    if bgr.empty() {
        let why = if path.is_file() {
            "not a readable image"
        } else {
            "no such file"
        };
        return Err(EvalError::Features {
            path: path.to_path_buf(),
            message: why.to_owned(),
        });
    }
    let mut rgb = Mat::default();
    imgproc::cvt_color_def(&bgr, &mut rgb, imgproc::COLOR_BGR2RGB).map_err(|e| image_error(path, e))?;
    debug_assert!(rgb.is_continuous());
    Ok(rgb)
}
