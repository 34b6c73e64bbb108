//! The LbA network against PyTorch: reference numbers come from `tests/reference/model_refs.py`
//! run by the installed torch (the venv `scripts/setup.sh` makes).

mod common;

use reid_pipe::base::{Backbone, Crop, Modality};
use reid_pipe::config::train::DenseTripletWeighting;
use reid_pipe::model::centre;
use reid_pipe::model::cmalign::CmAlign;
use reid_pipe::model::embedder::{Embed, LbaEmbedder};
use reid_pipe::model::torchscript::{self, ScriptEmbedder};
use reid_pipe::model::weights::{Fit, Provenance, WeightFile};
use reid_pipe::model::{LbaNet, ModelSpec, weights};
use reid_pipe::safetensors;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Runs one reference computation into a fresh temporary directory.
fn reference(what: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = common::repo("tests/reference/model_refs.py");
    let out = common::python()
        .arg(script)
        .arg(what)
        .arg(dir.path())
        .output()
        .expect("the torch venv runs");
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    dir
}

fn tensor(file: &safetensors::File, name: &str) -> Tensor {
    file.get(name).unwrap_or_else(|| panic!("no {name}")).shallow_clone()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn resnet50_equals_torchvision_with_the_same_weights() {
    let dir = reference("resnet50");
    let mut vs = VarStore::new(Device::Cpu);
    let net = LbaNet::new(&vs.root(), ModelSpec::new(Backbone::Resnet50, 0, (64, 32)));
    let file = WeightFile::read(&dir.path().join("resnet50_weights.safetensors")).expect("read");
    let report = weights::load(&mut vs, &file, Fit::Exact).expect("load");
    // fc.weight and fc.bias are the ImageNet head: ignored; the BN neck keeps its initial values.
    assert_eq!(report.ignored, 2);
    assert!(
        report.initialised.iter().all(|n| n.starts_with("bottleneck.")),
        "{:?}",
        report.initialised
    );
    let io = safetensors::read(&dir.path().join("resnet50_io.safetensors")).expect("io");
    let x = tensor(&io, "input");
    let want = tensor(&io, "output");
    for modality in [Modality::Visible, Modality::Thermal] {
        let got = tch::no_grad(|| net.feature_map(&x, modality, false));
        assert_eq!(got.size(), [2, 2048, 4, 2], "last stride 1: 64×32 input → 4×2 map");
        let d = max_diff(&got, &want);
        assert!(d < 1e-4, "{modality}: max abs diff {d}");
    }
}

#[test]
fn mobilenetv2_equals_deep_sort_realtimes_model_with_the_shipped_weights() {
    let dir = reference("mobilenetv2");
    let weights_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/weights/mobilenetv2_imagenet.safetensors");
    let mut vs = VarStore::new(Device::Cpu);
    // The ImageNet network: last stride 2, mean pooling over the final map.
    let spec = ModelSpec {
        last_stride: 2,
        ..ModelSpec::new(Backbone::Mobilenetv2, 0, (128, 64))
    };
    let net = LbaNet::new(&vs.root(), spec);
    let file = WeightFile::read(&weights_file).expect("the converted set-up weights");
    weights::load(&mut vs, &file, Fit::Exact).expect("the converted set-up weights load");
    let io = safetensors::read(&dir.path().join("mobilenetv2_io.safetensors")).expect("io");
    let x = tensor(&io, "input");
    let got = tch::no_grad(|| {
        net.feature_map(&x, Modality::Visible, false)
            .mean_dim([2i64, 3].as_slice(), false, Kind::Float)
    });
    let d = max_diff(&got, &tensor(&io, "output"));
    assert!(d < 1e-4, "max abs diff {d}");
}

fn tiny(classes: i64) -> (VarStore, LbaNet) {
    tch::manual_seed(7);
    let vs = VarStore::new(Device::Cpu);
    let net = LbaNet::new(&vs.root(), ModelSpec::new(Backbone::Tinyresnet, classes, (64, 32)));
    (vs, net)
}

#[test]
fn output_shapes_per_backbone() {
    let x = Tensor::rand([2, 3, 64, 32], (Kind::Float, Device::Cpu));
    for (backbone, dim, l3) in [
        (Backbone::Tinyresnet, 256, 128),
        (Backbone::Mobilenetv2, 1280, 96),
        (Backbone::Resnet50, 2048, 1024),
    ] {
        let vs = VarStore::new(Device::Cpu);
        let net = LbaNet::new(&vs.root(), ModelSpec::new(backbone, 10, (64, 32)));
        let stem = net.stem(&x, Modality::Thermal, false);
        let f3 = net.to_layer3(&stem, false);
        let f4 = net.layer4(&f3, false);
        assert_eq!(f3.size()[1], l3, "{backbone:?}");
        assert_eq!(f4.size()[1], dim, "{backbone:?}");
        assert_eq!(
            f3.size()[2..],
            f4.size()[2..],
            "{backbone:?}: last stride 1 keeps the layer3 resolution"
        );
        assert_eq!(net.embed(&x, Modality::Visible).size(), [2, dim]);
        let logits = net.classify(&net.pool(&f4), false);
        assert_eq!(logits.len(), 1);
        assert_eq!(logits[0].size(), [2, 10]);
    }
}

fn crops_of(pixels: &[Vec<u8>], sizes: &[(usize, usize, usize)], modality: Modality) -> Vec<Crop<'static>> {
    pixels
        .iter()
        .zip(sizes)
        .map(|(p, &(w, h, c))| Crop {
            pixels: Box::leak(p.clone().into_boxed_slice()),
            width: w,
            height: h,
            stride: w * c,
            channels: c,
            modality,
        })
        .collect()
}

fn sample_crops() -> Vec<Crop<'static>> {
    let sizes = [(40usize, 90usize, 3usize), (20, 30, 1), (64, 128, 3)];
    let pixels: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, (w, h, c))| (0..w * h * c).map(|k| ((k * 31 + i * 7) % 251) as u8).collect())
        .collect();
    let mut crops = crops_of(&pixels, &sizes, Modality::Visible);
    crops[1].modality = Modality::Thermal;
    crops
}

#[test]
fn save_load_round_trip_gives_identical_embeddings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tiny.safetensors");
    let (vs, net) = tiny(5);
    weights::save(&vs, &net.spec, &Provenance::default(), &path).expect("save");
    assert_eq!(WeightFile::read(&path).expect("read").spec, Some(net.spec.clone()));
    let a = LbaEmbedder::new(net, vs, false).expect("embedder");
    let b = LbaEmbedder::open(&path, None, Device::Cpu, false).expect("load");
    let crops = sample_crops();
    let ea = a.embed(&crops).expect("embed");
    let eb = b.embed(&crops).expect("embed");
    assert!(ea.equal(&eb), "identical weights give identical embeddings");
    // Unit norm, deterministic.
    let norms = ea.norm_scalaropt_dim(2, [1i64].as_slice(), false);
    assert!(max_diff(&norms, &Tensor::ones([3], (Kind::Float, Device::Cpu))) < 1e-5);
    assert!(a.embed(&crops).expect("embed").equal(&ea));
    // Modality matters: the same pixels through the other stem give another embedding.
    let mut swapped = crops.clone();
    swapped[0].modality = Modality::Thermal;
    assert!(max_diff(&a.embed(&swapped).expect("embed").get(0), &ea.get(0)) > 1e-4);
}

#[test]
fn a_centred_embedder_takes_the_centre_off_and_normalises_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tiny.safetensors");
    let (vs, net) = tiny(5);
    weights::save(&vs, &net.spec, &Provenance::default(), &path).expect("save");
    let open = || Box::new(LbaEmbedder::open(&path, None, Device::Cpu, false).expect("load")) as Box<dyn Embed>;
    let crops = sample_crops();
    let raw = Vec::<Vec<f32>>::try_from(&open().embed(&crops).expect("embed")).expect("rows");
    let dim = raw[0].len();
    // The centre of the three crops, written as `adapt` writes it.
    let centre: Vec<f32> = (0..dim).map(|j| raw.iter().map(|r| r[j]).sum::<f32>() / 3.0).collect();
    let centre_file = dir.path().join("centre.safetensors");
    centre::write(&centre_file, &Tensor::from_slice(&centre), None).expect("write");
    let centred = centre::Centred::open(open(), &centre_file).expect("centred");
    let got = Vec::<Vec<f32>>::try_from(&centred.embed(&crops).expect("embed")).expect("rows");
    for (row, raw) in got.iter().zip(&raw) {
        let moved: Vec<f32> = raw.iter().zip(&centre).map(|(x, c)| x - c).collect();
        let norm = moved.iter().map(|x| x * x).sum::<f32>().sqrt();
        let d = row
            .iter()
            .zip(&moved)
            .map(|(a, b)| (a - b / norm).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-5, "max abs diff {d}");
    }
    // Centred, two crops are farther apart than raw (where every row lies in one corner of the
    // sphere).
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    assert!(dot(&got[0], &got[2]) < dot(&raw[0], &raw[2]));
    // A centre of another dimension, or a file without one, is refused, naming the file.
    let short = dir.path().join("short.safetensors");
    centre::write(&short, &Tensor::from_slice(&centre[..dim - 1]), None).expect("write");
    let e = centre::Centred::open(open(), &short)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("short.safetensors") && e.contains(&format!("{} components", dim - 1)),
        "{e}"
    );
    let e = centre::Centred::open(open(), &path).err().expect("refused").to_string();
    assert!(
        e.contains("tiny.safetensors") && e.contains("no tensor `centre`"),
        "{e}"
    );
}

#[test]
fn a_wrong_shape_weight_file_names_the_parameter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("five.safetensors");
    let (vs, net) = tiny(5);
    weights::save(&vs, &net.spec, &Provenance::default(), &path).expect("save");
    let (mut vs7, _net7) = {
        let vs = VarStore::new(Device::Cpu);
        let net = LbaNet::new(&vs.root(), ModelSpec::new(Backbone::Tinyresnet, 7, (64, 32)));
        (vs, net)
    };
    let file = WeightFile::read(&path).expect("read");
    let e = weights::load(&mut vs7, &file, Fit::Exact).expect_err("5 vs 7 classes");
    let s = e.to_string();
    assert!(
        s.contains("five.safetensors") && s.contains("classifier.weight [5, 256] vs [7, 256]"),
        "{s}"
    );
    // As an initialisation for training, the classifier of other identities starts fresh.
    let report = weights::load(&mut vs7, &file, Fit::Initialise).expect("initialise");
    assert_eq!(report.initialised, ["classifier.weight"]);
    // A file without a description: the network is inferred from its tensors.
    let plain = dir.path().join("plain.safetensors");
    let vars = vs.variables();
    let named: Vec<(&str, &Tensor)> = vars.iter().map(|(n, t)| (n.as_str(), t)).collect();
    safetensors::write(&plain, &named, &Default::default()).expect("write");
    let inferred = WeightFile::read(&plain)
        .expect("read")
        .spec(Some((64, 32)))
        .expect("inferred");
    assert_eq!((inferred.backbone, inferred.classes), (Backbone::Tinyresnet, 5));
}

#[test]
fn cmalign_matches_the_spec_reference() {
    let dir = reference("cmalign");
    let io = safetensors::read(&dir.path().join("cmalign_io.safetensors")).expect("io");
    let feat = tensor(&io, "feat").set_requires_grad(true);
    let cm = CmAlign {
        temperature: 50.0,
        margin: 0.3,
        weighting: DenseTripletWeighting::Code,
    };
    let out = cm.forward(&feat, &[2, 3, 0, 1], &[3, 2, 1, 0]);
    for (name, got) in [
        ("recon", &out.reconstruction),
        ("matching", &out.matching),
        ("coattention", &out.coattention),
        ("mask", &out.mask),
    ] {
        let d = max_diff(&got.detach(), &tensor(&io, name));
        assert!(d < 1e-5, "{name}: max abs diff {d}");
    }
    let code = out.dense_triplet.double_value(&[]);
    assert!(
        (code - tensor(&io, "loss_code").double_value(&[0])).abs() < 1e-6,
        "{code}"
    );
    (&out.dense_triplet + out.reconstruction.sum(Kind::Float) * 0.01).backward();
    let d = max_diff(&feat.grad(), &tensor(&io, "grad"));
    assert!(d < 1e-5, "gradient max abs diff {d}");
    let intended = CmAlign {
        weighting: DenseTripletWeighting::Intended,
        ..cm
    }
    .forward(&feat.detach(), &[2, 3, 0, 1], &[3, 2, 1, 0]);
    let want = tensor(&io, "loss_intended").double_value(&[0]);
    assert!((intended.dense_triplet.double_value(&[]) - want).abs() < 1e-6);
}

#[test]
fn cmalign_on_identical_maps_matches_every_position_to_itself() {
    tch::manual_seed(3);
    let half = Tensor::randn([2, 16, 6, 3], (Kind::Float, Device::Cpu)).relu();
    // Visible rows 0..2 and infrared rows 2..4 are the same maps; each positive is its twin.
    let feat = Tensor::cat(&[&half, &half], 0).set_requires_grad(true);
    let cm = CmAlign {
        temperature: 50.0,
        margin: 0.3,
        weighting: DenseTripletWeighting::Code,
    };
    let out = cm.forward(&feat, &[2, 3, 0, 1], &[3, 2, 1, 0]);
    let best = out.matching.argmax(-1, false);
    let identity = Tensor::arange(18, (Kind::Int64, Device::Cpu)).expand([4, 18], false);
    assert!(best.equal(&identity), "{best}");
    // Reconstruction from an identical map is (nearly) the map itself.
    assert!(max_diff(&out.reconstruction.detach(), &feat.detach()) < 0.05);
    (out.dense_triplet + out.reconstruction.mean(Kind::Float)).backward();
    let g = feat.grad();
    assert!(
        bool::try_from(g.isfinite().all()).expect("bool"),
        "gradients are finite"
    );
    assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0);
}

#[test]
fn torchscript_embedder_equals_pytorch_on_the_same_crops() {
    let dir = reference("script");
    std::fs::write(
        dir.path().join("tiny.toml"),
        "visible = \"tiny.pt\"\nthermal = \"tiny.pt\"\ninput_size = [32, 16]\noutput_dim = 5\n",
    )
    .expect("manifest");
    let emb = ScriptEmbedder::load(&dir.path().join("tiny.toml"), Device::Cpu).expect("load");
    let io = safetensors::read(&dir.path().join("script_io.safetensors")).expect("io");
    let crops_t = tensor(&io, "crops").to_kind(Kind::Uint8);
    let pixels: Vec<Vec<u8>> = (0..3)
        .map(|i| Vec::<u8>::try_from(crops_t.get(i).flatten(0, -1)).expect("u8"))
        .collect();
    // Crops at the input size: no resampling, so the inputs are bit-identical to PyTorch's.
    let crops = crops_of(&pixels, &[(16, 32, 3); 3], Modality::Visible);
    let got = emb.embed(&crops).expect("embed");
    let d = max_diff(&got, &tensor(&io, "output"));
    assert!(d < 1e-5, "max abs diff {d}");
}

#[test]
fn exported_network_runs_as_torchscript_with_the_same_embeddings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (vs, net) = tiny(0);
    let native = LbaEmbedder::new(net, vs, false).expect("embedder");
    let manifest: PathBuf = torchscript::export(&native, dir.path(), "tiny").expect("export");
    let scripted = ScriptEmbedder::load(&manifest, Device::Cpu).expect("load");
    assert_eq!(scripted.dim(), 256);
    let crops = sample_crops(); // 3 crops (traced with 2), both modalities
    let d = max_diff(
        &scripted.embed(&crops).expect("embed"),
        &native.embed(&crops).expect("embed"),
    );
    assert!(d < 1e-5, "max abs diff {d}");
}

#[test]
fn official_lba_checkpoint_loads_as_it_is() {
    let dir = reference("official");
    let file = WeightFile::read(&dir.path().join("sysu_pretrained.t")).expect("torch.save read without Python");
    assert_eq!(file.provenance.epoch, Some(80));
    let spec = file.spec(Some((64, 32))).expect("inferred");
    assert_eq!((spec.backbone, spec.classes, spec.parts), (Backbone::Resnet50, 395, 1));
    let mut vs = VarStore::new(Device::Cpu);
    let net = LbaNet::new(&vs.root(), spec);
    let report = weights::load(&mut vs, &file, Fit::Exact).expect("official layout loads");
    assert!(report.initialised.is_empty(), "{:?}", report.initialised);
    // The unused parts: layer1..4 + fc of both stems, conv1/bn1/fc of the body.
    assert!(report.ignored > 300, "{}", report.ignored);
    let io = safetensors::read(&dir.path().join("official_io.safetensors")).expect("io");
    let got = net.embed(&tensor(&io, "input"), Modality::Thermal);
    let d = max_diff(&got, &tensor(&io, "output"));
    assert!(d < 1e-4, "max abs diff {d}");
    // The same file into a network of another class count fails, naming the classifier.
    let mut vs2 = VarStore::new(Device::Cpu);
    let _ = LbaNet::new(&vs2.root(), ModelSpec::new(Backbone::Resnet50, 206, (64, 32)));
    let e = weights::load(&mut vs2, &file, Fit::Exact).expect_err("206 vs 395 classes");
    assert!(
        e.to_string().contains("classifier.weight [395, 2048] vs [206, 2048]"),
        "{e}"
    );
}

#[test]
fn pcb_parts_pool_horizontal_stripes_with_their_own_heads() {
    let x = Tensor::rand([2, 3, 64, 32], (Kind::Float, Device::Cpu));
    let vs = VarStore::new(Device::Cpu);
    let spec = ModelSpec {
        parts: 4,
        ..ModelSpec::new(Backbone::Tinyresnet, 10, (64, 32))
    };
    let net = LbaNet::new(&vs.root(), spec);
    let map = net.feature_map(&x, Modality::Visible, false);
    assert_eq!(map.size(), [2, 256, 4, 2], "one row per part");
    let pooled = net.pool(&map);
    assert_eq!(pooled.size(), [2, 4 * 256]);
    // Part i is GeM over row i alone.
    for i in 0..4 {
        let want = reid_pipe::model::gem(&map.narrow(2, i, 1));
        assert!(max_diff(&pooled.narrow(1, i * 256, 256), &want) < 1e-6, "part {i}");
    }
    let logits = net.classify(&pooled, false);
    assert_eq!(logits.len(), 4);
    assert!(logits.iter().all(|l| l.size() == [2, 10]));
    assert_eq!(net.embed(&x, Modality::Thermal).size(), [2, 1024]);
    let names = vs.variables();
    assert!(names.contains_key("bottleneck.3.weight") && names.contains_key("classifier.3.weight"));
    assert!(!names.contains_key("classifier.weight"));
}

/// Half precision, the default on CUDA: embeddings come back float32 and within a cosine of
/// 1e-3 of float32 ones (ResNet-50, random weights). The comparison needs CUDA and is skipped,
/// with a message, without it; on the CPU half precision is refused with a message naming
/// `model.half`.
#[test]
fn half_precision_embeddings_match_float32() {
    let (vs, net) = tiny(0);
    let refused = LbaEmbedder::new(net, vs, true).err().expect("half refused on the CPU");
    assert!(refused.to_string().contains("model.half"), "{refused}");
    if !tch::Cuda::is_available() {
        eprintln!("skipped the float16 comparison: it needs CUDA, and this machine has none");
        return;
    }
    let crops = sample_crops();
    let embed = |half| {
        tch::manual_seed(1);
        let vs = VarStore::new(Device::Cuda(0));
        let net = LbaNet::new(&vs.root(), ModelSpec::new(Backbone::Resnet50, 0, (288, 144)));
        LbaEmbedder::new(net, vs, half)
            .expect("embedder")
            .embed(&crops)
            .expect("embed")
    };
    let (full, half) = (embed(false), embed(true));
    assert_eq!(half.kind(), Kind::Float);
    let cos: Vec<f32> = Vec::try_from((&full * &half).sum_dim_intlist(1, false, Kind::Float)).expect("cosines");
    assert!(cos.iter().all(|&c| c > 0.999), "float16 vs float32 cosines {cos:?}");
}
