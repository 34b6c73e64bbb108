//! The built binary: help texts, `check`, `doctor` and `run` on generated sources.

mod common;

use common::{bin, text};
use std::path::Path;
use std::process::Output;

/// The binary with `args`, run from the repository root.
fn reid(args: &[&str]) -> Output {
    bin()
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

#[test]
fn every_subcommand_has_help() {
    for (sub, fragment) in [
        ("run", "Site configuration"),
        ("train", "Training configuration"),
        ("eval", "--features <FEATURES>"),
        ("doctor", "Exits non-zero"),
        ("check", "site or training"),
        ("import", "sysu_pretrained.t"),
    ] {
        let o = reid(&[sub, "--help"]);
        assert!(o.status.success(), "{sub}: {}", text(&o));
        assert!(
            text(&o).contains(fragment),
            "{sub} --help lacks {fragment:?}: {}",
            text(&o)
        );
    }
}

#[test]
fn check_reports_a_located_error_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "output_dir = \"x\"\n[dataset]\nkind = \"sysu\"\nroot = 3\n[model]\nbackbone = \"resnet50\"\n",
    )
    .expect("write");
    let o = reid(&["check", bad.to_str().expect("utf-8 path")]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("bad.toml:4:8: key `dataset.root`"), "{t}");
}

#[test]
fn check_accepts_the_shipped_files() {
    let o = reid(&["check", "config/site.toml"]);
    assert!(o.status.success() && text(&o).contains("valid"), "{}", text(&o));
    // The paper's recipes read datasets users supply: the files parse, and `check` names the
    // missing dataset rather than calling a run that cannot start valid.
    for f in ["config/train-sysu.toml", "config/train-regdb.toml"] {
        let o = reid(&["check", f]);
        assert!(
            o.status.code() == Some(1) && text(&o).contains("dataset.root: /data/") && !text(&o).contains("key `"),
            "{f}: {}",
            text(&o)
        );
    }
    // With its dataset generated, the quick recipe is valid.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data/synth-sysu");
    let o = reid(&[
        "synth",
        "--format",
        "sysu",
        "--identities",
        "12",
        "--out",
        data.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let config = dir.path().join("config/train-synth.toml");
    std::fs::create_dir_all(dir.path().join("config")).expect("mkdir");
    std::fs::copy("config/train-synth.toml", &config).expect("copy");
    let o = reid(&["check", config.to_str().expect("utf-8")]);
    assert!(o.status.success() && text(&o).contains("valid"), "{}", text(&o));
}

#[test]
fn doctor_fails_when_an_element_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let template = dir.path().join("t.pipeline");
    std::fs::write(&template, "videotestsrc num-buffers=3 ! nosuchelement ! ${output}\n").expect("write");
    let site = dir.path().join("site.toml");
    let weights = dir.path().join("w.safetensors");
    std::fs::write(&weights, b"").expect("write");
    std::fs::write(
        &site,
        format!(
            "[[cameras]]\nname = \"a\"\n[cameras.visible]\nkind = \"test\"\n[cameras.thermal]\nkind = \"template\"\ntemplate = \"{}\"\n\
             [detector]\nkind = \"hog\"\n[model]\nbackbone = \"tinyresnet\"\nweights = \"w.safetensors\"\n",
            template.display()
        ),
    )
    .expect("write");
    let o = reid(&["doctor", "--site", site.to_str().expect("utf-8 path")]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("MISSING  element nosuchelement"), "{t}");
    assert!(t.contains("element videotestsrc") && t.contains("libtorch"), "{t}");
    // A site file named on the command line that is not there fails the check, naming it.
    let o = reid(&["doctor", "--site", "/nonexistent/typo.toml"]);
    let t = text(&o);
    assert!(!o.status.success() && t.contains("/nonexistent/typo.toml"), "{t}");
}

#[test]
fn run_streams_test_sources_and_isolates_a_failing_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = dir.path().join("site.toml");
    let missing = Path::new("/nonexistent/clip.mkv");
    // A tiny untrained network: the run needs a model, the test is about the sources.
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let spec = reid_pipe::model::ModelSpec::new(reid_pipe::base::Backbone::Tinyresnet, 0, (64, 32));
    let net = reid_pipe::model::LbaNet::new(&vs.root(), spec);
    reid_pipe::model::weights::save(&vs, &net.spec, &Default::default(), &dir.path().join("w.safetensors"))
        .expect("weights");
    std::fs::write(
        &site,
        format!(
            "[[cameras]]\nname = \"ok\"\n[cameras.visible]\nkind = \"test\"\nframes = 7\n[cameras.thermal]\nkind = \"test\"\nframes = 7\n\
             width = 64\nheight = 48\nformat = \"gray16\"\n\
             [[cameras]]\nname = \"broken\"\n[cameras.visible]\nkind = \"file\"\npath = \"{}\"\n[cameras.thermal]\nkind = \"test\"\nframes = 3\n\
             [detector]\nkind = \"hog\"\n[model]\nbackbone = \"tinyresnet\"\nweights = \"w.safetensors\"\ninput_size = [64, 32]\n",
            missing.display()
        ),
    )
    .expect("write");
    let o = reid(&["run", site.to_str().expect("utf-8 path")]);
    let t = text(&o);
    assert!(!o.status.success(), "a failed source makes the run fail: {t}");
    let line = |cam: &str, modality: &str| {
        t.lines()
            .find(|l| l.split_whitespace().take(2).eq([cam, modality]))
            .unwrap_or_else(|| panic!("no row for {cam}/{modality}: {t}"))
            .to_owned()
    };
    assert!(
        line("ok", "visible").contains(" 7 ") && line("ok", "visible").contains("640x480"),
        "{t}"
    );
    assert!(
        line("ok", "thermal").contains(" 7 ") && line("ok", "thermal").contains("64x48"),
        "{t}"
    );
    assert!(
        line("broken", "thermal").contains(" 3 "),
        "the other source of a broken pair carries on: {t}"
    );
    assert!(
        t.contains("ok               pairs 7 (tolerance 40 ms), unpaired visible 0, unpaired thermal 0"),
        "{t}"
    );
    let broken = line("broken", "visible");
    assert!(
        broken.contains("camera broken (visible)") && broken.contains("clip.mkv"),
        "{broken}"
    );
}

/// Writes a generated SYSU-MM01 set of 6 identities (4 for training) to `out`.
fn synth_sysu(out: &Path) {
    let o = reid(&[
        "synth",
        "--format",
        "sysu",
        "--identities",
        "6",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

/// A GPU that is not there is an error naming the setting, for every command that takes one
/// (index 99: no machine this runs on has a hundred GPUs).
#[test]
fn a_missing_cuda_device_is_a_named_error_not_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    synth_sysu(&d.join("S"));
    let train = d.join("t.toml");
    std::fs::write(
        &train,
        format!(
            "output_dir = \"{}\"\ndevice = \"cuda:99\"\n[dataset]\nkind = \"sysu\"\nroot = \"{}\"\n[model]\nbackbone = \"tinyresnet\"\n",
            d.join("run").display(),
            d.join("S").display()
        ),
    )
    .expect("write");
    let site = d.join("site.toml");
    std::fs::write(
        &site,
        "[runtime]\ndevice = \"cuda:99\"\n[[cameras]]\nname = \"a\"\n[cameras.visible]\nkind = \"test\"\n\
         [cameras.thermal]\nkind = \"test\"\n[detector]\nkind = \"hog\"\n[model]\nweights = \"x.safetensors\"\n",
    )
    .expect("write");
    let root = d.join("S");
    for (args, key) in [
        (vec!["train", train.to_str().expect("utf-8")], "device = cuda:99"),
        (vec!["run", site.to_str().expect("utf-8")], "runtime.device = cuda:99"),
        (
            vec![
                "eval",
                "--dataset",
                "sysu",
                "--root",
                root.to_str().expect("utf-8"),
                "--features",
                "f.safetensors",
                "--device",
                "cuda:99",
            ],
            "--device = cuda:99",
        ),
    ] {
        let o = reid(&args);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {t}");
        assert!(
            t.contains(key) && t.contains("\"auto\"") && !t.contains("panicked"),
            "{args:?}: {t}"
        );
    }
}

/// Settings `check` accepts but a run cannot honour fail at once with the setting named, and
/// nothing already on disk is replaced.
#[test]
fn impossible_runs_fail_before_writing_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let data = d.join("S");
    synth_sysu(&data);
    // synth never writes into a folder that has something in it.
    let before = std::fs::read(data.join("exp/test_id.txt")).expect("ids");
    let o = reid(&[
        "synth",
        "--format",
        "sysu",
        "--identities",
        "9",
        "--out",
        data.to_str().expect("utf-8"),
    ]);
    assert!(
        o.status.code() == Some(1) && text(&o).contains("is not empty"),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read(data.join("exp/test_id.txt")).expect("ids"), before);
    let train = |name: &str, extra: &str| {
        let path = d.join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "output_dir = \"{}\"\ndevice = \"cpu\"\n[dataset]\nkind = \"sysu\"\nroot = \"{}\"\n\
                 [model]\nbackbone = \"tinyresnet\"\ninput_size = [64, 32]\n{extra}",
                d.join(name).display(),
                data.display()
            ),
        )
        .expect("write");
        reid(&["train", path.to_str().expect("utf-8")])
    };
    // Eight identities per batch from a training set of four.
    let o = train("p", "");
    assert!(
        o.status.code() == Some(1)
            && text(&o).contains("schedule.identities_per_batch: 8, but the training set in")
            && text(&o).contains("has 4 identities"),
        "{}",
        text(&o)
    );
    // Mixed precision on the CPU: refused before any data is read.
    let o = train("amp", "[schedule]\namp = true\n");
    assert!(
        o.status.code() == Some(1) && text(&o).contains("schedule.amp (mixed precision) needs a CUDA device"),
        "{}",
        text(&o)
    );
    // The co-occurring sampler on a set that was not harvested: refused, naming the file.
    let o = train(
        "cooc",
        "[schedule]\nidentities_per_batch = 4\nimages_per_identity = 2\nsampler = \"co-occurring\"\n",
    );
    assert!(
        o.status.code() == Some(1)
            && text(&o).contains("schedule.sampler")
            && text(&o).contains("exp/co_occurring.txt"),
        "{}",
        text(&o)
    );
    // Every loss switched off: nothing to train (a configuration error, so `check` says it too).
    let o = train(
        "zero",
        "[loss]\nid = 0\ntriplet = 0\nid_consistency = 0\ndense_triplet = 0\n",
    );
    assert!(
        o.status.code() == Some(1) && text(&o).contains("key `loss`"),
        "{}",
        text(&o)
    );
    // A new run into an earlier run's folder.
    std::fs::create_dir_all(d.join("old")).expect("mkdir");
    std::fs::write(d.join("old/log.jsonl"), "{\"epoch\": 1}\n").expect("log");
    let o = train("old", "[schedule]\nidentities_per_batch = 3\nimages_per_identity = 2\n");
    assert!(
        o.status.code() == Some(1) && text(&o).contains("old/log.jsonl") && text(&o).contains("--resume"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(d.join("old/log.jsonl")).expect("log"),
        "{\"epoch\": 1}\n"
    );
}

/// A model whose weights are not finite never starts a pipeline: the tensor is named.
#[test]
fn nan_weights_stop_run_before_the_first_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/weights/mobilenetv2_imagenet.safetensors");
    let file = reid_pipe::safetensors::read(&good).expect("set-up weights");
    let nan = tch::Tensor::full([32, 3, 3, 3], f64::NAN, tch::kind::FLOAT_CPU);
    let tensors: Vec<(&str, &tch::Tensor)> = file
        .tensors
        .iter()
        .map(|(n, t)| (n.as_str(), if n == "features.0.0.weight" { &nan } else { t }))
        .collect();
    let weights = d.join("nan.safetensors");
    reid_pipe::safetensors::write(&weights, &tensors, &file.metadata).expect("write");
    let site = d.join("site.toml");
    std::fs::write(
        &site,
        format!(
            "[runtime]\ndevice = \"cpu\"\n[[cameras]]\nname = \"a\"\n[cameras.visible]\nkind = \"test\"\nframes = 5\n\
             [cameras.thermal]\nkind = \"test\"\nframes = 5\n[detector]\nkind = \"hog\"\n[model]\nweights = \"{}\"\n\
             [outputs]\nevents = \"{}\"\n",
            weights.display(),
            d.join("events.jsonl").display()
        ),
    )
    .expect("write");
    let o = reid(&["run", site.to_str().expect("utf-8")]);
    let t = text(&o);
    assert!(
        o.status.code() == Some(1)
            && t.contains("nan.safetensors: tensor `features.0.0.weight`: has NaN or infinite values"),
        "{t}"
    );
    assert!(!t.contains("frames processed"), "{t}");
}

/// Secret template parameters (a URL with a password, a parameter listed in `secret_params`)
/// never reach any output: `check`, `doctor --site`, a run's debug log and errors (a pipeline
/// that cannot be built prints its description), the events file.
#[test]
fn template_secrets_never_appear_in_any_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (password, token) = ("Hunter2Secret", "tok-Sekr1tValue");
    let connects = d.join("connects.pipeline");
    std::fs::write(
        &connects,
        "rtspsrc name=src location=${location} user-agent=${token} protocols=tcp latency=0 ! decodebin ! ${output}\n",
    )
    .expect("template");
    let broken = d.join("broken.pipeline");
    std::fs::write(&broken, "nosuchelement location=${location} ! ${output}\n").expect("template");
    // Nothing listens on this port: the camera fails to connect.
    let port = common::free_port();
    let params = format!(
        "params = {{ location = \"rtsp://admin:{password}@127.0.0.1:{port}/cam\", token = \"{token}\" }}\n\
         secret_params = [\"token\"]\n"
    );
    let weights = common::repo("models/weights/mobilenetv2_imagenet.safetensors");
    let events = d.join("events.jsonl");
    let site = d.join("site.toml");
    std::fs::write(
        &site,
        format!(
            "[runtime]\ndevice = \"cpu\"\n\
             [[cameras]]\nname = \"door\"\n[cameras.visible]\nkind = \"template\"\ntemplate = \"{}\"\n{params}\
             [cameras.thermal]\nkind = \"test\"\nframes = 5\n\
             [[cameras]]\nname = \"yard\"\n[cameras.visible]\nkind = \"template\"\ntemplate = \"{}\"\n{params}\
             [cameras.thermal]\nkind = \"test\"\nframes = 3\n\
             [detector]\nkind = \"hog\"\n[model]\nweights = \"{}\"\n\
             [index]\nsnapshot_dir = \"{}\"\n[outputs]\nevents = \"{}\"\n",
            connects.display(),
            broken.display(),
            weights.display(),
            d.join("index").display(),
            events.display()
        ),
    )
    .expect("site");
    let site_arg = site.to_str().expect("utf-8");
    let check = reid(&["check", site_arg]);
    let doctor = reid(&["doctor", "--site", site_arg]);
    let run = reid(&["run", "--log", "debug", site_arg]);
    let mut all = String::new();
    for (what, out) in [("check", &check), ("doctor", &doctor), ("run", &run)] {
        let t = text(out);
        assert!(!t.contains("panicked"), "{what}: {t}");
        all.push_str(&t);
    }
    all.push_str(&std::fs::read_to_string(&events).unwrap_or_default());
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("rtsp://admin:***@127.0.0.1") && text(&check).contains("\"token\": \"***\""));
    let t = text(&run);
    assert!(!run.status.success(), "both cameras' visible sources fail: {t}");
    assert!(
        t.contains("nosuchelement location=\"rtsp://admin:***@127.0.0.1"),
        "the broken pipeline's description is printed, redacted: {t}"
    );
    for secret in [password, token] {
        assert!(!all.contains(secret), "{secret} was printed:\n{all}");
    }
}

/// What a run opens before its first frame is checked by `check` too: a missing detector model,
/// a snapshot folder that is a file and a TorchScript model of another output size fail `check`
/// naming the key, and the same site never starts `run`.
#[test]
fn check_fails_where_run_could_not_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let weights = common::repo("models/weights/mobilenetv2_imagenet.safetensors");
    let site = |name: &str, detector: &str, weights: &Path, snapshots: &Path| {
        let path = d.join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "[runtime]\ndevice = \"cpu\"\n[[cameras]]\nname = \"a\"\n[cameras.visible]\nkind = \"test\"\nframes = 5\n\
                 [cameras.thermal]\nkind = \"test\"\nframes = 5\n[detector]\n{detector}\n[model]\nweights = \"{}\"\n\
                 [index]\nsnapshot_dir = \"{}\"\n",
                weights.display(),
                snapshots.display()
            ),
        )
        .expect("site");
        path
    };
    let good = site("good", "kind = \"hog\"", &weights, &d.join("index"));
    ok_check(&good);
    // A TorchScript export of the same network, its manifest then claiming another size.
    let export = reid(&[
        "export",
        good.to_str().expect("utf-8"),
        "--out",
        d.join("ts").to_str().expect("utf-8"),
    ]);
    assert!(export.status.success(), "{}", text(&export));
    let manifest = d.join("ts/reid-embedder.toml");
    let text_of = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(&manifest, text_of.replace("output_dim = 1280", "output_dim = 64")).expect("manifest");
    let a_file = d.join("a-file");
    std::fs::write(&a_file, "x").expect("file");
    for (name, detector, w, snapshots, key) in [
        (
            "detector",
            "kind = \"ssd\"\nmodel = \"/nonexistent/person.pb\"",
            weights.clone(),
            d.join("index"),
            "`detector.model`",
        ),
        (
            "snapshots",
            "kind = \"hog\"",
            weights.clone(),
            a_file.clone(),
            "index.snapshot_dir",
        ),
        (
            "torchscript",
            "kind = \"hog\"",
            manifest.clone(),
            d.join("index"),
            "model.weights",
        ),
    ] {
        let path = site(name, detector, &w, &snapshots);
        let arg = path.to_str().expect("utf-8");
        for command in ["check", "run"] {
            let o = reid(&[command, arg]);
            let t = text(&o);
            assert_eq!(o.status.code(), Some(1), "{name}, {command}: {t}");
            assert!(
                t.contains(key) && !t.contains("frames processed"),
                "{name}, {command}: {t}"
            );
        }
    }
    let o = reid(&[
        "check",
        site("torchscript-message", "kind = \"hog\"", &manifest, &d.join("index"))
            .to_str()
            .expect("utf-8"),
    ]);
    assert!(
        text(&o).contains("returned shape [1, 1280], expected [1, 64]"),
        "{}",
        text(&o)
    );
}

fn ok_check(path: &Path) {
    let o = reid(&["check", path.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o));
}
