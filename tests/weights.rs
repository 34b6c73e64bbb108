//! Every weight file a user brings, through the command line only: official LbA checkpoints
//! (`torch.save`, state dict under `net`), DataParallel checkpoints in the legacy format,
//! torchvision ResNet-50 state dicts and reid-pipe files, imported or used directly, give the
//! features torch computes with the same weights (`tests/reference/weights_refs.py`).

mod common;

use common::{bin, clip, fails, ok, reference, scene_site};
use reid_pipe::safetensors;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Features by image path from a feature file (`features` + metadata `paths`).
fn features(path: &Path) -> HashMap<String, Tensor> {
    let f = safetensors::read(path).unwrap_or_else(|e| panic!("{e}"));
    let paths: Vec<String> = serde_json::from_str(&f.metadata["paths"]).expect("paths");
    let rows = f.get("features").expect("features");
    paths
        .into_iter()
        .enumerate()
        .map(|(i, p)| (p, rows.get(i as i64)))
        .collect()
}

/// Asserts that every feature in `ours` is within 1e-5 cosine distance of torch's.
fn assert_same_features(ours: &Path, torch: &Path) {
    let (ours, torch) = (features(ours), features(torch));
    assert!(ours.len() >= 10, "{} features", ours.len());
    let mut worst = 0.0f64;
    for (path, f) in &ours {
        let want = torch
            .get(path)
            .unwrap_or_else(|| panic!("torch has no feature of {path}"));
        let d = 1.0 - f.dot(want).double_value(&[]);
        worst = worst.max(d);
    }
    assert!(worst <= 1e-5, "cosine distance up to {worst:e} from torch's features");
    eprintln!(
        "{} features, cosine distance to torch's at most {worst:.1e}",
        ours.len()
    );
}

fn eval(root: &Path, out: &Path, checkpoints: &[PathBuf]) -> String {
    let mut cmd = bin();
    cmd.args([
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
    .arg("--out")
    .arg(out);
    for c in checkpoints {
        cmd.arg("--checkpoint").arg(c);
    }
    ok(cmd.output().expect("eval runs"))
}

fn import(input: &Path, output: &Path, extra: &[&str]) -> String {
    ok(bin()
        .arg("import")
        .arg(input)
        .arg(output)
        .args(extra)
        .output()
        .expect("import runs"))
}

#[test]
fn official_torchvision_and_reid_pipe_weights_give_torchs_features() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("SYSU");
    let refs = dir.path().join("refs");
    std::fs::create_dir_all(&refs).expect("mkdir");
    ok(bin()
        .args(["synth", "--format", "sysu", "--identities", "6", "--out"])
        .arg(&root)
        .output()
        .expect("synth"));
    reference("weights_refs.py", [Path::new("resnet"), &root, &refs]);

    // The official checkpoint: imported, and used as it is.
    let official = refs.join("sysu_pretrained.t");
    let lba = dir.path().join("lba.safetensors");
    let said = import(&official, &lba, &["--classes", "395"]);
    assert!(said.contains("Resnet50") && said.contains("395 identities"), "{said}");
    // Without --force an existing output is refused and left alone.
    let before = std::fs::read(&lba).expect("lba");
    let e = fails(bin().arg("import").arg(&official).arg(&lba).output().expect("runs"));
    assert!(e.contains("exists") && e.contains("--force"), "{e}");
    assert_eq!(std::fs::read(&lba).expect("lba"), before);
    // --classes guards against the wrong checkpoint.
    let e = fails(
        bin()
            .arg("import")
            .arg(&official)
            .arg(dir.path().join("x.safetensors"))
            .args(["--classes", "206"])
            .output()
            .expect("runs"),
    );
    assert!(e.contains("395") && e.contains("206"), "{e}");
    let out = dir.path().join("eval-official");
    eval(&root, &out, &[lba.clone(), official.clone()]);
    assert_same_features(
        &out.join("features-1.safetensors"),
        &refs.join("official_features.safetensors"),
    );
    assert_same_features(
        &out.join("features-2.safetensors"),
        &refs.join("official_features.safetensors"),
    );

    // torchvision's ResNet-50 as it is, and a DataParallel checkpoint of it in the legacy format.
    let dp = dir.path().join("imagenet.safetensors");
    let said = import(&refs.join("dataparallel.pth"), &dp, &[]);
    assert!(said.contains("no classifier"), "{said}");
    let out = dir.path().join("eval-torchvision");
    eval(&root, &out, &[refs.join("resnet50.pth"), dp]);
    let torchvision = refs.join("torchvision_features.safetensors");
    assert_same_features(&out.join("features-1.safetensors"), &torchvision);
    assert_same_features(&out.join("features-2.safetensors"), &torchvision);

    // The official file as a site's model, no flags.
    let clip = clip(dir.path(), 2, 0);
    let site = scene_site(
        dir.path(),
        &clip,
        None,
        &format!("weights = \"{}\"", official.display()),
        &format!("[outputs]\nevents = \"{}/events.jsonl\"", dir.path().display()),
    );
    let said = ok(bin()
        .arg("run")
        .arg(&site)
        .args(["--max-frames", "30"])
        .output()
        .expect("run"));
    assert!(said.contains("crops embedded"), "{said}");
    let events = std::fs::read_to_string(dir.path().join("events.jsonl")).expect("events");
    assert!(
        events.lines().any(|l| l.contains("\"new\"")),
        "no identity events:\n{said}"
    );
}

#[test]
fn bad_weight_files_are_named_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    reference("weights_refs.py", [Path::new("bad"), dir.path()]);
    // A reid-pipe file with one tensor of the wrong shape.
    let good = dir.path().join("tiny.safetensors");
    {
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let spec = reid_pipe::model::ModelSpec::new(reid_pipe::base::Backbone::Tinyresnet, 5, (64, 32));
        let _net = reid_pipe::model::LbaNet::new(&vs.root(), spec.clone());
        reid_pipe::model::weights::save(&vs, &spec, &Default::default(), &good).expect("save");
    }
    let file = safetensors::read(&good).expect("read");
    let bad_name = "base_resnet.base.layer2.0.conv2.weight";
    let wrong = Tensor::zeros([3, 3], tch::kind::FLOAT_CPU);
    let tensors: Vec<(&str, &Tensor)> = file
        .tensors
        .iter()
        .map(|(n, t)| (n.as_str(), if n == bad_name { &wrong } else { t }))
        .collect();
    let misshaped = dir.path().join("misshaped.safetensors");
    safetensors::write(&misshaped, &tensors, &file.metadata).expect("write");
    std::fs::write(dir.path().join("noise.bin"), [7u8; 4000]).expect("noise");

    for (name, wants) in [
        ("truncated.t", vec!["truncated.t", "not a readable torch.save file"]),
        ("list.pt", vec!["list.pt", "dictionary"]),
        ("notes.pt", vec!["notes.pt", "holds no tensors"]),
        ("resnet18.pth", vec!["resnet18.pth", "basic blocks"]),
        (
            "encoder.pth",
            vec!["encoder.pth", "not a known weight layout", "encoder.*", "conv1.weight"],
        ),
        (
            "misshaped.safetensors",
            vec!["misshaped.safetensors", bad_name, "[3, 3]"],
        ),
        ("noise.bin", vec!["noise.bin", "neither a torch.save file"]),
    ] {
        let path = dir.path().join(name);
        let e = fails(
            bin()
                .arg("import")
                .arg(&path)
                .arg(dir.path().join("out.safetensors"))
                .output()
                .expect("runs"),
        );
        for w in &wants {
            assert!(e.contains(w), "{name}: expected {w:?} in: {e}");
        }
        assert!(!dir.path().join("out.safetensors").exists(), "{name}: wrote an output");
        // The same file where eval takes weights fails the same way.
        let e = fails(
            bin()
                .args(["eval", "--dataset", "sysu", "--root"])
                .arg(dir.path())
                .arg("--checkpoint")
                .arg(&path)
                .arg("--out")
                .arg(dir.path().join("eval"))
                .output()
                .expect("runs"),
        );
        for w in &wants {
            assert!(e.contains(w), "{name}: eval: expected {w:?} in: {e}");
        }
    }
}
