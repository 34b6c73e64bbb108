//! Generated re-ID datasets in the exact on-disk layouts of SYSU-MM01, RegDB and Market-1501, for
//! tests, demos and trying the trainer without the real data.
//!
//! Each identity is a rendered person whose *shape* survives the change of modality (height and
//! build, head size, stance, a bag on one side, a hat) while colour and texture (clothing colours,
//! stripes) exist in visible images only: thermal renderings show warm bodies on a cooler,
//! noisy background, without colour or texture. Every image varies scale, position, viewpoint
//! (mirroring), background and sometimes an occluder.

pub mod scene;

use opencv::core::{Mat, Point, Rect, Scalar, Size, Vector};
use opencv::{imgcodecs, imgproc};
use reid_core::base::PyRandom;
use std::path::{Path, PathBuf};

/// Which layout to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Sysu,
    Regdb,
    Market,
    /// A camera-pair clip: people walking across a visible and a thermal view (image sequences
    /// `visible/%05d.png`, `thermal/%05d.png` and the true boxes in `truth.jsonl`).
    Scene,
}

/// Errors naming the file being written.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot draw {}", path.display())]
    Draw {
        path: PathBuf,
        #[source]
        source: opencv::Error,
    },
    #[error("{}: the image encoder refused the file", path.display())]
    Refused { path: PathBuf },
    #[error("{} is not empty; give a new folder (nothing was written)", path.display())]
    NotEmpty { path: PathBuf },
    #[error("{} is a file, not a folder", path.display())]
    NotAFolder { path: PathBuf },
    #[error("{0}")]
    Args(String),
}

/// Image size (height, width) of every rendered crop.
pub const SIZE: (i32, i32) = (128, 64);

/// The fixed appearance of one identity.
#[derive(Debug, Clone)]
pub(crate) struct Person {
    pub(crate) height: f64,
    build: f64,
    head: f64,
    stance: f64,
    bag: i32, // 0 none, 1 left, 2 right
    hat: bool,
    top: [f64; 3],
    bottom: [f64; 3],
    stripes: Option<([f64; 3], i32)>,
    pub(crate) warmth: f64,
}

fn unit(rng: &mut PyRandom) -> f64 {
    rng.getrandbits(53) as f64 / (1u64 << 53) as f64
}

fn uniform(rng: &mut PyRandom, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * unit(rng)
}

fn colour(rng: &mut PyRandom) -> [f64; 3] {
    [
        uniform(rng, 20.0, 235.0),
        uniform(rng, 20.0, 235.0),
        uniform(rng, 20.0, 235.0),
    ]
}

impl Person {
    pub(crate) fn new(seed: u64, pid: i64) -> Self {
        let mut rng = PyRandom::new(seed.wrapping_mul(1_000_003).wrapping_add(pid as u64));
        Self {
            height: uniform(&mut rng, 0.70, 0.95),
            build: uniform(&mut rng, 0.22, 0.45),
            head: uniform(&mut rng, 0.07, 0.12),
            stance: uniform(&mut rng, 0.02, 0.16),
            bag: rng.randbelow(3) as i32,
            hat: rng.randbelow(2) == 1,
            top: colour(&mut rng),
            bottom: colour(&mut rng),
            stripes: (rng.randbelow(2) == 1).then(|| (colour(&mut rng), 3 + rng.randbelow(5) as i32)),
            warmth: uniform(&mut rng, 180.0, 235.0),
        }
    }
}

/// Renders one image of `person`; `thermal` drops colour and texture.
fn render(person: &Person, thermal: bool, rng: &mut PyRandom) -> opencv::Result<Mat> {
    let (h, w) = SIZE;
    let bg = if thermal {
        let t = uniform(rng, 40.0, 110.0);
        Scalar::new(t, t, t, 0.0)
    } else {
        let c = colour(rng);
        Scalar::new(c[0], c[1], c[2], 0.0)
    };
    let mut img = Mat::new_rows_cols_with_default(h, w, opencv::core::CV_8UC3, bg)?;
    // Background clutter: a few rectangles.
    for _ in 0..3 {
        let c = if thermal {
            let t = uniform(rng, 30.0, 120.0);
            Scalar::new(t, t, t, 0.0)
        } else {
            let c = colour(rng);
            Scalar::new(c[0], c[1], c[2], 0.0)
        };
        let x = rng.randbelow(w as u64) as i32;
        let y = rng.randbelow(h as u64) as i32;
        imgproc::rectangle(
            &mut img,
            Rect::new(
                x - 10,
                y - 10,
                8 + rng.randbelow(24) as i32,
                8 + rng.randbelow(24) as i32,
            ),
            c,
            -1,
            imgproc::LINE_8,
            0,
        )?;
    }
    let scale = uniform(rng, 0.88, 1.08);
    let body_h = person.height * scale * f64::from(h);
    let cx = f64::from(w) / 2.0 + uniform(rng, -5.0, 5.0);
    let top_y = (f64::from(h) - body_h) / 2.0 + uniform(rng, -4.0, 4.0);
    draw_person(&mut img, person, thermal, cx, top_y, body_h)?;
    // Occluder (a pole or a passer-by's edge) in one image of five.
    if rng.randbelow(5) == 0 {
        let x = rng.randbelow(w as u64) as i32;
        let c = if thermal {
            Scalar::all(uniform(rng, 50.0, 100.0))
        } else {
            Scalar::new(uniform(rng, 0.0, 255.0), 80.0, 80.0, 0.0)
        };
        imgproc::rectangle(
            &mut img,
            Rect::new(x, 0, 6 + rng.randbelow(10) as i32, h),
            c,
            -1,
            imgproc::LINE_8,
            0,
        )?;
    }
    let mut out = Mat::default();
    if thermal {
        // Thermal optics blur; sensor noise.
        let mut blurred = Mat::default();
        imgproc::gaussian_blur_def(&img, &mut blurred, Size::new(5, 5), 1.2)?;
        let mut noise = Mat::new_rows_cols_with_default(h, w, opencv::core::CV_8UC3, Scalar::all(0.0))?;
        opencv::core::randn(&mut noise, &Scalar::all(0.0), &Scalar::all(6.0))?;
        opencv::core::add(&blurred, &noise, &mut out, &opencv::core::no_array(), -1)?;
    } else {
        out = img;
    }
    // Viewpoint: mirror half of the images.
    if rng.randbelow(2) == 1 {
        let mut flipped = Mat::default();
        opencv::core::flip(&out, &mut flipped, 1)?;
        out = flipped;
    }
    Ok(out)
}

/// Draws `person` standing with feet at `top_y + body_h`, centred on `cx`; `thermal` paints
/// warmth instead of colour and leaves out texture.
pub(crate) fn draw_person(
    img: &mut Mat,
    person: &Person,
    thermal: bool,
    cx: f64,
    top_y: f64,
    body_h: f64,
) -> opencv::Result<()> {
    let head_r = person.head * body_h;
    // The crop width at this scale: body widths are fractions of it, pixel sizes scale with it.
    let unit = body_h / (2.0 * person.height);
    let px = unit / 64.0;
    let half_w = person.build * unit / 2.0;
    let paint = |c: [f64; 3], warm: f64| {
        if thermal {
            Scalar::new(warm, warm, warm, 0.0)
        } else {
            Scalar::new(c[0], c[1], c[2], 0.0)
        }
    };
    let skin = [190.0, 150.0, 120.0];
    let p = |x: f64, y: f64| Point::new(x.round() as i32, y.round() as i32);
    let head_c = p(cx, top_y + head_r);
    imgproc::circle(
        img,
        head_c,
        head_r.round() as i32,
        paint(skin, person.warmth + 15.0),
        -1,
        imgproc::LINE_AA,
        0,
    )?;
    if person.hat {
        let hat = Rect::new(
            (cx - head_r * 1.2) as i32,
            (top_y - head_r * 0.2) as i32,
            (head_r * 2.4) as i32,
            (head_r * 0.8) as i32,
        );
        imgproc::rectangle(
            img,
            hat,
            paint([30.0, 30.0, 30.0], person.warmth - 70.0),
            -1,
            imgproc::LINE_8,
            0,
        )?;
    }
    let torso_top = top_y + 2.0 * head_r;
    let torso_bottom = torso_top + 0.42 * body_h;
    let torso = Rect::new(
        (cx - half_w) as i32,
        torso_top as i32,
        (2.0 * half_w) as i32,
        (torso_bottom - torso_top) as i32,
    );
    imgproc::rectangle(
        img,
        torso,
        paint(person.top, person.warmth - 10.0),
        -1,
        imgproc::LINE_8,
        0,
    )?;
    if let (false, Some((c, period))) = (thermal, person.stripes) {
        let mut y = torso_top as i32;
        while y < torso_bottom as i32 {
            imgproc::line(
                img,
                Point::new(torso.x, y),
                Point::new(torso.x + torso.width, y),
                Scalar::new(c[0], c[1], c[2], 0.0),
                1,
                imgproc::LINE_8,
                0,
            )?;
            y += period;
        }
    }
    let feet = top_y + body_h;
    let leg_w = (half_w * 0.55).max(2.0) as i32;
    for side in [-1.0, 1.0] {
        let hip = p(cx + side * half_w * 0.45, torso_bottom);
        let foot = p(cx + side * (half_w * 0.45 + person.stance * unit), feet);
        imgproc::line(
            img,
            hip,
            foot,
            paint(person.bottom, person.warmth - 25.0),
            leg_w,
            imgproc::LINE_AA,
            0,
        )?;
        let shoulder = p(cx + side * half_w, torso_top + 3.0 * px);
        let hand = p(cx + side * (half_w + 4.0 * px), torso_bottom - 2.0 * px);
        imgproc::line(
            img,
            shoulder,
            hand,
            paint(skin, person.warmth),
            (leg_w / 2).max(2),
            imgproc::LINE_AA,
            0,
        )?;
    }
    if person.bag != 0 {
        let side = if person.bag == 1 { -1.0 } else { 1.0 };
        let bx = cx + side * (half_w + 3.0 * px) - 6.0 * px;
        let bag = Rect::new(
            bx as i32,
            (torso_top + 0.2 * body_h) as i32,
            (12.0 * px) as i32,
            (0.22 * body_h) as i32,
        );
        imgproc::rectangle(
            img,
            bag,
            paint([90.0, 60.0, 40.0], person.warmth - 90.0),
            -1,
            imgproc::LINE_8,
            0,
        )?;
    }
    Ok(())
}

fn write(path: &Path, img: &Mat) -> Result<(), SynthError> {
    let draw = |source| SynthError::Draw {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| SynthError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    // Images are RGB-ordered in our drawing; files store BGR, so convert once here.
    let mut bgr = Mat::default();
    imgproc::cvt_color_def(img, &mut bgr, imgproc::COLOR_RGB2BGR).map_err(draw)?;
    let ok = imgcodecs::imwrite(path, &bgr, &Vector::new()).map_err(draw)?;
    if !ok {
        return Err(SynthError::Refused {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

fn render_to(path: &Path, person: &Person, thermal: bool, rng: &mut PyRandom) -> Result<(), SynthError> {
    let img = render(person, thermal, rng).map_err(|source| SynthError::Draw {
        path: path.to_path_buf(),
        source,
    })?;
    write(path, &img)
}

/// Most walkers in a generated scene clip.
const MAX_SCENE_PEOPLE: usize = 64;
/// Clips of one generated recording (each 12 s at 10 frames/s).
const MAX_CLIPS: usize = 100;

/// Writes a dataset of `identities` people in `format` under `out`; deterministic for a seed.
/// `out` must not exist or be empty: the layouts use the real datasets' file names, so writing
/// over a real copy would overwrite it, and over an earlier set would mix identities.
pub fn generate(format: Format, identities: usize, clips: usize, out: &Path, seed: u64) -> Result<(), SynthError> {
    if clips != 1 && format != Format::Scene {
        return Err(SynthError::Args(format!("--clips {clips}: only a scene has clips")));
    }
    if clips > MAX_CLIPS {
        return Err(SynthError::Args(format!("--clips {clips}: at most {MAX_CLIPS}")));
    }
    // The layouts' person ids have four digits (SYSU `0001`, Market `0001_c1…`); a clip more
    // than a few dozen walkers is not a scene.
    let most = if format == Format::Scene {
        MAX_SCENE_PEOPLE
    } else {
        9999
    };
    if identities > most {
        return Err(SynthError::Args(format!(
            "--identities {identities}: at most {most} for this layout"
        )));
    }
    if let Ok(mut entries) = std::fs::read_dir(out)
        && entries.next().is_some()
    {
        return Err(SynthError::NotEmpty {
            path: out.to_path_buf(),
        });
    }
    if out.exists() && !out.is_dir() {
        return Err(SynthError::NotAFolder {
            path: out.to_path_buf(),
        });
    }
    match format {
        Format::Sysu => sysu(identities, out, seed),
        Format::Regdb => regdb(identities, out, seed),
        Format::Market => market(identities, out, seed),
        Format::Scene => scene::write_clips(out, identities, clips, scene::CLIP_FRAMES, seed),
    }
}

/// SYSU-MM01: ids 1..=N; 60 % train, 15 % val, the rest test (at least 2). Every id is seen by
/// at least one visible and one infrared camera.
fn sysu(n: usize, out: &Path, seed: u64) -> Result<(), SynthError> {
    if n < 6 {
        return Err(SynthError::Args(format!(
            "SYSU-MM01 needs at least 6 identities (train, val, test), got {n}"
        )));
    }
    let mut rng = PyRandom::new(seed);
    for pid in 1..=n as i64 {
        let person = Person::new(seed, pid);
        let rgb_cams: Vec<i64> = [1, 2, 4, 5].into_iter().filter(|_| rng.randbelow(4) != 0).collect();
        let rgb_cams = if rgb_cams.is_empty() {
            vec![1 + 3 * rng.randbelow(2) as i64]
        } else {
            rgb_cams
        };
        let ir_cams: Vec<i64> = [3, 6].into_iter().filter(|_| rng.randbelow(3) != 0).collect();
        let ir_cams = if ir_cams.is_empty() {
            vec![3 + 3 * rng.randbelow(2) as i64]
        } else {
            ir_cams
        };
        for cam in rgb_cams.into_iter().chain(ir_cams) {
            let thermal = cam == 3 || cam == 6;
            for k in 1..=(3 + rng.randbelow(4)) {
                render_to(
                    &out.join(format!("cam{cam}/{pid:04}/{k:04}.jpg")),
                    &person,
                    thermal,
                    &mut rng,
                )?;
            }
        }
    }
    let n_train = (n * 60 / 100).max(2);
    let n_val = (n * 15 / 100).max(1);
    let ids: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    let (train, rest) = ids.split_at(n_train.min(n - 3));
    let (val, test) = rest.split_at(n_val.min(rest.len() - 2));
    let exp = out.join("exp");
    for (name, list) in [("train_id.txt", train), ("val_id.txt", val), ("test_id.txt", test)] {
        let path = exp.join(name);
        std::fs::create_dir_all(&exp).map_err(|e| SynthError::Write {
            path: path.clone(),
            source: e,
        })?;
        std::fs::write(&path, format!("{}\n", list.join(","))).map_err(|e| SynthError::Write { path, source: e })?;
    }
    Ok(())
}

/// RegDB: ids 1..=N with 10 visible and 10 thermal images each; 10 trials, each a random half
/// for training (labels 0..) and the other half for testing.
fn regdb(n: usize, out: &Path, seed: u64) -> Result<(), SynthError> {
    if n < 4 {
        return Err(SynthError::Args(format!("RegDB needs at least 4 identities, got {n}")));
    }
    let mut rng = PyRandom::new(seed);
    let mut names: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    for pid in 1..=n as i64 {
        let person = Person::new(seed, pid);
        let gender = if rng.randbelow(2) == 0 { "male" } else { "female" };
        let view = if rng.randbelow(2) == 0 { "front" } else { "back" };
        let mut vis = Vec::new();
        let mut th = Vec::new();
        for k in 1..=10 {
            let v = format!("Visible/{pid}/{gender}_{view}_v_{:05}_{k}.bmp", pid * 10 + k);
            let t = format!("Thermal/{pid}/{gender}_{view}_t_{:05}_{k}.bmp", pid * 10 + k);
            render_to(&out.join(&v), &person, false, &mut rng)?;
            render_to(&out.join(&t), &person, true, &mut rng)?;
            vis.push(v);
            th.push(t);
        }
        names.push((vis, th));
    }
    let idx = out.join("idx");
    std::fs::create_dir_all(&idx).map_err(|e| SynthError::Write {
        path: idx.clone(),
        source: e,
    })?;
    for trial in 1..=10u64 {
        let mut order: Vec<usize> = (0..n).collect();
        let mut trng = PyRandom::new(seed + trial);
        order = trng.sample(&order, n).unwrap_or(order);
        let (train, test) = order.split_at(n / 2);
        for (split, ids) in [("train", train), ("test", test)] {
            for (spec, pick) in [("visible", 0), ("thermal", 1)] {
                let mut text = String::new();
                let mut sorted = ids.to_vec();
                sorted.sort_unstable();
                for (label, &i) in sorted.iter().enumerate() {
                    let files = if pick == 0 { &names[i].0 } else { &names[i].1 };
                    for f in files {
                        text.push_str(&format!("{f} {label}\n"));
                    }
                }
                let path = idx.join(format!("{split}_{spec}_{trial}.txt"));
                std::fs::write(&path, text).map_err(|e| SynthError::Write { path, source: e })?;
            }
        }
    }
    Ok(())
}

/// Market-1501: 6 cameras; half the ids train, half test (one query per test id and camera it
/// is queried from, the rest gallery), plus junk (-1) and distractor (0000) gallery images.
fn market(n: usize, out: &Path, seed: u64) -> Result<(), SynthError> {
    if n < 4 {
        return Err(SynthError::Args(format!(
            "Market-1501 needs at least 4 identities, got {n}"
        )));
    }
    let mut rng = PyRandom::new(seed);
    let mut frame = 0u64;
    let mut name = |pid: i64, cam: u64, rng: &mut PyRandom| {
        frame += 1 + rng.randbelow(50);
        if pid < 0 {
            format!("-1_c{cam}s1_{frame:06}_01.jpg")
        } else {
            format!("{pid:04}_c{cam}s1_{frame:06}_01.jpg")
        }
    };
    for pid in 1..=n as i64 {
        let person = Person::new(seed, pid);
        let train = pid as usize <= n / 2;
        let cams: Vec<u64> = (1..=6).filter(|_| rng.randbelow(2) == 0).collect();
        let cams = if cams.len() < 2 { vec![1, 4] } else { cams };
        for (ci, &cam) in cams.iter().enumerate() {
            for k in 0..(2 + rng.randbelow(3)) {
                let folder = if train {
                    "bounding_box_train"
                } else if ci == 0 && k == 0 {
                    "query"
                } else {
                    "bounding_box_test"
                };
                let file = name(pid, cam, &mut rng);
                render_to(&out.join(folder).join(file), &person, false, &mut rng)?;
            }
        }
    }
    // Junk and distractors in the gallery.
    for (pid, count) in [(-1i64, 3), (0, 3)] {
        for k in 0..count {
            let person = Person::new(seed ^ 0xdead, 10_000 + k);
            let file = name(pid, 1 + rng.randbelow(6), &mut rng);
            render_to(&out.join("bounding_box_test").join(file), &person, false, &mut rng)?;
        }
    }
    Ok(())
}
