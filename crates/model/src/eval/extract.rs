//! Feature extraction for evaluation: decodes dataset images, embeds them in batches and returns
//! a [`FeatureBank`] (which `eval --checkpoint` also saves for later `--features` runs).

use super::protocols::Protocol;
use super::{EvalError, FeatureBank};
use crate::data::Item;
use crate::model::embedder::Embed;
use opencv::core::Mat;
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};
use reid_core::base::{Crop, Modality};
use reid_core::config::train::DatasetKind;
use std::path::Path;
use tch::Tensor;

/// Which stem an image of `dataset` goes through: SYSU cameras 3 and 6 and RegDB's thermal list
/// (camera 2) are infrared; everything else is visible.
pub fn modality_of(dataset: DatasetKind, item: &Item) -> Modality {
    let thermal = match dataset {
        DatasetKind::Sysu => item.cam == 3 || item.cam == 6,
        DatasetKind::Regdb => item.cam == 2,
        DatasetKind::Market | DatasetKind::Duke => false,
    };
    if thermal { Modality::Thermal } else { Modality::Visible }
}

/// Embeds every image any trial of `protocol` uses, each through its modality's stem.
pub fn extract_protocol(
    embedder: &dyn Embed,
    root: &Path,
    protocol: &Protocol,
    dataset: DatasetKind,
    batch: usize,
) -> Result<FeatureBank, EvalError> {
    let mut items: Vec<Item> = protocol
        .trials
        .iter()
        .flat_map(|t| t.query.iter().chain(&t.gallery).cloned())
        .collect();
    items.sort();
    items.dedup_by(|a, b| a.path == b.path);
    extract(embedder, root, &items, |it| modality_of(dataset, it), batch)
}

/// The 3-channel crop of a decoded image (see [`read_rgb`]).
pub fn crop_of(img: &Mat, modality: Modality) -> opencv::Result<Crop<'_>> {
    Ok(Crop {
        pixels: img.data_bytes()?,
        width: img.cols() as usize,
        height: img.rows() as usize,
        // `read_rgb` returns continuous matrices.
        stride: img.cols() as usize * 3,
        channels: 3,
        modality,
    })
}

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
            crops.push(crop_of(img, modality_of(it)).map_err(|e| image_error(&root.join(&it.path), e))?);
        }
        let emb = embedder.embed(&crops).map_err(|e| EvalError::Extract {
            root: root.to_path_buf(),
            source: Box::new(e),
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

/// Why an encoded JPEG or PNG is incomplete, if it is: its end marker is missing.
fn truncated(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        // Some writers pad after the end-of-image marker.
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        return (!bytes[..end].ends_with(&[0xFF, 0xD9])).then_some("truncated JPEG (no end-of-image marker)");
    }
    if bytes.starts_with(b"\x89PNG") {
        let tail = &bytes[bytes.len().saturating_sub(12)..];
        return (!tail.windows(4).any(|w| w == b"IEND")).then_some("truncated PNG (no IEND chunk)");
    }
    None
}

fn image_error(path: &Path, e: opencv::Error) -> EvalError {
    EvalError::Decode {
        path: path.to_path_buf(),
        source: e,
    }
}

/// Decodes an image file as contiguous 8-bit RGB (grey images are replicated to 3 channels).
/// A truncated JPEG or PNG (whose decoder would fill the missing part with grey and only warn)
/// is an error.
pub fn read_rgb(path: &Path) -> Result<Mat, EvalError> {
    let problem = |problem| EvalError::Image {
        path: path.to_path_buf(),
        problem,
    };
    let bytes = std::fs::read(path).map_err(|_| {
        problem(if path.exists() {
            "cannot read the file"
        } else {
            "no such file"
        })
    })?;
    if bytes.is_empty() {
        return Err(problem("empty file"));
    }
    if let Some(why) = truncated(&bytes) {
        return Err(problem(why));
    }
    // Pillow (the reference's decoder) does not apply EXIF orientation; neither does this.
    let encoded = Mat::from_slice(&bytes).map_err(|e| image_error(path, e))?;
    let bgr = imgcodecs::imdecode(&encoded, imgcodecs::IMREAD_COLOR | imgcodecs::IMREAD_IGNORE_ORIENTATION)
        .map_err(|e| image_error(path, e))?;
    if bgr.empty() {
        return Err(problem("not a readable image"));
    }
    let mut rgb = Mat::default();
    imgproc::cvt_color_def(&bgr, &mut rgb, imgproc::COLOR_BGR2RGB).map_err(|e| image_error(path, e))?;
    debug_assert!(rgb.is_continuous());
    Ok(rgb)
}
