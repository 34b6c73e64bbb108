//! The images the network sees equal the reference code's: every crop is resized as Pillow's
//! `Image.resize((144, 288), Image.LANCZOS)` does (`Image.ANTIALIAS` in the LbA code), checked
//! against the installed Pillow on generated images (shrinking, enlarging, both aspect
//! directions, grey and RGB) and on real pedestrian crops from vtest.avi.

mod common;

use common::{reference, vtest_frames};
use opencv::core::{Mat, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};
use reid_pipe::ingest::Modality;
use reid_pipe::model::embedder::{Crop, batch_pixels};
use std::path::Path;

/// An image to resize: tightly packed pixels.
struct Sample {
    name: String,
    pixels: Vec<u8>,
    width: usize,
    height: usize,
    channels: usize,
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
        let crop = Crop {
            pixels: &s.pixels,
            width: s.width,
            height: s.height,
            stride: s.width * s.channels,
            channels: s.channels,
            modality: Modality::Visible,
        };
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
