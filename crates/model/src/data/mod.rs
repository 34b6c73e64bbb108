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

/// Refuses a folder that a harvest is still writing or left unfinished.
pub(crate) fn refuse_incomplete(root: &Path) -> Result<(), DataError> {
    let marker = root.join(HARVEST_INCOMPLETE);
    if marker.exists() {
        return Err(DataError::new(
            &marker,
            "an interrupted or unfinished harvest wrote this folder; run `reid-pipe harvest` again",
        ));
    }
    Ok(())
}

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

/// Sorted file names (not paths) of the regular files (or links to them) in `dir`; `Ok(None)`
/// if it does not exist.
pub(crate) fn sorted_files(dir: &Path) -> Result<Option<Vec<String>>, DataError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DataError::new(dir, format!("cannot list the folder: {e}"))),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::new(dir, format!("cannot list the folder: {e}")))?;
        // Links are followed (sets are often assembled from links, and Python's listing follows
        // them too); a broken link is not an image.
        let is_file = match entry.file_type() {
            Ok(t) if t.is_symlink() => std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()),
            Ok(t) => t.is_file(),
            Err(_) => false,
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_files_include_links_to_files_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("b.jpg"), b"x").expect("file");
        std::fs::create_dir(d.join("sub")).expect("dir");
        std::os::unix::fs::symlink(d.join("b.jpg"), d.join("a.jpg")).expect("link");
        std::os::unix::fs::symlink(d.join("gone.jpg"), d.join("broken.jpg")).expect("link");
        std::os::unix::fs::symlink(d.join("sub"), d.join("linked-dir")).expect("link");
        assert_eq!(
            sorted_files(d).expect("list"),
            Some(vec!["a.jpg".to_owned(), "b.jpg".to_owned()])
        );
        assert_eq!(sorted_files(&d.join("absent")).expect("absent"), None);
    }
}
