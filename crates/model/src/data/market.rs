//! Market-1501 and DukeMTMC-reID: `bounding_box_train/`, `bounding_box_test/` (gallery) and
//! `query/`, file names `PPPP_cC…` (Market `0002_c1s1_000451_03.jpg`, Duke `0001_c2_f0046182.jpg`).
//! pid -1 marks junk images, 0 distractors.

use super::{DataError, Item, sorted_files};
use std::path::Path;

/// Parses pid and camera from a Market/Duke file name.
pub fn parse_name(name: &str) -> Option<(i64, i64)> {
    let mut parts = name.split('_');
    let pid = parts.next()?.parse::<i64>().ok()?;
    let cam_part = parts.next()?.strip_prefix('c')?;
    let digits: String = cam_part.chars().take_while(char::is_ascii_digit).collect();
    Some((pid, digits.parse().ok()?))
}

/// Sorted `.jpg`/`.png` images of one folder (`query`, `bounding_box_test`, `bounding_box_train`).
pub fn read_folder(root: &Path, folder: &str) -> Result<Vec<Item>, DataError> {
    super::refuse_incomplete(root)?;
    let dir = root.join(folder);
    let names = sorted_files(&dir)?.ok_or_else(|| DataError::new(&dir, "folder not found"))?;
    let mut items = Vec::new();
    for name in names.into_iter().filter(|n| n.ends_with(".jpg") || n.ends_with(".png")) {
        let (pid, cam) = parse_name(&name).ok_or_else(|| {
            DataError::new(
                &dir.join(&name),
                "file name is not `<pid>_c<camera>…` (Market-1501/DukeMTMC-reID)",
            )
        })?;
        items.push(Item {
            path: format!("{folder}/{name}"),
            pid,
            cam,
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::parse_name;

    #[test]
    fn parses_both_naming_schemes() {
        assert_eq!(parse_name("0002_c1s1_000451_03.jpg"), Some((2, 1)));
        assert_eq!(parse_name("-1_c3s2_000100_01.jpg"), Some((-1, 3)));
        assert_eq!(parse_name("0001_c2_f0046182.jpg"), Some((1, 2)));
        assert_eq!(parse_name("readme.txt"), None);
    }
}
