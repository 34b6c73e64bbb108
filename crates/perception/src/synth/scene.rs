//! Generated scenes: rendered people walking across a paired visible and thermal view, with
//! exact ground-truth boxes. Used by the detector tests and the end-to-end test of the live
//! pipeline.

use super::{Person, SynthError, draw_person, write};
use crate::detect::BBox;
use opencv::core::{self, Mat, Rect, Scalar, Size};
use opencv::imgproc;
use opencv::prelude::*;
use reid_core::base::PyRandom;
use std::io::Write as _;
use std::path::Path;

/// One person walking along a straight line at constant speed.
#[derive(Debug, Clone)]
pub struct Walker {
    /// Identity (as in the generated datasets: the same id renders the same person).
    pub pid: i64,
    person: Person,
    /// Feet position at frame 0, and velocity in pixels per frame.
    start: (f64, f64),
    velocity: (f64, f64),
    body_h: f64,
}

/// A fixed background and the people walking through it.
pub struct Scene {
    pub width: i32,
    pub height: i32,
    pub walkers: Vec<Walker>,
    visible_bg: Mat,
    thermal_bg: Mat,
    seed: u64,
}

impl Scene {
    /// `walkers` people crossing a `width` × `height` view in `frames` frames, alternately from the
    /// left and the right, on lanes from the back (small) to the front (large). People walking the
    /// same way keep their distance; people walking opposite ways pass in front of each other.
    pub fn crossing(width: i32, height: i32, walkers: usize, frames: usize, seed: u64) -> opencv::Result<Self> {
        let pids: Vec<i64> = (1..=walkers as i64).collect();
        Self::crossing_people(width, height, &pids, frames, seed, seed)
    }

    /// As [`crossing`](Self::crossing), with the people `pids` as rendered for `people_seed`
    /// (the same id renders the same person in every scene of that seed) and the background,
    /// lanes and noise of `seed`.
    pub fn crossing_people(
        width: i32,
        height: i32,
        pids: &[i64],
        frames: usize,
        seed: u64,
        people_seed: u64,
    ) -> opencv::Result<Self> {
        let mut rng = PyRandom::new(seed);
        let walkers = pids.len();
        let lanes = walkers.max(1) as f64;
        let list = (0..walkers)
            .map(|i| {
                let pid = pids[i];
                let person = Person::new(people_seed, pid);
                // Lanes from the back (small) to the front (large), feet spaced down the frame.
                let lane = (i as f64 + 0.5) / lanes;
                let body_h = f64::from(height) * (0.30 + 0.25 * lane);
                let feet_y = f64::from(height) * 0.35 + lane * f64::from(height) * 0.6;
                let feet_y = feet_y.min(f64::from(height) - 2.0).max(body_h + 2.0);
                // Same-direction walkers start one spacing apart and walk at the same speed.
                let margin = body_h * 0.4 + (i / 2) as f64 * f64::from(width) * 0.4;
                let (from, to) = if i % 2 == 0 {
                    (-margin, f64::from(width) + body_h * 0.4)
                } else {
                    (f64::from(width) + margin, -body_h * 0.4)
                };
                let jitter = (rng.randbelow(1000) as f64 / 1000.0 - 0.5) * 0.1 * f64::from(width);
                Walker {
                    pid,
                    person,
                    start: (from + jitter, feet_y),
                    velocity: ((to - from) / frames.max(1) as f64, 0.0),
                    body_h,
                }
            })
            .collect();
        Ok(Self {
            width,
            height,
            walkers: list,
            visible_bg: background(width, height, false, &mut rng)?,
            thermal_bg: background(width, height, true, &mut rng)?,
            seed,
        })
    }

    /// Frame `t` of one modality (RGB for visible, 8-bit grey for thermal) and the box of every
    /// person at least partly in view.
    pub fn frame(&self, t: usize, thermal: bool) -> opencv::Result<(Mat, Vec<(i64, BBox)>)> {
        let mut img = if thermal {
            self.thermal_bg.try_clone()?
        } else {
            self.visible_bg.try_clone()?
        };
        let mut boxes = Vec::new();
        for w in &self.walkers {
            let cx = w.start.0 + w.velocity.0 * t as f64;
            let feet = w.start.1 + w.velocity.1 * t as f64;
            let top = feet - w.body_h;
            // Ground truth from a mask of this person alone: everything drawn in visible light;
            // in thermal only the warm body (a hat or bag at ambient temperature is not seen).
            let mut mask = Mat::new_rows_cols_with_default(self.height, self.width, core::CV_8UC1, Scalar::all(0.0))?;
            draw_person(&mut mask, &w.person, true, cx, top, w.body_h)?;
            let cut = if thermal { w.person.warmth - 40.0 } else { 1.0 };
            let mut seen = Mat::default();
            imgproc::threshold(&mask, &mut seen, cut - 1.0, 255.0, imgproc::THRESH_BINARY)?;
            let r = imgproc::bounding_rect(&seen)?;
            if r.width > 0 && r.height > 0 {
                boxes.push((
                    w.pid,
                    BBox::new(r.x as f32, r.y as f32, r.width as f32, r.height as f32),
                ));
                draw_person(&mut img, &w.person, thermal, cx, top, w.body_h)?;
            }
        }
        if thermal {
            let mut blurred = Mat::default();
            imgproc::gaussian_blur_def(&img, &mut blurred, Size::new(5, 5), 1.2)?;
            let mut noise = Mat::new_rows_cols_with_default(self.height, self.width, core::CV_8UC1, Scalar::all(0.0))?;
            let mut rng = core::RNG::new(self.seed.wrapping_mul(7919).wrapping_add(t as u64))?;
            rng.fill(
                &mut noise,
                core::RNG_NORMAL,
                &Scalar::all(0.0),
                &Scalar::all(4.0),
                false,
            )?;
            let mut out = Mat::default();
            core::add(&blurred, &noise, &mut out, &core::no_array(), -1)?;
            img = out;
        }
        Ok((img, boxes))
    }
}

/// A cluttered background: visible gets coloured blocks, thermal a cool gradient with a few
/// lukewarm objects.
fn background(width: i32, height: i32, thermal: bool, rng: &mut PyRandom) -> opencv::Result<Mat> {
    let mut img = if thermal {
        let mut g = Mat::new_rows_cols_with_default(height, width, core::CV_8UC1, Scalar::all(0.0))?;
        for y in 0..height {
            let v = 55.0 + 30.0 * f64::from(y) / f64::from(height);
            imgproc::line(
                &mut g,
                core::Point::new(0, y),
                core::Point::new(width - 1, y),
                Scalar::all(v),
                1,
                imgproc::LINE_8,
                0,
            )?;
        }
        g
    } else {
        Mat::new_rows_cols_with_default(height, width, core::CV_8UC3, Scalar::new(120.0, 125.0, 118.0, 0.0))?
    };
    for _ in 0..12 {
        let c = if thermal {
            Scalar::all(70.0 + rng.randbelow(50) as f64)
        } else {
            Scalar::new(
                rng.randbelow(256) as f64,
                rng.randbelow(256) as f64,
                rng.randbelow(256) as f64,
                0.0,
            )
        };
        let r = Rect::new(
            rng.randbelow(width as u64) as i32,
            rng.randbelow(height as u64) as i32,
            10 + rng.randbelow((width / 4) as u64) as i32,
            10 + rng.randbelow((height / 6) as u64) as i32,
        );
        imgproc::rectangle(&mut img, r, c, -1, imgproc::LINE_8, 0)?;
    }
    Ok(img)
}

/// Frames of a clip written by `reid-pipe synth --format scene` (at 10 frames/s).
pub const CLIP_FRAMES: usize = 120;
/// Size of those frames.
pub const CLIP_SIZE: (i32, i32) = (480, 360);

/// Writes a recording of `clips` consecutive clips of `frames` frames each: PNG sequences
/// `visible/00000.png …` (RGB) and `thermal/00000.png …` (grey), numbered on across clips, and
/// `truth.jsonl` with one line per frame, modality and person:
/// `{"frame", "clip", "modality", "pid", "box": [x, y, w, h]}`. One clip shows all `people`
/// crossing both views; with several, each clip shows two or three of them, drawn at random, so
/// people leave and come back later as on a real site.
pub fn write_clips(out: &Path, people: usize, clips: usize, frames: usize, seed: u64) -> Result<(), SynthError> {
    if people == 0 {
        return Err(SynthError::Args("a scene needs at least one person".into()));
    }
    let err = |path: &Path, source| SynthError::Write {
        path: path.to_path_buf(),
        source,
    };
    let draw = |path: &Path, source| SynthError::Draw {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(out).map_err(|e| err(out, e))?;
    let truth_path = out.join("truth.jsonl");
    let mut truth = std::io::BufWriter::new(std::fs::File::create(&truth_path).map_err(|e| err(&truth_path, e))?);
    let mut rng = PyRandom::new(seed.wrapping_add(1 << 32));
    for clip in 0..clips {
        let mut pids: Vec<i64> = (1..=people as i64).collect();
        if clips > 1 {
            let k = (2 + clip % 2).min(people);
            for i in 0..k {
                let j = i + rng.randbelow((people - i) as u64) as usize;
                pids.swap(i, j);
            }
            pids.truncate(k);
        }
        // A new place and walk in every clip; the same people (who come back looking the same).
        let scene = Scene::crossing_people(CLIP_SIZE.0, CLIP_SIZE.1, &pids, frames, seed + clip as u64, seed)
            .map_err(|e| draw(out, e))?;
        for t in 0..frames {
            let frame = clip * frames + t;
            for (thermal, name) in [(false, "visible"), (true, "thermal")] {
                let (img, boxes) = scene.frame(t, thermal).map_err(|e| draw(out, e))?;
                let path = out.join(name).join(format!("{frame:05}.png"));
                if thermal {
                    let mut rgb = Mat::default();
                    imgproc::cvt_color_def(&img, &mut rgb, imgproc::COLOR_GRAY2RGB).map_err(|e| draw(&path, e))?;
                    write(&path, &rgb)?;
                } else {
                    write(&path, &img)?;
                }
                for (pid, b) in boxes {
                    writeln!(
                        truth,
                        "{{\"frame\":{frame},\"clip\":{clip},\"modality\":\"{name}\",\"pid\":{pid},\"box\":[{},{},{},{}]}}",
                        b.x, b.y, b.w, b.h
                    )
                    .map_err(|e| err(&truth_path, e))?;
                }
            }
        }
    }
    truth.flush().map_err(|e| err(&truth_path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_look_the_same_in_every_clip_of_a_recording() {
        let look = |seed, people_seed| {
            let scene =
                Scene::crossing_people(CLIP_SIZE.0, CLIP_SIZE.1, &[3, 5], 10, seed, people_seed).expect("scene");
            format!("{:?}", scene.walkers[1].person)
        };
        assert_eq!(look(8, 7), look(9, 7), "another clip, the same person");
        assert_ne!(look(8, 7), look(8, 8), "another recording, another person");
    }
}
