//! The workspace's modules form layers and depend only downwards: a `crate::x` or `reid_core::x`
//! (any crate of the workspace) path in a module of a lower layer than `x` (or of the same layer)
//! fails this test, naming the file and the path, as does a use of a crate that `CRATE_USES` does
//! not put below the user's (Cargo would refuse only a cycle).
//! ARCHITECTURE.md explains the layers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level modules by layer, bottom first. A module may use modules of lower layers only. Layers
/// 0–2 are the crate reid-core; above it, reid-perception (`ingest`, `detect`, `track`, `synth`),
/// reid-model (`data`, `model`, `eval`, `train`, `viz`) and reid-index (`index`, `cluster`) each use
/// only reid-core, and reid-pipe (`live` and up) uses them all.
const LAYERS: &[&[&str]] = &[
    &["base", "atomic", "runtime", "libtorch", "resample"],
    &["safetensors"],
    &["config"],
    &["ingest", "data", "index"],
    &["detect", "model"],
    &["track", "eval", "synth"],
    &["train", "viz", "cluster"],
    &["live"],
    &["doctor", "cli", "adapt"],
];

/// The crates each crate of the workspace may use: the three middle ones only reid-core, so they
/// build side by side and a change in one rebuilds only it and reid-pipe.
const CRATE_USES: &[(&str, &[&str])] = &[
    ("reid_core", &[]),
    ("reid_index", &["reid_core"]),
    ("reid_model", &["reid_core"]),
    ("reid_perception", &["reid_core"]),
    (
        "reid_pipe",
        &["reid_core", "reid_index", "reid_model", "reid_perception"],
    ),
];

/// The crate whose sources are in `src`: reid-pipe's `src/`, or `crates/<name>/src`.
fn crate_of_dir(src: &Path) -> String {
    let parent = src.parent().expect("a crate folder");
    if parent == Path::new(env!("CARGO_MANIFEST_DIR")) {
        "reid_pipe".to_owned()
    } else {
        format!("reid_{}", parent.file_name().expect("named").to_string_lossy())
    }
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The source folders of the workspace's crates: `src/` of reid-pipe and `crates/*/src`.
fn source_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("src")];
    for entry in std::fs::read_dir(root.join("crates")).expect("read crates") {
        let src = entry.expect("entry").path().join("src");
        if src.is_dir() {
            dirs.push(src);
        }
    }
    dirs.sort();
    dirs
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// How a path names a module of the workspace: `crate::` inside a crate, the crate's name from
/// another one.
const PREFIXES: &[&str] = &[
    "crate::",
    "reid_core::",
    "reid_index::",
    "reid_model::",
    "reid_perception::",
];

/// Top-level modules named by `crate::…` (or `reid_core::…`, …) paths in `text`, including
/// `crate::{a, b::c}` groups.
fn used_modules(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut hits: Vec<(usize, &str)> = PREFIXES
        .iter()
        .flat_map(|p| text.match_indices(p).map(move |(at, _)| (at, *p)))
        .collect();
    hits.sort();
    for (at, prefix) in hits {
        // Skip `$crate::` in macros and longer names that merely end in a prefix.
        if text[..at].ends_with(|c: char| c == '$' || c == '_' || c.is_alphanumeric()) {
            continue;
        }
        let rest = &text[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            out.push(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
        }
    }
    out
}

#[test]
fn modules_depend_only_on_lower_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Which crate holds each top-level module (reid-pipe's own modules and its re-exports aside).
    let mut home: BTreeMap<String, String> = BTreeMap::new();
    for src in source_dirs() {
        for entry in std::fs::read_dir(&src).expect("read src") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned();
            if name != "lib" && name != "main" {
                home.insert(name, crate_of_dir(&src));
            }
        }
    }
    let mut upward = Vec::new();
    let mut edges: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for src in source_dirs() {
        let own_crate = crate_of_dir(&src);
        let may_use = CRATE_USES
            .iter()
            .find(|(c, _)| *c == own_crate)
            .unwrap_or_else(|| panic!("{own_crate}: add the new crate to CRATE_USES"))
            .1;
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        files.sort();
        for file in &files {
            let rel = file.strip_prefix(&src).expect("under src");
            let top = rel.iter().next().expect("a component").to_string_lossy();
            let top = top.trim_end_matches(".rs").to_owned();
            if top == "lib" || top == "main" {
                continue;
            }
            let shown = file.strip_prefix(root).expect("under the workspace").display();
            let own = layer_of(&top).unwrap_or_else(|| panic!("{shown}: place the new module in a layer of LAYERS"));
            let text = std::fs::read_to_string(file).expect("read");
            for used in used_modules(&text) {
                if used == top {
                    continue;
                }
                let Some(theirs) = layer_of(&used) else {
                    continue; // an item of lib.rs, not a module
                };
                edges.entry(top.clone()).or_default().insert(used.clone());
                if theirs >= own {
                    upward.push(format!("{shown}: {used} (layer {theirs}) from {top} (layer {own})"));
                }
                let Some(their_crate) = home.get(&used) else {
                    panic!("LAYERS names {used}, which no crate holds");
                };
                if *their_crate != own_crate && !may_use.contains(&their_crate.as_str()) {
                    upward.push(format!(
                        "{shown}: {used} of {their_crate}, which {own_crate} may not use"
                    ));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "uses of a module of the same or a higher layer, or of a crate not below:\n{}",
        upward.join("\n")
    );
    // The layering is not vacuous: the modules above the bottom do use lower ones, within a crate
    // (eval → model) and across crates (model → base, live → model).
    assert!(edges["live"].contains("model") && edges["eval"].contains("model") && edges["model"].contains("base"));
}

#[test]
fn the_parser_sees_grouped_and_plain_paths() {
    let text = "use crate::{base::Modality, config};\nlet x = crate::eval::rank(); $crate::ignored;\n\
                use reid_core::safetensors; my_reid_core::ignored";
    assert_eq!(used_modules(text), ["base", "config", "eval", "safetensors"]);
}
