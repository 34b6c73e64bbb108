//! The HOG people detector against OpenCV's own multi-scale detector. Alone in its binary: it
//! changes OpenCV's process-wide thread count, which no other test may see change under it.

mod common;

use common::vtest_frames;
use opencv::core::{Rect, Size, Vector};
use opencv::objdetect::{HOGDescriptor, HOGDescriptorTrait, HOGDescriptorTraitConst};
use reid_pipe::base::Image;
use reid_pipe::detect::{self, BBox, Detect, Detection};

/// The HOG detector walks the pyramid itself, on as many threads as OpenCV would use; its boxes
/// and margins must be exactly those of OpenCV's `detectMultiScale` run on one thread (where its
/// race between windows and margins cannot happen), every time.
#[test]
fn hog_equals_opencvs_multi_scale_detector_on_one_thread() {
    let frames = vtest_frames(12);
    let threads = opencv::core::get_num_threads().unwrap();
    let mut ours = detect::hog::HogDetector::new().unwrap();
    let mut theirs = HOGDescriptor::default().unwrap();
    theirs
        .set_svm_detector_input_array(&HOGDescriptor::get_default_people_detector().unwrap())
        .unwrap();
    let mut compared = 0;
    for (i, f) in frames.iter().enumerate() {
        let map = f.buffer.map_readable().unwrap();
        let image = Image::new(map.as_slice(), f.width, f.height, f.stride, f.format).unwrap();
        let (mut rects, mut margins) = (Vector::<Rect>::new(), Vector::<f64>::new());
        // One thread for the reference only. The setting is the process's (with TBB, OpenCV
        // rebuilds its thread arena), hence this test's own binary: no other test runs beside it.
        opencv::core::set_num_threads(1).unwrap();
        let reference = image.with_mat(|mat| {
            theirs.detect_multi_scale_weights(
                mat,
                &mut rects,
                &mut margins,
                -1.0,
                Size::new(8, 8),
                Size::new(8, 8),
                1.05,
                2.0,
                false,
            )
        });
        opencv::core::set_num_threads(threads).unwrap();
        reference.unwrap();
        let expected: Vec<Detection> = rects
            .iter()
            .zip(margins.iter())
            .map(|(r, m)| Detection {
                bbox: BBox::from(r),
                score: 1.0 / (1.0 + (-(m as f32)).exp()),
            })
            .collect();
        for round in 0..3 {
            assert_eq!(ours.detect(&image).unwrap(), expected, "frame {i}, round {round}");
        }
        compared += expected.len();
    }
    assert!(
        compared > 12,
        "only {compared} boxes in 12 frames: nothing was compared"
    );
}
