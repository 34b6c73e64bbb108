//! Evaluation protocols on generated data in the datasets' exact layouts, checked against the
//! published Python code run by the installed Python, and the `eval` command end to end.

mod common;

use common::{bin, ok};
use reid_pipe::data::Item;
use reid_pipe::eval::protocols::{self, Exclusion, RegdbDirection, Shots, SysuMode};
use reid_pipe::eval::{FeatureBank, evaluate};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tch::Tensor;

/// A SYSU-MM01 tree: 12 test ids (some missing from some cameras), 2..=14 images per folder.
fn make_sysu(root: &Path) -> Vec<i64> {
    let ids: Vec<i64> = vec![3, 7, 11, 12, 20, 31, 44, 45, 52, 60, 77, 90];
    for (n, &pid) in ids.iter().enumerate() {
        for cam in 1..=6 {
            if (n + cam) % 5 == 0 {
                continue; // this id is not seen by this camera
            }
            let dir = root.join(format!("cam{cam}/{pid:04}"));
            std::fs::create_dir_all(&dir).expect("mkdir");
            for k in 0..(2 + (n * 7 + cam * 3) % 13) {
                std::fs::write(dir.join(format!("{:04}.jpg", k * 3 + 1)), b"").expect("touch");
            }
        }
    }
    // Training ids exist too and must not leak into the test protocol.
    std::fs::create_dir_all(root.join("cam1/0001")).expect("mkdir");
    std::fs::write(root.join("cam1/0001/0001.jpg"), b"").expect("touch");
    std::fs::create_dir_all(root.join("exp")).expect("mkdir");
    // Unsorted on purpose: the protocol iterates ids in sorted order.
    let mut listed = ids.clone();
    listed.reverse();
    let line: Vec<String> = listed.iter().map(i64::to_string).collect();
    std::fs::write(
        root.join("exp/test_id.txt"),
        format!("{}\nsecond line ignored\n", line.join(",")),
    )
    .expect("ids");
    ids
}

/// The published gallery code (Mang Ye's `process_gallery_sysu`, as LbA uses it), run by Python.
const PY_GALLERY: &str = r#"
import os, random, sys, json
data_path, mode, shots = sys.argv[1], sys.argv[2], sys.argv[3]
rgb_cameras = ['cam1', 'cam2', 'cam4', 'cam5'] if mode == 'all' else ['cam1', 'cam2']
with open(os.path.join(data_path, 'exp/test_id.txt')) as f:
    ids = ["%04d" % int(y) for y in f.read().splitlines()[0].split(',')]
out = []
for trial in range(10):
    random.seed(trial)
    files = []
    for id in sorted(ids):
        for cam in rgb_cameras:
            img_dir = os.path.join(data_path, cam, id)
            if os.path.isdir(img_dir):
                new_files = sorted([cam + '/' + id + '/' + i for i in os.listdir(img_dir)])
                if shots == 'single':
                    files.append(random.choice(new_files))
                else:
                    files.extend(random.sample(new_files, min(10, len(new_files))))
    out.append(files)
print(json.dumps(out))
"#;

fn python_galleries(root: &Path, mode: &str, shots: &str) -> Vec<Vec<String>> {
    let out = common::python()
        .args(["-c", PY_GALLERY, root.to_str().expect("utf-8"), mode, shots])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn sysu_galleries_are_exactly_the_published_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_sysu(dir.path());
    let trials: Vec<u64> = (0..10).collect();
    for (mode, mode_name) in [(SysuMode::All, "all"), (SysuMode::Indoor, "indoor")] {
        for (shots, shots_name) in [(Shots::Single, "single"), (Shots::Multi, "multi")] {
            let p = protocols::sysu(dir.path(), mode, shots, &trials).expect("protocol");
            let ours: Vec<Vec<String>> = p
                .trials
                .iter()
                .map(|t| t.gallery.iter().map(|i| i.path.clone()).collect())
                .collect();
            assert_eq!(
                ours,
                python_galleries(dir.path(), mode_name, shots_name),
                "{mode_name} {shots_name}"
            );
        }
    }
}

#[test]
fn sysu_protocol_structure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ids = make_sysu(dir.path());
    let all = protocols::sysu(dir.path(), SysuMode::All, Shots::Single, &[0, 1, 0]).expect("protocol");
    assert_eq!(all.exclusion, Exclusion::SysuCam3Cam2);
    let t0 = &all.trials[0];
    // Queries: every infrared image of the test ids, cam3 before cam6 for each id.
    assert!(t0.query.iter().all(|i| i.cam == 3 || i.cam == 6));
    assert!(t0.query.iter().all(|i| ids.contains(&i.pid)));
    let expected_queries: usize = ids
        .iter()
        .flat_map(|p| [3, 6].map(|c| dir.path().join(format!("cam{c}/{p:04}"))))
        .filter_map(|d| std::fs::read_dir(d).ok())
        .map(|d| d.count())
        .sum();
    assert_eq!(t0.query.len(), expected_queries);
    // Single shot: exactly one image per identity per visible camera that saw it.
    let mut seen = BTreeSet::new();
    for g in &t0.gallery {
        assert!([1, 2, 4, 5].contains(&g.cam));
        assert!(seen.insert((g.pid, g.cam)), "two images of {} in cam{}", g.pid, g.cam);
        assert!(dir.path().join(&g.path).is_file());
    }
    let folders = ids
        .iter()
        .flat_map(|p| [1, 2, 4, 5].map(|c| (p, c)))
        .filter(|(p, c)| dir.path().join(format!("cam{c}/{p:04}")).is_dir())
        .count();
    assert_eq!(seen.len(), folders);
    // The same seed draws the same gallery; another seed a different one.
    assert_eq!(all.trials[0].gallery, all.trials[2].gallery);
    assert_ne!(all.trials[0].gallery, all.trials[1].gallery);
    let indoor = protocols::sysu(dir.path(), SysuMode::Indoor, Shots::Single, &[0]).expect("protocol");
    assert!(indoor.trials[0].gallery.iter().all(|g| g.cam == 1 || g.cam == 2));
    assert!(!indoor.trials[0].gallery.is_empty());
}

fn make_regdb(root: &Path) {
    std::fs::create_dir_all(root.join("idx")).expect("mkdir");
    for t in 1..=10 {
        for (split, offset) in [("train", 0), ("test", 100)] {
            for (spec, folder, letter) in [("visible", "Visible", 'v'), ("thermal", "Thermal", 't')] {
                let mut text = String::new();
                for label in 0..3 {
                    let id = offset + t * 10 + label;
                    for k in 0..2 {
                        text.push_str(&format!(
                            "{folder}/{id}/female_front_{letter}_{id:05}_{k}.bmp {label}\n"
                        ));
                    }
                }
                std::fs::write(root.join(format!("idx/{split}_{spec}_{t}.txt")), text).expect("idx");
            }
        }
    }
}

#[test]
fn regdb_trials_select_the_test_halves_in_both_directions() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_regdb(dir.path());
    let v2t = protocols::regdb(dir.path(), RegdbDirection::VisibleToThermal, &[4]).expect("protocol");
    let t = &v2t.trials[0];
    assert_eq!(t.query.len(), 6);
    assert!(
        t.query.iter().all(|i| i.path.starts_with("Visible/14") && i.cam == 1),
        "{:?}",
        t.query
    );
    assert!(t.gallery.iter().all(|i| i.path.starts_with("Thermal/14") && i.cam == 2));
    assert_eq!(v2t.exclusion, Exclusion::None);
    let t2v = protocols::regdb(dir.path(), RegdbDirection::ThermalToVisible, &[4]).expect("protocol");
    assert_eq!(t2v.trials[0].query, t.gallery);
    assert_eq!(t2v.trials[0].gallery, t.query);
    let e = protocols::regdb(dir.path(), RegdbDirection::VisibleToThermal, &[11]).expect_err("no trial 11");
    assert!(e.to_string().contains("test_visible_11.txt"), "{e}");
}

/// Features: one random direction per identity, plus noise; optionally a wrong one.
fn bank_for(items: &[Item], noise: f64, seed: i64) -> FeatureBank {
    tch::manual_seed(seed);
    let ids: BTreeSet<i64> = items.iter().map(|i| i.pid).collect();
    let centres: BTreeMap<i64, Tensor> = ids
        .into_iter()
        .map(|p| (p, Tensor::randn([64], tch::kind::FLOAT_CPU)))
        .collect();
    let rows: Vec<Tensor> = items
        .iter()
        .map(|i| &centres[&i.pid] + Tensor::randn([64], tch::kind::FLOAT_CPU) * noise)
        .collect();
    FeatureBank::new(
        "generated".into(),
        Tensor::stack(&rows, 0),
        items.iter().map(|i| i.path.clone()).collect(),
    )
    .expect("bank")
}

#[test]
fn well_separated_features_score_perfectly_and_cam3_only_matches_are_invalid() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_sysu(dir.path());
    let p = protocols::sysu(dir.path(), SysuMode::All, Shots::Single, &[0, 1]).expect("protocol");
    let mut items: Vec<Item> = p
        .trials
        .iter()
        .flat_map(|t| t.query.iter().chain(&t.gallery).cloned())
        .collect();
    items.sort();
    items.dedup();
    let bank = bank_for(&items, 0.05, 1);
    let results = evaluate(&p, &bank, 7).expect("evaluate");
    for r in &results {
        assert!((r.metrics.rank(1) - 1.0).abs() < 1e-12, "{:?}", r.metrics);
        assert!((r.metrics.map - 1.0).abs() < 1e-12);
        // A cam3 query whose identity is in the gallery only through cam2 has no valid match.
        let trial = p.trials.iter().find(|t| t.name == r.name).expect("trial");
        let invalid = trial
            .query
            .iter()
            .filter(|q| {
                !trial
                    .gallery
                    .iter()
                    .any(|g| g.pid == q.pid && Exclusion::SysuCam3Cam2.keeps(q, g))
            })
            .count();
        assert_eq!(r.metrics.invalid_queries, invalid);
        assert_eq!(r.metrics.valid_queries + invalid, trial.query.len());
    }
    // Noise swamping the identity signal brings rank-1 down to chance level.
    let noisy = evaluate(&p, &bank_for(&items, 50.0, 2), 64).expect("evaluate");
    assert!(noisy[0].metrics.rank(1) < 0.6, "{:?}", noisy[0].metrics);
}

#[test]
fn eval_command_writes_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("SYSU-MM01");
    make_sysu(&root);
    let p = protocols::sysu(&root, SysuMode::All, Shots::Single, &(0..10).collect::<Vec<_>>()).expect("protocol");
    let mut items: Vec<Item> = p
        .trials
        .iter()
        .flat_map(|t| t.query.iter().chain(&t.gallery).cloned())
        .collect();
    items.sort();
    items.dedup();
    // Two runs: a good model and a poor one.
    let feats = [dir.path().join("run1.safetensors"), dir.path().join("run2.safetensors")];
    bank_for(&items, 0.3, 3).save(&feats[0]).expect("save");
    bank_for(&items, 3.0, 4).save(&feats[1]).expect("save");
    let out = dir.path().join("report");
    let o = bin()
        .args(["eval", "--dataset", "sysu", "--root"])
        .arg(&root)
        .arg("--features")
        .arg(&feats[0])
        .arg("--features")
        .arg(&feats[1])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        text.contains("run 1 (10 trials)") && text.contains("mean over 2 runs"),
        "{text}"
    );
    assert!(text.contains(" ± "), "{text}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("json")).expect("json");
    assert_eq!(summary["protocol"], "SYSU-MM01 all-search single-shot");
    assert_eq!(summary["runs"].as_array().map(Vec::len), Some(2));
    let r1 = summary["runs"][0]["summary"]["rank1"]["mean"].as_f64().expect("rank1");
    let r2 = summary["runs"][1]["summary"]["rank1"]["mean"].as_f64().expect("rank1");
    assert!(r1 > r2, "the better features rank better: {r1} vs {r2}");
    let csv = std::fs::read_to_string(out.join("per_query.csv")).expect("csv");
    assert_eq!(csv.lines().count(), 1 + 2 * 10 * p.trials[0].query.len());
    assert!(out.join("cmc.png").is_file());
}

/// Writes a real JPEG (a flat colour per identity, brighter in infrared cameras).
fn write_image(path: &Path, pid: i64, cam: i64) {
    use opencv::core::{Mat, Scalar, Vector};
    let v = |k: i64| ((pid * 53 + k * 97 + if cam == 3 || cam == 6 { 60 } else { 0 }) % 256) as f64;
    let img = Mat::new_rows_cols_with_default(48, 24, opencv::core::CV_8UC3, Scalar::new(v(0), v(1), v(2), 0.0))
        .expect("mat");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    assert!(opencv::imgcodecs::imwrite(path.to_str().expect("utf-8"), &img, &Vector::new()).expect("imwrite"));
}

#[test]
fn eval_with_a_checkpoint_extracts_saves_and_scores() {
    use reid_pipe::base::Backbone;
    use reid_pipe::model::{LbaNet, ModelSpec, weights};
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("SYSU-MM01");
    for pid in [2i64, 5, 9] {
        for cam in 1..=6 {
            for k in 1..=2 {
                write_image(&root.join(format!("cam{cam}/{pid:04}/{k:04}.jpg")), pid, cam);
            }
        }
    }
    std::fs::create_dir_all(root.join("exp")).expect("mkdir");
    std::fs::write(root.join("exp/test_id.txt"), "2,5,9\n").expect("ids");
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let net = LbaNet::new(&vs.root(), ModelSpec::new(Backbone::Tinyresnet, 0, (64, 32)));
    let w = dir.path().join("tiny.safetensors");
    weights::save(&vs, &net.spec, &Default::default(), &w).expect("save");
    let out = dir.path().join("report");
    let run = |root: &Path| {
        bin()
            .args([
                "eval",
                "--dataset",
                "sysu",
                "--trials",
                "0-1",
                "--device",
                "cpu",
                "--root",
            ])
            .arg(root)
            .arg("--checkpoint")
            .arg(&w)
            .arg("--out")
            .arg(&out)
            .arg("--overwrite")
            .output()
            .expect("runs")
    };
    let o = run(&root);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("SYSU-MM01 all-search single-shot (2 trials)"));
    let bank = FeatureBank::load(&out.join("features-1.safetensors")).expect("saved features");
    // 3 ids × (2 IR cameras × 2 images) queries + the gallery images the two trials drew.
    assert_eq!(bank.features.size()[1], 256);
    assert!(bank.features.size()[0] >= 12 + 12 && bank.features.size()[0] <= 12 + 24);
    // A missing image is named.
    std::fs::remove_file(root.join("cam3/0005/0002.jpg")).expect("rm");
    std::fs::write(root.join("cam3/0005/0002.png"), b"not an image").expect("write");
    let o = run(&root);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cam3/0005/0002.png") && err.contains("not a readable image"),
        "{err}"
    );
}

#[test]
fn regdb_checkpoints_are_scored_on_the_trial_they_trained_on() {
    use reid_pipe::base::Backbone;
    use reid_pipe::model::weights::{self, Provenance};
    use reid_pipe::model::{LbaNet, ModelSpec};
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("RegDB");
    ok(bin()
        .args(["synth", "--format", "regdb", "--identities", "6", "--out"])
        .arg(&root)
        .output()
        .expect("synth"));
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let net = LbaNet::new(&vs.root(), ModelSpec::new(Backbone::Tinyresnet, 0, (64, 32)));
    let model = |trial: Option<u32>, name: &str| {
        let path = dir.path().join(name);
        let provenance = Provenance {
            dataset: trial.map(|_| "regdb".to_owned()),
            trial,
            ..Provenance::default()
        };
        weights::save(&vs, &net.spec, &provenance, &path).expect("save");
        path
    };
    let (two, five, plain) = (
        model(Some(2), "t2.safetensors"),
        model(Some(5), "t5.safetensors"),
        model(None, "x.safetensors"),
    );
    let eval = |checkpoints: &[&Path], extra: &[&str]| {
        let mut cmd = bin();
        cmd.args(["eval", "--dataset", "regdb", "--device", "cpu", "--root"])
            .arg(&root)
            .arg("--out")
            .arg(dir.path().join("report"))
            .arg("--overwrite")
            .args(extra);
        for c in checkpoints {
            cmd.arg("--checkpoint").arg(c);
        }
        ok(cmd.output().expect("eval"))
    };
    // One model per trial (the paper's protocol): each run on its own trial, then the mean.
    let text = eval(&[&two, &five], &[]);
    assert!(
        text.contains("run 1 (trial 2)") && text.contains("run 2 (trial 5)") && text.contains("mean over 2 runs"),
        "{text}"
    );
    assert!(!text.contains("WARN"), "{text}");
    // Asked for other trials: scored, with a warning naming them.
    let text = eval(&[&two], &["--trials", "1-3"]);
    assert!(text.contains("(3 trials)"), "{text}");
    assert!(
        text.contains("trained on RegDB trial 2") && text.contains("trial(s) 1, 3"),
        "{text}"
    );
    // A model that does not say: every trial, as before.
    let text = eval(&[&plain], &[]);
    assert!(text.contains("(10 trials)"), "{text}");
    // `import --trial` records it.
    let imported = dir.path().join("imported.safetensors");
    ok(bin()
        .arg("import")
        .arg(&plain)
        .arg(&imported)
        .args(["--trial", "7"])
        .output()
        .expect("import"));
    let text = eval(&[&imported], &[]);
    assert!(text.contains("(trial 7)"), "{text}");
    let summary = std::fs::read_to_string(dir.path().join("report/summary.json")).expect("summary");
    assert!(summary.contains("\"trial 7\""), "{summary}");
}

#[test]
fn garbage_features_are_refused_naming_the_file_and_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("SYSU-MM01");
    make_sysu(&root);
    let p = protocols::sysu(&root, SysuMode::All, Shots::Single, &[0]).expect("protocol");
    let mut items: Vec<Item> = p.trials[0].query.iter().chain(&p.trials[0].gallery).cloned().collect();
    items.sort();
    items.dedup();
    let good = bank_for(&items, 0.3, 3).features;
    let paths: Vec<String> = items.iter().map(|i| i.path.clone()).collect();
    let write = |name: &str, features: Tensor| {
        let path = dir.path().join(name);
        let meta = BTreeMap::from([("paths".to_owned(), serde_json::to_string(&paths).expect("json"))]);
        reid_pipe::safetensors::write(&path, &[("features", &features)], &meta).expect("write");
        path
    };
    let n = paths.len() as i64;
    let nan = good.copy();
    let _ = nan.get(5).fill_(f64::NAN);
    let zero = good.copy();
    let _ = zero.get(7).fill_(0.0);
    for (file, features, wants) in [
        ("nan.safetensors", nan, format!("row 5 ({})", paths[5])),
        (
            "all-nan.safetensors",
            Tensor::full([n, 8], f64::NAN, tch::kind::FLOAT_CPU),
            "row 0".to_owned(),
        ),
        ("zero.safetensors", zero, format!("row 7 ({}) is all zeros", paths[7])),
        (
            "all-zero.safetensors",
            Tensor::zeros([n, 8], tch::kind::FLOAT_CPU),
            "all zeros".to_owned(),
        ),
        (
            "empty.safetensors",
            Tensor::zeros([n, 0], tch::kind::FLOAT_CPU),
            "dimension 0".to_owned(),
        ),
    ] {
        let path = write(file, features);
        let o = bin()
            .args(["eval", "--dataset", "sysu", "--trials", "0", "--root"])
            .arg(&root)
            .arg("--features")
            .arg(&path)
            .arg("--out")
            .arg(dir.path().join("report"))
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{file}: {err}");
        assert!(
            err.contains(file) && err.contains(&wants),
            "{file}: expected {wants:?} in {err}"
        );
        assert!(
            !dir.path().join("report/summary.json").exists(),
            "{file}: a report was written"
        );
    }
}
