//! Training sets: the images of each modality with contiguous labels, decoded and resized once
//! into u8 tensors (N×H×W×3), optionally cached on disk so later runs start at once.

use crate::data::{DataError, Item, market, regdb, sysu};
use crate::eval::extract::{crop_of, read_rgb};
use crate::model::preprocess::batch_pixels;
use reid_core::base::Modality;
use reid_core::config::train::{Dataset, DatasetKind};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tch::{Kind, Tensor};

/// Errors naming the file involved.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Decode(Box<crate::eval::EvalError>),
    #[error("image {}", path.display())]
    Image {
        path: PathBuf,
        #[source]
        source: opencv::Error,
    },
    #[error("resizing images of {}", root.display())]
    Resize {
        root: PathBuf,
        #[source]
        source: crate::model::preprocess::PreprocessError,
    },
    #[error("{}: {message}", path.display())]
    Layout { path: PathBuf, message: String },
}

/// One modality of a training set.
pub struct Images {
    /// Decoded, resized images, N×H×W×3 u8 (RGB; infrared replicated to 3 channels).
    pub pixels: Tensor,
    /// Contiguous label per image.
    pub labels: Vec<i64>,
    /// Image indices per label.
    pub by_label: Vec<Vec<usize>>,
    /// Which stem these images go through.
    pub modality: Modality,
}

/// A training set: visible and infrared halves that share labels 0..classes.
pub struct TrainSet {
    pub visible: Images,
    pub infrared: Images,
    pub classes: usize,
    /// Human-readable summary (identities, images per modality and camera).
    pub summary: String,
}

/// Training images with their contiguous labels.
pub type Labelled = Vec<(Item, i64)>;

/// Lists the training items of a dataset with contiguous labels: (visible, infrared, classes).
pub fn list(d: &Dataset) -> Result<(Labelled, Labelled, usize), DatasetError> {
    match d.kind {
        DatasetKind::Sysu => {
            let TrainingLabels { ids, label, classes } = sysu_training_labels(&d.root)?;
            let mut vis = Vec::new();
            let mut ir = Vec::new();
            for &pid in &ids {
                for (half, cams, out) in [
                    ("visible", &sysu::VISIBLE_CAMS[..], &mut vis),
                    ("infrared", &sysu::INFRARED_CAMS[..], &mut ir),
                ] {
                    let before = out.len();
                    for &cam in cams {
                        out.extend(sysu::images(&d.root, cam, pid)?.into_iter().map(|i| (i, label[&pid])));
                    }
                    if out.len() == before {
                        return Err(DatasetError::Layout {
                            path: d.root.clone(),
                            message: format!(
                                "person {pid} is listed in exp/train_id.txt or exp/val_id.txt but has no {half} image \
                                 (no {pid:04}/ under {}); every training identity needs both modalities",
                                cams.iter().map(|c| format!("cam{c}")).collect::<Vec<_>>().join(", ")
                            ),
                        });
                    }
                }
            }
            Ok((vis, ir, classes))
        }
        DatasetKind::Regdb => {
            let vis = regdb::read_index(&d.root, d.trial, regdb::Split::Train, regdb::Spectrum::Visible)?;
            let ir = regdb::read_index(&d.root, d.trial, regdb::Split::Train, regdb::Spectrum::Thermal)?;
            let classes = vis.iter().chain(&ir).map(|i| i.pid).max().map_or(0, |m| m as usize + 1);
            let pair = |v: Vec<Item>| v.into_iter().map(|i| (i.clone(), i.pid)).collect();
            Ok((pair(vis), pair(ir), classes))
        }
        DatasetKind::Market | DatasetKind::Duke => {
            // Single modality: both halves of a batch are drawn from the same (visible) images.
            let (items, pids) = market_training_items(&d.root)?;
            let label: BTreeMap<i64, i64> = pids.iter().enumerate().map(|(i, &p)| (p, i as i64)).collect();
            let v: Vec<(Item, i64)> = items.into_iter().map(|i| (i.clone(), label[&i.pid])).collect();
            Ok((v.clone(), v, pids.len()))
        }
    }
}

/// A Market/Duke set's training images (junk and distractors left out) and their person ids,
/// ascending: an id's label is its place there.
fn market_training_items(root: &Path) -> Result<(Vec<Item>, Vec<i64>), DataError> {
    let items: Vec<Item> = market::read_folder(root, "bounding_box_train")?
        .into_iter()
        .filter(|i| i.pid > 0)
        .collect();
    let mut pids: Vec<i64> = items.iter().map(|i| i.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    Ok((items, pids))
}

/// SYSU-MM01's training ids: train + val, ascending (the reference's pre-processing labels each
/// by its place here; see [`sysu_training_labels`] for groups of one person).
fn sysu_training_ids(root: &Path) -> Result<Vec<i64>, DataError> {
    let mut ids = sysu::read_ids(root, "train")?;
    ids.extend(sysu::read_ids(root, "val")?);
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// A SYSU-MM01 set's training ids, each id's label, and the number of labels.
struct TrainingLabels {
    ids: Vec<i64>,
    label: BTreeMap<i64, i64>,
    classes: usize,
}

/// SYSU-MM01's training ids, each id's label and the number of labels. Ids that
/// [`sysu::SAME_PERSON`] groups as one person stand for their group's smallest training id (ids
/// outside the training part are left out of the groups); an id's label is the place of the id it
/// stands for among those that stand for themselves. Without groups, that is its place among the
/// ids.
fn sysu_training_labels(root: &Path) -> Result<TrainingLabels, DataError> {
    let ids = sysu_training_ids(root)?;
    let mut head: BTreeMap<i64, i64> = ids.iter().map(|&p| (p, p)).collect();
    for group in sysu::read_same_person(root)?.unwrap_or_default() {
        let members: Vec<i64> = group.into_iter().filter(|p| head.contains_key(p)).collect();
        if let Some(&first) = members.iter().min() {
            for p in members {
                head.insert(p, first);
            }
        }
    }
    let heads: BTreeSet<i64> = head.values().copied().collect();
    let place: BTreeMap<i64, i64> = heads.iter().enumerate().map(|(i, &p)| (p, i as i64)).collect();
    let label = head.iter().map(|(&p, h)| (p, place[h])).collect();
    Ok(TrainingLabels {
        ids,
        label,
        classes: heads.len(),
    })
}

/// Loads (or reads from the cache) a dataset's training images at `size` (height, width).
///
/// Images are decoded and resized by `workers` threads (chunk by chunk; the result does not
/// depend on the count).
pub fn load(d: &Dataset, size: (i64, i64), cache_dir: Option<&Path>, workers: usize) -> Result<TrainSet, DatasetError> {
    let (vis, ir, classes) = list(d)?;
    if vis.is_empty() || ir.is_empty() {
        return Err(DatasetError::Layout {
            path: d.root.clone(),
            message: format!(
                "{} visible and {} infrared training images; both are needed",
                vis.len(),
                ir.len()
            ),
        });
    }
    for (half, items) in [("visible", &vis), ("infrared", &ir)] {
        let mut seen = vec![false; classes];
        for (_, l) in items.iter() {
            if *l < 0 || *l as usize >= classes {
                return Err(DatasetError::Layout {
                    path: d.root.clone(),
                    message: format!("{half} label {l} outside 0..{classes}"),
                });
            }
            seen[*l as usize] = true;
        }
        if let Some(missing) = seen.iter().position(|s| !s) {
            let person = vis
                .iter()
                .chain(ir.iter())
                .find(|(_, l)| *l as usize == missing)
                .map_or_else(
                    || format!("identity {missing} (no image at all: person ids must run 0..{classes})"),
                    |(i, _)| format!("person {}", i.pid),
                );
            return Err(DatasetError::Layout {
                path: d.root.clone(),
                message: format!("{person} has no {half} training image; every identity needs both modalities"),
            });
        }
    }
    let single = matches!(d.kind, DatasetKind::Market | DatasetKind::Duke);
    let kind = format!("{:?}", d.kind).to_lowercase();
    let visible = images(
        &d.root,
        &vis,
        classes,
        size,
        Modality::Visible,
        cache_dir.map(|c| c.join(format!("{kind}-t{}-visible-{}x{}.safetensors", d.trial, size.0, size.1))),
        workers,
    )?;
    let infrared = if single {
        Images {
            pixels: visible.pixels.shallow_clone(),
            labels: visible.labels.clone(),
            by_label: visible.by_label.clone(),
            modality: Modality::Visible,
        }
    } else {
        images(
            &d.root,
            &ir,
            classes,
            size,
            Modality::Thermal,
            cache_dir.map(|c| {
                c.join(format!(
                    "{kind}-t{}-infrared-{}x{}.safetensors",
                    d.trial, size.0, size.1
                ))
            }),
            workers,
        )?
    };
    let summary = summary(&kind, classes, &vis, &ir, single);
    Ok(TrainSet {
        visible,
        infrared,
        classes,
        summary,
    })
}

/// Per training label, the labels seen at the same time by the same camera (certainly other
/// people), where the set says so (`exp/co_occurring.txt` of a harvested set, SYSU-MM01 or
/// Market-1501 layout); ids outside the training part are left out.
pub fn co_occurring(d: &Dataset) -> Result<Option<Vec<Vec<usize>>>, DatasetError> {
    let (label, classes): (BTreeMap<i64, i64>, usize) = match d.kind {
        DatasetKind::Regdb => return Ok(None),
        DatasetKind::Sysu => {
            let TrainingLabels { label, classes, .. } = sysu_training_labels(&d.root)?;
            (label, classes)
        }
        DatasetKind::Market | DatasetKind::Duke => {
            let (_, pids) = market_training_items(&d.root)?;
            let label = pids.iter().enumerate().map(|(l, &p)| (p, l as i64)).collect();
            (label, pids.len())
        }
    };
    let Some(by_pid) = sysu::read_co_occurring(&d.root)? else {
        return Ok(None);
    };
    let mut out: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); classes];
    for (pid, others) in &by_pid {
        if let Some(&l) = label.get(pid) {
            out[l as usize].extend(
                others
                    .iter()
                    .filter_map(|o| label.get(o).map(|&o| o as usize))
                    .filter(|&o| o != l as usize),
            );
        }
    }
    Ok(Some(out.into_iter().map(|s| s.into_iter().collect()).collect()))
}

fn summary(kind: &str, classes: usize, vis: &[(Item, i64)], ir: &[(Item, i64)], single: bool) -> String {
    let per_cam = |items: &[(Item, i64)]| {
        let mut m: BTreeMap<i64, usize> = BTreeMap::new();
        for (i, _) in items {
            *m.entry(i.cam).or_default() += 1;
        }
        m.iter()
            .map(|(c, n)| format!("cam{c}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if single {
        format!(
            "{kind}: {classes} identities, {} images ({}); single modality",
            vis.len(),
            per_cam(vis)
        )
    } else {
        format!(
            "{kind}: {classes} identities; visible {} images ({}); infrared {} images ({})",
            vis.len(),
            per_cam(vis),
            ir.len(),
            per_cam(ir)
        )
    }
}

fn images(
    root: &Path,
    items: &[(Item, i64)],
    classes: usize,
    size: (i64, i64),
    modality: Modality,
    cache: Option<PathBuf>,
    workers: usize,
) -> Result<Images, DatasetError> {
    let labels: Vec<i64> = items.iter().map(|(_, l)| *l).collect();
    let mut by_label = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_label[l as usize].push(i);
    }
    let expected = [items.len() as i64, size.0, size.1, 3];
    if let Some(path) = &cache
        && let Ok(file) = reid_core::safetensors::read(path)
        && let Some(t) = file.get("pixels")
        && t.size() == expected
        && file.metadata.get("paths").map(String::as_str) == Some(&images_digest(root, items))
        && file.metadata.get("resize").map(String::as_str) == Some(RESIZE)
    {
        return Ok(Images {
            pixels: t.shallow_clone(),
            labels,
            by_label,
            modality,
        });
    }
    let bar = indicatif::ProgressBar::new(items.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("decoding {msg} {bar:40} {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(modality.to_string());
    let chunks: Vec<&[(Item, i64)]> = items.chunks(64).collect();
    let done: Vec<Mutex<Option<Result<Tensor, DatasetError>>>> = chunks.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, chunks.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= chunks.len() || failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let result = decode(root, chunks[i], size, modality);
                    failed.fetch_or(result.is_err(), Ordering::Relaxed);
                    bar.inc(chunks[i].len() as u64);
                    *done[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                }
            });
        }
    });
    // In chunk order: the first failure in the list is the one reported.
    let mut parts = Vec::with_capacity(chunks.len());
    for slot in done {
        match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(part) => parts.push(part?),
            None => break,
        }
    }
    bar.finish_and_clear();
    let pixels = Tensor::cat(&parts, 0).to_kind(Kind::Uint8);
    if let Some(path) = &cache {
        let meta = BTreeMap::from([
            ("paths".to_owned(), images_digest(root, items)),
            ("resize".to_owned(), RESIZE.to_owned()),
        ]);
        // A cache that cannot be written only costs time next run.
        if let Err(e) = reid_core::safetensors::write(path, &[("pixels", &pixels)], &meta) {
            tracing::warn!("cannot write the image cache: {}", reid_core::base::Chain(&e));
        }
    }
    Ok(Images {
        pixels,
        labels,
        by_label,
        modality,
    })
}

/// Decodes, crops and resizes one chunk of images: u8 n×H×W×3.
fn decode(root: &Path, chunk: &[(Item, i64)], size: (i64, i64), modality: Modality) -> Result<Tensor, DatasetError> {
    let decoded = chunk
        .iter()
        .map(|(it, _)| {
            let path = root.join(&it.path);
            read_rgb(&path).map_err(|e| DatasetError::Decode(Box::new(e)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let crops = decoded
        .iter()
        .zip(chunk)
        .map(|(img, (it, _))| {
            crop_of(img, modality).map_err(|source| DatasetError::Image {
                path: root.join(&it.path),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    batch_pixels(&crops, size).map_err(|source| DatasetError::Resize {
        root: root.to_path_buf(),
        source,
    })
}

/// How the cached pixels were resized: a cache made another way (an earlier reid-pipe) is rebuilt.
const RESIZE: &str = "pillow-lanczos-13";

/// A short fingerprint of the images a cache was built from: their paths, labels, and each
/// file's size and modification time, so that an image changed in place rebuilds the cache.
fn images_digest(root: &Path, items: &[(Item, i64)]) -> String {
    // FNV-1a over the paths, labels, sizes and modification times.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (it, l) in items {
        let (size, modified) = std::fs::metadata(root.join(&it.path)).map_or((0, 0), |m| {
            let modified = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as u64);
            (m.len(), modified)
        });
        let stamp = size.to_le_bytes().into_iter().chain(modified.to_le_bytes());
        for b in it.path.bytes().chain(l.to_le_bytes()).chain(stamp) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{}:{h:016x}", items.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_grouped_as_one_person_share_a_label_and_their_co_occurrences() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exp = dir.path().join("exp");
        std::fs::create_dir_all(&exp).expect("exp");
        for (file, text) in [
            ("train_id.txt", "1,2,3,5\n"),
            ("val_id.txt", "7\n"),
            ("same_person.txt", "5,2\n7,9\n"),
            ("co_occurring.txt", "1: 2\n2: 1\n3: 5,7\n5: 3\n7: 3\n"),
        ] {
            std::fs::write(exp.join(file), text).expect("write");
        }
        let TrainingLabels { ids, label, classes } = sysu_training_labels(dir.path()).expect("labels");
        assert_eq!(ids, [1, 2, 3, 5, 7]);
        // 2 and 5 are one person; 9 is not a training id, so 7 stays alone.
        assert_eq!(label, BTreeMap::from([(1, 0), (2, 1), (3, 2), (5, 1), (7, 3)]));
        assert_eq!(classes, 4);
        let d = Dataset {
            kind: DatasetKind::Sysu,
            root: dir.path().to_path_buf(),
            trial: 1,
            cache: false,
        };
        let co = co_occurring(&d).expect("read").expect("present");
        assert_eq!(co, [vec![1], vec![0, 2], vec![1, 3], vec![2]]);
    }
}
