//! Configuration files: the shipped examples parse, and malformed files give errors that name
//! the file, the key and the line.

mod common;

use common::repo;
use reid_pipe::config::site::{DetectorKind, Input, NewIdentities};

use reid_pipe::base::{Backbone, PixelFormat};
use reid_pipe::config::train::Pretrained;
use reid_pipe::config::{ConfigError, SiteConfig, TrainConfig};
use std::path::Path;

const SITE: &str = r#"[runtime]
batch_size = 8

[[cameras]]
name = "gate"
[cameras.visible]
kind = "file"
path = "v.mp4"
[cameras.thermal]
kind = "test"
pattern = "ball"

[detector]
kind = "hog"

[model]
backbone = "mobilenetv2"
weights = "w.safetensors"
"#;

const TRAIN: &str = r#"output_dir = "runs/x"
[dataset]
kind = "sysu"
root = "/data/SYSU-MM01"
[model]
backbone = "resnet50"
pretrained = "none"
"#;

fn site_err(text: &[u8]) -> ConfigError {
    SiteConfig::from_bytes(Path::new("/etc/reid/site.toml"), text).expect_err("must be rejected")
}

fn train_err(text: &str) -> ConfigError {
    TrainConfig::from_bytes(Path::new("train.toml"), text.as_bytes()).expect_err("must be rejected")
}

/// Asserts key, line and a fragment of the message, and that the rendered error names the file.
fn expect(e: &ConfigError, key: &str, line: usize, fragment: &str) {
    assert_eq!(e.key, key, "{e}");
    assert_eq!(e.line, line, "{e}");
    assert!(
        e.message.contains(fragment),
        "message {:?} lacks {fragment:?}",
        e.message
    );
    let shown = e.to_string();
    assert!(shown.contains(&format!(":{line}:")) && shown.contains(key), "{shown}");
}

#[test]
fn shipped_site_file_parses() {
    let cfg = SiteConfig::load(&repo("config/site.toml")).expect("config/site.toml is valid");
    assert_eq!(cfg.cameras.len(), 1);
    let cam = &cfg.cameras[0];
    assert_eq!(cam.name, "vtest");
    assert!(matches!(&cam.visible.input, Input::File { path } if path.ends_with("vtest.avi")));
    assert!(
        matches!(&cam.thermal.input, Input::Template { template, .. } if template.ends_with("thermal-standin.pipeline"))
    );
    assert_eq!(cam.thermal.format, PixelFormat::Gray8);
    assert_eq!(cfg.model.backbone, Some(Backbone::Mobilenetv2));
    assert!(
        cfg.model.weights.starts_with(repo("config")),
        "relative paths resolve from the file's directory"
    );
    assert_eq!(cfg.outputs.http_listen.map(|a| a.ip().is_loopback()), Some(true));
    assert_eq!(
        cam.detector.kind,
        DetectorKind::Ssd,
        "the demo uses the best detector on vtest.avi"
    );
    assert!(
        cam.detector
            .model
            .as_ref()
            .is_some_and(|m| m.ends_with("ssdlite_person.pb"))
    );
}

#[test]
fn shipped_training_files_parse_with_the_papers_recipe() {
    for (file, kind) in [("config/train-sysu.toml", "Sysu"), ("config/train-regdb.toml", "Regdb")] {
        let cfg = TrainConfig::load(&repo(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(format!("{:?}", cfg.dataset.kind), kind);
        let s = &cfg.schedule;
        assert_eq!((s.epochs, s.identities_per_batch, s.images_per_identity), (81, 8, 4));
        assert_eq!(cfg.model.input_size, (288, 144));
        assert!((cfg.loss.dense_triplet_weight - 0.5).abs() < 1e-12);
        assert!((cfg.loss.cmalign_temperature - 50.0).abs() < 1e-12);
        assert!(s.nesterov && (s.weight_decay - 5e-4).abs() < 1e-12);
    }
}

#[test]
fn the_base_snippets_are_valid() {
    let cfg = SiteConfig::from_bytes(Path::new("/etc/reid/site.toml"), SITE.as_bytes()).expect("valid");
    assert_eq!(cfg.runtime.batch_size, 8);
    assert!(matches!(&cfg.cameras[0].visible.input, Input::File { path } if path == Path::new("/etc/reid/v.mp4")));
    TrainConfig::from_bytes(Path::new("t.toml"), TRAIN.as_bytes()).expect("valid");
}

#[test]
fn unknown_top_level_key() {
    let e = site_err(format!("{SITE}\n[outptus]\nevents = \"e.jsonl\"\n").as_bytes());
    expect(&e, "outptus", 20, "unknown field `outptus`");
    assert!(
        e.to_string().starts_with("/etc/reid/site.toml:20:2: key `outptus`"),
        "{e}"
    );
}

#[test]
fn unknown_nested_key_is_named_with_its_path() {
    let e = site_err(SITE.replace("batch_size = 8", "batchsize = 8").as_bytes());
    expect(
        &e,
        "runtime.batchsize",
        2,
        "unknown field `batchsize`, expected one of `device`",
    );
}

#[test]
fn wrong_type() {
    let e = site_err(SITE.replace("batch_size = 8", "batch_size = \"eight\"").as_bytes());
    expect(&e, "runtime.batch_size", 2, "invalid type");
}

#[test]
fn zero_batch_size_is_out_of_range() {
    let e = site_err(SITE.replace("batch_size = 8", "batch_size = 0").as_bytes());
    expect(&e, "runtime.batch_size", 2, "expected an integer in [1, 4096], found 0");
}

#[test]
fn missing_thermal_source() {
    let text = SITE.replace("[cameras.thermal]\nkind = \"test\"\npattern = \"ball\"\n", "");
    let e = site_err(text.as_bytes());
    expect(&e, "cameras[0]", 4, "missing field `thermal`");
}

#[test]
fn duplicate_camera_names() {
    let second =
        "\n[[cameras]]\nname = \"gate\"\n[cameras.visible]\nkind = \"test\"\n[cameras.thermal]\nkind = \"test\"\n";
    let e = site_err(format!("{SITE}{second}").as_bytes());
    expect(&e, "cameras[1].name", 21, "duplicate camera name \"gate\"");
}

#[test]
fn empty_file() {
    let e = site_err(b"  \n\n");
    expect(&e, "", 1, "the file is empty");
}

#[test]
fn invalid_utf8_names_the_key_on_its_line() {
    let mut bytes = SITE.replace("name = \"gate\"", "name = \"ga\u{1}te\"").into_bytes();
    let at = bytes.iter().position(|&b| b == 1).expect("marker");
    bytes[at] = 0xff;
    let e = site_err(&bytes);
    expect(&e, "name", 5, "invalid UTF-8");
    assert_eq!(e.column, 11);
}

#[test]
fn threshold_outside_the_cosine_range() {
    let e = site_err(format!("{SITE}\n[index]\ncross_modality_threshold = 2.5\n").as_bytes());
    expect(&e, "index.cross_modality_threshold", 21, "in [0, 2], found 2.5");
}

#[test]
fn negative_tolerance() {
    let e = site_err(
        SITE.replace("name = \"gate\"", "name = \"gate\"\npairing_tolerance_ms = -1.0")
            .as_bytes(),
    );
    expect(&e, "cameras[0].pairing_tolerance_ms", 6, "found -1");
}

#[test]
fn unknown_device() {
    let e = site_err(SITE.replace("batch_size = 8", "device = \"gpu\"").as_bytes());
    expect(&e, "runtime.device", 2, "\"cuda:N\", found \"gpu\"");
}

#[test]
fn key_that_does_not_apply_to_the_source_kind() {
    let e = site_err(
        SITE.replace("path = \"v.mp4\"", "path = \"v.mp4\"\nuri = \"rtsp://cam/x\"")
            .as_bytes(),
    );
    expect(&e, "cameras[0].visible.uri", 9, "does not apply to a `file` source");
}

#[test]
fn visible_sources_are_rgb() {
    let e = site_err(
        SITE.replace("path = \"v.mp4\"", "path = \"v.mp4\"\nformat = \"gray8\"")
            .as_bytes(),
    );
    expect(
        &e,
        "cameras[0].visible.format",
        9,
        "visible sources deliver `rgb` frames",
    );
}

#[test]
fn unknown_enum_value() {
    let e = site_err(SITE.replace("kind = \"hog\"", "kind = \"yolo\"").as_bytes());
    expect(&e, "detector.kind", 14, "unknown variant `yolo`");
}

#[test]
fn toml_syntax_error() {
    let e = site_err(SITE.replace("name = \"gate\"", "name = \"gate").as_bytes());
    expect(&e, "", 5, "");
}

#[test]
fn listen_addresses_and_rtsp_paths_must_parse() {
    // The earlier key name is still read, and named by its current name.
    let e = site_err(format!("{SITE}\n[outputs]\nmetrics_listen = \"localhost\"\n").as_bytes());
    expect(&e, "outputs.http_listen", 21, "expected an address");
    let e = site_err(format!("{SITE}\n[outputs]\nhttp_listen = \"127.0.0.1\"\n").as_bytes());
    expect(&e, "outputs.http_listen", 21, "expected an address");
    let e = site_err(format!("{SITE}\n[outputs.rtsp]\nlisten = \"8554\"\n").as_bytes());
    expect(&e, "outputs.rtsp.listen", 21, "expected an address");
    let e = site_err(format!("{SITE}\n[outputs.rtsp]\npath = \"annotated view\"\n").as_bytes());
    expect(&e, "outputs.rtsp.path", 21, "expected a path");
    let e = site_err(format!("{SITE}\n[outputs.rtsp]\nfps = 0\n").as_bytes());
    expect(&e, "outputs.rtsp.fps", 21, "");
    let e = site_err(
        format!("{SITE}\n[outputs.mqtt]\nhost = \"h\"\nhome_assistant = true\ndiscovery_prefix = \"home/assistant\"\n")
            .as_bytes(),
    );
    expect(&e, "outputs.mqtt.discovery_prefix", 23, "one topic level");
    let cfg = reid_pipe::config::SiteConfig::from_bytes(
        Path::new("site.toml"),
        format!("{SITE}\n[outputs.rtsp]\npath = \"/live/\"\n").as_bytes(),
    )
    .expect("valid");
    let rtsp = cfg.outputs.rtsp.expect("rtsp");
    assert_eq!(rtsp.path, "/live");
    assert!(rtsp.listen.ip().is_loopback(), "loopback unless configured");
}

#[test]
fn rtsp_password_is_redacted_in_errors() {
    let text = SITE.replace(
        "kind = \"file\"\npath = \"v.mp4\"",
        "kind = \"rtsp\"\nuri = \"http://admin:hunter2@cam/x\"",
    );
    let e = site_err(text.as_bytes());
    expect(&e, "cameras[0].visible.uri", 8, "rtsp://");
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
fn training_batch_must_allow_distinct_negatives() {
    let e = train_err(&format!(
        "{TRAIN}[schedule]\nidentities_per_batch = 4\nimages_per_identity = 4\n"
    ));
    expect(&e, "schedule.identities_per_batch", 9, "must be > images_per_identity");
}

#[test]
fn training_unknown_loss_term() {
    let e = train_err(&format!("{TRAIN}[loss]\ncenter = 0.1\n"));
    expect(&e, "loss.center", 9, "unknown field `center`");
}

#[test]
fn training_trial_only_for_regdb() {
    let e = train_err(&TRAIN.replace("root = \"/data/SYSU-MM01\"", "root = \"/data/SYSU-MM01\"\ntrial = 3"));
    expect(&e, "dataset.trial", 5, "only to the `regdb` dataset");
}

#[test]
fn training_milestones_must_increase() {
    let e = train_err(&format!("{TRAIN}[schedule]\nmilestones = [50, 20]\n"));
    expect(&e, "schedule.milestones", 9, "increasing epochs");
}

#[test]
fn unreadable_file_is_named() {
    let e = SiteConfig::load(Path::new("/nonexistent/site.toml")).expect_err("missing");
    assert!(
        e.to_string().contains("/nonexistent/site.toml") && e.message.contains("cannot read"),
        "{e}"
    );
}

#[test]
fn camera_detector_overrides_replace_only_what_they_set() {
    let text = SITE.replace(
        "[cameras.thermal]\nkind = \"test\"\npattern = \"ball\"\n",
        "[cameras.thermal]\nkind = \"test\"\npattern = \"ball\"\n[cameras.detector]\nconfidence = 0.7\n\
         roi = [[0, 0], [100, 0], [100, 80]]\n[cameras.thermal_detector]\nmin_area = 40\n",
    );
    let text = format!("{text}\n[thermal_detector]\nsigma = 2.0\n[tracker]\nmax_age = 12\n");
    let cfg = SiteConfig::from_bytes(Path::new("site.toml"), text.as_bytes()).unwrap();
    let cam = &cfg.cameras[0];
    assert_eq!(cam.detector.confidence, 0.7);
    assert_eq!(cam.detector.nms_iou, cfg.detector.nms_iou, "not set: inherited");
    assert_eq!(cam.detector.roi.as_ref().map(Vec::len), Some(3));
    assert_eq!(cfg.detector.confidence, 0.5, "the site-wide value is unchanged");
    assert_eq!((cam.thermal_detector.min_area, cam.thermal_detector.sigma), (40, 2.0));
    assert_eq!(cfg.tracker.max_age, 12);
}

#[test]
fn detector_and_tracker_values_are_checked() {
    let e = site_err(
        SITE.replace("kind = \"hog\"", "kind = \"hog\"\nroi = [[0, 0], [10, 0]]")
            .as_bytes(),
    );
    expect(&e, "detector.roi", 15, "at least 3");
    let e = site_err(
        SITE.replace(
            "kind = \"hog\"",
            "kind = \"onnx\"\nmodel = \"y.onnx\"\ninput_size = [600, 640]",
        )
        .as_bytes(),
    );
    expect(&e, "detector.input_size", 16, "multiples of 32");
    let e = site_err(format!("{SITE}\n[tracker]\nmin_hits = 0\n").as_bytes());
    expect(&e, "tracker.min_hits", 21, "found 0");
    let e = site_err(format!("{SITE}\n[thermal_detector]\naspect = [3.0, 1.0]\n").as_bytes());
    expect(&e, "thermal_detector.aspect", 21, "0 < min ≤ max");
}

#[test]
fn celsius_thresholds_need_a_calibrated_16_bit_camera() {
    let e = site_err(format!("{SITE}\n[thermal_detector]\nmin_celsius = 30.0\n").as_bytes());
    expect(&e, "cameras[0].calibration", 5, "gray16");
    let calibrated = SITE.replace(
        "pattern = \"ball\"\n",
        "pattern = \"ball\"\nformat = \"gray16\"\n[cameras.calibration]\ngain = 0.01\noffset = -273.15\n",
    );
    let cfg = SiteConfig::from_bytes(
        Path::new("site.toml"),
        format!("{calibrated}\n[thermal_detector]\nmin_celsius = 30.0\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(cfg.cameras[0].calibration.map(|c| c.gain), Some(0.01));
}

#[test]
fn new_identities_from_fused_tracks_only_need_fusion_on() {
    let default = SiteConfig::from_bytes(Path::new("site.toml"), SITE.as_bytes()).unwrap();
    assert_eq!(default.cameras[0].new_identities, NewIdentities::Any);
    let fused = SITE.replace("name = \"gate\"\n", "name = \"gate\"\nnew_identities = \"fused\"\n");
    let cfg = SiteConfig::from_bytes(Path::new("site.toml"), fused.as_bytes()).unwrap();
    assert_eq!(cfg.cameras[0].new_identities, NewIdentities::Fused);
    let e = site_err(
        fused
            .replace("new_identities", "fuse_iou = 0.0\nnew_identities")
            .as_bytes(),
    );
    expect(&e, "cameras[0].new_identities", 7, "`fuse_iou` is 0");
    let e = site_err(fused.replace("\"fused\"", "\"paired\"").as_bytes());
    expect(&e, "cameras[0].new_identities", 6, "unknown variant");
}

#[test]
fn the_paper_recipe_needs_imagenet_weights_or_an_explicit_none() {
    let without = TRAIN.replace("pretrained = \"none\"\n", "");
    let e = train_err(&without);
    expect(&e, "model.pretrained", 6, "resnet50-19c8e357.pth");
    let text = e.to_string();
    assert!(
        text.contains("reid-pipe import")
            && text.contains("pretrained = \"none\"")
            && text.contains("models/README.md"),
        "{text}"
    );
    let none = TrainConfig::from_bytes(Path::new("t.toml"), TRAIN.as_bytes()).expect("explicit none");
    assert_eq!(none.model.pretrained, Pretrained::None);
    let file = TrainConfig::from_bytes(
        Path::new("/etc/reid/t.toml"),
        TRAIN.replace("\"none\"", "\"w/r50.pth\"").as_bytes(),
    )
    .expect("a file");
    assert_eq!(file.model.pretrained, Pretrained::File("/etc/reid/w/r50.pth".into()));
    // MobileNetV2 has ImageNet weights too; the test ResNet has none and needs no key.
    let e = train_err(&without.replace("resnet50", "mobilenetv2"));
    expect(&e, "model.pretrained", 6, "mobilenetv2_imagenet.safetensors");
    let tiny = TrainConfig::from_bytes(
        Path::new("t.toml"),
        without.replace("resnet50", "tinyresnet").as_bytes(),
    )
    .expect("tiny");
    assert_eq!(tiny.model.pretrained, Pretrained::None);
    // The shipped recipes name the converted torchvision file.
    for f in ["config/train-sysu.toml", "config/train-regdb.toml"] {
        let cfg = TrainConfig::load(&repo(f)).expect("loads");
        assert!(
            matches!(&cfg.model.pretrained, Pretrained::File(p) if p.ends_with("models/weights/resnet50_imagenet.safetensors")),
            "{f}"
        );
    }
}

#[test]
fn model_preprocess_and_half_are_checked() {
    let e = site_err(format!("{SITE}preprocess = \"gpu\"\n").as_bytes());
    expect(&e, "model.preprocess", 19, "unknown variant `gpu`");
    let cfg = SiteConfig::from_bytes(
        Path::new("site.toml"),
        format!("{SITE}preprocess = \"tensor\"\n").as_bytes(),
    )
    .expect("valid");
    assert_eq!(cfg.model.preprocess, reid_pipe::config::site::Preprocess::Tensor);
    assert_eq!(cfg.model.half, None, "unset: float16 on CUDA, float32 on the CPU");
}

#[test]
fn training_mixed_precision_and_loader_settings_are_checked() {
    let e = train_err(&format!("{TRAIN}[schedule]\namp_dtype = \"float16\"\n"));
    expect(&e, "schedule.amp_dtype", 9, "schedule.amp is false");
    let e = train_err(&format!("{TRAIN}[schedule]\namp = true\namp_dtype = \"fp8\"\n"));
    expect(&e, "schedule.amp_dtype", 10, "unknown variant `fp8`");
    let e = train_err(&format!("{TRAIN}[loader]\nworkers = 0\n"));
    expect(&e, "loader.workers", 9, "");
    let e = train_err(&format!("{TRAIN}[loader]\nprefetch = 1000\n"));
    expect(&e, "loader.prefetch", 9, "");
    let cfg = TrainConfig::from_bytes(
        Path::new("train.toml"),
        format!("{TRAIN}[schedule]\namp = true\namp_dtype = \"bfloat16\"\n[loader]\nworkers = 3\n").as_bytes(),
    )
    .expect("valid");
    assert!(cfg.schedule.amp);
    assert_eq!(cfg.schedule.amp_dtype, reid_pipe::config::train::AmpDtype::Bfloat16);
    assert_eq!((cfg.loader.workers, cfg.loader.prefetch), (3, 4));
}

#[test]
fn the_co_occurring_sampler_needs_a_harvested_layout() {
    use reid_pipe::config::train::SamplerKind;
    let e = train_err(&format!("{TRAIN}[schedule]\nsampler = \"nearby\"\n"));
    expect(&e, "schedule.sampler", 9, "unknown variant `nearby`");
    let regdb = TRAIN.replace("kind = \"sysu\"", "kind = \"regdb\"");
    let e = train_err(&format!("{regdb}[schedule]\nsampler = \"co-occurring\"\n"));
    expect(&e, "schedule.sampler", 9, "needs a harvested set");
    let cfg = |extra: &str| {
        TrainConfig::from_bytes(Path::new("train.toml"), format!("{TRAIN}{extra}").as_bytes())
            .expect("valid")
            .schedule
            .sampler
    };
    assert_eq!(cfg(""), SamplerKind::Identity, "the recipe's by default");
    assert_eq!(
        cfg("[schedule]\nsampler = \"co-occurring\"\n"),
        SamplerKind::CoOccurring
    );
}

#[test]
fn mqtt_client_id_is_stable_per_site_and_checked() {
    let mqtt = "[outputs.mqtt]\nhost = \"127.0.0.1\"\n";
    let load =
        |path: &str, extra: &str| SiteConfig::from_bytes(Path::new(path), format!("{SITE}{mqtt}{extra}").as_bytes());
    let id = |path: &str| load(path, "").expect("valid").outputs.mqtt.expect("mqtt").client_id;
    // The same site file gets the same id on every start (the broker resumes its session);
    // another site file, another id.
    assert_eq!(id("/etc/reid/gate.toml"), id("/etc/reid/gate.toml"));
    assert!(id("/etc/reid/gate.toml").starts_with("reid-pipe-") && id("/etc/reid/gate.toml").ends_with("-gate"));
    assert_ne!(id("/etc/reid/gate.toml"), id("/etc/reid/lobby.toml"));
    let cfg = load("site.toml", "client_id = \"hall-7\"\n").expect("valid");
    assert_eq!(cfg.outputs.mqtt.expect("mqtt").client_id, "hall-7");
    let e = load("site.toml", "client_id = \"two words\"\n").expect_err("must be rejected");
    expect(&e, "outputs.mqtt.client_id", 21, "without spaces");
}

#[test]
fn rtsp_password_env_needs_a_user_in_the_url() {
    let text = SITE.replace(
        "kind = \"file\"\npath = \"v.mp4\"",
        "kind = \"rtsp\"\nuri = \"rtsp://cam/x\"\npassword_env = \"CAM_PW\"",
    );
    let e = site_err(text.as_bytes());
    expect(&e, "cameras[0].visible.password_env", 9, "names no user");
    let text = SITE.replace(
        "kind = \"file\"\npath = \"v.mp4\"",
        "kind = \"rtsp\"\nuri = \"rtsp://admin@cam/x\"\npassword_env = \"CAM_PW\"",
    );
    SiteConfig::from_bytes(Path::new("site.toml"), text.as_bytes()).expect("a user and password_env");
}

#[test]
fn outputs_that_are_inputs_of_the_run_are_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let video = dir.path().join("v.mp4");
    let weights = dir.path().join("w.safetensors");
    std::fs::write(&video, b"the camera's own recording").expect("video");
    std::fs::write(&weights, b"weights").expect("weights");
    let site = dir.path().join("site.toml");
    let cases = [
        ("video = \"v.mp4\"", "outputs.video", "cameras[0].visible.path"),
        ("video = \"./sub/../v.mp4\"", "outputs.video", "cameras[0].visible.path"),
        ("events = \"not-yet/../site.toml\"", "outputs.events", "the site file"),
        ("events = \"site.toml\"", "outputs.events", "the site file"),
        ("events = \"w.safetensors\"", "outputs.events", "model.weights"),
        ("thumbnails = \"w.safetensors\"", "outputs.thumbnails", "model.weights"),
    ];
    std::fs::create_dir_all(dir.path().join("sub")).expect("sub");
    for (line, key, input) in cases {
        std::fs::write(&site, format!("{SITE}\n[outputs]\n{line}\n")).expect("site");
        let before = std::fs::read(&site).expect("read");
        let e = SiteConfig::load(&site).expect_err(line);
        assert_eq!(e.key, key, "{line}: {e}");
        assert!(
            e.message.contains(input) && e.message.contains("may not be an input") || key == "outputs.thumbnails",
            "{line}: {e}"
        );
        assert!(e.line > 0, "{line}: located: {e}");
        // `run` refuses the same site before writing anything.
        let out = common::bin().arg("run").arg(&site).output().expect("runs");
        assert_eq!(out.status.code(), Some(1), "{line}: {}", common::text(&out));
        assert_eq!(
            std::fs::read(&site).expect("read"),
            before,
            "{line}: the site file is unchanged"
        );
        assert_eq!(
            std::fs::read(&video).expect("read"),
            b"the camera's own recording",
            "{line}"
        );
        assert_eq!(std::fs::read(&weights).expect("read"), b"weights", "{line}");
    }
    // Outputs elsewhere are fine.
    std::fs::write(
        &site,
        format!("{SITE}\n[outputs]\nvideo = \"out.mkv\"\nevents = \"events.jsonl\"\n"),
    )
    .expect("site");
    SiteConfig::load(&site).expect("outputs beside the inputs are fine");
}

#[test]
fn a_cluster_section_is_checked_key_by_key() {
    let with = |cluster: &str| format!("{SITE}\n[cluster]\n{cluster}");
    // Line 21 is the first line of the section's body.
    let ok = SiteConfig::from_bytes(
        Path::new("/etc/reid/site.toml"),
        with("servers = [\"nats://10.0.0.5:4222\", \"nats://10.0.0.6:4222\"]\nnode = \"gate-a\"\nuser = \"reid\"\npassword_env = \"REID_NATS_PASSWORD\"\nvector = \"int8\"\n").as_bytes(),
    )
    .expect("valid");
    let c = ok.cluster.expect("a cluster");
    assert_eq!(c.servers.len(), 2);
    assert_eq!(
        (c.node.as_str(), c.stream.as_str(), c.bucket.as_str()),
        ("gate-a", "REID_EXEMPLARS", "REID_MERGES")
    );
    assert_eq!(c.vector, reid_pipe::config::site::VectorEncoding::Int8);
    assert_eq!(
        c.max_exemplars_per_identity, ok.index.max_exemplars as i64,
        "defaults to the index's"
    );
    // Without the section a node works alone.
    assert!(
        SiteConfig::from_bytes(Path::new("s.toml"), SITE.as_bytes())
            .unwrap()
            .cluster
            .is_none()
    );
    let e = site_err(with("servers = [\"nats://reid:hunter2@10.0.0.5:4222\"]\nnode = \"a\"\n").as_bytes());
    expect(&e, "cluster.servers", 21, "holds credentials");
    assert!(
        !e.to_string().contains("hunter2") && !e.to_string().contains("reid:"),
        "{e}"
    );
    // A token in the URL's user part, likewise.
    let e = site_err(with("servers = [\"nats://s3cr3tt0ken@10.0.0.5:4222\"]\nnode = \"a\"\n").as_bytes());
    expect(&e, "cluster.servers", 21, "holds credentials");
    assert!(!e.to_string().contains("s3cr3tt0ken"), "{e}");
    let e = site_err(
        with("servers = [\"nats://h:4222\"]\nnode = \"a\"\nevents_subject = \"reid.exemplars.events\"\n").as_bytes(),
    );
    expect(&e, "cluster.events_subject", 23, "under the exemplars' subject");
    let e = site_err(with("servers = [\"nats://h:4222\"]\nnode = \"a\"\nmax_age_s = 1e20\n").as_bytes());
    expect(&e, "cluster.max_age_s", 23, "in [1, 320000000]");
    let e = site_err(with("servers = [\"http://10.0.0.5\"]\nnode = \"a\"\n").as_bytes());
    expect(&e, "cluster.servers", 21, "expected URLs such as");
    let e = site_err(with("servers = []\nnode = \"a\"\n").as_bytes());
    expect(&e, "cluster.servers", 21, "at least one");
    let e = site_err(with("servers = [\"nats://h:4222\"]\nnode = \"gate a\"\n").as_bytes());
    expect(&e, "cluster.node", 22, "letters, digits");
    let e = site_err(with("servers = [\"nats://h:4222\"]\nnode = \"a\"\npassword_env = \"P\"\n").as_bytes());
    expect(&e, "cluster.password_env", 23, "needs a user");
    let e = site_err(with("servers = [\"nats://h:4222\"]\nnode = \"a\"\nreplicas = 7\n").as_bytes());
    expect(&e, "cluster.replicas", 23, "in [1, 5]");
    let e = site_err(with("servers = [\"nats://h:4222\"]\nnode = \"a\"\nevents_subject = \"reid.>\"\n").as_bytes());
    expect(&e, "cluster.events_subject", 23, "no wildcards");
    let e = site_err(with("servers = [\"nats://h:4222\"]\nnode = \"a\"\nvector = \"f32\"\n").as_bytes());
    assert!(e.key.starts_with("cluster"), "{e}");
}

#[test]
fn a_centre_file_is_an_input_and_must_be_named() {
    let with_centre = |centre: &str| {
        SITE.replace(
            "weights = \"w.safetensors\"",
            &format!("weights = \"w.safetensors\"\ncentre = \"{centre}\""),
        )
    };
    let e = site_err(with_centre("").as_bytes());
    expect(&e, "model.centre", 19, "path of a centre file");
    let cfg =
        SiteConfig::from_bytes(Path::new("/site/site.toml"), with_centre("c.safetensors").as_bytes()).expect("site");
    assert_eq!(cfg.model.centre.as_deref(), Some(Path::new("/site/c.safetensors")));
    let dir = tempfile::tempdir().expect("tempdir");
    let site = dir.path().join("site.toml");
    std::fs::write(dir.path().join("c.safetensors"), b"centre").expect("centre");
    std::fs::write(
        &site,
        format!(
            "{}\n[outputs]\nevents = \"c.safetensors\"\n",
            with_centre("c.safetensors")
        ),
    )
    .expect("site");
    let e = SiteConfig::load(&site).expect_err("the centre as the events file");
    assert_eq!(e.key, "outputs.events", "{e}");
    assert!(
        e.message.contains("model.centre") && e.message.contains("may not be an input"),
        "{e}"
    );
}
