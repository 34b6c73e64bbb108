//! The harvest's collector, in place of the embedder: every confirmed track's boxes, a few
//! distinct crops of it spread over its life (JPEG-encoded at once, so memory stays small), and
//! the visible–thermal track pairs the tracking stage fused.

use crate::config::site::Harvest;
use crate::detect::BBox;
use crate::live::types::{CropJob, Pixels, PixelsError, ToEmbed, TrackKey, TrackNote};
use opencv::core::{Mat, Rect, Size, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};
use std::collections::HashMap;

/// Side of the grey thumbnails compared to find near-duplicate crops (width × height).
const SIGNATURE: (i32, i32) = (8, 16);

/// Why a crop could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum CropError {
    #[error(transparent)]
    Pixels(#[from] PixelsError),
    #[error("encoding a crop")]
    OpenCv(#[from] opencv::Error),
}

/// One kept crop of a track.
#[derive(Debug, Clone)]
pub struct Kept {
    pub pts_s: f64,
    /// The detection box (the crop adds the detector's margin).
    pub bbox: BBox,
    pub jpeg: Vec<u8>,
    /// Its grey thumbnail, which the next crop is compared with.
    signature: Vec<u8>,
}

/// What was seen of one track.
#[derive(Debug)]
pub struct TrackLog {
    pub key: TrackKey,
    /// Stream time of every frame with a crop of the track, and the detection box there.
    pub boxes: Vec<(f64, BBox)>,
    /// Width and height of the track's frames.
    pub frame_size: (u32, u32),
    /// Crops kept so far: at least `gap_s` apart, thinned to every other one whenever they
    /// reach twice the most wanted, so that they stay spread over the track's life.
    pub kept: Vec<Kept>,
    /// Crops skipped as near-duplicates of the one kept before them.
    pub duplicates: u32,
    gap_s: f64,
}

impl TrackLog {
    pub fn first_s(&self) -> f64 {
        self.boxes.first().map_or(0.0, |b| b.0)
    }

    pub fn last_s(&self) -> f64 {
        self.boxes.last().map_or(0.0, |b| b.0)
    }

    /// At most `n` of the kept crops, evenly spread over them.
    pub fn chosen(&self, n: usize) -> Vec<&Kept> {
        let k = self.kept.len();
        if k <= n {
            return self.kept.iter().collect();
        }
        if n == 1 {
            return vec![&self.kept[k / 2]];
        }
        (0..n)
            .map(|i| &self.kept[(i * (k - 1) + (n - 1) / 2) / (n - 1)])
            .collect()
    }
}

/// Everything the collector saw.
#[derive(Debug, Default)]
pub struct Collected {
    pub tracks: HashMap<TrackKey, TrackLog>,
    /// Fused (visible, thermal, further) track pairs, in the order they fused (`further`: the
    /// visible track is a fragment fused while the thermal track had its first partner).
    pub fused: Vec<(TrackKey, TrackKey, bool)>,
    /// Earliest and latest stream time of any crop.
    pub span: Option<(f64, f64)>,
    /// Crops outside `--from`/`--to`.
    pub outside: u64,
    /// Crops whose pixels could not be read or encoded.
    pub unreadable: u64,
}

/// Collects the tracking stage's output.
pub struct Collector<'a> {
    settings: &'a Harvest,
    /// Stream-time window of the crops kept.
    window: (f64, f64),
    pub collected: Collected,
}

impl<'a> Collector<'a> {
    pub fn new(settings: &'a Harvest, window: (f64, f64)) -> Self {
        Collector {
            settings,
            window,
            collected: Collected::default(),
        }
    }

    /// Takes one message of the tracking stage.
    pub fn take(&mut self, message: ToEmbed) {
        match message {
            ToEmbed::Crop(job) => self.crop(job),
            ToEmbed::Note(TrackNote::Fuse {
                visible,
                thermal,
                further,
                ..
            }) => {
                self.collected.fused.push((visible, thermal, further));
            }
            ToEmbed::Note(TrackNote::New { .. } | TrackNote::End { .. }) => {}
        }
    }

    fn crop(&mut self, job: CropJob) {
        let c = &mut self.collected;
        if job.pts_s < self.window.0 || job.pts_s > self.window.1 {
            c.outside += 1;
            return;
        }
        c.span = Some(
            c.span
                .map_or((job.pts_s, job.pts_s), |(a, b)| (a.min(job.pts_s), b.max(job.pts_s))),
        );
        let size = match &job.pixels {
            Pixels::Frame(f) => (f.width, f.height),
            Pixels::Grey { width, height, .. } => (*width, *height),
        };
        let log = c.tracks.entry(job.key).or_insert_with(|| TrackLog {
            key: job.key,
            boxes: Vec::new(),
            frame_size: size,
            kept: Vec::new(),
            duplicates: 0,
            gap_s: 0.0,
        });
        log.boxes.push((job.pts_s, job.bbox));
        if job.bbox.h < self.settings.min_box_height || log.kept.last().is_some_and(|k| job.pts_s - k.pts_s < log.gap_s)
        {
            return;
        }
        let Encoded { jpeg, signature } = match encode(&job.pixels, &job.crop) {
            Ok(Some(x)) => x,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!("{}", crate::base::Chain(&e));
                c.unreadable += 1;
                return;
            }
        };
        if let Some(last) = log.kept.last()
            && mean_difference(&last.signature, &signature) < self.settings.duplicate_difference
        {
            log.duplicates += 1;
            return;
        }
        log.kept.push(Kept {
            pts_s: job.pts_s,
            bbox: job.bbox,
            jpeg,
            signature,
        });
        if log.kept.len() >= 2 * self.settings.max_crops_per_track {
            // Every other crop goes, and the next must be as far from the last as the kept ones
            // are from each other (at least the whole span when a single crop is left).
            let span = log.kept.last().map_or(0.0, |k| k.pts_s) - log.kept[0].pts_s;
            let mut i = 0;
            log.kept.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            log.gap_s = log
                .kept
                .windows(2)
                .map(|w| w[1].pts_s - w[0].pts_s)
                .reduce(f64::min)
                .unwrap_or(span);
        }
    }
}

/// A crop as a JPEG, and its grey signature.
struct Encoded {
    jpeg: Vec<u8>,
    signature: Vec<u8>,
}

/// The crop `rect` of `pixels`, encoded; `None` for an empty crop.
fn encode(pixels: &Pixels, rect: &BBox) -> Result<Option<Encoded>, CropError> {
    let map = pixels.map()?;
    let image = map.image()?;
    let Some((x, y, w, h)) = rect.pixels(image.width, image.height) else {
        return Ok(None);
    };
    let rgb = image.format == crate::base::PixelFormat::Rgb;
    Ok(Some(image.with_mat(|m| {
        let roi = Mat::roi(m, Rect::new(x as i32, y as i32, w as i32, h as i32))?;
        let mut bgr = Mat::default();
        let mut grey = Mat::default();
        if rgb {
            imgproc::cvt_color_def(&roi, &mut bgr, imgproc::COLOR_RGB2BGR)?;
            imgproc::cvt_color_def(&roi, &mut grey, imgproc::COLOR_RGB2GRAY)?;
        } else {
            roi.copy_to(&mut bgr)?;
            roi.copy_to(&mut grey)?;
        }
        let mut jpeg = Vector::<u8>::new();
        let params = Vector::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, 95]);
        imgcodecs::imencode(".jpg", &bgr, &mut jpeg, &params)?;
        let mut small = Mat::default();
        imgproc::resize(
            &grey,
            &mut small,
            Size::new(SIGNATURE.0, SIGNATURE.1),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )?;
        Ok(Encoded {
            jpeg: jpeg.to_vec(),
            signature: small.data_bytes()?.to_vec(),
        })
    })?))
}

fn mean_difference(a: &[u8], b: &[u8]) -> f64 {
    let total: u64 = a.iter().zip(b).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
    total as f64 / a.len().max(1) as f64
}

/// How steadily a fused pair's boxes overlapped: over the frames in which both tracks have a
/// box within `tolerance_s` of each other, the mean IoU (thermal boxes scaled to the visible
/// frame) and the share of those frames with IoU ≥ `iou`.
pub fn overlap(visible: &TrackLog, thermal: &TrackLog, tolerance_s: f64, iou: f32) -> (usize, f64, f64) {
    let (sx, sy) = (
        visible.frame_size.0 as f32 / thermal.frame_size.0.max(1) as f32,
        visible.frame_size.1 as f32 / thermal.frame_size.1.max(1) as f32,
    );
    let mut seen = 0;
    let mut total = 0.0;
    let mut above = 0;
    for (t, tb) in &thermal.boxes {
        // The visible box nearest in time, within the tolerance.
        let i = visible.boxes.partition_point(|(v, _)| *v < t - tolerance_s);
        let nearest = visible.boxes[i..]
            .iter()
            .take_while(|(v, _)| *v <= t + tolerance_s)
            .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()));
        let Some((_, vb)) = nearest else { continue };
        let scaled = BBox::new(tb.x * sx, tb.y * sy, tb.w * sx, tb.h * sy);
        let x = vb.iou(&scaled);
        seen += 1;
        total += f64::from(x);
        if x >= iou {
            above += 1;
        }
    }
    if seen == 0 {
        return (0, 0.0, 0.0);
    }
    (seen, total / seen as f64, f64::from(above) / seen as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::Modality;

    fn log(boxes: Vec<(f64, BBox)>, size: (u32, u32), kept: usize) -> TrackLog {
        TrackLog {
            key: TrackKey {
                camera: 0,
                modality: Modality::Visible,
                track: 1,
            },
            boxes,
            frame_size: size,
            kept: (0..kept)
                .map(|i| Kept {
                    pts_s: i as f64,
                    bbox: BBox::new(0.0, 0.0, 1.0, 1.0),
                    jpeg: Vec::new(),
                    signature: Vec::new(),
                })
                .collect(),
            duplicates: 0,
            gap_s: 0.0,
        }
    }

    #[test]
    fn chosen_crops_spread_over_the_track() {
        let t = log(Vec::new(), (1, 1), 10);
        let times: Vec<f64> = t.chosen(4).iter().map(|k| k.pts_s).collect();
        assert_eq!(times, [0.0, 3.0, 6.0, 9.0]);
        assert_eq!(t.chosen(20).len(), 10);
        assert_eq!(t.chosen(1)[0].pts_s, 5.0);
    }

    #[test]
    fn overlap_scales_thermal_boxes_and_matches_frames_by_time() {
        let b = BBox::new(10.0, 10.0, 20.0, 40.0);
        let visible = log((0..10).map(|i| (f64::from(i) * 0.1, b)).collect(), (200, 100), 0);
        // Half-size thermal frames: the same place at half the coordinates, except in the last
        // three frames, where the thermal box is elsewhere.
        let half = BBox::new(5.0, 5.0, 10.0, 20.0);
        let away = BBox::new(60.0, 30.0, 10.0, 20.0);
        let thermal = log(
            (0..10)
                .map(|i| (f64::from(i) * 0.1 + 0.005, if i < 7 { half } else { away }))
                .collect(),
            (100, 50),
            0,
        );
        let (seen, mean, share) = overlap(&visible, &thermal, 0.02, 0.5);
        assert_eq!(seen, 10);
        assert!((share - 0.7).abs() < 1e-9, "{share}");
        assert!((mean - 0.7).abs() < 1e-6, "{mean}");
        // Frames farther apart than the tolerance do not count.
        assert_eq!(overlap(&visible, &thermal, 0.001, 0.5).0, 0);
        // With a tolerance wider than a frame, each thermal box meets the nearest visible one,
        // not the earliest within reach (which would be the frame before).
        let moving = log(
            (0..10)
                .map(|i| {
                    (
                        f64::from(i) * 0.1,
                        BBox::new(f32::from(i as u8) * 20.0, 0.0, 20.0, 40.0),
                    )
                })
                .collect(),
            (100, 100),
            0,
        );
        let following = log(
            (0..10)
                .map(|i| {
                    (
                        f64::from(i) * 0.1 + 0.01,
                        BBox::new(f32::from(i as u8) * 20.0, 0.0, 20.0, 40.0),
                    )
                })
                .collect(),
            (100, 100),
            0,
        );
        assert_eq!(overlap(&moving, &following, 0.15, 0.9), (10, 1.0, 1.0));
    }
}
