//! The crate's modules form layers and depend only downwards: a `crate::x` path in a module of a
//! lower layer than `x` (or of the same layer) fails this test, naming the file and the path.
//! ARCHITECTURE.md explains the layers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level modules by layer, bottom first. A module may use modules of lower layers only.
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

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
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

/// Top-level modules named by `crate::…` paths in `text`, including `crate::{a, b::c}` groups.
fn used_modules(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        // `reid_pipe::` paths cannot occur inside the library; skip `$crate::` in macros.
        if text[..at].ends_with('$') {
            continue;
        }
        let rest = &text[at + "crate::".len()..];
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
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut upward = Vec::new();
    let mut edges: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let top = rel.iter().next().expect("a component").to_string_lossy();
        let top = top.trim_end_matches(".rs").to_owned();
        if top == "lib" || top == "main" {
            continue;
        }
        let own = layer_of(&top).unwrap_or_else(|| panic!("src/{top}: place the new module in a layer of LAYERS"));
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
                upward.push(format!(
                    "src/{}: crate::{used} (layer {theirs}) from {top} (layer {own})",
                    rel.display()
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "uses of a module of the same or a higher layer:\n{}",
        upward.join("\n")
    );
    // The layering is not vacuous: the modules above the bottom do use lower ones.
    assert!(edges["live"].contains("model") && edges["eval"].contains("model") && edges["model"].contains("base"));
}

#[test]
fn the_parser_sees_grouped_and_plain_paths() {
    let text = "use crate::{base::Modality, config};\nlet x = crate::eval::rank(); $crate::ignored";
    assert_eq!(used_modules(text), ["base", "config", "eval"]);
}
