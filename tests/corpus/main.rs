//! The malformed-input corpus: every case runs the release binary on one bad input (a config, a
//! weight file, a manifest, a dataset, a feature file, a snapshot, command-line arguments) and
//! expects a clean failure (its exit code and a fragment of its message), never a panic or an
//! abort; inputs a case names as kept must be byte-for-byte unchanged afterwards.

mod cli_args;
#[path = "../common/mod.rs"]
mod common;
mod configs;
mod files;
mod fixtures;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

pub use fixtures::Fixtures;

/// One malformed input and what the binary must do with it.
pub struct Case {
    /// Short name, shown when the case fails.
    pub name: String,
    /// The binary's arguments.
    pub args: Vec<OsString>,
    /// The exit code expected (1 for a refused input, 2 for a command-line error).
    pub code: i32,
    /// A fragment the output (stdout and stderr) must contain.
    pub message: String,
    /// Files that must be unchanged by the run.
    pub kept: Vec<PathBuf>,
}

impl Case {
    /// A case expecting `code` and `message` from `reid-pipe args…`.
    pub fn new<S: Into<OsString>>(
        name: impl Into<String>,
        code: i32,
        message: impl Into<String>,
        args: impl IntoIterator<Item = S>,
    ) -> Self {
        Case {
            name: name.into(),
            args: args.into_iter().map(Into::into).collect(),
            code,
            message: message.into(),
            kept: Vec::new(),
        }
    }

    /// Also requires `path` to be unchanged by the run.
    pub fn keeps(mut self, path: impl AsRef<Path>) -> Self {
        self.kept.push(path.as_ref().to_path_buf());
        self
    }
}

/// Writes `text` to `path`, creating its folder.
pub fn write(path: &Path, text: impl AsRef<[u8]>) -> PathBuf {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
    path.to_path_buf()
}

/// The arguments as owned strings.
pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// `eval --dataset dataset --root root --features features --device cpu --out out`, then `extra`.
pub fn eval_features(dataset: &str, root: &Path, features: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    eval_args(dataset, root, ("--features", features), out, extra)
}

/// `eval --dataset dataset --root root <flag> <path> --device cpu --out out`, then `extra`; the
/// input is `("--features", file)` or `("--checkpoint", weights)`.
pub fn eval_args(dataset: &str, root: &Path, input: (&str, &Path), out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = strings(&[
        "eval",
        "--dataset",
        dataset,
        "--root",
        &arg(root),
        input.0,
        &arg(input.1),
        "--device",
        "cpu",
        "--out",
        &arg(out),
    ]);
    args.extend(strings(extra));
    args
}

/// A path as a command-line argument.
pub fn arg(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_owned()
}

/// No case may take longer than this; one that does has hung.
const CASE_LIMIT: Duration = Duration::from_secs(180);

/// Runs one case; `Err` says what went wrong.
fn check(case: &Case) -> Result<(), String> {
    let before: Vec<Option<Vec<u8>>> = case.kept.iter().map(|p| std::fs::read(p).ok()).collect();
    let mut child = common::bin()
        .args(&case.args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let started = Instant::now();
    while child.try_wait().map_err(|e| e.to_string())?.is_none() {
        if started.elapsed() > CASE_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running after {} s", CASE_LIMIT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = common::text(&out);
    let code = out.status.code();
    let mut problems = Vec::new();
    if code.is_none_or(|c| c >= 101) || text.contains("panicked") {
        problems.push(format!("crashed (exit {code:?})"));
    }
    if code != Some(case.code) {
        problems.push(format!("exit {code:?}, expected {}", case.code));
    }
    if text.contains("\nframe #") || text.contains("Exception raised from") {
        problems.push("a C++ backtrace in the output".to_owned());
    }
    if !text.contains(&case.message) {
        problems.push(format!("no {:?} in the output", case.message));
    }
    for (path, old) in case.kept.iter().zip(before) {
        if std::fs::read(path).ok() != old {
            problems.push(format!("{} changed", path.display()));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        let tail: String = text
            .lines()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n    ");
        Err(format!("{}\n    {tail}", problems.join("; ")))
    }
}

#[test]
fn malformed_inputs_fail_cleanly_and_overwrite_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fx = Fixtures::make(dir.path());
    let mut cases = configs::cases(&fx);
    cases.extend(files::cases(&fx));
    cases.extend(cli_args::cases(&fx));
    let total = cases.len();
    // Two at a time: the machines CI runs on have two cores.
    let queue = std::sync::Mutex::new(cases.into_iter());
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let Some(case) = queue.lock().expect("queue").next() else {
                        break;
                    };
                    if let Err(e) = check(&case) {
                        failures.lock().expect("failures").push(format!("{}: {e}", case.name));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("failures");
    assert!(
        total >= 100,
        "the corpus has {total} cases; it should have at least 100"
    );
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{total} malformed inputs, all refused cleanly");
}
