//! Malformed site and training files: each through `check` and, for a share of them, through
//! the command that would use it (`run`, `train`), which must refuse it the same way before it
//! starts. Covers syntax, unknown keys, types, ranges, enumerations, camera and source keys,
//! detectors, the model, outputs that are inputs, and training files.

use crate::fixtures::train_text;
use crate::{Case, Fixtures, arg, write};

/// A site file with one camera pair of 5-frame test sources; `runtime`, `camera`, `tail` are
/// inserted into the `[runtime]` table, the `[[cameras]]` table and after `[model]`.
fn site(fx: &Fixtures, runtime: &str, camera: &str, tail: &str) -> String {
    format!(
        "[runtime]\ndevice = \"cpu\"\n{runtime}\n[[cameras]]\nname = \"a\"\n{camera}\n[cameras.visible]\nkind = \"test\"\nframes = 5\n\
         [cameras.thermal]\nkind = \"test\"\nframes = 5\n[detector]\nkind = \"hog\"\n[model]\nweights = \"{}\"\n{tail}",
        fx.weights.display()
    )
}

/// `check` (and `run` when `also_run`) of a site file whose text is `text`, expecting `message`.
fn site_case(fx: &Fixtures, name: &str, text: &str, message: &str, also_run: bool) -> Vec<Case> {
    let path = write(&fx.case_dir(name).join("site.toml"), text);
    let mut cases = vec![Case::new(format!("{name} (check)"), 1, message, ["check", &arg(&path)])];
    if also_run {
        cases.push(Case::new(format!("{name} (run)"), 1, message, ["run", &arg(&path)]));
    }
    cases
}

pub fn cases(fx: &Fixtures) -> Vec<Case> {
    let mut out = Vec::new();
    let snapshots = |name: &str| {
        format!(
            "[index]\nsnapshot_dir = \"{}\"\n",
            fx.case_dir(name).join("index").display()
        )
    };
    // Syntax and structure.
    for (name, text, message) in [
        (
            "cfg-syntax",
            "[runtime\ndevice = \"cpu\"\n".to_owned(),
            "unclosed table",
        ),
        (
            "cfg-no-model",
            site(fx, "", "", "").replace("[model]\n", "[model_]\n"),
            "unknown field `model_`",
        ),
        (
            "cfg-no-cameras",
            format!(
                "[runtime]\ndevice = \"cpu\"\n[detector]\nkind = \"hog\"\n[model]\nweights = \"{}\"\n",
                fx.weights.display()
            ),
            "cameras",
        ),
        ("cfg-unknown-key", site(fx, "bogus = 1", "", ""), "key `runtime.bogus`"),
        (
            "cfg-string-for-number",
            site(fx, "batch_size = \"16\"", "", ""),
            "key `runtime.batch_size`",
        ),
        (
            "cfg-huge-integer",
            site(fx, "batch_size = 99999999999999999999", "", ""),
            "key `runtime.batch_size`",
        ),
        (
            "cfg-float-for-integer",
            site(fx, "", "", "[index]\nmax_exemplars = 1e99\n"),
            "key `index.max_exemplars`",
        ),
    ] {
        out.extend(site_case(fx, name, &text, message, false));
    }
    // Ranges and enumerations, each named by its key.
    for (name, runtime, camera, tail, key) in [
        (
            "cfg-batch-zero",
            "batch_size = 0",
            "",
            String::new(),
            "key `runtime.batch_size`: expected an integer in [1, 4096], found 0",
        ),
        (
            "cfg-queue-zero",
            "queue_capacity = 0",
            "",
            String::new(),
            "key `runtime.queue_capacity`",
        ),
        (
            "cfg-threads-zero",
            "threads = 0",
            "",
            String::new(),
            "key `runtime.threads`",
        ),
        (
            "cfg-workers-zero",
            "detector_workers = 0",
            "",
            String::new(),
            "key `runtime.detector_workers`",
        ),
        (
            "cfg-wait-negative",
            "max_batch_wait_ms = -1",
            "",
            String::new(),
            "key `runtime.max_batch_wait_ms`",
        ),
        (
            "cfg-failed-batches-zero",
            "max_failed_batches = 0",
            "",
            String::new(),
            "key `runtime.max_failed_batches`",
        ),
        ("cfg-device-gpu", "", "", String::new(), "key `runtime.device`"),
        (
            "cfg-tolerance-negative",
            "",
            "pairing_tolerance_ms = -1",
            String::new(),
            "key `cameras[0].pairing_tolerance_ms`",
        ),
        (
            "cfg-unpaired-typo",
            "",
            "unpaired = \"ignore\"",
            String::new(),
            "key `cameras[0].unpaired`",
        ),
        (
            "cfg-fuse-iou",
            "",
            "fuse_iou = 2",
            String::new(),
            "key `cameras[0].fuse_iou`",
        ),
        (
            "cfg-same-threshold",
            "",
            "",
            "[index]\nsame_modality_threshold = 3.0\n".to_owned(),
            "key `index.same_modality_threshold`",
        ),
        (
            "cfg-cross-threshold",
            "",
            "",
            "[index]\ncross_modality_threshold = -1\n".to_owned(),
            "key `index.cross_modality_threshold`",
        ),
        (
            "cfg-exemplars-zero",
            "",
            "",
            "[index]\nmax_exemplars = 0\n".to_owned(),
            "key `index.max_exemplars`",
        ),
        (
            "cfg-expiry-negative",
            "",
            "",
            "[index]\nexpiry_s = -5\n".to_owned(),
            "key `index.expiry_s`",
        ),
        (
            "cfg-snapshot-interval",
            "",
            "",
            "[index]\nsnapshot_interval_s = 0\n".to_owned(),
            "key `index.snapshot_interval_s`",
        ),
        (
            "cfg-backend-typo",
            "",
            "",
            "[index]\nbackend = \"faiss\"\n".to_owned(),
            "key `index.backend`",
        ),
        (
            "cfg-input-size-zero",
            "",
            "",
            "input_size = [0, 0]\n".to_owned(),
            "key `model.input_size`",
        ),
        (
            "cfg-input-size-huge",
            "",
            "",
            "input_size = [100000, 100000]\n".to_owned(),
            "key `model.input_size`",
        ),
        (
            "cfg-input-size-extra",
            "",
            "",
            "input_size = [256, 128, 3]\n".to_owned(),
            "exactly 2 values",
        ),
        (
            "cfg-backbone-typo",
            "",
            "",
            "backbone = \"vgg\"\n".to_owned(),
            "key `model.backbone`",
        ),
        (
            "cfg-preprocess-typo",
            "",
            "",
            "preprocess = \"gpu\"\n".to_owned(),
            "key `model.preprocess`",
        ),
        (
            "cfg-tracker-age",
            "",
            "",
            "[tracker]\nmax_age = 0\n".to_owned(),
            "key `tracker.max_age`",
        ),
        (
            "cfg-tracker-iou",
            "",
            "",
            "[tracker]\niou_threshold = 1.5\n".to_owned(),
            "key `tracker.iou_threshold`",
        ),
        (
            "cfg-thermal-sigma",
            "",
            "",
            "[thermal_detector]\nsigma = -1\n".to_owned(),
            "key `thermal_detector.sigma`",
        ),
        (
            "cfg-thermal-aspect-extra",
            "",
            "",
            "[thermal_detector]\naspect = [1.0, 5.0, 9.0]\n".to_owned(),
            "exactly 2 values",
        ),
        (
            "cfg-metrics-address",
            "",
            "",
            "[outputs]\nmetrics_listen = \"not an address\"\n".to_owned(),
            "key `outputs.http_listen`",
        ),
        (
            "cfg-mqtt-qos",
            "",
            "",
            "[outputs.mqtt]\nhost = \"127.0.0.1\"\nqos = 3\n".to_owned(),
            "key `outputs.mqtt.qos`",
        ),
    ] {
        let mut text = site(fx, runtime, camera, &tail);
        if name == "cfg-device-gpu" {
            text = text.replace("device = \"cpu\"", "device = \"gpu\"");
        }
        out.extend(site_case(fx, name, &text, key, true));
    }
    // Sources.
    let template = crate::common::repo("pipelines/images.pipeline");
    for (name, visible, key) in [
        (
            "cfg-source-kind",
            "kind = \"webcam\"".to_owned(),
            "key `cameras[0].visible.kind`",
        ),
        (
            "cfg-source-foreign-key",
            "kind = \"test\"\npath = \"x.mkv\"".to_owned(),
            "`path` does not apply to a `test` source",
        ),
        (
            "cfg-rtsp-scheme",
            "kind = \"rtsp\"\nuri = \"http://camera/x\"".to_owned(),
            "key `cameras[0].visible.uri`",
        ),
        (
            "cfg-rtsp-password-no-user",
            "kind = \"rtsp\"\nuri = \"rtsp://camera/x\"\npassword_env = \"P\"".to_owned(),
            "key `cameras[0].visible.password_env`",
        ),
        (
            "cfg-width-without-height",
            "kind = \"test\"\nwidth = 64".to_owned(),
            "key `cameras[0].visible.height`",
        ),
        (
            "cfg-format-typo",
            "kind = \"test\"\nformat = \"yuv\"".to_owned(),
            "key `cameras[0].visible.format`",
        ),
        (
            "cfg-secret-param-unknown",
            format!(
                "kind = \"template\"\ntemplate = \"{}\"\nparams = {{ location = \"x\" }}\nsecret_params = [\"token\"]",
                template.display()
            ),
            "key `cameras[0].visible.secret_params`",
        ),
        (
            "cfg-rtsp-password-redacted",
            "kind = \"rtsp\"\nuri = \"ftp://admin:S3cretPw@camera/x\"".to_owned(),
            "admin:***@camera",
        ),
    ] {
        let text = site(fx, "", "", "").replacen(
            "[cameras.visible]\nkind = \"test\"\nframes = 5",
            &format!("[cameras.visible]\n{visible}"),
            1,
        );
        out.extend(site_case(fx, name, &text, key, false));
    }
    let two = site(fx, "", "", "");
    let camera = &two[two.find("[[cameras]]").expect("camera")..two.find("[detector]").expect("detector")];
    let duplicate = two.replacen("[detector]", &format!("{camera}[detector]"), 1);
    out.extend(site_case(
        fx,
        "cfg-duplicate-camera",
        &duplicate,
        "duplicate camera name \"a\"",
        true,
    ));
    // Detectors.
    for (name, detector, key) in [
        ("cfg-detector-kind", "kind = \"yolo9000\"", "key `detector.kind`"),
        (
            "cfg-detector-confidence",
            "kind = \"hog\"\nconfidence = 1.5",
            "key `detector.confidence`",
        ),
        (
            "cfg-detector-min-box",
            "kind = \"hog\"\nmin_box = [0, -1]",
            "key `detector.min_box`",
        ),
        (
            "cfg-detector-roi",
            "kind = \"hog\"\nroi = [[0, 0], [1, 1]]",
            "key `detector.roi`",
        ),
        // Pairs with a third number: serde's fixed-size arrays alone would ignore it.
        (
            "cfg-detector-min-box-extra",
            "kind = \"hog\"\nmin_box = [24, 48, 1]",
            "exactly 2 values",
        ),
        (
            "cfg-detector-roi-extra",
            "kind = \"hog\"\nroi = [[0, 0], [9, 0], [9, 9, 9]]",
            "exactly 2 values",
        ),
        ("cfg-onnx-without-model", "kind = \"onnx\"", "key `detector.model`"),
        (
            "cfg-ssd-model-missing",
            "kind = \"ssd\"\nmodel = \"/nonexistent/person.pb\"",
            "`detector.model`",
        ),
    ] {
        let text = site(fx, "", "", &snapshots(name)).replacen(
            "[detector]\nkind = \"hog\"",
            &format!("[detector]\n{detector}"),
            1,
        );
        out.extend(site_case(fx, name, &text, key, true));
    }
    let garbage = write(&fx.case_dir("cfg-haar-garbage").join("cascade.xml"), "not a cascade");
    let text = site(fx, "", "", "").replacen(
        "[detector]\nkind = \"hog\"",
        &format!("[detector]\nkind = \"haar\"\nmodel = \"{}\"", garbage.display()),
        1,
    );
    out.extend(site_case(fx, "cfg-haar-garbage", &text, "cascade.xml", true));
    // The model and the snapshot folder.
    let text = site(fx, "", "", "").replace(&fx.weights.display().to_string(), "/nonexistent/w.safetensors");
    out.extend(site_case(
        fx,
        "cfg-weights-missing",
        &text,
        "model.weights /nonexistent/w.safetensors",
        true,
    ));
    let not_weights = write(&fx.case_dir("cfg-weights-garbage").join("w.safetensors"), "garbage");
    let text = site(fx, "", "", "").replace(&fx.weights.display().to_string(), &arg(&not_weights));
    out.extend(site_case(fx, "cfg-weights-garbage", &text, "w.safetensors", true));
    let file = write(&fx.case_dir("cfg-snapshot-dir-file").join("index"), "a file");
    let text = site(fx, "", "", &format!("[index]\nsnapshot_dir = \"{}\"\n", file.display()));
    out.extend(site_case(
        fx,
        "cfg-snapshot-dir-file",
        &text,
        "index.snapshot_dir",
        true,
    ));
    // Outputs that are inputs: refused, the input unchanged.
    let dir = fx.case_dir("cfg-events-is-site");
    let path = dir.join("site.toml");
    write(
        &path,
        site(fx, "", "", &format!("[outputs]\nevents = \"{}\"\n", path.display())),
    );
    for command in ["check", "run"] {
        out.push(
            Case::new(
                format!("cfg-events-is-site ({command})"),
                1,
                "may not be an input",
                [command, &arg(&path)],
            )
            .keeps(&path),
        );
    }
    let weights_copy = fx.case_dir("cfg-video-is-weights").join("w.safetensors");
    std::fs::copy(&fx.weights, &weights_copy).expect("copy");
    let text = site(
        fx,
        "",
        "",
        &format!("[outputs]\nvideo = \"{}\"\n", weights_copy.display()),
    )
    .replace(&fx.weights.display().to_string(), &arg(&weights_copy));
    let path = write(&fx.case_dir("cfg-video-is-weights").join("site.toml"), text);
    out.push(
        Case::new(
            "cfg-video-is-weights (run)",
            1,
            "may not be an input",
            ["run", &arg(&path)],
        )
        .keeps(&weights_copy),
    );
    let text = site(
        fx,
        "",
        "",
        &format!("[outputs]\nthumbnails = \"{}\"\n", weights_copy.display()),
    )
    .replace(&fx.weights.display().to_string(), &arg(&weights_copy));
    let path = write(&fx.case_dir("cfg-thumbnails-is-weights").join("site.toml"), text);
    out.push(
        Case::new(
            "cfg-thumbnails-is-weights (check)",
            1,
            "may not be an input",
            ["check", &arg(&path)],
        )
        .keeps(&weights_copy),
    );
    // Training files.
    for (name, extra, message) in [
        ("cfg-train-p-too-large", "", "schedule.identities_per_batch"),
        (
            "cfg-train-no-loss",
            "[loss]\nid = 0\ntriplet = 0\nid_consistency = 0\ndense_triplet = 0\n",
            "key `loss`",
        ),
        ("cfg-train-unknown-key", "bogus = 1\n", "bogus"),
        ("cfg-train-kind", "", "key `dataset.kind`"),
        ("cfg-train-device", "", "device"),
    ] {
        let dir = fx.case_dir(name);
        let mut text = train_text(&dir.join("run"), &fx.sysu, "");
        match name {
            "cfg-train-p-too-large" => text = text.replace("identities_per_batch = 3", "identities_per_batch = 9"),
            "cfg-train-kind" => text = text.replace("kind = \"sysu\"", "kind = \"imagenet\""),
            "cfg-train-device" => text = text.replace("device = \"cpu\"", "device = \"cuda:99\""),
            _ => {}
        }
        let path = write(&dir.join("train.toml"), format!("{text}{extra}"));
        out.push(Case::new(format!("{name} (check)"), 1, message, ["check", &arg(&path)]));
        out.push(Case::new(format!("{name} (train)"), 1, message, ["train", &arg(&path)]));
    }
    let dir = fx.case_dir("cfg-train-root-missing");
    let path = write(
        &dir.join("train.toml"),
        train_text(&dir.join("run"), &dir.join("nowhere"), ""),
    );
    for command in ["check", "train"] {
        out.push(Case::new(
            format!("cfg-train-root-missing ({command})"),
            1,
            "dataset.root",
            [command, &arg(&path)],
        ));
    }
    // What `train` checks before it decodes an image, `check` checks too.
    for (name, extra, message) in [
        ("cfg-train-parts", "", "model.parts"),
        ("cfg-train-amp-cpu", "amp = true\n", "schedule.amp"),
        ("cfg-train-input-size-extra", "", "exactly 2 values"),
        ("cfg-train-pretrained-missing", "", "model.pretrained"),
        ("cfg-train-pretrained-garbage", "", "model.pretrained"),
    ] {
        let dir = fx.case_dir(name);
        let garbage = write(&dir.join("garbage.safetensors"), "not weights");
        let text = train_text(&dir.join("run"), &fx.sysu, extra);
        let text = match name {
            "cfg-train-parts" => text.replace("input_size = [64, 32]", "input_size = [64, 32]\nparts = 5"),
            "cfg-train-input-size-extra" => text.replace("[64, 32]", "[64, 32, 3]"),
            "cfg-train-pretrained-missing" => text.replace(
                "input_size = [64, 32]",
                &format!(
                    "input_size = [64, 32]\npretrained = \"{}\"",
                    dir.join("nowhere.safetensors").display()
                ),
            ),
            "cfg-train-pretrained-garbage" => text.replace(
                "input_size = [64, 32]",
                &format!("input_size = [64, 32]\npretrained = \"{}\"", garbage.display()),
            ),
            _ => text,
        };
        let path = write(&dir.join("train.toml"), text);
        for command in ["check", "train"] {
            out.push(Case::new(
                format!("{name} ({command})"),
                1,
                message,
                [command, &arg(&path)],
            ));
        }
    }
    // A run's folder inside the dataset, or a run file over the starting weights: refused, the
    // inputs unchanged.
    let dir = fx.case_dir("cfg-train-output-in-dataset");
    let path = write(&dir.join("train.toml"), train_text(&fx.sysu.join("runs"), &fx.sysu, ""));
    let ids = fx.sysu.join("exp/train_id.txt");
    for command in ["check", "train"] {
        out.push(
            Case::new(
                format!("cfg-train-output-in-dataset ({command})"),
                1,
                "inside dataset.root",
                [command, &arg(&path)],
            )
            .keeps(&ids),
        );
    }
    let dir = fx.case_dir("cfg-train-output-is-pretrained");
    let pretrained = dir.join("run/last.safetensors");
    std::fs::create_dir_all(dir.join("run")).expect("mkdir");
    std::fs::copy(&fx.weights, &pretrained).expect("copy");
    let text = train_text(&dir.join("run"), &fx.sysu, "").replace(
        "input_size = [64, 32]",
        &format!("input_size = [64, 32]\npretrained = \"{}\"", pretrained.display()),
    );
    let path = write(&dir.join("train.toml"), text);
    for command in ["check", "train"] {
        out.push(
            Case::new(
                format!("cfg-train-output-is-pretrained ({command})"),
                1,
                "may not be an input",
                [command, &arg(&path)],
            )
            .keeps(&pretrained),
        );
    }
    let dir = fx.case_dir("cfg-train-output-is-file");
    let file = write(&dir.join("run"), "a file");
    let path = write(&dir.join("train.toml"), train_text(&file, &fx.sysu, ""));
    for command in ["check", "train"] {
        out.push(
            Case::new(
                format!("cfg-train-output-is-file ({command})"),
                1,
                "output_dir",
                [command, &arg(&path)],
            )
            .keeps(&file),
        );
    }
    let dir = fx.case_dir("cfg-train-earlier-run");
    let log = write(&dir.join("run/log.jsonl"), "{\"epoch\": 1}\n");
    let path = write(&dir.join("train.toml"), train_text(&dir.join("run"), &fx.sysu, ""));
    out.push(Case::new("cfg-train-earlier-run (train)", 1, "--resume", ["train", &arg(&path)]).keeps(&log));
    // `--resume` over an earlier run's files without a checkpoint: nothing to resume, and the
    // files are not replaced.
    let dir = fx.case_dir("cfg-train-resume-nothing");
    let log = write(&dir.join("run/log.jsonl"), "{\"epoch\": 1}\n");
    let path = write(&dir.join("train.toml"), train_text(&dir.join("run"), &fx.sysu, ""));
    out.push(
        Case::new(
            "cfg-train-resume-nothing (train)",
            1,
            "checkpoint.safetensors",
            ["train", &arg(&path), "--resume"],
        )
        .keeps(&log),
    );
    // A source file that is not there: `run` isolates sources, so `check` passes and warns.
    let text = site(fx, "", "", &snapshots("cfg-source-missing")).replacen(
        "[cameras.visible]\nkind = \"test\"\nframes = 5",
        "[cameras.visible]\nkind = \"file\"\npath = \"/nonexistent/cam.mkv\"",
        1,
    );
    let path = write(&fx.case_dir("cfg-source-missing").join("site.toml"), text);
    out.push(Case::new(
        "cfg-source-missing (check)",
        0,
        "warning: cameras[0].visible.path: /nonexistent/cam.mkv not found",
        ["check", &arg(&path)],
    ));
    let path = write(&fx.case_dir("cfg-neither").join("x.toml"), "[foo]\nbar = 1\n");
    out.push(Case::new(
        "cfg-neither (check)",
        1,
        "unknown field `foo`",
        ["check", &arg(&path)],
    ));
    out
}
