//! RegDB: `Visible/<id>/*.bmp`, `Thermal/<id>/*.bmp` and the trial index files
//! `idx/{train,test}_{visible,thermal}_{1..10}.txt`, each line `<relative path> <label>`.

use super::{DataError, Item, read_text};
use std::path::Path;

/// Which half of a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// Which modality's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spectrum {
    Visible,
    Thermal,
}

/// Reads one index file of `trial` (1..=10). Items get camera 1 (visible) or 2 (thermal) and the
/// file's label as their pid.
pub fn read_index(root: &Path, trial: u32, split: Split, spectrum: Spectrum) -> Result<Vec<Item>, DataError> {
    let name = format!(
        "{}_{}_{trial}.txt",
        match split {
            Split::Train => "train",
            Split::Test => "test",
        },
        match spectrum {
            Spectrum::Visible => "visible",
            Spectrum::Thermal => "thermal",
        }
    );
    let path = root.join("idx").join(name);
    let cam = match spectrum {
        Spectrum::Visible => 1,
        Spectrum::Thermal => 2,
    };
    let text = read_text(&path)?;
    let mut items = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (file, label) = line.rsplit_once(' ').ok_or_else(|| {
            DataError::new(
                &path,
                format!("line {}: expected `<path> <label>`, found {line:?}", n + 1),
            )
        })?;
        let pid = label
            .parse::<i64>()
            .map_err(|_| DataError::new(&path, format!("line {}: label {label:?} is not an integer", n + 1)))?;
        items.push(Item {
            path: file.trim().trim_start_matches('/').to_owned(),
            pid,
            cam,
        });
    }
    if items.is_empty() {
        return Err(DataError::new(&path, "no entries"));
    }
    Ok(items)
}
