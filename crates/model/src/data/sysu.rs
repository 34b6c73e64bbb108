//! SYSU-MM01: `cam1..cam6/<pid:04>/<nnnn>.jpg` and `exp/{train,val,test}_id.txt`.
//! Cameras 1, 2, 4, 5 are visible; 3 and 6 infrared. cam2 and cam3 share a room.

use super::{DataError, Item, read_text, sorted_files};
use std::collections::BTreeMap;
use std::path::Path;

/// Visible cameras in the order the reference code lists them.
pub const VISIBLE_CAMS: [i64; 4] = [1, 2, 4, 5];
/// Infrared cameras.
pub const INFRARED_CAMS: [i64; 2] = [3, 6];
/// Visible cameras of the indoor-search mode.
pub const INDOOR_VISIBLE_CAMS: [i64; 2] = [1, 2];

/// Reads `exp/<split>_id.txt`: the first line, comma-separated integers (as the reference code).
pub fn read_ids(root: &Path, split: &str) -> Result<Vec<i64>, DataError> {
    super::refuse_incomplete(root)?;
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

/// The file of a harvested set (in the SYSU-MM01 or the Market-1501 layout) that lists, for each
/// person id, the ids seen by the same camera at the same time (so certainly other people): one
/// line `pid: other,other,…` per id with any.
pub const CO_OCCURRING: &str = "exp/co_occurring.txt";

/// Person id → the ids seen at the same time.
pub type CoOccurring = BTreeMap<i64, Vec<i64>>;

/// Reads [`CO_OCCURRING`]; `Ok(None)` if absent.
pub fn read_co_occurring(root: &Path) -> Result<Option<CoOccurring>, DataError> {
    let path = root.join(CO_OCCURRING);
    if !path.exists() {
        return Ok(None);
    }
    let text = read_text(&path)?;
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |what: &str| DataError::new(&path, format!("line {}: {what}; expected `pid: other,other,…`", n + 1));
        let (pid, others) = line.split_once(':').ok_or_else(|| bad("no `:`"))?;
        let id = |s: &str| {
            s.trim()
                .parse::<i64>()
                .map_err(|_| bad(&format!("{:?} is not a person id", s.trim())))
        };
        let pid = id(pid)?;
        let others = others
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(id)
            .collect::<Result<Vec<_>, _>>()?;
        if others.contains(&pid) {
            return Err(bad(&format!("person {pid} is listed as seen beside itself")));
        }
        if out.insert(pid, others).is_some() {
            return Err(bad(&format!("person {pid} has a second line")));
        }
    }
    Ok(Some(out))
}

/// The file `reid-pipe adapt` writes beside a harvest's lists: groups of training person ids that
/// are one person (pseudo-identities of someone who came back), one line `pid,pid,…` per group.
/// The trainer gives each group one label.
pub const SAME_PERSON: &str = "exp/same_person.txt";

/// Reads [`SAME_PERSON`]: the groups, each of two ids or more, no id in two; `Ok(None)` if
/// absent.
pub fn read_same_person(root: &Path) -> Result<Option<Vec<Vec<i64>>>, DataError> {
    let path = root.join(SAME_PERSON);
    if !path.exists() {
        return Ok(None);
    }
    let text = read_text(&path)?;
    let mut seen = std::collections::BTreeSet::new();
    let mut groups = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |what: &str| DataError::new(&path, format!("line {}: {what}; expected `pid,pid,…`", n + 1));
        let ids = line
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<i64>()
                    .map_err(|_| bad(&format!("{:?} is not a person id", s.trim())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if ids.len() < 2 {
            return Err(bad("a group needs two ids or more"));
        }
        if let Some(id) = ids.iter().find(|id| !seen.insert(**id)) {
            return Err(bad(&format!("person {id} is in a group already")));
        }
        groups.push(ids);
    }
    Ok(Some(groups))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with(text: &str) -> (tempfile::TempDir, Result<Option<CoOccurring>, DataError>) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("exp")).expect("exp");
        std::fs::write(dir.path().join(CO_OCCURRING), text).expect("write");
        let read = read_co_occurring(dir.path());
        (dir, read)
    }

    #[test]
    fn same_person_groups_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(read_same_person(dir.path()).expect("absent").is_none());
        std::fs::create_dir_all(dir.path().join("exp")).expect("exp");
        let read = |text: &str| {
            std::fs::write(dir.path().join(SAME_PERSON), text).expect("write");
            read_same_person(dir.path())
        };
        assert_eq!(
            read("3,8, 14\n\n2,6\n").expect("read").expect("present"),
            [vec![3, 8, 14], vec![2, 6]]
        );
        for (text, says) in [
            ("3\n", "line 1: a group needs two ids or more"),
            ("3,8\n8,9\n", "line 2: person 8 is in a group already"),
            ("3,x\n", "line 1: \"x\" is not a person id"),
        ] {
            let e = read(text).expect_err(text).to_string();
            assert!(e.contains(says) && e.contains("same_person.txt"), "{text:?}: {e}");
        }
    }

    #[test]
    fn co_occurrence_lists_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(read_co_occurring(dir.path()).expect("absent").is_none());
        let (_d, read) = with("1: 2,3\n\n2: 1\n3: 1\n");
        let map = read.expect("read").expect("present");
        assert_eq!(map, BTreeMap::from([(1, vec![2, 3]), (2, vec![1]), (3, vec![1])]));
        for (text, problem) in [
            ("1 2\n", "line 1: no `:`"),
            ("1: 2\nx: 1\n", "line 2: \"x\" is not a person id"),
            ("4: 4\n", "person 4 is listed as seen beside itself"),
            ("1: 2\n1: 3\n", "person 1 has a second line"),
        ] {
            let (_d, read) = with(text);
            let e = read.expect_err(text);
            assert!(e.message.contains(problem), "{text:?}: {}", e.message);
            assert!(e.path.ends_with(CO_OCCURRING));
        }
    }
}
