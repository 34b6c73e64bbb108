//! Person detection and tracking: detectors on the real pedestrian video and on generated thermal
//! scenes, a YOLO ONNX model made by the installed torch, the worker pool, and the SORT tracker.

mod common;

use common::vtest_frames;
use reid_pipe::base::{Image, PixelFormat};
use reid_pipe::config::site::{
    Calibration, Detector, DetectorKind, ThermalDetector, Tracker as TrackerConfig, YoloLayout,
};
use reid_pipe::detect::pool::{DetectPool, Job};
use reid_pipe::detect::{self, BBox, Detection, StreamDetector};
use reid_pipe::ingest::Frame;
use reid_pipe::synth::scene::Scene;
use reid_pipe::track::Tracker;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Defaults, with the ONNX input of the tiny test models.
fn detector(kind: DetectorKind, model: Option<PathBuf>) -> Detector {
    Detector {
        input_size: (64, 64),
        ..Detector::with_defaults(kind, model)
    }
}

fn ssd_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/weights/ssdlite_person.pb")
}

fn run(d: &mut StreamDetector, f: &Frame) -> Vec<Detection> {
    let map = f.buffer.map_readable().unwrap();
    let image = Image::new(map.as_slice(), f.width, f.height, f.stride, f.format).unwrap();
    d.run(&image).unwrap()
}

#[test]
fn visible_detectors_find_people_in_vtest() {
    let frames = vtest_frames(100);
    let mut report = Vec::new();
    for (kind, model) in [
        (DetectorKind::Ssd, Some(ssd_model())),
        (DetectorKind::Hog, None),
        (DetectorKind::Haar, None),
    ] {
        let mut d = detect::visible(&detector(kind, model)).unwrap();
        let counts: Vec<usize> = frames.iter().map(|f| run(&mut d, f).len()).collect();
        let with_people = counts.iter().filter(|&&c| c > 0).count();
        let total: usize = counts.iter().sum();
        report.push(format!("{kind:?}: {with_people}/100 frames, {total} boxes"));
        assert!(
            with_people > 50,
            "{kind:?} found people in only {with_people} of 100 frames"
        );
    }
    println!("{}", report.join("; "));
}

#[test]
fn ssd_boxes_are_people_shaped_and_inside_the_frame() {
    let frames = vtest_frames(10);
    let mut d = detect::visible(&detector(DetectorKind::Ssd, Some(ssd_model()))).unwrap();
    for f in &frames {
        for det in run(&mut d, f) {
            let b = det.bbox;
            assert!(
                b.x >= 0.0 && b.y >= 0.0 && b.x + b.w <= 768.0 && b.y + b.h <= 576.0,
                "{b:?}"
            );
            assert!(b.h > b.w, "pedestrians are taller than wide: {b:?}");
            assert!((0.5..=1.0).contains(&det.score));
        }
    }
}

#[test]
fn missing_detector_models_are_named() {
    let e = detect::visible(&detector(DetectorKind::Ssd, Some("/nonexistent/ssd.pb".into())))
        .err()
        .unwrap();
    assert!(e.to_string().contains("/nonexistent/ssd.pb"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let pb = dir.path().join("lonely.pb");
    std::fs::write(&pb, b"not a graph").unwrap();
    let e = detect::visible(&detector(DetectorKind::Ssd, Some(pb))).err().unwrap();
    assert!(e.to_string().contains("lonely.pbtxt"), "{e}");
    let e = detect::visible(&detector(DetectorKind::Haar, Some(dir.path().join("none.xml"))))
        .err()
        .unwrap();
    assert!(e.to_string().contains("none.xml"), "{e}");
}

/// Share of ground-truth people matched by a detection with IoU ≥ 0.5, over generated scenes.
/// As in the usual "unoccluded" subsets, people cut by the frame edge or overlapping another
/// person are not counted.
fn thermal_recall(
    to_image: impl Fn(&opencv::core::Mat) -> (Vec<u8>, PixelFormat, usize),
    d: &mut StreamDetector,
) -> f64 {
    use opencv::prelude::*;
    let (mut found, mut total) = (0, 0);
    for seed in 0..6u64 {
        let scene = Scene::crossing(320, 240, 2 + seed as usize % 2, 30, seed).unwrap();
        for t in (0..30).step_by(3) {
            let (mat, truth) = scene.frame(t, true).unwrap();
            let (w, h) = (mat.cols() as u32, mat.rows() as u32);
            let (pixels, format, stride) = to_image(&mat);
            let image = Image::new(&pixels, w, h, stride, format).unwrap();
            let dets = d.run(&image).unwrap();
            for (pid, gt) in &truth {
                let cut = gt.x <= 1.0 || gt.x + gt.w >= w as f32 - 1.0;
                let occluded = truth.iter().any(|(other, b)| other != pid && b.iou(gt) > 0.0);
                if cut || occluded {
                    continue;
                }
                total += 1;
                if dets.iter().any(|d| d.bbox.iou(gt) >= 0.5) {
                    found += 1;
                }
            }
        }
    }
    assert!(total > 50, "only {total} people in view");
    found as f64 / total as f64
}

#[test]
fn thermal_detector_finds_warm_bodies() {
    use opencv::prelude::*;
    let mut d = detect::thermal(&ThermalDetector::default(), None);
    let rate = thermal_recall(
        |m| (m.data_bytes().unwrap().to_vec(), PixelFormat::Gray8, m.cols() as usize),
        &mut d,
    );
    println!("thermal 8-bit: {:.1}% of people found with IoU >= 0.5", rate * 100.0);
    assert!(rate >= 0.9, "rate {rate}");
}

#[test]
fn calibrated_thermal_detector_thresholds_in_celsius() {
    use opencv::prelude::*;
    // Radiometric 16-bit frames in centikelvin: grey level v ↦ 15 + 25 v / 255 °C.
    let calibration = Calibration {
        gain: 0.01,
        offset: -273.15,
    };
    let to16 = |m: &opencv::core::Mat| {
        let raw: Vec<u8> = m
            .data_bytes()
            .unwrap()
            .iter()
            .flat_map(|&v| {
                let celsius = 15.0 + 25.0 * f64::from(v) / 255.0;
                (((celsius + 273.15) / 0.01).round() as u16).to_le_bytes()
            })
            .collect();
        (raw, PixelFormat::Gray16, m.cols() as usize * 2)
    };
    let cfg = ThermalDetector {
        min_celsius: Some(29.0),
        ..ThermalDetector::default()
    };
    let mut d = detect::thermal(&cfg, Some(calibration));
    let rate = thermal_recall(to16, &mut d);
    println!("thermal 16-bit at 29 °C: {:.1}%", rate * 100.0);
    assert!(rate >= 0.9, "rate {rate}");
    // A threshold above body temperature finds nobody.
    let hot = ThermalDetector {
        min_celsius: Some(45.0),
        ..ThermalDetector::default()
    };
    let mut none = detect::thermal(&hot, Some(calibration));
    let scene = Scene::crossing(320, 240, 2, 30, 1).unwrap();
    let (mat, _) = scene.frame(15, true).unwrap();
    let (px, format, stride) = to16(&mat);
    let image = Image::new(&px, 320, 240, stride, format).unwrap();
    assert!(none.run(&image).unwrap().is_empty());
}

/// A 64×64 RGB frame, dark except one bright 16×16 block at grid cell (row 1, column 2).
fn block_frame() -> Vec<u8> {
    let mut px = vec![10u8; 64 * 64 * 3];
    for y in 16..32 {
        for x in 32..48 {
            px[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3].copy_from_slice(&[250, 250, 250]);
        }
    }
    px
}

#[test]
fn onnx_yolo_layouts_run_through_opencv() {
    let dir = tempfile::tempdir().unwrap();
    for (layout, name) in [(YoloLayout::Yolov5, "yolov5"), (YoloLayout::Yolov8, "yolov8")] {
        let model = dir.path().join(format!("{name}.onnx"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/tiny_yolo.py");
        let status = common::python()
            .args([script.as_os_str(), model.as_os_str()])
            .args([name, "64", "4"])
            .status()
            .unwrap();
        assert!(status.success(), "exporting {name}");
        let mut cfg = detector(DetectorKind::Onnx, Some(model));
        cfg.layout = layout;
        cfg.min_box = (4, 4);
        let mut d = detect::visible(&cfg).unwrap();
        let px = block_frame();
        let image = Image::new(&px, 64, 64, 64 * 3, PixelFormat::Rgb).unwrap();
        let dets = d.run(&image).unwrap();
        // Only the bright cell scores above 0.5 for class 0 (person): (250 / 255) × objectness 1.
        assert_eq!(dets.len(), 1, "{name}: {dets:?}");
        assert_eq!(dets[0].bbox, BBox::new(32.0, 16.0, 16.0, 16.0), "{name}");
        assert!(
            (dets[0].score - 250.0 / 255.0).abs() < 1e-3,
            "{name}: {}",
            dets[0].score
        );
        // Class 1 is the complement: every dark cell (15 of 16) and not the bright one.
        cfg.classes = vec![1];
        let mut d = detect::visible(&cfg).unwrap();
        let dark = d.run(&image).unwrap();
        assert_eq!(dark.len(), 15, "{name}");
        assert!(dark.iter().all(|d| d.bbox != BBox::new(32.0, 16.0, 16.0, 16.0)));
        // A wider frame is letterboxed: the block keeps its place in frame pixels.
        let mut wide = vec![10u8; 128 * 64 * 3];
        for y in 16..32 {
            for x in 64..96 {
                wide[(y * 128 + x) * 3..(y * 128 + x) * 3 + 3].copy_from_slice(&[250, 250, 250]);
            }
        }
        cfg.classes = vec![0];
        let mut d = detect::visible(&cfg).unwrap();
        let image = Image::new(&wide, 128, 64, 128 * 3, PixelFormat::Rgb).unwrap();
        let b = d.run(&image).unwrap()[0].bbox;
        // Scale ½, 16 rows of padding on top: the block lies in input rows 24..32, so cell (1, 2)
        // (rows 16..32, half bright: score ≈ 0.51) is the only hit; it maps to frame y 0..32.
        assert_eq!(
            b,
            BBox::new(64.0, 0.0, 32.0, 32.0),
            "{name}: cell (row 1, col 2) of the letterboxed input"
        );
    }
}

#[test]
fn pool_returns_frames_in_order_with_the_same_detections() {
    let frames = vtest_frames(12);
    let cfg = detector(DetectorKind::Hog, None);
    let mut direct = detect::visible(&cfg).unwrap();
    let expected: Vec<Vec<Detection>> = frames.iter().map(|f| run(&mut direct, f)).collect();
    let factory: detect::pool::DetectorFactory = Arc::new(move |_| detect::visible(&cfg));
    let mut pool = DetectPool::new(3, 4, factory);
    let results = pool.take_results().expect("results");
    let consumer = std::thread::spawn(move || results.iter().collect::<Vec<_>>());
    for (i, frame) in frames.into_iter().enumerate() {
        pool.submit(Job {
            stream: reid_pipe::base::StreamId::new(0, reid_pipe::base::Modality::Visible),
            frame,
            tag: i,
        })
        .unwrap_or_else(|_| panic!("submit {i}"));
    }
    pool.close();
    drop(pool);
    let done = consumer.join().unwrap();
    assert_eq!(
        done.iter().map(|d| d.tag).collect::<Vec<_>>(),
        (0..12).collect::<Vec<_>>()
    );
    for d in &done {
        assert_eq!(d.detections.as_ref().unwrap(), &expected[d.tag], "frame {}", d.tag);
    }
}

fn det(x: f32, y: f32, w: f32, h: f32) -> Detection {
    Detection {
        bbox: BBox::new(x, y, w, h),
        score: 0.9,
    }
}

fn tracker() -> Tracker {
    Tracker::new(TrackerConfig {
        max_age: 5,
        min_hits: 3,
        iou_threshold: 0.3,
        embed_interval_ms: 1000,
    })
}

/// The id the tracker gave to the detection at `index`.
fn id_of(updates: &[reid_pipe::track::TrackUpdate], index: usize) -> u64 {
    updates
        .iter()
        .find(|u| u.detection == Some(index))
        .map(|u| u.id)
        .unwrap()
}

#[test]
fn crossing_tracks_keep_their_ids() {
    let mut t = tracker();
    let (mut a_id, mut b_id) = (0, 0);
    for f in 0..40 {
        // A walks right, B walks left; they overlap completely around frame 20.
        let a = det(10.0 + 6.0 * f as f32, 100.0, 40.0, 100.0);
        let b = det(250.0 - 6.0 * f as f32, 104.0, 44.0, 104.0);
        let (updates, ended) = t.update(&[a, b]);
        assert!(ended.is_empty());
        if f == 0 {
            (a_id, b_id) = (id_of(&updates, 0), id_of(&updates, 1));
            assert_ne!(a_id, b_id);
        } else {
            assert_eq!(id_of(&updates, 0), a_id, "frame {f}");
            assert_eq!(id_of(&updates, 1), b_id, "frame {f}");
        }
    }
}

#[test]
fn short_gaps_keep_the_id_and_long_ones_end_the_track() {
    let mut t = tracker();
    let mut id = 0;
    for f in 0..10 {
        let (u, _) = t.update(&[det(5.0 * f as f32, 0.0, 40.0, 100.0)]);
        id = id_of(&u, 0);
        assert_eq!(u[0].confirmed, f >= 2, "confirmed after 3 hits (frame {f})");
        assert_eq!(u[0].born, f == 2);
    }
    // Missed for 4 frames (< max_age 5): the same id continues along its path.
    for _ in 10..14 {
        let (_, ended) = t.update(&[]);
        assert!(ended.is_empty());
    }
    let (u, _) = t.update(&[det(70.0, 0.0, 40.0, 100.0)]);
    assert_eq!(id_of(&u, 0), id);
    // Missed for 6 frames: the track ends, reported once.
    let mut ended_all = Vec::new();
    for _ in 0..6 {
        ended_all.extend(t.update(&[]).1);
    }
    assert_eq!(ended_all, vec![id]);
    // A person at the same place later gets a new id; ids are never reused.
    let (u, _) = t.update(&[det(70.0, 0.0, 40.0, 100.0)]);
    assert!(id_of(&u, 0) > id);
}

#[test]
fn unconfirmed_tracks_end_silently_and_ids_only_grow() {
    let mut t = tracker();
    let mut seen = Vec::new();
    for round in 0..5 {
        // A one-frame false positive at a new place each round, then nothing.
        let (u, _) = t.update(&[det(100.0 * round as f32, 0.0, 20.0, 40.0)]);
        seen.push(id_of(&u, 0));
        for _ in 0..6 {
            assert!(
                t.update(&[]).1.is_empty(),
                "never confirmed, so never reported as ended"
            );
        }
    }
    assert!(seen.windows(2).all(|w| w[1] > w[0]), "{seen:?}");
    assert!(t.is_empty());
}

/// Of the walkers of a generated 480-pixel-wide frame `t` (`truth`) that are whole in view,
/// unoccluded and past the first 5 frames: how many `dets` found with IoU ≥ 0.5, and how many
/// were counted.
fn walkers_found(truth: &[(i64, BBox)], dets: &[Detection], t: usize) -> (usize, usize) {
    let (mut found, mut total) = (0, 0);
    for (pid, gt) in truth {
        let cut = gt.x <= 1.0 || gt.x + gt.w >= 479.0;
        let occluded = truth.iter().any(|(other, b)| other != pid && b.iou(gt) > 0.0);
        if t < 5 || cut || occluded {
            continue;
        }
        total += 1;
        found += usize::from(dets.iter().any(|d| d.bbox.iou(gt) >= 0.5));
    }
    (found, total)
}

#[test]
fn motion_detector_finds_walkers_in_generated_visible_scenes() {
    use opencv::prelude::*;
    let (mut found, mut total) = (0, 0);
    for seed in 0..4u64 {
        // One detector per clip: its background model starts at the clip's first frame.
        let mut d = detect::visible(&detector(DetectorKind::Motion, None)).unwrap();
        let scene = Scene::crossing(480, 360, 2 + seed as usize % 2, 60, seed).unwrap();
        for t in 0..60 {
            let (mat, truth) = scene.frame(t, false).unwrap();
            let px = mat.data_bytes().unwrap().to_vec();
            let image = Image::new(&px, 480, 360, 480 * 3, PixelFormat::Rgb).unwrap();
            let dets = d.run(&image).unwrap();
            let (f, n) = walkers_found(&truth, &dets, t);
            found += f;
            total += n;
        }
    }
    let rate = found as f64 / total as f64;
    println!("motion: {found}/{total} walkers found with IoU >= 0.5");
    assert!(total > 100 && rate >= 0.8, "{found}/{total}");
}

#[test]
fn motion_detector_recalibrates_at_a_scene_cut_instead_of_boxing_the_old_background() {
    use opencv::prelude::*;
    let mut d = detect::visible(&detector(DetectorKind::Motion, None)).unwrap();
    let (first, second) = (
        Scene::crossing(480, 360, 2, 40, 11).unwrap(),
        Scene::crossing(480, 360, 2, 60, 12).unwrap(),
    );
    let (mut ghosts, mut found, mut total) = (0, 0, 0);
    for (part, scene, frames) in [(0, &first, 40), (1, &second, 60)] {
        for t in 0..frames {
            let (mat, truth) = scene.frame(t, false).unwrap();
            let px = mat.data_bytes().unwrap().to_vec();
            let image = Image::new(&px, 480, 360, 480 * 3, PixelFormat::Rgb).unwrap();
            let dets = d.run(&image).unwrap();
            if part == 0 {
                continue;
            }
            // After the cut every box is one of the new scene's walkers (or part of one).
            ghosts += dets
                .iter()
                .filter(|d| !truth.iter().any(|(_, b)| d.bbox.iou(b) > 0.1))
                .count();
            let (f, n) = walkers_found(&truth, &dets, t);
            found += f;
            total += n;
        }
    }
    println!("after the cut: {ghosts} boxes on no walker; {found}/{total} walkers found");
    assert_eq!(ghosts, 0, "the old scene's background showed through");
    assert!(total > 50 && found as f64 >= 0.8 * total as f64, "{found}/{total}");
}

#[test]
fn motion_detector_boxes_a_large_compact_change_rather_than_relearning() {
    use opencv::prelude::*;
    // Someone close to the camera: 17 % of the frame changes at once, all in one column of
    // cells. That is motion to box, not a scene change.
    let mut d = detect::visible(&detector(DetectorKind::Motion, None)).unwrap();
    let scene = Scene::crossing(480, 360, 0, 10, 3).unwrap();
    let (still, _) = scene.frame(0, false).unwrap();
    let still = still.data_bytes().unwrap().to_vec();
    let mut close = still.clone();
    let (x0, y0, w, h) = (40usize, 30usize, 100usize, 300usize);
    for y in y0..y0 + h {
        for x in x0..x0 + w {
            close[(y * 480 + x) * 3..(y * 480 + x) * 3 + 3].copy_from_slice(&[250, 20, 200]);
        }
    }
    let run = |d: &mut StreamDetector, px: &[u8]| {
        d.run(&Image::new(px, 480, 360, 480 * 3, PixelFormat::Rgb).unwrap())
            .unwrap()
    };
    for _ in 0..5 {
        assert!(run(&mut d, &still).is_empty());
    }
    let dets = run(&mut d, &close);
    let person = BBox::new(x0 as f32, y0 as f32, w as f32, h as f32);
    assert!(dets.iter().any(|d| d.bbox.iou(&person) >= 0.5), "{dets:?}");
}
