//! Command-line arguments: every subcommand given a missing input, a folder where a file belongs
//! or a file where a folder belongs; numbers and names out of range (trials, batch and block
//! sizes, input sizes, devices, neighbour counts, identity counts, frame and run counts, import
//! trials and classes, figure sizes, stages, log filters, subcommands); and output safety: no
//! output may replace an existing file without `--overwrite` (`--force` for `import`, `--resume`
//! for `train`, a new folder for `synth`), and no output may be one of the run's own inputs.

use crate::fixtures::{site_text, train_text};
use crate::{Case, Fixtures, arg, common, eval_args, eval_features, strings, write};
use std::path::{Path, PathBuf};

/// The command-line cases, each writing its inputs under its own case folder.
pub fn cases(fx: &Fixtures) -> Vec<Case> {
    let base = Base::make(fx);
    let mut cases = Vec::new();
    cases.extend(missing_and_misplaced(fx, &base));
    cases.extend(out_of_range(fx, &base));
    cases.extend(output_safety(fx, &base));
    cases
}

/// Good inputs the cases share (never written by a case): an index snapshot a 5-frame run
/// wrote, a feature file an evaluation wrote, and one visible and one infrared image.
struct Base {
    /// Snapshot folder.
    index: PathBuf,
    /// `eval` features of the fixtures' SYSU-MM01 set.
    features: PathBuf,
    visible: PathBuf,
    thermal: PathBuf,
}

impl Base {
    fn make(fx: &Fixtures) -> Self {
        let dir = fx.case_dir("cli-base");
        let site = write(&dir.join("site.toml"), site_text(&dir, &fx.weights, ""));
        common::ok(common::bin().arg("run").arg(&site).output().expect("run"));
        let eval = dir.join("eval");
        common::ok(
            common::bin()
                .args(strings(&[
                    "eval",
                    "--dataset",
                    "sysu",
                    "--root",
                    &arg(&fx.sysu),
                    "--checkpoint",
                    &arg(&fx.weights),
                    "--device",
                    "cpu",
                    "--input-size",
                    "64",
                    "32",
                    "--out",
                    &arg(&eval),
                ]))
                .output()
                .expect("eval"),
        );
        let base = Base {
            index: dir.join("index"),
            features: eval.join("features-1.safetensors"),
            visible: fx.sysu.join("cam1/0001/0001.jpg"),
            thermal: fx.sysu.join("cam3/0001/0001.jpg"),
        };
        for p in [&base.features, &base.visible, &base.thermal] {
            assert!(p.is_file(), "{} is missing", p.display());
        }
        base
    }
}

// ---------------------------------------------------------------------------------------------
// Argument lists
// ---------------------------------------------------------------------------------------------

/// `eval` of `--checkpoint weights` on the fixtures' SYSU-MM01 set on the CPU at 64×32, then
/// `extra`.
fn eval_checkpoint(fx: &Fixtures, weights: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    eval_sized(fx, weights, ["64", "32"], out, extra)
}

/// `eval_checkpoint` at `--input-size size`.
fn eval_sized(fx: &Fixtures, weights: &Path, size: [&str; 2], out: &Path, extra: &[&str]) -> Vec<String> {
    let mut sized = vec!["--input-size", size[0], size[1]];
    sized.extend_from_slice(extra);
    eval_args("sysu", &fx.sysu, ("--checkpoint", weights), out, &sized)
}

/// `viz retrieval` of the shared features, `extra` after.
fn retrieval(fx: &Fixtures, features: &Path, png: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["viz".to_owned(), "retrieval".to_owned()];
    args.extend(eval_features("sysu", &fx.sysu, features, &png.with_file_name("eval"), &[]).split_off(1));
    args.extend(strings(&["--png", &arg(png)]));
    args.extend(strings(extra));
    args
}

/// `viz <figure> --checkpoint weights --visible v… --thermal t… --input-size 64 32 --out out`,
/// then `extra`.
fn alignment(
    figure: &str,
    weights: &Path,
    visible: &[&Path],
    thermal: &[&Path],
    out: &Path,
    extra: &[&str],
) -> Vec<String> {
    let mut args = strings(&["viz", figure, "--checkpoint", &arg(weights)]);
    for v in visible {
        args.extend(strings(&["--visible", &arg(v)]));
    }
    for t in thermal {
        args.extend(strings(&["--thermal", &arg(t)]));
    }
    args.extend(strings(&["--input-size", "64", "32", "--out", &arg(out)]));
    args.extend(strings(extra));
    args
}

/// A copy of `from` at `to`.
fn copy(from: &Path, to: &Path) -> PathBuf {
    write(to, std::fs::read(from).expect("read"))
}

/// A case folder with a site file that runs (two 5-frame test sources, snapshots in `index/`).
fn site(fx: &Fixtures, name: &str) -> (PathBuf, PathBuf) {
    let dir = fx.case_dir(name);
    let site = write(&dir.join("site.toml"), site_text(&dir, &fx.weights, ""));
    (dir, site)
}

// ---------------------------------------------------------------------------------------------
// Missing inputs, folders where files belong, files where folders belong
// ---------------------------------------------------------------------------------------------

fn missing_and_misplaced(fx: &Fixtures, base: &Base) -> Vec<Case> {
    let mut cases = Vec::new();
    let v = base.visible.as_path();
    let t = base.thermal.as_path();

    // Configuration files for run, check, train, doctor and export.
    let d = fx.case_dir("cli-run-missing-site");
    cases.push(Case::new(
        "cli-run-missing-site",
        1,
        "no-such-site.toml",
        strings(&["run", &arg(&d.join("no-such-site.toml"))]),
    ));
    let d = fx.case_dir("cli-check-site-is-folder");
    cases.push(Case::new(
        "cli-check-site-is-folder",
        1,
        "Is a directory",
        strings(&["check", &arg(&d)]),
    ));
    let d = fx.case_dir("cli-train-missing-config");
    cases.push(Case::new(
        "cli-train-missing-config",
        1,
        "no-such-train.toml",
        strings(&["train", &arg(&d.join("no-such-train.toml"))]),
    ));
    let d = fx.case_dir("cli-train-config-is-folder");
    cases.push(Case::new(
        "cli-train-config-is-folder",
        1,
        "Is a directory",
        strings(&["train", &arg(&d)]),
    ));
    let d = fx.case_dir("cli-doctor-missing-site");
    cases.push(Case::new(
        "cli-doctor-missing-site",
        1,
        "no-such-site.toml",
        strings(&["doctor", "--site", &arg(&d.join("no-such-site.toml"))]),
    ));
    let d = fx.case_dir("cli-export-site-is-folder");
    cases.push(Case::new(
        "cli-export-site-is-folder",
        1,
        "Is a directory",
        strings(&["export", &arg(&d), "--out", &arg(&d.join("export"))]),
    ));

    // eval: the dataset root, the feature file, the weights.
    let d = fx.case_dir("cli-eval-missing-root");
    cases.push(Case::new(
        "cli-eval-missing-root",
        1,
        "no-such-root",
        eval_features("sysu", &d.join("no-such-root"), &base.features, &d.join("out"), &[]),
    ));
    let d = fx.case_dir("cli-eval-root-is-file");
    let file = write(&d.join("root.txt"), "not a dataset\n");
    cases.push(Case::new(
        "cli-eval-root-is-file",
        1,
        "Not a directory",
        eval_features("sysu", &file, &base.features, &d.join("out"), &[]),
    ));
    let d = fx.case_dir("cli-eval-missing-features");
    cases.push(Case::new(
        "cli-eval-missing-features",
        1,
        "no-such-features.safetensors",
        eval_features(
            "sysu",
            &fx.sysu,
            &d.join("no-such-features.safetensors"),
            &d.join("out"),
            &[],
        ),
    ));
    let d = fx.case_dir("cli-eval-checkpoint-is-folder");
    cases.push(Case::new(
        "cli-eval-checkpoint-is-folder",
        1,
        "Is a directory",
        eval_checkpoint(fx, &d, &d.join("out"), &[]),
    ));

    // --out folders that are files: say so, not "File exists" (EEXIST of the mkdir).
    let d = fx.case_dir("cli-eval-out-is-file");
    let file = write(&d.join("out"), "a file\n");
    cases.push(
        Case::new(
            "cli-eval-out-is-file",
            1,
            "not a folder",
            eval_features("sysu", &fx.sysu, &base.features, &file, &[]),
        )
        .keeps(&file),
    );
    let (d, site_file) = site(fx, "cli-export-out-is-file");
    let file = write(&d.join("export"), "a file\n");
    cases.push(
        Case::new(
            "cli-export-out-is-file",
            1,
            "not a folder",
            strings(&["export", &arg(&site_file), "--out", &arg(&file)]),
        )
        .keeps(&file),
    );
    let d = fx.case_dir("cli-index-export-out-is-file");
    let file = write(&d.join("export"), "a file\n");
    cases.push(
        Case::new(
            "cli-index-export-out-is-file",
            1,
            "not a folder",
            strings(&["index", "export", &arg(&base.index), "--out", &arg(&file)]),
        )
        .keeps(&file),
    );
    let d = fx.case_dir("cli-synth-out-is-file");
    let file = write(&d.join("dataset"), "a file\n");
    cases.push(
        Case::new(
            "cli-synth-out-is-file",
            1,
            "is a file, not a folder",
            strings(&["synth", "--format", "sysu", "--identities", "6", "--out", &arg(&file)]),
        )
        .keeps(&file),
    );

    // index: the snapshot folder.
    let d = fx.case_dir("cli-index-stats-missing-dir");
    cases.push(Case::new(
        "cli-index-stats-missing-dir",
        1,
        "no-such-index",
        strings(&["index", "stats", &arg(&d.join("no-such-index"))]),
    ));
    let d = fx.case_dir("cli-index-query-dir-is-file");
    let file = write(&d.join("index"), "a file\n");
    cases.push(Case::new(
        "cli-index-query-dir-is-file",
        1,
        "Not a directory",
        strings(&["index", "query", &arg(&file), "--identity", "1"]),
    ));

    // import: the input.
    let d = fx.case_dir("cli-import-missing-input");
    cases.push(Case::new(
        "cli-import-missing-input",
        1,
        "no-such-checkpoint.pt",
        strings(&[
            "import",
            &arg(&d.join("no-such-checkpoint.pt")),
            &arg(&d.join("out.safetensors")),
        ]),
    ));
    let d = fx.case_dir("cli-import-input-is-folder");
    let folder = d.join("checkpoint.pt");
    std::fs::create_dir_all(&folder).expect("mkdir");
    cases.push(Case::new(
        "cli-import-input-is-folder",
        1,
        "Is a directory",
        strings(&["import", &arg(&folder), &arg(&d.join("out.safetensors"))]),
    ));

    // viz: the log, the images, the weights, the output.
    let d = fx.case_dir("cli-viz-curves-missing-log");
    cases.push(Case::new(
        "cli-viz-curves-missing-log",
        1,
        "no-such-log.jsonl",
        strings(&[
            "viz",
            "curves",
            &arg(&d.join("no-such-log.jsonl")),
            "--out",
            &arg(&d.join("curves.png")),
        ]),
    ));
    let d = fx.case_dir("cli-viz-coattention-missing-image");
    let missing = d.join("no-such-image.jpg");
    cases.push(Case::new(
        "cli-viz-coattention-missing-image",
        1,
        "no-such-image.jpg",
        alignment(
            "coattention",
            &fx.weights,
            &[missing.as_path()],
            &[t],
            &d.join("fig.png"),
            &[],
        ),
    ));
    let d = fx.case_dir("cli-viz-correspondence-checkpoint-is-folder");
    cases.push(Case::new(
        "cli-viz-correspondence-checkpoint-is-folder",
        1,
        "Is a directory",
        alignment("correspondence", &d, &[v], &[t], &d.join("fig.png"), &[]),
    ));
    let d = fx.case_dir("cli-viz-coattention-out-is-folder");
    let folder = d.join("fig.png");
    std::fs::create_dir_all(&folder).expect("mkdir");
    cases.push(Case::new(
        "cli-viz-coattention-out-is-folder",
        1,
        "Is a directory",
        alignment("coattention", &fx.weights, &[v], &[t], &folder, &["--overwrite"]),
    ));
    cases
}

// ---------------------------------------------------------------------------------------------
// Numbers and names out of range
// ---------------------------------------------------------------------------------------------

fn out_of_range(fx: &Fixtures, base: &Base) -> Vec<Case> {
    let mut cases = Vec::new();
    let v = base.visible.as_path();
    let t = base.thermal.as_path();
    let feats = |name: &str, dataset: &str, extra: &[&str]| {
        let d = fx.case_dir(name);
        eval_features(dataset, &fx.sysu, &base.features, &d.join("out"), extra)
    };

    // eval --trials: parsed by clap (exit 2), except what only the dataset knows (exit 1).
    cases.push(Case::new(
        "cli-eval-trials-huge-range",
        2,
        "at most 100 trials",
        feats("cli-eval-trials-huge-range", "sysu", &["--trials", "0-4294967295"]),
    ));
    cases.push(Case::new(
        "cli-eval-trials-letters",
        2,
        "trial \"a\" is not a number",
        feats("cli-eval-trials-letters", "sysu", &["--trials", "a-b"]),
    ));
    cases.push(Case::new(
        "cli-eval-trials-backwards",
        2,
        "runs backwards",
        feats("cli-eval-trials-backwards", "sysu", &["--trials", "5-2"]),
    ));
    cases.push(Case::new(
        "cli-eval-trials-regdb-11",
        1,
        "RegDB trials are 1..10, found 11",
        feats("cli-eval-trials-regdb-11", "regdb", &["--trials", "11"]),
    ));

    // eval sizes: zero is not a size (clap ranges, like --input-size's).
    let d = fx.case_dir("cli-eval-batch-zero");
    cases.push(Case::new(
        "cli-eval-batch-zero",
        2,
        "--batch",
        eval_checkpoint(fx, &fx.weights, &d.join("out"), &["--batch", "0"]),
    ));
    cases.push(Case::new(
        "cli-eval-block-zero",
        2,
        "--block",
        feats("cli-eval-block-zero", "sysu", &["--block", "0"]),
    ));
    let d = fx.case_dir("cli-eval-input-size-zero");
    cases.push(Case::new(
        "cli-eval-input-size-zero",
        2,
        "0 is not in 16..=2048",
        eval_sized(fx, &fx.weights, ["0", "0"], &d.join("out"), &[]),
    ));
    let d = fx.case_dir("cli-eval-input-size-huge");
    cases.push(Case::new(
        "cli-eval-input-size-huge",
        2,
        "99999 is not in 16..=2048",
        eval_sized(fx, &fx.weights, ["99999", "99999"], &d.join("out"), &[]),
    ));
    cases.push(Case::new(
        "cli-eval-dataset-unknown",
        2,
        "invalid value 'cuhk'",
        feats("cli-eval-dataset-unknown", "cuhk", &[]),
    ));

    // eval --device: spelled wrong (exit 2), or a GPU this machine does not have (exit 1).
    let on_device = |name: &str, device: &str| {
        let mut args = feats(name, "sysu", &[]);
        let at = args.iter().position(|a| a == "--device").expect("--device") + 1;
        args[at] = device.to_owned();
        args
    };
    cases.push(Case::new(
        "cli-eval-device-gpu",
        2,
        "found \"gpu\"",
        on_device("cli-eval-device-gpu", "gpu"),
    ));
    cases.push(Case::new(
        "cli-eval-device-cuda-x",
        2,
        "found \"cuda:x\"",
        on_device("cli-eval-device-cuda-x", "cuda:x"),
    ));
    cases.push(Case::new(
        "cli-eval-device-cuda-99",
        1,
        "--device = cuda:99",
        on_device("cli-eval-device-cuda-99", "cuda:99"),
    ));

    // index query.
    let index = arg(&base.index);
    cases.push(Case::new(
        "cli-index-query-k-zero",
        2,
        "-k",
        strings(&["index", "query", &index, "--identity", "1", "-k", "0"]),
    ));
    cases.push(Case::new(
        "cli-index-query-unknown-identity",
        1,
        "no identity 999999 in the snapshot",
        strings(&["index", "query", &index, "--identity", "999999"]),
    ));
    cases.push(Case::new(
        "cli-index-query-negative-identity",
        2,
        "'-1'",
        strings(&["index", "query", &index, "--identity", "-1"]),
    ));

    // synth: too few identities, absurdly many (refused before writing anything), a negative seed.
    let d = fx.case_dir("cli-synth-identities-zero");
    cases.push(Case::new(
        "cli-synth-identities-zero",
        1,
        "at least 6 identities",
        strings(&[
            "synth",
            "--format",
            "sysu",
            "--identities",
            "0",
            "--out",
            &arg(&d.join("set")),
        ]),
    ));
    let d = fx.case_dir("cli-synth-identities-huge");
    cases.push(Case::new(
        "cli-synth-identities-huge",
        1,
        "identities",
        strings(&[
            "synth",
            "--format",
            "sysu",
            "--identities",
            &usize::MAX.to_string(),
            "--out",
            &arg(&d.join("set")),
        ]),
    ));
    let d = fx.case_dir("cli-synth-seed-negative");
    cases.push(Case::new(
        "cli-synth-seed-negative",
        2,
        "'-1'",
        strings(&[
            "synth",
            "--format",
            "sysu",
            "--seed",
            "-1",
            "--out",
            &arg(&d.join("set")),
        ]),
    ));

    // run and train counts: zero frames or zero runs is not a run.
    let (_, site_file) = site(fx, "cli-run-max-frames-zero");
    cases.push(Case::new(
        "cli-run-max-frames-zero",
        2,
        "--max-frames",
        strings(&["run", &arg(&site_file), "--max-frames", "0"]),
    ));
    let d = fx.case_dir("cli-train-runs-zero");
    // One short epoch, so that the binary that trains anyway is done quickly.
    let short = "epochs = 1\nwarmup_epochs = 0\nmilestones = []\n";
    let train = write(&d.join("train.toml"), train_text(&d.join("run"), &fx.sysu, short));
    cases.push(Case::new(
        "cli-train-runs-zero",
        2,
        "--runs",
        strings(&["train", &arg(&train), "--runs", "0"]),
    ));

    // import.
    let import = |name: &str, extra: &[&str]| {
        let d = fx.case_dir(name);
        let mut args = strings(&["import", &arg(&fx.weights), &arg(&d.join("out.safetensors"))]);
        args.extend(strings(extra));
        args
    };
    cases.push(Case::new(
        "cli-import-trial-zero",
        2,
        "0 is not in 1..=10",
        import("cli-import-trial-zero", &["--trial", "0"]),
    ));
    cases.push(Case::new(
        "cli-import-trial-eleven",
        2,
        "11 is not in 1..=10",
        import("cli-import-trial-eleven", &["--trial", "11"]),
    ));
    cases.push(Case::new(
        "cli-import-classes-mismatch",
        1,
        "--classes says 7",
        import("cli-import-classes-mismatch", &["--classes", "7"]),
    ));

    // viz: empty figures, unpaired images, unknown stages.
    let d = fx.case_dir("cli-viz-retrieval-queries-zero");
    cases.push(Case::new(
        "cli-viz-retrieval-queries-zero",
        2,
        "--queries",
        retrieval(fx, &base.features, &d.join("grid.png"), &["--queries", "0"]),
    ));
    let d = fx.case_dir("cli-viz-retrieval-top-zero");
    cases.push(Case::new(
        "cli-viz-retrieval-top-zero",
        2,
        "--top",
        retrieval(fx, &base.features, &d.join("grid.png"), &["--top", "0"]),
    ));
    let d = fx.case_dir("cli-viz-coattention-unpaired");
    cases.push(Case::new(
        "cli-viz-coattention-unpaired",
        1,
        "give one --thermal per --visible (2 vs 1)",
        alignment("coattention", &fx.weights, &[v, v], &[t], &d.join("fig.png"), &[]),
    ));
    let d = fx.case_dir("cli-viz-coattention-stage");
    cases.push(Case::new(
        "cli-viz-coattention-stage",
        2,
        "'layer9'",
        alignment(
            "coattention",
            &fx.weights,
            &[v],
            &[t],
            &d.join("fig.png"),
            &["--stage", "layer9"],
        ),
    ));

    // The command line itself.
    cases.push(Case::new(
        "cli-log-filter-bad",
        2,
        "invalid --log filter \"reid_pipe=loud\"",
        strings(&["--log", "reid_pipe=loud", "check", &arg(&fx.site)]),
    ));
    cases.push(Case::new(
        "cli-unknown-subcommand",
        2,
        "unrecognized subcommand 'frobnicate'",
        strings(&["frobnicate"]),
    ));
    cases
}

// ---------------------------------------------------------------------------------------------
// Output safety: existing outputs, outputs that are inputs
// ---------------------------------------------------------------------------------------------

fn output_safety(fx: &Fixtures, base: &Base) -> Vec<Case> {
    let mut cases = Vec::new();
    let v = base.visible.as_path();
    let t = base.thermal.as_path();

    // eval: earlier reports, and reports or extracted features written over the inputs.
    let d = fx.case_dir("cli-eval-out-has-summary");
    let summary = write(&d.join("out/summary.json"), "{\"earlier\": true}\n");
    cases.push(
        Case::new(
            "cli-eval-out-has-summary",
            1,
            "--overwrite",
            eval_features("sysu", &fx.sysu, &base.features, &d.join("out"), &[]),
        )
        .keeps(&summary),
    );
    let d = fx.case_dir("cli-eval-checkpoint-and-features");
    let features = copy(&base.features, &d.join("out/features-1.safetensors"));
    let mut args = eval_checkpoint(fx, &fx.weights, &d.join("out"), &["--overwrite"]);
    args.extend(strings(&["--features", &arg(&features)]));
    cases.push(Case::new("cli-eval-checkpoint-and-features", 2, "cannot be used with", args).keeps(&features));
    let d = fx.case_dir("cli-eval-features-out-is-checkpoint");
    let weights = copy(&fx.weights, &d.join("out/features-1.safetensors"));
    cases.push(
        Case::new(
            "cli-eval-features-out-is-checkpoint",
            1,
            "may not be an input",
            eval_checkpoint(fx, &weights, &d.join("out"), &["--overwrite"]),
        )
        .keeps(&weights),
    );
    let d = fx.case_dir("cli-eval-summary-is-features");
    let features = copy(&base.features, &d.join("out/summary.json"));
    cases.push(
        Case::new(
            "cli-eval-summary-is-features",
            1,
            "may not be an input",
            eval_features("sysu", &fx.sysu, &features, &d.join("out"), &["--overwrite"]),
        )
        .keeps(&features),
    );

    // viz: figures over existing files and over their own inputs.
    let d = fx.case_dir("cli-viz-curves-out-is-log");
    let log = write(&d.join("log.jsonl"), "{\"epoch\": 1, \"loss\": {\"id\": 1.0}}\n");
    cases.push(
        Case::new(
            "cli-viz-curves-out-is-log",
            1,
            "may not be an input",
            strings(&["viz", "curves", &arg(&log), "--out", &arg(&log), "--overwrite"]),
        )
        .keeps(&log),
    );
    let d = fx.case_dir("cli-viz-retrieval-png-exists");
    let png = write(&d.join("grid.png"), "an earlier figure\n");
    cases.push(
        Case::new(
            "cli-viz-retrieval-png-exists",
            1,
            "--overwrite",
            retrieval(fx, &base.features, &png, &[]),
        )
        .keeps(&png),
    );
    let d = fx.case_dir("cli-viz-retrieval-json-is-features");
    let features = copy(&base.features, &d.join("grid.json"));
    cases.push(
        Case::new(
            "cli-viz-retrieval-json-is-features",
            1,
            "may not be an input",
            retrieval(fx, &features, &d.join("grid.png"), &["--overwrite"]),
        )
        .keeps(&features),
    );
    let d = fx.case_dir("cli-viz-coattention-out-is-image");
    let visible = copy(&base.visible, &d.join("visible.jpg"));
    let thermal = copy(&base.thermal, &d.join("thermal.jpg"));
    let pair = ([visible.as_path()], [thermal.as_path()]);
    cases.push(
        Case::new(
            "cli-viz-coattention-out-is-image",
            1,
            "may not be an input",
            alignment("coattention", &fx.weights, &pair.0, &pair.1, &visible, &["--overwrite"]),
        )
        .keeps(&visible),
    );
    // The JSON beside the figure would be the infrared image (a JPEG named `.json`).
    let d = fx.case_dir("cli-viz-correspondence-json-is-image");
    let thermal = copy(&base.thermal, &d.join("fig.json"));
    cases.push(
        Case::new(
            "cli-viz-correspondence-json-is-image",
            1,
            "may not be an input",
            alignment(
                "correspondence",
                &fx.weights,
                &[v],
                &[thermal.as_path()],
                &d.join("fig.png"),
                &["--overwrite"],
            ),
        )
        .keeps(&thermal),
    );
    // A figure named `.json` is its own JSON: one of the two outputs would replace the other.
    let d = fx.case_dir("cli-viz-correspondence-out-is-json");
    cases.push(Case::new(
        "cli-viz-correspondence-out-is-json",
        1,
        "--out",
        alignment("correspondence", &fx.weights, &[v], &[t], &d.join("fig.json"), &[]),
    ));

    // index export and export: earlier exports and the site file itself.
    let d = fx.case_dir("cli-index-export-exists");
    let identities = write(&d.join("export/identities.jsonl"), "{\"id\": 1}\n");
    cases.push(
        Case::new(
            "cli-index-export-exists",
            1,
            "--overwrite",
            strings(&["index", "export", &arg(&base.index), "--out", &arg(&d.join("export"))]),
        )
        .keeps(&identities),
    );
    let (d, site_file) = site(fx, "cli-export-manifest-exists");
    let manifest = write(&d.join("export/reid-embedder.toml"), "# an earlier export\n");
    cases.push(
        Case::new(
            "cli-export-manifest-exists",
            1,
            "--overwrite",
            strings(&["export", &arg(&site_file), "--out", &arg(&d.join("export"))]),
        )
        .keeps(&manifest),
    );
    let (d, site_file) = site(fx, "cli-export-manifest-is-site");
    cases.push(
        Case::new(
            "cli-export-manifest-is-site",
            1,
            "may not be an input",
            strings(&[
                "export",
                &arg(&site_file),
                "--out",
                &arg(&d),
                "--name",
                "site",
                "--overwrite",
            ]),
        )
        .keeps(&site_file),
    );

    // import: OUTPUT is INPUT (also by another spelling), or exists.
    let d = fx.case_dir("cli-import-output-is-input");
    let input = copy(&fx.weights, &d.join("model.safetensors"));
    cases.push(
        Case::new(
            "cli-import-output-is-input",
            1,
            "may not be an input",
            strings(&["import", &arg(&input), &arg(&input), "--force"]),
        )
        .keeps(&input),
    );
    let d = fx.case_dir("cli-import-output-is-input-roundabout");
    let input = copy(&fx.weights, &d.join("model.safetensors"));
    cases.push(
        Case::new(
            "cli-import-output-is-input-roundabout",
            1,
            "may not be an input",
            strings(&[
                "import",
                &arg(&input),
                &arg(&d.join("new/../model.safetensors")),
                "--force",
            ]),
        )
        .keeps(&input),
    );
    let d = fx.case_dir("cli-import-output-exists");
    let existing = write(&d.join("out.safetensors"), "an earlier import\n");
    cases.push(
        Case::new(
            "cli-import-output-exists",
            1,
            "--force",
            strings(&["import", &arg(&fx.weights), &arg(&existing)]),
        )
        .keeps(&existing),
    );

    // synth and train: folders holding something already.
    let d = fx.case_dir("cli-synth-out-not-empty");
    let notes = write(&d.join("set/notes.txt"), "keep me\n");
    cases.push(
        Case::new(
            "cli-synth-out-not-empty",
            1,
            "is not empty",
            strings(&[
                "synth",
                "--format",
                "regdb",
                "--identities",
                "4",
                "--out",
                &arg(&d.join("set")),
            ]),
        )
        .keeps(&notes),
    );
    let d = fx.case_dir("cli-train-earlier-log");
    let log = write(&d.join("run/log.jsonl"), "{\"epoch\": 1}\n");
    let train = write(&d.join("train.toml"), train_text(&d.join("run"), &fx.sysu, ""));
    cases.push(
        Case::new(
            "cli-train-earlier-log",
            1,
            "--resume",
            strings(&["train", &arg(&train)]),
        )
        .keeps(&log),
    );
    cases
}
