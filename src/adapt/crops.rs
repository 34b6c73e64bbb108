//! A harvest's training crops embedded with a model: what the grouping of pseudo-identities
//! ([`super::associate`]) and the embedding centre ([`crate::model::centre`]) are taken from.

use crate::config::train::DatasetKind;
use crate::data::{Item, market, sysu};
use crate::eval::EvalError;
use crate::model::embedder::LbaEmbedder;
use crate::model::weights::WeightFile;
use std::path::Path;
use tch::Tensor;

/// The training crops (train and val ids) of the harvest in `data`: both views of a SYSU-MM01
/// layout, `bounding_box_train` of a single-modality (Market) one.
pub fn training_items(data: &Path, kind: DatasetKind) -> Result<Vec<Item>, EvalError> {
    if kind != DatasetKind::Sysu {
        return Ok(market::read_folder(data, crate::live::harvest::single::TRAIN_FOLDER)?);
    }
    let mut ids = sysu::read_ids(data, "train")?;
    ids.extend(sysu::read_ids(data, "val")?);
    let mut items = Vec::new();
    for &pid in &ids {
        for cam in sysu::VISIBLE_CAMS.iter().chain(&sysu::INFRARED_CAMS) {
            items.extend(sysu::images(data, *cam, pid)?);
        }
    }
    Ok(items)
}

/// `items` of `data` embedded with `weights` at `input_size` on `device`: one unit-length
/// float row per item, in order, on the CPU.
pub fn embed(
    data: &Path,
    items: &[Item],
    kind: DatasetKind,
    weights: &Path,
    input_size: (i64, i64),
    device: tch::Device,
) -> Result<Tensor, EvalError> {
    let file = WeightFile::read(weights)?;
    let embedder = LbaEmbedder::from_file(&file, Some(input_size), device, false)?
        .with_preprocess(crate::config::site::Preprocess::Host);
    let bank = crate::eval::extract::extract(
        &embedder,
        data,
        items,
        |it| crate::eval::extract::modality_of(kind, it),
        64,
    )?;
    Ok(crate::base::normalize_rows(&bank.features.to_kind(tch::Kind::Float))?)
}
