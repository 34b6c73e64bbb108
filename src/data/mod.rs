//! Readers for the on-disk layouts of the re-ID datasets: SYSU-MM01, RegDB and the
//! Market-1501 / DukeMTMC-reID layout. Every error names the file it is about.

pub mod market;
pub mod regdb;
pub mod sysu;

use std::path::{Path, PathBuf};

/// A dataset file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct DataError {
    pub path: PathBuf,
    pub message: String,
}

/// The marker `reid-pipe harvest` leaves in a dataset folder until it has finished writing it.
pub const HARVEST_INCOMPLETE: &str = "HARVEST-INCOMPLETE";

impl DataError {
    pub(crate) fn new(path: &Path, message: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// One image of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Item {
    /// Path relative to the dataset root, with `/` separators (e.g. `cam3/0001/0004.jpg`).
    pub path: String,
    /// Person id as the dataset names it (not relabelled).
    pub pid: i64,
    /// Camera number.
    pub cam: i64,
}

/// Sorted file names (not paths) of the regular files in `dir`; `Ok(None)` if it does not exist.
pub(crate) fn sorted_files(dir: &Path) -> Result<Option<Vec<String>>, DataError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DataError::new(dir, format!("cannot list the folder: {e}"))),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::new(dir, format!("cannot list the folder: {e}")))?;
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    // Python's sorted() on str compares code points, as Rust's Ord on String does.
    names.sort();
    Ok(Some(names))
}

/// Reads a text file, naming it in the error.
pub(crate) fn read_text(path: &Path) -> Result<String, DataError> {
    std::fs::read_to_string(path).map_err(|e| DataError::new(path, format!("cannot read: {e}")))
}
