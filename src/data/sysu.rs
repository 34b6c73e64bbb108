//! SYSU-MM01: `cam1..cam6/<pid:04>/<nnnn>.jpg` and `exp/{train,val,test}_id.txt`.
//! Cameras 1, 2, 4, 5 are visible; 3 and 6 infrared. cam2 and cam3 share a room.

use super::{DataError, Item, read_text, sorted_files};
use std::path::Path;

/// Visible cameras in the order the reference code lists them.
pub const VISIBLE_CAMS: [i64; 4] = [1, 2, 4, 5];
/// Infrared cameras.
pub const INFRARED_CAMS: [i64; 2] = [3, 6];
/// Visible cameras of the indoor-search mode.
pub const INDOOR_VISIBLE_CAMS: [i64; 2] = [1, 2];

/// Reads `exp/<split>_id.txt`: the first line, comma-separated integers (as the reference code).
pub fn read_ids(root: &Path, split: &str) -> Result<Vec<i64>, DataError> {
    let marker = root.join(super::HARVEST_INCOMPLETE);
    if marker.exists() {
        return Err(DataError::new(
            &marker,
            "an interrupted or unfinished harvest wrote this folder; run `reid-pipe harvest` again",
        ));
    }
    let path = root.join("exp").join(format!("{split}_id.txt"));
    let text = read_text(&path)?;
    let first = text.lines().next().unwrap_or("").trim();
    if first.is_empty() {
        return Err(DataError::new(
            &path,
            "the first line is empty; expected comma-separated person ids",
        ));
    }
    first
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse::<i64>()
                .map_err(|_| DataError::new(&path, format!("{s:?} is not a person id (integer)")))
        })
        .collect()
}

/// Sorted images of one person in one camera (empty if the folder does not exist).
pub fn images(root: &Path, cam: i64, pid: i64) -> Result<Vec<Item>, DataError> {
    let rel_dir = format!("cam{cam}/{pid:04}");
    Ok(sorted_files(&root.join(&rel_dir))?
        .unwrap_or_default()
        .into_iter()
        .map(|name| Item {
            path: format!("{rel_dir}/{name}"),
            pid,
            cam,
        })
        .collect())
}
