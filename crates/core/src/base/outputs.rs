//! Where a command may write: never over one of its own inputs, and over an existing file only
//! when the user asked for it (`--overwrite`).

use std::path::{Path, PathBuf};

/// An output path a command may not write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    #[error("{} is {what} ({}): an output may not be an input", output.display(), input.display())]
    IsInput {
        output: PathBuf,
        what: String,
        input: PathBuf,
    },
    #[error("{} exists; pass --overwrite to replace it", .0.display())]
    Exists(PathBuf),
    #[error("{} is not a folder: the outputs go into a folder there", .0.display())]
    NotAFolder(PathBuf),
    #[error("{} would be written twice (two of the command's outputs have this name)", .0.display())]
    Twice(PathBuf),
}

/// Checks the files a command is about to write: none may be one of `inputs` (what each is, and
/// its path), and none may exist unless `overwrite`.
pub fn check(outputs: &[PathBuf], inputs: &[(String, PathBuf)], overwrite: bool) -> Result<(), OutputError> {
    for (i, output) in outputs.iter().enumerate() {
        if outputs[..i].iter().any(|o| same_file(o, output)) {
            return Err(OutputError::Twice(output.clone()));
        }
        // The nearest existing ancestor must be a folder for the output to be created there.
        if let Some(file) = output.ancestors().skip(1).find(|a| a.exists()).filter(|a| !a.is_dir()) {
            return Err(OutputError::NotAFolder(file.to_path_buf()));
        }
        if let Some((what, input)) = input_named(output, inputs) {
            return Err(OutputError::IsInput {
                output: output.clone(),
                what: what.clone(),
                input: input.clone(),
            });
        }
    }
    if !overwrite && let Some(existing) = outputs.iter().find(|p| p.exists()) {
        return Err(OutputError::Exists(existing.clone()));
    }
    Ok(())
}

/// The input (what it is, and its path) that `output` names, if any.
pub fn input_named<'a>(output: &Path, inputs: &'a [(String, PathBuf)]) -> Option<&'a (String, PathBuf)> {
    inputs.iter().find(|(_, input)| same_file(output, input))
}

/// Whether `path` is `folder` or lies somewhere inside it (paths resolved as [`same_file`] does).
pub fn inside(path: &Path, folder: &Path) -> bool {
    normalised(path).starts_with(normalised(folder))
}

/// `path`, or when it exists (or is in `taken`: names the same run already chose) the first
/// free `stem-N.ext` beside it (N = 1, 2, …).
pub fn first_free(path: &Path, taken: &[PathBuf]) -> PathBuf {
    let free = |p: &Path| !p.exists() && !taken.iter().any(|t| t == p);
    if free(path) {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (1u64..)
        .map(|n| path.with_file_name(format!("{stem}-{n}{ext}")))
        .find(|p| free(p))
        .expect("some number is free")
}

/// Whether two paths name the same file: the same inode when both exist, otherwise the same
/// absolute path once `.` and `..` are resolved (lexically, then through the longest existing
/// ancestor, so `new/../site.toml` is `site.toml` even before `new/` exists).
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => normalised(a) == normalised(b),
    }
}

fn normalised(p: &Path) -> PathBuf {
    use std::path::Component;
    let absolute = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut lexical = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                lexical.pop();
            }
            other => lexical.push(other),
        }
    }
    // Symbolic links in the part that exists: resolve the longest existing ancestor.
    let mut existing = lexical.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return lexical,
        }
    }
    let mut out = std::fs::canonicalize(existing).unwrap_or_else(|_| existing.to_path_buf());
    out.extend(rest.iter().rev());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_over_inputs_or_existing_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("in.txt");
        std::fs::write(&input, "x").expect("write");
        let roundabout = dir.path().join("new/../in.txt");
        let inputs = [("the log".to_owned(), input.clone())];
        assert!(matches!(
            check(&[roundabout], &inputs, true),
            Err(OutputError::IsInput { .. })
        ));
        let existing = dir.path().join("out.png");
        std::fs::write(&existing, "y").expect("write");
        assert_eq!(
            check(std::slice::from_ref(&existing), &inputs, false),
            Err(OutputError::Exists(existing.clone()))
        );
        assert_eq!(check(std::slice::from_ref(&existing), &inputs, true), Ok(()));
        assert_eq!(check(&[dir.path().join("fresh.png")], &inputs, false), Ok(()));
        assert!(inside(&dir.path().join("new/../a/b"), &dir.path().join("a")));
        assert!(!inside(&dir.path().join("ab"), &dir.path().join("a")));
        let under_a_file = existing.join("summary.json");
        assert_eq!(
            check(&[under_a_file], &inputs, true),
            Err(OutputError::NotAFolder(existing.clone()))
        );
        let json = dir.path().join("fig.json");
        assert_eq!(
            check(&[json.clone(), json.with_extension("json")], &inputs, true),
            Err(OutputError::Twice(json))
        );
    }

    #[test]
    fn first_free_numbers_past_existing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("annotated.mkv");
        assert_eq!(first_free(&p, &[]), p);
        std::fs::write(&p, "").expect("write");
        std::fs::write(dir.path().join("annotated-1.mkv"), "").expect("write");
        let second = dir.path().join("annotated-2.mkv");
        assert_eq!(first_free(&p, &[]), second);
        assert_eq!(first_free(&p, &[second]), dir.path().join("annotated-3.mkv"));
    }
}
