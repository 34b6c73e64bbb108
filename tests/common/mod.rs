//! Helpers the integration tests share: the built binary, repository paths, the reference Python.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `reid-pipe` binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_reid-pipe"))
}

/// A path inside the repository.
pub fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Stdout and stderr of a command that must have succeeded.
pub fn ok(out: Output) -> String {
    let text = text(&out);
    assert!(out.status.success(), "exit {:?}: {text}", out.status.code());
    text
}

/// Stdout and stderr of a command that must have failed cleanly (exit 1 or 2: no panic, no
/// abort).
pub fn fails(out: Output) -> String {
    let text = text(&out);
    assert!(
        matches!(out.status.code(), Some(1 | 2)) && !text.contains("panicked"),
        "expected a clean failure, got exit {:?}: {text}",
        out.status.code()
    );
    text
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The Python interpreter with the reference torch, torchvision and Pillow: `REID_TORCH_PYTHON`,
/// else the venv `scripts/setup.sh` makes.
pub fn python() -> Command {
    Command::new(std::env::var_os("REID_TORCH_PYTHON").unwrap_or_else(|| "/opt/reid-torch/bin/python".into()))
}

/// Runs a script of `tests/reference/` with arguments; panics with its stderr on failure.
pub fn reference<S: AsRef<std::ffi::OsStr>>(script: &str, args: impl IntoIterator<Item = S>) {
    let out = python()
        .arg(repo(&format!("tests/reference/{script}")))
        .args(args)
        .output()
        .expect("the reference Python runs");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
