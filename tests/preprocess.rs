//! The images the network sees equal the reference code's: every crop is resized as Pillow's
//! `Image.resize((144, 288), Image.LANCZOS)` does (`Image.ANTIALIAS` in the LbA code), checked
//! against the installed Pillow on generated images (shrinking, enlarging, both aspect
//! directions, grey and RGB) and on real pedestrian crops from vtest.avi. The tensor way (the
//! device-side crop, resize and normalisation, run here on the CPU) lands within one grey level
//! of that, and gives the same embeddings within a cosine of 1e-4.

mod common;

use common::{reference, vtest_frames};
use opencv::core::{Mat, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};
use reid_pipe::base::{Backbone, Crop, Image, Modality, PixelFormat};
use reid_pipe::config::site::Preprocess;
use reid_pipe::model::embedder::{Embed, LbaEmbedder};
use reid_pipe::model::preprocess::{Normalisation, Stager, batch_pixels};
use reid_pipe::model::{IMAGENET_MEAN, IMAGENET_STD, LbaNet, ModelSpec};
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// An image to resize: tightly packed pixels.
struct Sample {
    name: String,
    pixels: Vec<u8>,
    width: usize,
    height: usize,
    channels: usize,
}

impl Sample {
    /// The sample as a visible crop.
    fn crop(&self) -> Crop<'_> {
        Crop {
            pixels: &self.pixels,
            width: self.width,
            height: self.height,
            stride: self.width * self.channels,
            channels: self.channels,
            modality: Modality::Visible,
        }
    }
}

/// Noise, a gradient and hard edges: the content where rounding differences would show.
fn generated(width: usize, height: usize, channels: usize, seed: u64) -> Sample {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut pixels = Vec::with_capacity(width * height * channels);
    for y in 0..height {
        for x in 0..width {
            for c in 0..channels {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let noise = (state >> 59) as usize * 8;
                let edge = if (x / 5 + y / 7) % 2 == 0 { 255 } else { 0 };
                let v = match (x + c) % 3 {
                    0 => noise,
                    1 => (x * 255 / width.max(1) + y * 97 / height.max(1)) % 256,
                    _ => edge,
                };
                pixels.push(v.min(255) as u8);
            }
        }
    }
    Sample {
        name: format!("gen-{width}x{height}x{channels}"),
        pixels,
        width,
        height,
        channels,
    }
}

/// Person-sized crops of frames 0 and 40 of vtest.avi, RGB.
fn vtest_crops() -> Vec<Sample> {
    let mut out = Vec::new();
    // (x, y, w, h): people and background of various shapes.
    let boxes = [
        (250, 90, 48, 110),
        (390, 120, 70, 190),
        (100, 200, 198, 360),
        (500, 300, 260, 90),
    ];
    for (frame_no, frame) in vtest_frames(41).into_iter().enumerate().step_by(40) {
        let map = frame.buffer.map_readable().expect("map");
        let data = map.as_slice();
        let (fw, fh, stride) = (frame.width as usize, frame.height as usize, frame.stride);
        for (i, &(x, y, w, h)) in boxes.iter().enumerate() {
            let (w, h): (usize, usize) = (w.min(fw - x), h.min(fh - y));
            let mut pixels = Vec::with_capacity(w * h * 3);
            for row in y..y + h {
                pixels.extend_from_slice(&data[row * stride + x * 3..][..w * 3]);
            }
            out.push(Sample {
                name: format!("vtest-{frame_no}-{i}"),
                pixels,
                width: w,
                height: h,
                channels: 3,
            });
        }
    }
    out
}

fn write_png(dir: &Path, s: &Sample) {
    let typ = if s.channels == 1 {
        opencv::core::CV_8UC1
    } else {
        opencv::core::CV_8UC3
    };
    let m = Mat::new_rows_cols_with_data(s.height as i32, (s.width * s.channels) as i32, &s.pixels)
        .expect("mat")
        .reshape(s.channels as i32, s.height as i32)
        .expect("reshape")
        .try_clone()
        .expect("clone");
    assert_eq!(m.typ(), typ);
    let mut file = m.clone();
    if s.channels == 3 {
        imgproc::cvt_color_def(&m, &mut file, imgproc::COLOR_RGB2BGR).expect("bgr");
    }
    let path = dir.join(format!("{}.png", s.name));
    assert!(imgcodecs::imwrite(path.to_str().expect("utf-8"), &file, &Vector::new()).expect("imwrite"));
}

#[test]
fn crops_are_resized_exactly_as_pillow_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut samples = Vec::new();
    // Enlarge both, shrink both, shrink one side and enlarge the other (both ways), the target
    // size itself, tiny, and over 100 times taller than wide (Pillow's columns-first case).
    for (i, (w, h)) in [
        (48, 110),
        (400, 700),
        (300, 100),
        (100, 600),
        (144, 288),
        (7, 13),
        (145, 287),
        (2, 300),
    ]
    .into_iter()
    .enumerate()
    {
        samples.push(generated(w, h, 3, i as u64));
        samples.push(generated(w, h, 1, 100 + i as u64));
    }
    samples.extend(vtest_crops());
    for s in &samples {
        write_png(dir.path(), s);
    }
    reference("weights_refs.py", [Path::new("pil"), dir.path()]);
    let mut worst = 0u8;
    let mut differing = 0usize;
    for s in &samples {
        let crop = s.crop();
        let ours = batch_pixels(&[crop], (288, 144)).expect("resize");
        let n = 288 * 144 * 3;
        let mut got = vec![0u8; n];
        ours.copy_data_u8(&mut got, n);
        let want = std::fs::read(dir.path().join(format!("{}.pil.rgb", s.name))).expect("Pillow's result");
        assert_eq!(want.len(), got.len(), "{}", s.name);
        for (a, b) in got.iter().zip(&want) {
            let d = a.abs_diff(*b);
            worst = worst.max(d);
            differing += usize::from(d > 0);
        }
        assert_eq!(worst, 0, "{}: differs from Pillow by up to {worst}", s.name);
    }
    eprintln!(
        "{} images: largest difference from Pillow {worst}, {differing} samples differ",
        samples.len()
    );
}

/// Frames the tensor way is checked on: frame 0 of vtest.avi (RGB, rows padded to a stride),
/// its grey version, and an 8-bit rendering of a 16-bit thermal frame made from it (as the live
/// pipeline renders radiometric cameras).
struct Frames {
    rgb: (Vec<u8>, usize),
    grey: Vec<u8>,
    thermal: Vec<u8>,
    size: (usize, usize),
}

fn frames() -> Frames {
    let frame = vtest_frames(1).remove(0);
    let map = frame.buffer.map_readable().expect("map");
    let (w, h, stride) = (frame.width as usize, frame.height as usize, frame.stride);
    let rgb = map.as_slice()[..stride * h].to_vec();
    let grey: Vec<u8> = (0..w * h)
        .map(|i| {
            let p = &rgb[(i / w) * stride + (i % w) * 3..][..3];
            ((u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114) / 1000) as u8
        })
        .collect();
    // 16-bit "radiometric" values: the grey level spread over 12 bits plus a little ripple.
    let raw: Vec<u8> = grey
        .iter()
        .enumerate()
        .flat_map(|(i, &g)| (u16::from(g) * 13 + 2_000 + (i % 7) as u16).to_le_bytes())
        .collect();
    let image = Image::new(&raw, w as u32, h as u32, w * 2, PixelFormat::Gray16).expect("16-bit view");
    let thermal = reid_pipe::detect::thermal::to_u8(&image, None, (10.0, 40.0)).expect("rendering");
    Frames {
        rgb: (rgb, stride),
        grey,
        thermal,
        size: (w, h),
    }
}

/// Crops cut straight out of the frames (borrowed, with the frame's stride): person-like and
/// other shapes, shrinking and enlarging, both pass orders, RGB, grey and thermal, one batch.
fn frame_crops(f: &Frames) -> Vec<Crop<'_>> {
    let (fw, _) = f.size;
    let boxes = [
        (250, 90, 48, 110),
        (390, 120, 70, 190),
        (100, 200, 198, 360),
        (500, 300, 260, 90),
        (20, 10, 300, 500),
        (600, 40, 30, 400),
        (10, 400, 144, 288),
    ];
    let mut out = Vec::new();
    for (i, &(x, y, w, h)) in boxes.iter().enumerate() {
        let (w, h) = (w.min(fw - x), h.min(f.size.1 - y));
        let (rgb, stride) = (&f.rgb.0, f.rgb.1);
        out.push(Crop {
            pixels: &rgb[y * stride + x * 3..],
            width: w,
            height: h,
            stride,
            channels: 3,
            modality: Modality::Visible,
        });
        let grey = if i % 2 == 0 { &f.grey } else { &f.thermal };
        out.push(Crop {
            pixels: &grey[y * fw + x..],
            width: w,
            height: h,
            stride: fw,
            channels: 1,
            modality: Modality::Thermal,
        });
    }
    out
}

#[test]
fn the_tensor_way_is_within_one_grey_level_of_pillow() {
    let f = frames();
    let mut crops = frame_crops(&f);
    let generated: Vec<Sample> = [(7, 13), (400, 700), (300, 100), (2, 300)]
        .into_iter()
        .enumerate()
        .map(|(i, (w, h))| generated(w, h, 1 + 2 * (i % 2), i as u64))
        .collect();
    crops.extend(generated.iter().map(Sample::crop));
    let size = (288, 144);
    let norm = Normalisation {
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
    };
    let input = |way| {
        let stager = Stager::new(size, way, Device::Cpu);
        assert_eq!(stager.way(), way);
        let staged = stager.stage(&crops).expect("stage");
        staged.input(&norm, Device::Cpu, Kind::Float).expect("input")
    };
    let (host, tensor) = (input(Preprocess::Host), input(Preprocess::Tensor));
    assert_eq!(tensor.size(), [crops.len() as i64, 3, 288, 144]);
    // Back to grey levels: x · std · 255 + mean · 255.
    let std = Tensor::from_slice(&IMAGENET_STD)
        .to_kind(Kind::Float)
        .view([1, 3, 1, 1])
        * 255.0;
    let levels = |x: &Tensor| x * &std;
    let diff = (levels(&host) - levels(&tensor)).abs();
    let worst = diff.max().double_value(&[]);
    let off = diff.gt(0.01).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
    eprintln!(
        "tensor way vs Pillow: largest difference {worst:.3} grey levels, {:.4}% of samples off",
        off * 100.0
    );
    assert!(
        worst < 1.01,
        "the tensor way differs from Pillow by {worst} grey levels"
    );
    assert!(off < 0.01, "{:.2}% of the samples differ from Pillow", off * 100.0);
    // Per crop too: no crop may be far off on average (a wrong crop offset or pass order would be).
    let per_crop = diff.mean_dim([1i64, 2, 3].as_slice(), false, Kind::Float);
    let per_crop: Vec<f32> = Vec::try_from(per_crop).expect("means");
    for (i, m) in per_crop.iter().enumerate() {
        assert!(*m < 0.05, "crop {i}: mean difference {m} grey levels");
    }
}

#[test]
fn the_tensor_way_gives_the_host_ways_embeddings() {
    let f = frames();
    let crops = frame_crops(&f);
    // The same random network twice (same seed), one per way.
    let embedder = |way| {
        tch::manual_seed(3);
        let vs = VarStore::new(Device::Cpu);
        let net = LbaNet::new(&vs.root(), ModelSpec::new(Backbone::Tinyresnet, 0, (288, 144)));
        LbaEmbedder::new(net, vs, false).expect("embedder").with_preprocess(way)
    };
    let host = embedder(Preprocess::Host).embed(&crops).expect("host way");
    let tensor = embedder(Preprocess::Tensor).embed(&crops).expect("tensor way");
    assert_eq!(tensor.kind(), Kind::Float);
    let cos: Vec<f32> = Vec::try_from((&host * &tensor).sum_dim_intlist(1, false, Kind::Float)).expect("cosines");
    let worst = cos.iter().copied().fold(1.0f32, f32::min);
    eprintln!(
        "tensor way vs host way: lowest cosine {worst:.7} over {} crops",
        cos.len()
    );
    assert!(worst > 0.9999, "embeddings of the two ways differ: cosine {worst}");
    // And the check has teeth: crops shifted by a few pixels are further apart than that.
    let shifted: Vec<Crop<'_>> = crops
        .iter()
        .map(|c| Crop {
            pixels: &c.pixels[4 * c.channels..],
            ..*c
        })
        .collect();
    let moved = embedder(Preprocess::Tensor).embed(&shifted).expect("shifted");
    let cos: Vec<f32> = Vec::try_from((&host * &moved).sum_dim_intlist(1, false, Kind::Float)).expect("cosines");
    assert!(cos.iter().any(|&c| c < 0.9999), "a 4-pixel shift went unnoticed");
}
