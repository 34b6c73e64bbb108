//! Malformed files: weight files (safetensors framing and headers, `torch.save` ZIP, pickle and
//! TAR containers, model descriptions, tensors that do not fit the network, non-finite values)
//! given to `check`, `run`, `eval --checkpoint`, `import`, `export` and `train`; TorchScript
//! manifests and modules; SYSU-MM01, RegDB and Market-1501 layouts for `train` and `eval`;
//! feature files for `eval --features`; identity-index snapshots for `index` and `run`; training
//! logs for `viz curves`. Every input is made here, in Rust, from the fixtures.

use crate::fixtures::{site_text, train_text};
use crate::{Case, Fixtures, arg, common, eval_features, strings, write};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use tch::{CModule, Device, Kind, Tensor};

/// The file cases, each writing its inputs under its own case folder.
pub fn cases(fx: &Fixtures) -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(weight_framing(fx));
    cases.extend(weight_contents(fx));
    cases.extend(model_descriptions(fx));
    cases.extend(torch_save_files(fx));
    cases.extend(manifests(fx));
    cases.extend(training_sets(fx));
    cases.extend(evaluation_sets(fx));
    cases.extend(feature_files(fx));
    cases.extend(snapshots(fx));
    cases.extend(training_logs(fx));
    cases
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/// `reid-pipe <command> site.toml` for a site in `dir` (two test sources, HOG, snapshots in
/// `dir/index`) whose model is `weights`.
fn site_args(command: &str, dir: &Path, weights: &Path) -> Vec<String> {
    let site = write(&dir.join("site.toml"), site_text(dir, weights, ""));
    vec![command.to_owned(), arg(&site)]
}

/// `eval` of `--checkpoint weights` (on the CPU at 64×32) on the `dataset` at `root`, writing to
/// `dir/out`.
fn eval_checkpoint(dataset: &str, root: &Path, weights: &Path, dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = strings(&[
        "eval",
        "--dataset",
        dataset,
        "--root",
        &arg(root),
        "--checkpoint",
        &arg(weights),
    ]);
    args.extend(strings(&[
        "--device",
        "cpu",
        "--input-size",
        "64",
        "32",
        "--out",
        &arg(&dir.join("out")),
    ]));
    args.extend(strings(extra));
    args
}

/// `import input dir/imported.safetensors`.
fn import_args(input: &Path, dir: &Path) -> Vec<String> {
    strings(&["import", &arg(input), &arg(&dir.join("imported.safetensors"))])
}

/// A training file on the `data` set that starts from `pretrained` weights (MobileNetV2, 64×32).
fn pretrained_text(out: &Path, data: &Path, pretrained: &Path) -> String {
    format!(
        "output_dir = \"{}\"\ndevice = \"cpu\"\n[dataset]\nkind = \"sysu\"\nroot = \"{}\"\n\
         [model]\nbackbone = \"mobilenetv2\"\ninput_size = [64, 32]\npretrained = \"{}\"\n\
         [schedule]\nidentities_per_batch = 3\nimages_per_identity = 2\n",
        out.display(),
        data.display(),
        pretrained.display()
    )
}

// ---------------------------------------------------------------------------------------------
// Building malformed files
// ---------------------------------------------------------------------------------------------

/// A safetensors file from its header (as JSON) and data section, written as given.
fn safetensors(header: &Value, data: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(header).expect("JSON");
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(data);
    out
}

/// Little-endian bytes of `values`.
fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A safetensors file of F32 tensors `(name, shape, values)` and, unless null, `metadata`.
fn st_file(tensors: &[(&str, &[i64], &[f32])], metadata: Value) -> Vec<u8> {
    let mut header = Map::new();
    if !metadata.is_null() {
        header.insert("__metadata__".to_owned(), metadata);
    }
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let bytes = f32_bytes(values);
        header.insert(
            (*name).to_owned(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [data.len(), data.len() + bytes.len()]}),
        );
        data.extend_from_slice(&bytes);
    }
    safetensors(&Value::Object(header), &data)
}

/// A safetensors file of one tensor entry given as JSON over `data_len` zero bytes.
fn st_entry(name: &str, entry: Value, data_len: usize) -> Vec<u8> {
    let mut header = Map::new();
    header.insert(name.to_owned(), entry);
    safetensors(&Value::Object(header), &vec![0u8; data_len])
}

/// The metadata of a feature file: its rows' `paths`.
fn paths_metadata(paths: &[String]) -> Value {
    json!({ "paths": serde_json::to_string(paths).expect("JSON") })
}

/// A safetensors file taken apart: its header and its data section.
struct Parts {
    header: Map<String, Value>,
    data: Vec<u8>,
}

impl Parts {
    fn read(path: &Path) -> Self {
        let bytes = std::fs::read(path).expect("read the weights");
        let len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
        Parts {
            header: serde_json::from_slice(&bytes[8..8 + len]).expect("a JSON header"),
            data: bytes[8 + len..].to_vec(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        safetensors(&Value::Object(self.header.clone()), &self.data)
    }

    /// Overwrites the first values of the F32 tensor `name`.
    fn poke(&mut self, name: &str, values: &[f32]) {
        let start = self.header[name]["data_offsets"][0].as_u64().expect("offsets") as usize;
        let bytes = f32_bytes(values);
        self.data[start..start + bytes.len()].copy_from_slice(&bytes);
    }
}

/// A model description (`spec` metadata) of a MobileNetV2 at 64×32, `change` applied.
fn spec_file(change: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut spec = json!({
        "backbone": "mobilenetv2", "classes": 0, "input_size": [64, 32], "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225], "last_stride": 1, "parts": 1
    });
    change(&mut spec);
    let metadata = json!({"format": "reid-pipe-weights", "spec": spec.to_string()});
    st_file(&[("features.0.0.weight", &[2], &[0.0, 0.0])], metadata)
}

/// A ZIP archive of stored (uncompressed) entries, as `torch.save` writes them.
fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let crc32 = reid_pipe::index::snapshot::crc32;
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in entries {
        let offset = out.len() as u32;
        let (crc, size, name_len) = (crc32(data), data.len() as u32, name.len() as u16);
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        for v in [20u16, 0, 0, 0, 0] {
            out.extend_from_slice(&v.to_le_bytes()); // version, flags, stored, time, date
        }
        for v in [crc, size, size] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        for v in [20u16, 20, 0, 0, 0, 0] {
            central.extend_from_slice(&v.to_le_bytes()); // made by, needed, flags, stored, time, date
        }
        for v in [crc, size, size] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [name_len, 0, 0, 0, 0] {
            central.extend_from_slice(&v.to_le_bytes()); // name, extra, comment, disk, internal
        }
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let (central_offset, central_len, count) = (out.len() as u32, central.len() as u32, entries.len() as u16);
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, count, count] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&central_len.to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// The pickle `torch.save({'net': {'features.0.0.weight': t}})` writes for a tensor `t` of
/// `numel` (a pickled int) elements in storage `0` of class `storage`.
fn torch_pickle(storage: &str, numel: &[u8]) -> Vec<u8> {
    let mut p = b"\x80\x02}q\x00X\x03\x00\x00\x00netq\x01}q\x02X\x13\x00\x00\x00features.0.0.weightq\x03\
                  ctorch._utils\n_rebuild_tensor_v2\nq\x04((X\x07\x00\x00\x00storageq\x05ctorch\n"
        .to_vec();
    p.extend_from_slice(storage.as_bytes());
    p.extend_from_slice(b"\nq\x06X\x01\x00\x00\x000q\x07X\x03\x00\x00\x00cpuq\x08");
    p.extend_from_slice(numel);
    p.extend_from_slice(b"tq\tQK\x00");
    p.extend_from_slice(numel);
    p.extend_from_slice(b"\x85q\nK\x01\x85q\x0b\x89ccollections\nOrderedDict\nq\x0c)Rq\rtq\x0eRq\x0fss.");
    p
}

/// Saves a TorchScript module traced from `forward` on a 2×3×64×32 batch.
fn traced(path: &Path, forward: fn(&Tensor) -> Tensor) -> PathBuf {
    let example = Tensor::zeros([2, 3, 64, 32], (Kind::Float, Device::Cpu));
    let module = CModule::create_by_tracing("Broken", "forward", &[example], &mut |inputs: &[Tensor]| {
        vec![forward(&inputs[0])]
    })
    .expect("trace a module");
    module.save(path).expect("save the module");
    path.to_path_buf()
}

/// Copies a folder tree.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Cuts a file to half its length.
fn truncate(path: &Path) {
    let bytes = std::fs::read(path).expect("a file to truncate");
    std::fs::write(path, &bytes[..bytes.len() / 2]).expect("truncate");
}

/// The `.jpg` files under `root`, relative, sorted.
fn jpegs(root: &Path) -> Vec<String> {
    common::files_under(root)
        .into_iter()
        .filter(|p| p.ends_with(".jpg"))
        .collect()
}

/// A set `reid-pipe synth --format format` wrote into a folder of its own (written once).
fn synth(fx: &Fixtures, format: &str) -> PathBuf {
    let root = fx.case_dir(&format!("{format}-base")).join(format);
    if root.exists() {
        return root;
    }
    common::ok(
        common::bin()
            .args(["synth", "--format", format, "--identities", "6", "--out"])
            .arg(&root)
            .output()
            .expect("synth"),
    );
    root
}

// ---------------------------------------------------------------------------------------------
// Weight files: framing and headers
// ---------------------------------------------------------------------------------------------

fn weight_framing(fx: &Fixtures) -> Vec<Case> {
    let mut cases = Vec::new();
    // `check` of a site file opens the model as `run` does.
    let mut check = |name: &str, message: &str, file: &str, bytes: Vec<u8>| {
        let dir = fx.case_dir(name);
        let weights = write(&dir.join(file), bytes);
        cases.push(Case::new(name, 1, message, site_args("check", &dir, &weights)));
    };
    check(
        "weights-empty-file",
        "empty.safetensors: neither a torch.save file (ZIP, pickle or TAR) nor safetensors",
        "empty.safetensors",
        Vec::new(),
    );
    check(
        "weights-header-length-huge",
        "not a safetensors file: header length 9223372036854775808 runs past the end of the file",
        "huge.safetensors",
        [(1u64 << 63).to_le_bytes().as_slice(), b"{}"].concat(),
    );
    check(
        "weights-offsets-out-of-range",
        "tensor `features.0.0.weight`: shape [2] of F32 does not fit data bytes 0..800 of 8",
        "offsets.safetensors",
        st_entry(
            "features.0.0.weight",
            json!({"dtype": "F32", "shape": [2], "data_offsets": [0, 800]}),
            8,
        ),
    );
    check(
        "weights-dtype-unknown",
        "tensor `features.0.0.weight`: element type F8_E4M3 is not supported",
        "dtype.safetensors",
        st_entry(
            "features.0.0.weight",
            json!({"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}),
            2,
        ),
    );
    check(
        "weights-no-tensors",
        "notensors.safetensors: holds no tensors",
        "notensors.safetensors",
        st_file(&[], json!({"format": "reid-pipe-weights"})),
    );
    check(
        "weights-resnet-of-basic-blocks",
        "a ResNet of basic blocks (ResNet-18/34",
        "resnet18.safetensors",
        st_file(
            &[
                ("conv1.weight", &[2], &[0.0, 0.0]),
                ("layer1.0.conv1.weight", &[2], &[0.0, 0.0]),
                ("layer4.0.conv1.weight", &[2], &[0.0, 0.0]),
            ],
            Value::Null,
        ),
    );

    // `import` reads any weight file the same way.
    let mut import = |name: &str, message: &str, file: &str, bytes: Vec<u8>| {
        let dir = fx.case_dir(name);
        let input = write(&dir.join(file), bytes);
        cases.push(Case::new(name, 1, message, import_args(&input, &dir)).keeps(&input));
    };
    import(
        "weights-header-not-json",
        "notjson.safetensors: not a safetensors file: bad JSON header",
        "notjson.safetensors",
        [12u64.to_le_bytes().as_slice(), b"{not json!!}"].concat(),
    );
    import(
        "weights-offsets-reversed",
        "does not fit data bytes 8..0 of 8",
        "reversed.safetensors",
        st_entry(
            "features.0.0.weight",
            json!({"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}),
            8,
        ),
    );
    import(
        "weights-shape-overflows",
        "shape [4611686018427387904, 4611686018427387904] of F32 does not fit",
        "overflow.safetensors",
        st_entry(
            "features.0.0.weight",
            json!({"dtype": "F32", "shape": [1u64 << 62, 1u64 << 62], "data_offsets": [0, 8]}),
            8,
        ),
    );
    import(
        "weights-metadata-not-strings",
        "not a safetensors file: bad __metadata__",
        "metadata.safetensors",
        st_file(&[("features.0.0.weight", &[2], &[0.0, 0.0])], json!({"format": 3})),
    );
    import(
        "weights-unknown-layout",
        "layout.safetensors: not a known weight layout",
        "layout.safetensors",
        st_file(&[("encoder.blocks.0.weight", &[2], &[0.0, 0.0])], Value::Null),
    );

    // `eval --checkpoint` as well.
    let mut eval = |name: &str, message: &str, file: &str, bytes: Vec<u8>| {
        let dir = fx.case_dir(name);
        let weights = write(&dir.join(file), bytes);
        cases.push(Case::new(
            name,
            1,
            message,
            eval_checkpoint("sysu", &fx.sysu, &weights, &dir, &[]),
        ));
    };
    eval(
        "weights-negative-shape",
        "tensor `features.0.0.weight`: shape [-1, 2] of F32 does not fit",
        "negative.safetensors",
        st_entry(
            "features.0.0.weight",
            json!({"dtype": "F32", "shape": [-1, 2], "data_offsets": [0, 8]}),
            8,
        ),
    );
    eval(
        "weights-entry-without-offsets",
        "tensor `features.0.0.weight`: bad header entry: missing field `data_offsets`",
        "entry.safetensors",
        st_entry("features.0.0.weight", json!({"dtype": "F32", "shape": [2]}), 8),
    );
    eval(
        "weights-no-backbone",
        "nobackbone.safetensors: Mobilenetv2 layout, but no backbone",
        "nobackbone.safetensors",
        st_file(&[("features.0.0.weight", &[2], &[0.0, 0.0])], Value::Null),
    );

    // Half of the real weights: the cut runs through a tensor's data.
    let dir = fx.case_dir("weights-truncated");
    let truncated = write(&dir.join("truncated.safetensors"), {
        let bytes = std::fs::read(&fx.weights).expect("weights");
        bytes[..bytes.len() / 2].to_vec()
    });
    cases.push(Case::new(
        "weights-truncated",
        1,
        "truncated.safetensors: tensor `",
        eval_checkpoint("sysu", &fx.sysu, &truncated, &dir, &[]),
    ));
    let dir = fx.case_dir("weights-truncated-export");
    let mut args = site_args("export", &dir, &truncated);
    args.extend([String::from("--out"), arg(&dir.join("export"))]);
    cases.push(Case::new(
        "weights-truncated-export",
        1,
        "truncated.safetensors: tensor `",
        args,
    ));

    // Not a weight file at all.
    let dir = fx.case_dir("weights-directory");
    let folder = dir.join("weights.safetensors");
    std::fs::create_dir_all(&folder).expect("mkdir");
    cases.push(Case::new(
        "weights-directory",
        1,
        "weights.safetensors: Is a directory",
        eval_checkpoint("sysu", &fx.sysu, &folder, &dir, &[]),
    ));
    cases
}

// ---------------------------------------------------------------------------------------------
// Weight files: tensors that do not fit, non-finite or degenerate values
// ---------------------------------------------------------------------------------------------

fn weight_contents(fx: &Fixtures) -> Vec<Case> {
    let mut cases = Vec::new();
    let real = || Parts::read(&fx.weights);

    let dir = fx.case_dir("weights-missing-tensor");
    let mut parts = real();
    parts
        .header
        .remove("features.3.conv.1.weight")
        .expect("a MobileNetV2 tensor");
    let weights = write(&dir.join("missing.safetensors"), parts.bytes());
    cases.push(Case::new(
        "weights-missing-tensor",
        1,
        "1 missing: base_resnet.base.features.3.conv.1.weight",
        site_args("check", &dir, &weights),
    ));

    let dir = fx.case_dir("weights-wrong-shape");
    let mut parts = real();
    parts.header["features.0.0.weight"]["shape"] = json!([16, 6, 3, 3]);
    let weights = write(&dir.join("shape.safetensors"), parts.bytes());
    cases.push(Case::new(
        "weights-wrong-shape",
        1,
        "visible_module.visible.features.0.0.weight [16, 6, 3, 3] vs [32, 3, 3, 3]",
        import_args(&weights, &dir),
    ));

    cases.push(Case::new(
        "weights-classes-differ-from-flag",
        1,
        "the classifier has 0 identities, --classes says 5",
        {
            let dir = fx.case_dir("weights-classes-differ-from-flag");
            let mut args = import_args(&fx.weights, &dir);
            args.extend(strings(&["--classes", "5"]));
            args
        },
    ));

    // A NaN in one tensor: every way in must name it, before a frame is processed, before
    // training starts, before a result is scored or a file written.
    let dir = fx.case_dir("weights-nan-run");
    let mut parts = real();
    parts.poke("features.5.conv.0.weight", &[f32::NAN]);
    let nan = write(&dir.join("nan.safetensors"), parts.bytes());
    cases.push(Case::new(
        "weights-nan-run",
        1,
        "features.5.conv.0.weight",
        site_args("run", &dir, &nan),
    ));
    let dir = fx.case_dir("weights-nan-import");
    cases.push(Case::new(
        "weights-nan-import",
        1,
        "features.5.conv.0.weight",
        import_args(&nan, &dir),
    ));
    let dir = fx.case_dir("weights-nan-pretrained");
    let config = write(
        &dir.join("train.toml"),
        pretrained_text(&dir.join("run"), &fx.sysu, &nan),
    );
    cases.push(Case::new(
        "weights-nan-pretrained",
        1,
        "features.5.conv.0.weight",
        ["train".to_owned(), arg(&config)],
    ));

    let dir = fx.case_dir("weights-infinite-eval");
    let mut parts = real();
    parts.poke("features.0.0.weight", &[f32::INFINITY; 8]);
    let weights = write(&dir.join("inf.safetensors"), parts.bytes());
    cases.push(Case::new(
        "weights-infinite-eval",
        1,
        "features.0.0.weight",
        eval_checkpoint("sysu", &fx.sysu, &weights, &dir, &[]),
    ));

    // All-zero weights embed every image into the same vector: ranking ties in gallery order
    // would be scored as a result.
    let dir = fx.case_dir("weights-all-zero-eval");
    let mut parts = real();
    parts.data.iter_mut().for_each(|b| *b = 0);
    let weights = write(&dir.join("zeros.safetensors"), parts.bytes());
    cases.push(Case::new(
        "weights-all-zero-eval",
        1,
        "zeros.safetensors",
        eval_checkpoint("sysu", &fx.sysu, &weights, &dir, &[]),
    ));
    cases
}

// ---------------------------------------------------------------------------------------------
// Weight files: model descriptions (`spec` metadata) no network can have
// ---------------------------------------------------------------------------------------------

fn model_descriptions(fx: &Fixtures) -> Vec<Case> {
    let mut cases = Vec::new();
    let file = |name: &str, bytes: Vec<u8>| write(&fx.case_dir(name).join("spec.safetensors"), bytes);

    let w = file("spec-classes-negative", spec_file(|s| s["classes"] = json!(-3)));
    let dir = fx.case_dir("spec-classes-negative");
    cases.push(Case::new(
        "spec-classes-negative",
        1,
        "metadata `spec`: classes -3 is negative",
        site_args("check", &dir, &w),
    ));
    let dir = fx.case_dir("spec-classes-negative-pretrained");
    let config = write(&dir.join("train.toml"), pretrained_text(&dir.join("run"), &fx.sysu, &w));
    cases.push(Case::new(
        "spec-classes-negative-pretrained",
        1,
        "metadata `spec`: classes -3 is negative",
        ["train".to_owned(), arg(&config)],
    ));

    let w = file("spec-backbone-unknown", spec_file(|s| s["backbone"] = json!("vgg16")));
    cases.push(Case::new(
        "spec-backbone-unknown",
        1,
        "metadata `spec` is not a model description: unknown variant `vgg16`",
        site_args("check", &fx.case_dir("spec-backbone-unknown"), &w),
    ));
    let w = file("spec-std-zero", spec_file(|s| s["std"] = json!([0.0, 1.0, 1.0])));
    cases.push(Case::new(
        "spec-std-zero",
        1,
        "std [0.0, 1.0, 1.0]: finite, std > 0",
        site_args("check", &fx.case_dir("spec-std-zero"), &w),
    ));

    let w = file("spec-input-size-zero", spec_file(|s| s["input_size"] = json!([0, 0])));
    let dir = fx.case_dir("spec-input-size-zero");
    cases.push(Case::new(
        "spec-input-size-zero",
        1,
        "input_size [0, 0]: each side must be in [16, 2048]",
        eval_checkpoint("sysu", &fx.sysu, &w, &dir, &[]),
    ));
    let w = file("spec-parts-zero", spec_file(|s| s["parts"] = json!(0)));
    let dir = fx.case_dir("spec-parts-zero");
    cases.push(Case::new(
        "spec-parts-zero",
        1,
        "metadata `spec`: parts 0 for an input 64 pixels high",
        eval_checkpoint("sysu", &fx.sysu, &w, &dir, &[]),
    ));

    let mut import = |name: &str, message: &str, bytes: Vec<u8>| {
        let w = file(name, bytes);
        cases.push(Case::new(name, 1, message, import_args(&w, &fx.case_dir(name))).keeps(&w));
    };
    import(
        "spec-input-size-huge",
        "input_size [100000, 50]: each side must be in [16, 2048]",
        spec_file(|s| s["input_size"] = json!([100_000, 50])),
    );
    import(
        "spec-last-stride",
        "metadata `spec`: last_stride 3 (1 or 2)",
        spec_file(|s| s["last_stride"] = json!(3)),
    );
    import(
        "spec-classes-not-a-number",
        "metadata `spec` is not a model description: invalid type: string \"many\"",
        spec_file(|s| s["classes"] = json!("many")),
    );
    import(
        "spec-not-json",
        "metadata `spec` is not a model description",
        st_file(
            &[("features.0.0.weight", &[2], &[0.0, 0.0])],
            json!({"format": "reid-pipe-weights", "spec": "{not json"}),
        ),
    );
    // The description says ResNet-50, the tensors are MobileNetV2's.
    import(
        "spec-backbone-differs-from-tensors",
        "the weights do not fit the network",
        spec_file(|s| s["backbone"] = json!("resnet50")),
    );
    cases
}

// ---------------------------------------------------------------------------------------------
// Weight files: torch.save containers (ZIP, legacy pickle, TAR) that are not state dicts
// ---------------------------------------------------------------------------------------------

fn torch_save_files(fx: &Fixtures) -> Vec<Case> {
    let mut cases = Vec::new();
    let float4 = torch_pickle("FloatStorage", b"K\x04");
    let list = b"\x80\x02]q\x00(K\x01K\x02e.".as_slice();
    let mut fake_tar = vec![0u8; 1024];
    fake_tar[..5].copy_from_slice(b"hello");
    fake_tar[257..262].copy_from_slice(b"ustar");

    let mut import = |name: &str, message: &str, file: &str, bytes: Vec<u8>| {
        let dir = fx.case_dir(name);
        let input = write(&dir.join(file), bytes);
        cases.push(Case::new(name, 1, message, import_args(&input, &dir)).keeps(&input));
    };
    import(
        "torch-text-file",
        "notes.pth: neither a torch.save file (ZIP, pickle or TAR) nor safetensors",
        "notes.pth",
        b"hello, this is not a checkpoint\n".to_vec(),
    );
    import(
        "torch-pickle-of-an-int",
        "int.pt: not a readable torch.save file",
        "int.pt",
        b"\x80\x02K\x05.".to_vec(),
    );
    import(
        "torch-zip-without-tensors",
        "epoch.pt: holds no tensors",
        "epoch.pt",
        zip(&[("archive/data.pkl", b"\x80\x02}q\x00X\x05\x00\x00\x00epochq\x01K\x03s.")]),
    );
    import(
        "torch-zip-storage-missing",
        "tensor `features.0.0.weight`: cannot read its data",
        "nostorage.pt",
        zip(&[("archive/data.pkl", &float4)]),
    );
    import(
        "torch-zip-storage-unsupported",
        "complex.pt: not a readable torch.save file",
        "complex.pt",
        zip(&[
            ("archive/data.pkl", &torch_pickle("ComplexStorage", b"K\x04")),
            ("archive/data/0", &[0; 16]),
        ]),
    );
    import(
        "torch-tar-garbage",
        "fake.tar: not a readable torch.save file",
        "fake.tar",
        fake_tar,
    );

    let mut check = |name: &str, message: &str, file: &str, bytes: Vec<u8>| {
        let dir = fx.case_dir(name);
        let weights = write(&dir.join(file), bytes);
        cases.push(Case::new(name, 1, message, site_args("check", &dir, &weights)));
    };
    check(
        "torch-zip-without-directory",
        "badzip.pth: not a readable torch.save file",
        "badzip.pth",
        [b"PK\x03\x04".as_slice(), &[0u8; 60]].concat(),
    );
    check(
        "torch-zip-of-a-list",
        "list.pt: not a readable torch.save file",
        "list.pt",
        zip(&[("archive/data.pkl", list)]),
    );
    check(
        "torch-zip-storage-short",
        "tensor `features.0.0.weight`: cannot read its data",
        "short.pt",
        zip(&[("archive/data.pkl", &float4), ("archive/data/0", &[0; 8])]),
    );

    let mut eval = |name: &str, message: &str, file: &str, bytes: Vec<u8>| {
        let dir = fx.case_dir(name);
        let weights = write(&dir.join(file), bytes);
        cases.push(Case::new(
            name,
            1,
            message,
            eval_checkpoint("sysu", &fx.sysu, &weights, &dir, &[]),
        ));
    };
    eval(
        "torch-pickle-truncated",
        "truncated.t: not a readable torch.save file",
        "truncated.t",
        b"\x80\x02}q\x00(X\x03\x00\x00\x00net".to_vec(),
    );
    // A shape of 2^31 - 1 elements over a 16-byte storage.
    eval(
        "torch-zip-huge-shape",
        "tensor `features.0.0.weight`: cannot read its data",
        "huge.pt",
        zip(&[
            ("archive/data.pkl", &torch_pickle("FloatStorage", b"J\xff\xff\xff\x7f")),
            ("archive/data/0", &[0; 16]),
        ]),
    );
    cases
}

// ---------------------------------------------------------------------------------------------
// TorchScript manifests and modules
// ---------------------------------------------------------------------------------------------

fn manifests(fx: &Fixtures) -> Vec<Case> {
    let mut cases = Vec::new();
    let export = fx.case_dir("torchscript-export");
    common::ok(
        common::bin()
            .arg("export")
            .arg(&fx.site)
            .arg("--out")
            .arg(&export)
            .output()
            .expect("export"),
    );
    let visible = export.join("reid-embedder-visible.pt");
    let modules = format!(
        "visible = \"{}\"\nthermal = \"{}\"\n",
        visible.display(),
        export.join("reid-embedder-thermal.pt").display()
    );

    let mut check = |name: &str, message: &str, manifest: String| {
        let dir = fx.case_dir(name);
        let path = write(&dir.join("embedder.toml"), manifest);
        cases.push(Case::new(name, 1, message, site_args("check", &dir, &path)));
    };
    check(
        "manifest-without-output-dim",
        "missing field `output_dim`",
        format!("{modules}input_size = [288, 144]\n"),
    );
    check(
        "manifest-without-visible",
        "missing field `visible`",
        format!(
            "thermal = \"{}\"\ninput_size = [288, 144]\noutput_dim = 1280\n",
            visible.display()
        ),
    );
    check(
        "manifest-unknown-field",
        "unknown field `backbone`",
        format!("{modules}input_size = [288, 144]\noutput_dim = 1280\nbackbone = \"resnet50\"\n"),
    );
    check("manifest-not-toml", "TOML parse error", "visible = \n[[[\n".to_owned());
    check(
        "manifest-output-dim-differs",
        "returned shape [1, 1280], expected [1, 512]",
        format!("{modules}input_size = [288, 144]\noutput_dim = 512\n"),
    );
    check(
        "manifest-output-dim-negative",
        "output_dim -1 must be in [1, 65536]",
        format!("{modules}input_size = [288, 144]\noutput_dim = -1\n"),
    );
    check(
        "manifest-input-size-huge",
        "input_size (100000, 144) each in [8, 2048]",
        format!("{modules}input_size = [100000, 144]\noutput_dim = 1280\n"),
    );
    check(
        "manifest-input-size-zero",
        "input_size (0, 0) each in [8, 2048]",
        format!("{modules}input_size = [0, 0]\noutput_dim = 1280\n"),
    );
    // A zero std divides every pixel by zero: the manifest's key should be named, not the
    // weights suspected.
    check(
        "manifest-std-zero",
        "std [0.0, 0.0, 0.0]",
        format!("{modules}input_size = [288, 144]\noutput_dim = 1280\nstd = [0.0, 0.0, 0.0]\n"),
    );

    let mut module = |name: &str, message: &str, file: &str, bytes: Option<Vec<u8>>| {
        let dir = fx.case_dir(name);
        let file = match bytes {
            Some(b) => write(&dir.join(file), b),
            None => dir.join(file),
        };
        let manifest = format!(
            "visible = \"{0}\"\nthermal = \"{0}\"\ninput_size = [288, 144]\noutput_dim = 1280\n",
            file.display()
        );
        let path = write(&dir.join("embedder.toml"), manifest);
        cases.push(Case::new(name, 1, message, site_args("check", &dir, &path)));
    };
    module(
        "manifest-module-garbage",
        "cannot load TorchScript module",
        "garbage.pt",
        Some(b"garbage\n".to_vec()),
    );
    module("manifest-module-missing", "missing.pt", "missing.pt", None);
    module(
        "manifest-module-truncated",
        "cannot load TorchScript module",
        "truncated.pt",
        Some(std::fs::read(&visible).expect("module")[..100_000].to_vec()),
    );
    module(
        "manifest-module-is-safetensors",
        "cannot load TorchScript module",
        "weights.pt",
        Some(std::fs::read(&fx.weights).expect("weights")),
    );

    // Modules that load but fail or give garbage on a batch of one crop.
    let dir = fx.case_dir("manifest-module-fails-at-run-time");
    let broken = traced(&dir.join("select.pt"), |x| {
        x.select(0, 1).reshape([1, -1]).narrow(1, 0, 16)
    });
    let manifest = format!(
        "visible = \"{0}\"\nthermal = \"{0}\"\ninput_size = [64, 32]\noutput_dim = 16\n",
        broken.display()
    );
    let path = write(&dir.join("embedder.toml"), manifest);
    cases.push(Case::new(
        "manifest-module-fails-at-run-time",
        1,
        "index 1 out of range",
        site_args("check", &dir, &path),
    ));
    let dir = fx.case_dir("manifest-module-not-finite");
    let infinite = traced(&dir.join("log0.pt"), |x| {
        (x.flatten(1, -1).narrow(1, 0, 16) * 0.0).log()
    });
    let manifest = format!(
        "visible = \"{0}\"\nthermal = \"{0}\"\ninput_size = [64, 32]\noutput_dim = 16\n",
        infinite.display()
    );
    let path = write(&dir.join("embedder.toml"), manifest);
    cases.push(Case::new(
        "manifest-module-not-finite",
        1,
        "not finite",
        site_args("run", &dir, &path),
    ));

    // The manifest is no network to export again; a module is no checkpoint.
    let dir = fx.case_dir("manifest-exported-again");
    let path = write(
        &dir.join("embedder.toml"),
        format!("{modules}input_size = [288, 144]\noutput_dim = 1280\n"),
    );
    let mut args = site_args("export", &dir, &path);
    args.extend([String::from("--out"), arg(&dir.join("export"))]);
    cases.push(Case::new(
        "manifest-exported-again",
        1,
        "is already a TorchScript manifest",
        args,
    ));
    let dir = fx.case_dir("manifest-module-as-checkpoint");
    cases.push(Case::new(
        "manifest-module-as-checkpoint",
        1,
        "reid-embedder-visible.pt: not a readable torch.save file",
        eval_checkpoint("sysu", &fx.sysu, &visible, &dir, &[]),
    ));
    cases
}

// ---------------------------------------------------------------------------------------------
// Datasets for `train`: images, id lists, layouts
// ---------------------------------------------------------------------------------------------

fn training_sets(fx: &Fixtures) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut train = |name: &str, message: &str, spoil: &dyn Fn(&Path)| {
        let dir = fx.case_dir(name);
        let root = dir.join("sysu");
        copy_dir(&fx.sysu, &root);
        spoil(&root);
        let config = write(&dir.join("train.toml"), train_text(&dir.join("run"), &root, ""));
        cases.push(Case::new(name, 1, message, ["train".to_owned(), arg(&config)]));
    };
    train("train-truncated-jpeg", "cam1/0001/0001.jpg: truncated JPEG", &|r| {
        truncate(&r.join("cam1/0001/0001.jpg"))
    });
    train(
        "train-garbage-image",
        "cam3/0002/0003.jpg: not a readable image",
        &|r| {
            write(&r.join("cam3/0002/0003.jpg"), "this is not an image");
        },
    );
    train("train-empty-image", "cam1/0003/0002.jpg", &|r| {
        write(&r.join("cam1/0003/0002.jpg"), "");
    });
    train(
        "train-truncated-png-named-jpg",
        "cam1/0002/0001.jpg: truncated PNG",
        &|r| {
            write(&r.join("cam1/0002/0001.jpg"), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
        },
    );
    train("train-id-list-missing", "exp/train_id.txt: cannot read", &|r| {
        std::fs::remove_file(r.join("exp/train_id.txt")).expect("remove");
    });
    train(
        "train-id-list-empty",
        "exp/train_id.txt: the first line is empty",
        &|r| {
            write(&r.join("exp/train_id.txt"), "");
        },
    );
    train(
        "train-id-not-a-number",
        "exp/train_id.txt: \"three\" is not a person id",
        &|r| {
            write(&r.join("exp/train_id.txt"), "1,2,three\n");
        },
    );
    train("train-id-list-not-utf8", "exp/train_id.txt: cannot read", &|r| {
        write(&r.join("exp/train_id.txt"), b"\xff\xfe1,2,3\n");
    });
    // Ghost ids: listed, but without images; named by person id, not by a label.
    train("train-ghost-id", "person 42", &|r| {
        write(&r.join("exp/train_id.txt"), "1,2,3,42\n");
    });
    train("train-no-infrared-cameras", "has no infrared image", &|r| {
        for cam in ["cam3", "cam6"] {
            std::fs::remove_dir_all(r.join(cam)).expect("remove");
        }
    });
    train("train-root-is-a-file", "sysu: not a folder", &|r| {
        std::fs::remove_dir_all(r).expect("remove");
        write(r, "a file where the dataset should be");
    });
    train("train-root-missing", "sysu: not found", &|r| {
        std::fs::remove_dir_all(r).expect("remove");
    });
    cases
}

// ---------------------------------------------------------------------------------------------
// Datasets for `eval --checkpoint`: SYSU-MM01, RegDB and Market-1501
// ---------------------------------------------------------------------------------------------

fn evaluation_sets(fx: &Fixtures) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut sysu = |name: &str, message: &str, spoil: &dyn Fn(&Path)| {
        let dir = fx.case_dir(name);
        let root = dir.join("sysu");
        copy_dir(&fx.sysu, &root);
        spoil(&root);
        cases.push(Case::new(
            name,
            1,
            message,
            eval_checkpoint("sysu", &root, &fx.weights, &dir, &[]),
        ));
    };
    sysu("eval-truncated-jpeg", "cam3/0006/0002.jpg: truncated JPEG", &|r| {
        truncate(&r.join("cam3/0006/0002.jpg"))
    });
    sysu("eval-garbage-image", "cam1/0006/0001.jpg: not a readable image", &|r| {
        write(&r.join("cam1/0006/0001.jpg"), "garbage");
    });
    sysu("eval-id-list-missing", "exp/test_id.txt: cannot read", &|r| {
        std::fs::remove_file(r.join("exp/test_id.txt")).expect("remove");
    });
    sysu("eval-id-list-empty", "exp/test_id.txt: the first line is empty", &|r| {
        write(&r.join("exp/test_id.txt"), "\n5,6\n");
    });
    sysu("eval-id-list-semicolons", "\"5;6\" is not a person id", &|r| {
        write(&r.join("exp/test_id.txt"), "5;6\n");
    });
    // A test id without images is a broken copy of the dataset, not a smaller benchmark.
    sysu("eval-ghost-id", "person 77", &|r| {
        write(&r.join("exp/test_id.txt"), "5,6,77\n");
    });

    // RegDB: the trial index files (images shared with the generated set).
    let regdb = synth(fx, "regdb");
    let mut regdb_case = |name: &str, message: &str, spoil: &dyn Fn(&Path)| {
        let dir = fx.case_dir(name);
        let root = dir.join("regdb");
        copy_dir(&regdb.join("idx"), &root.join("idx"));
        for side in ["Visible", "Thermal"] {
            std::os::unix::fs::symlink(regdb.join(side), root.join(side)).expect("symlink");
        }
        spoil(&root);
        cases.push(Case::new(
            name,
            1,
            message,
            eval_checkpoint("regdb", &root, &fx.weights, &dir, &["--trials", "1"]),
        ));
    };
    regdb_case("regdb-index-missing", "idx/test_thermal_1.txt: cannot read", &|r| {
        std::fs::remove_file(r.join("idx/test_thermal_1.txt")).expect("remove");
    });
    regdb_case(
        "regdb-line-without-label",
        "test_visible_1.txt: line 1: expected `<path> <label>`",
        &|r| {
            write(&r.join("idx/test_visible_1.txt"), "Visible/3/image.bmp\n");
        },
    );
    regdb_case(
        "regdb-label-not-integer",
        "test_visible_1.txt: line 2: label \"zero\" is not an integer",
        &|r| {
            let path = r.join("idx/test_visible_1.txt");
            let text = std::fs::read_to_string(&path).expect("index");
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            let file = lines[1].rsplit_once(' ').expect("`<path> <label>`").0.to_owned();
            lines[1] = format!("{file} zero");
            write(&path, lines.join("\n"));
        },
    );
    regdb_case("regdb-index-empty", "test_visible_1.txt: no entries", &|r| {
        write(&r.join("idx/test_visible_1.txt"), "\n\n");
    });
    regdb_case("regdb-image-missing", "Visible/99/nope.bmp: no such file", &|r| {
        let path = r.join("idx/test_visible_1.txt");
        let text = std::fs::read_to_string(&path).expect("index");
        write(&path, format!("{}\nVisible/99/nope.bmp 0\n", text.trim_end()));
    });
    let dir = fx.case_dir("regdb-truncated-bmp");
    let root = dir.join("regdb");
    copy_dir(&regdb, &root);
    let first = std::fs::read_to_string(root.join("idx/test_thermal_1.txt")).expect("index");
    let image = first
        .lines()
        .next()
        .and_then(|l| l.rsplit_once(' '))
        .expect("`<path> <label>`")
        .0
        .to_owned();
    truncate(&root.join(&image));
    cases.push(Case::new(
        "regdb-truncated-bmp",
        1,
        format!("{image}: not a readable image"),
        eval_checkpoint("regdb", &root, &fx.weights, &dir, &["--trials", "1"]),
    ));

    // Market-1501: file names carry the person and the camera.
    let market = synth(fx, "market");
    let mut market_case = |name: &str, message: &str, spoil: &dyn Fn(&Path)| {
        let dir = fx.case_dir(name);
        let root = dir.join("market");
        copy_dir(&market, &root);
        spoil(&root);
        cases.push(Case::new(
            name,
            1,
            message,
            eval_checkpoint("market", &root, &fx.weights, &dir, &[]),
        ));
    };
    market_case(
        "market-name-without-ids",
        "query/hello.jpg: file name is not `<pid>_c<camera>…`",
        &|r| {
            write(&r.join("query/hello.jpg"), "x");
        },
    );
    market_case(
        "market-camera-not-a-number",
        "query/0004_cX_000710_01.jpg: file name is not",
        &|r| {
            write(&r.join("query/0004_cX_000710_01.jpg"), "x");
        },
    );
    market_case("market-query-missing", "query: folder not found", &|r| {
        std::fs::remove_dir_all(r.join("query")).expect("remove");
    });
    market_case("market-query-empty", "0 queries", &|r| {
        std::fs::remove_dir_all(r.join("query")).expect("remove");
        std::fs::create_dir(r.join("query")).expect("mkdir");
    });
    let gallery = jpegs(&market.join("bounding_box_test"));
    let spoilt = gallery.first().expect("a gallery image").clone();
    market_case(
        "market-garbage-image",
        &format!("bounding_box_test/{spoilt}: not a readable image"),
        &|r| {
            write(&r.join("bounding_box_test").join(&spoilt), "garbage");
        },
    );
    cases
}

// ---------------------------------------------------------------------------------------------
// Feature files for `eval --features`
// ---------------------------------------------------------------------------------------------

fn feature_files(fx: &Fixtures) -> Vec<Case> {
    let mut cases = Vec::new();
    let paths = jpegs(&fx.sysu);
    let (n, d) = (paths.len(), 8usize);
    let good: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.37).sin() + 0.01).collect();
    let shape = [n as i64, d as i64];
    let row = |r: usize, values: &[f32]| {
        let mut v = good.clone();
        v[r * d..r * d + values.len()].copy_from_slice(values);
        v
    };
    let nan_row = row(3, &[0.0, 0.0, f32::NAN]);
    let inf_row = row(5, &[f32::INFINITY]);
    let zero_row = row(4, &[0.0; 8]);

    let mut features = |name: &str, message: &str, bytes: Vec<u8>| {
        let dir = fx.case_dir(name);
        let file = write(&dir.join(format!("{name}.safetensors")), bytes);
        cases.push(
            Case::new(
                name,
                1,
                message,
                eval_features("sysu", &fx.sysu, &file, &dir.join("out"), &[]),
            )
            .keeps(&file),
        );
    };
    features(
        "features-nan-row",
        &format!(
            "features-nan-row.safetensors: row 3 ({}) has NaN or infinite values",
            paths[3]
        ),
        st_file(&[("features", &shape, &nan_row)], paths_metadata(&paths)),
    );
    features(
        "features-infinite-row",
        &format!("row 5 ({}) has NaN or infinite values", paths[5]),
        st_file(&[("features", &shape, &inf_row)], paths_metadata(&paths)),
    );
    features(
        "features-zero-row",
        &format!("row 4 ({}) is all zeros", paths[4]),
        st_file(&[("features", &shape, &zero_row)], paths_metadata(&paths)),
    );
    features(
        "features-all-zero",
        "features-all-zero.safetensors: row 0",
        st_file(&[("features", &shape, &vec![0.0f32; n * d])], paths_metadata(&paths)),
    );
    // Every row the same direction: ties rank in gallery order and would be scored.
    features(
        "features-all-rows-equal",
        "features-all-rows-equal.safetensors",
        st_file(&[("features", &shape, &vec![1.0f32; n * d])], paths_metadata(&paths)),
    );
    features(
        "features-dimension-0",
        "the features have dimension 0",
        st_file(&[("features", &[n as i64, 0], &[])], paths_metadata(&paths)),
    );
    features(
        "features-one-dimensional",
        &format!("`features` has shape [{n}], expected [{n}, D]"),
        st_file(&[("features", &[n as i64], &good[..n])], paths_metadata(&paths)),
    );
    features(
        "features-three-dimensional",
        &format!("`features` has shape [{n}, {d}, 1]"),
        st_file(&[("features", &[n as i64, d as i64, 1], &good)], paths_metadata(&paths)),
    );
    features(
        "features-tensor-missing",
        "no tensor named `features`",
        st_file(&[("embeddings", &shape, &good)], paths_metadata(&paths)),
    );
    features(
        "features-paths-missing",
        "no `paths` in the metadata",
        st_file(&[("features", &shape, &good)], Value::Null),
    );
    features(
        "features-paths-not-json",
        "metadata `paths` is not a JSON string array",
        st_file(&[("features", &shape, &good)], json!({"paths": "cam1/0001/0001.jpg"})),
    );
    features(
        "features-paths-not-strings",
        "metadata `paths` is not a JSON string array",
        st_file(
            &[("features", &shape, &good)],
            json!({"paths": format!("{:?}", (0..n).collect::<Vec<_>>())}),
        ),
    );
    features(
        "features-paths-count-differs",
        &format!("`features` has shape [{n}, {d}], expected [{}, D]", n - 1),
        st_file(&[("features", &shape, &good)], paths_metadata(&paths[1..])),
    );
    let mut doubled = paths.clone();
    doubled[n - 1] = paths[0].clone();
    features(
        "features-path-twice",
        &format!("path {:?} appears twice", paths[0]),
        st_file(&[("features", &shape, &good)], paths_metadata(&doubled)),
    );
    let elsewhere: Vec<String> = paths.iter().map(|p| format!("other/{p}")).collect();
    features(
        "features-paths-not-in-dataset",
        "features-paths-not-in-dataset.safetensors has no feature for cam",
        st_file(&[("features", &shape, &good)], paths_metadata(&elsewhere)),
    );
    features(
        "features-not-safetensors",
        "features-not-safetensors.safetensors: not a safetensors file",
        b"features,paths\n1,2,3\n".to_vec(),
    );

    // SYSU-MM01 features scored against another dataset's layout.
    let dir = fx.case_dir("features-of-another-dataset");
    let file = write(
        &dir.join("sysu.safetensors"),
        st_file(&[("features", &shape, &good)], paths_metadata(&paths)),
    );
    let market = synth(fx, "market");
    cases.push(Case::new(
        "features-of-another-dataset",
        1,
        "sysu.safetensors has no feature for",
        eval_features("market", &market, &file, &dir.join("out"), &[]),
    ));
    cases
}

// ---------------------------------------------------------------------------------------------
// Identity-index snapshots for `index stats|query|export` and `run`
// ---------------------------------------------------------------------------------------------

/// An index snapshot taken apart: its metadata and its vectors.
#[derive(Clone)]
struct Snapshot {
    meta: Value,
    vectors: Vec<u8>,
}

impl Snapshot {
    fn parse(bytes: &[u8]) -> Self {
        let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes")) as usize;
        Snapshot {
            meta: serde_json::from_slice(&bytes[20..20 + len]).expect("snapshot metadata"),
            vectors: bytes[20 + len..bytes.len() - 4].to_vec(),
        }
    }

    /// The file with this magic and format version, its checksum right.
    fn encode(&self, magic: &[u8], version: u32) -> Vec<u8> {
        let json = serde_json::to_vec(&self.meta).expect("JSON");
        let mut out = magic.to_vec();
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&self.vectors);
        let crc = reid_pipe::index::snapshot::crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn bytes(&self) -> Vec<u8> {
        self.encode(b"RPIDXSNP", 1)
    }
}

/// `reid-pipe index <command…> dir`.
fn index(command: &[&str], dir: &Path) -> Vec<String> {
    let mut args = strings(&["index"]);
    args.extend(strings(command));
    args.push(arg(dir));
    args
}

const FIRST: &str = "snapshot-0000000001.ridx";
const SECOND: &str = "snapshot-0000000002.ridx";
const STRAY: &str = "snapshot-18446744073709551615.ridx";

fn snapshots(fx: &Fixtures) -> Vec<Case> {
    let mut cases = Vec::new();
    // A snapshot a real run wrote: the 5-frame site, run once.
    let base = fx.case_dir("snapshot-base");
    let site = write(&base.join("site.toml"), site_text(&base, &fx.weights, ""));
    common::ok(common::bin().arg("run").arg(&site).output().expect("run"));
    let good = std::fs::read(base.join("index").join(FIRST)).expect("the run wrote a snapshot");
    let parsed = Snapshot::parse(&good);
    let exemplars = parsed.meta["exemplars"].as_array().expect("exemplars").len();
    assert!(exemplars > 0, "the run's snapshot holds no exemplar");
    let dim = parsed.meta["dim"].as_u64().expect("dim") as usize;
    let torn = good[..good.len() / 2].to_vec();
    let first_id = parsed.meta["identities"][0]["id"].as_u64().expect("id").to_string();

    // Each case's snapshot folder is `<case>/index`, the folder site_text names.
    let folder = |name: &str, files: &[(&str, &[u8])]| {
        let dir = fx.case_dir(name).join("index");
        std::fs::create_dir_all(&dir).expect("mkdir");
        for (file, bytes) in files {
            write(&dir.join(file), bytes);
        }
        dir
    };

    // A torn newest snapshot: the older one is used, as `run` does, and named.
    let d = folder("index-torn-newest-stats", &[(FIRST, &good), (SECOND, &torn)]);
    cases.push(
        Case::new("index-torn-newest-stats", 0, FIRST, index(&["stats"], &d))
            .keeps(d.join(FIRST))
            .keeps(d.join(SECOND)),
    );
    let d = folder("index-torn-newest-query", &[(FIRST, &good), (SECOND, &torn)]);
    cases.push(Case::new(
        "index-torn-newest-query",
        0,
        "skipped snapshot",
        index(&["query", "--identity", &first_id], &d),
    ));
    let d = folder("index-torn-newest-export", &[(FIRST, &good), (SECOND, &torn)]);
    let out = arg(&fx.case_dir("index-torn-newest-export").join("export"));
    cases.push(
        Case::new(
            "index-torn-newest-export",
            0,
            "wrote",
            index(&["export", "--out", &out], &d),
        )
        .keeps(d.join(FIRST)),
    );
    let d = folder("index-torn-only", &[(SECOND, &torn)]);
    cases.push(Case::new(
        "index-torn-only",
        1,
        format!("{SECOND}: corrupt or incomplete snapshot"),
        index(&["stats"], &d),
    ));

    let mut flipped = good.clone();
    flipped[good.len() / 3] ^= 0xff;
    let mut meta_garbage = parsed.clone();
    meta_garbage.meta = json!("{not json");
    let mut dangling = parsed.clone();
    dangling.meta["identities"][0]["visible"] = json!([exemplars + 4]);
    let mut short = parsed.clone();
    short.vectors.truncate(short.vectors.len() - 8);
    let corrupt: [(&str, Vec<u8>, &str); 7] = [
        (
            "index-bad-magic",
            [b"XXXXXXXX".as_slice(), &good[8..]].concat(),
            "bad magic",
        ),
        (
            "index-bad-version",
            parsed.encode(b"RPIDXSNP", 7),
            "format version 7, this build reads 1",
        ),
        ("index-checksum-mismatch", flipped, "does not match the stored"),
        (
            "index-shorter-than-header",
            b"RPIDX".to_vec(),
            "shorter than the header",
        ),
        (
            "index-metadata-not-an-object",
            meta_garbage.bytes(),
            "corrupt or incomplete snapshot: metadata",
        ),
        (
            "index-exemplar-missing",
            dangling.bytes(),
            "an identity refers to a missing exemplar",
        ),
        ("index-vectors-short", short.bytes(), "vector bytes for"),
    ];
    for (name, bytes, message) in corrupt {
        let d = folder(name, &[(FIRST, &bytes)]);
        cases.push(Case::new(name, 1, message, index(&["stats"], &d)).keeps(d.join(FIRST)));
    }

    // A second identity whose exemplar is NaN: refused, naming it, never shown at distance 0.
    let mut nan = parsed.clone();
    let new_id = nan.meta["next_id"].as_u64().expect("next_id");
    let mut exemplar = nan.meta["exemplars"][0].clone();
    exemplar["identity"] = json!(new_id);
    let modality = exemplar["modality"].as_str().expect("modality").to_owned();
    let mut identity = nan.meta["identities"][0].clone();
    identity["id"] = json!(new_id);
    identity["visible"] = json!([]);
    identity["thermal"] = json!([]);
    identity[modality.as_str()] = json!([exemplars]);
    nan.meta["exemplars"].as_array_mut().expect("exemplars").push(exemplar);
    nan.meta["identities"]
        .as_array_mut()
        .expect("identities")
        .push(identity);
    nan.meta["next_id"] = json!(new_id + 1);
    nan.vectors.extend(f32_bytes(&vec![f32::NAN; dim]));
    let d = folder("index-nan-exemplar-query", &[(FIRST, &nan.bytes())]);
    cases.push(Case::new(
        "index-nan-exemplar-query",
        1,
        format!("(identity {new_id}) has a non-finite value"),
        index(&["query", "--identity", &first_id], &d),
    ));
    let d = folder("index-unknown-identity", &[(FIRST, &good)]);
    cases.push(Case::new(
        "index-unknown-identity",
        1,
        "no identity 999 in the snapshot",
        index(&["query", "--identity", "999"], &d),
    ));

    // Names that are not snapshots, folders without any, a file for a folder.
    let d = folder("index-stray-name-only", &[(STRAY, &good)]);
    cases.push(Case::new(
        "index-stray-name-only",
        1,
        "no snapshot in",
        index(&["stats"], &d),
    ));
    let d = folder("index-stray-name-and-good", &[(STRAY, &torn), (FIRST, &good)]);
    cases.push(Case::new("index-stray-name-and-good", 0, FIRST, index(&["stats"], &d)).keeps(d.join(STRAY)));
    let d = folder("index-no-snapshots", &[("notes.txt", b"hello")]);
    cases.push(Case::new(
        "index-no-snapshots",
        1,
        "no snapshot in",
        index(&["stats"], &d),
    ));
    let d = write(&fx.case_dir("index-folder-is-a-file").join("index"), "a file");
    cases.push(Case::new(
        "index-folder-is-a-file",
        1,
        "Not a directory",
        index(&["stats"], &d),
    ));

    // `run` on the same folders: it falls back to the older snapshot, starts empty past a
    // corrupt one (kept), never wraps on a stray name, and refuses another model's vectors.
    let run = |name: &str| site_args("run", &fx.case_dir(name), &fx.weights);
    let d = folder("run-torn-newest", &[(FIRST, &good), (SECOND, &torn)]);
    cases.push(
        Case::new("run-torn-newest", 0, FIRST, run("run-torn-newest"))
            .keeps(d.join(FIRST))
            .keeps(d.join(SECOND)),
    );
    let mut bad = parsed.clone();
    bad.vectors[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    let d = folder("run-corrupt-only", &[(FIRST, &bad.bytes())]);
    cases
        .push(Case::new("run-corrupt-only", 0, "has a non-finite value", run("run-corrupt-only")).keeps(d.join(FIRST)));
    let d = folder("run-stray-name", &[(STRAY, &good)]);
    cases.push(Case::new("run-stray-name", 0, FIRST, run("run-stray-name")).keeps(d.join(STRAY)));
    let mut other = parsed.clone();
    other.meta["dim"] = json!(8);
    other.vectors = f32_bytes(&vec![0.5f32; 8 * exemplars]);
    let d = folder("run-other-dimension", &[(FIRST, &other.bytes())]);
    cases.push(Case::new("run-other-dimension", 1, "--fresh-index", run("run-other-dimension")).keeps(d.join(FIRST)));
    let dir = fx.case_dir("check-snapshot-folder-is-a-file");
    write(&dir.join("index"), "a file");
    cases.push(Case::new(
        "check-snapshot-folder-is-a-file",
        1,
        "index.snapshot_dir",
        site_args("check", &dir, &fx.weights),
    ));
    cases
}

// ---------------------------------------------------------------------------------------------
// Training logs for `viz curves`
// ---------------------------------------------------------------------------------------------

fn training_logs(fx: &Fixtures) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut curves = |name: &str, code: i32, message: &str, log: &[u8]| {
        let dir = fx.case_dir(name);
        let file = write(&dir.join(format!("{name}.jsonl")), log);
        let args = strings(&["viz", "curves", &arg(&file), "--out", &arg(&dir.join("curves.png"))]);
        cases.push(Case::new(name, code, message, args).keeps(&file));
    };
    curves("log-empty", 1, "log-empty.jsonl: no loss values in the log", b"");
    curves("log-not-json", 1, "log-not-json.jsonl line 1", b"epoch 1 loss 2.5\n");
    curves(
        "log-garbage-after-good-line",
        1,
        "log-garbage-after-good-line.jsonl line 2",
        b"{\"epoch\":1,\"loss\":{\"id\":2.5}}\nnot json at all\n",
    );
    curves("log-without-epoch", 1, "line 1: no epoch", b"{\"loss\":{\"id\":2.5}}\n");
    curves(
        "log-nan-literal",
        1,
        "log-nan-literal.jsonl line 1",
        b"{\"epoch\":1,\"loss\":{\"id\":NaN}}\n",
    );
    curves(
        "log-number-overflows",
        1,
        "number out of range",
        b"{\"epoch\":1,\"loss\":{\"id\":1e999}}\n",
    );
    // serde_json writes a NaN loss as null.
    curves(
        "log-null-losses",
        1,
        "no loss values in the log",
        b"{\"epoch\":1,\"loss\":{\"id\":null}}\n{\"epoch\":2,\"loss\":{\"id\":null}}\n",
    );
    curves("log-binary", 1, "valid UTF-8", b"\x00\x01\x02\xff\xfe\n");
    // An epoch no training has: the figure's axis would run to 1e300.
    curves(
        "log-epoch-huge",
        1,
        "log-epoch-huge.jsonl line 1",
        b"{\"epoch\":1e300,\"loss\":{\"id\":2.5}}\n",
    );

    let dir = fx.case_dir("log-missing");
    let args = strings(&[
        "viz",
        "curves",
        &arg(&dir.join("log.jsonl")),
        "--out",
        &arg(&dir.join("curves.png")),
    ]);
    cases.push(Case::new("log-missing", 1, "cannot read", args));
    let dir = fx.case_dir("log-out-is-the-log");
    let log = write(&dir.join("log.jsonl"), "{\"epoch\":1,\"loss\":{\"id\":2.5}}\n");
    let args = strings(&["viz", "curves", &arg(&log), "--out", &arg(&log), "--overwrite"]);
    cases.push(Case::new("log-out-is-the-log", 1, "may not be an input", args).keeps(&log));
    cases
}
