//! Boxes and detections: IoU, non-maximum suppression, clamping, margins and region-of-interest
//! tests.

use serde::Serialize;

/// An axis-aligned box in frame pixels (top-left corner, width, height).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BBox {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

/// One detected person.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Detection {
    pub bbox: BBox,
    /// Confidence in [0, 1].
    pub score: f32,
}

impl BBox {
    pub fn new(x: f32, y: f32, w: f32, h: f32) -> Self {
        Self { x, y, w, h }
    }

    /// From corners (x0, y0) and (x1, y1).
    pub fn from_corners(x0: f32, y0: f32, x1: f32, y1: f32) -> Self {
        Self::new(x0, y0, x1 - x0, y1 - y0)
    }

    pub fn area(&self) -> f32 {
        self.w.max(0.0) * self.h.max(0.0)
    }

    /// Intersection over union; 0 for disjoint or empty boxes.
    pub fn iou(&self, other: &BBox) -> f32 {
        let ix = (self.x + self.w).min(other.x + other.w) - self.x.max(other.x);
        let iy = (self.y + self.h).min(other.y + other.h) - self.y.max(other.y);
        if ix <= 0.0 || iy <= 0.0 {
            return 0.0;
        }
        let inter = ix * iy;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }

    /// The box grown by `margin` × its size on every side.
    pub fn expand(&self, margin: f32) -> BBox {
        BBox::new(
            self.x - self.w * margin,
            self.y - self.h * margin,
            self.w * (1.0 + 2.0 * margin),
            self.h * (1.0 + 2.0 * margin),
        )
    }

    /// The box cut to a `width` × `height` frame; `None` when nothing is left.
    pub fn clamp(&self, width: u32, height: u32) -> Option<BBox> {
        let x0 = self.x.max(0.0);
        let y0 = self.y.max(0.0);
        let x1 = (self.x + self.w).min(width as f32);
        let y1 = (self.y + self.h).min(height as f32);
        (x1 > x0 && y1 > y0).then(|| BBox::from_corners(x0, y0, x1, y1))
    }

    /// Whole-pixel rectangle (x, y, w, h) inside a `width` × `height` frame, at least 1×1.
    pub fn pixels(&self, width: u32, height: u32) -> Option<(usize, usize, usize, usize)> {
        let b = self.clamp(width, height)?;
        let x0 = b.x.floor() as usize;
        let y0 = b.y.floor() as usize;
        let x1 = ((b.x + b.w).ceil() as usize).min(width as usize);
        let y1 = ((b.y + b.h).ceil() as usize).min(height as usize);
        (x1 > x0 && y1 > y0).then_some((x0, y0, x1 - x0, y1 - y0))
    }

    /// Bottom centre: where the person stands.
    pub fn foot(&self) -> (f32, f32) {
        (self.x + self.w / 2.0, self.y + self.h)
    }

    /// Centre point.
    pub fn centre(&self) -> (f32, f32) {
        (self.x + self.w / 2.0, self.y + self.h / 2.0)
    }
}

impl From<opencv::core::Rect> for BBox {
    fn from(r: opencv::core::Rect) -> Self {
        BBox::new(r.x as f32, r.y as f32, r.width as f32, r.height as f32)
    }
}

/// Greedy non-maximum suppression: keeps the best-scoring box of every group overlapping by more
/// than `iou`. Equal scores keep their input order.
pub fn nms(mut detections: Vec<Detection>, iou: f32) -> Vec<Detection> {
    detections.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::with_capacity(detections.len());
    for d in detections {
        if kept.iter().all(|k| k.bbox.iou(&d.bbox) <= iou) {
            kept.push(d);
        }
    }
    kept
}

/// Whether a point lies inside a polygon (even-odd rule).
pub fn inside(polygon: &[(f32, f32)], (px, py): (f32, f32)) -> bool {
    let mut inside = false;
    let mut j = polygon.len().wrapping_sub(1);
    for i in 0..polygon.len() {
        let (xi, yi) = polygon[i];
        let (xj, yj) = polygon[j];
        if (yi > py) != (yj > py) && px < (xj - xi) * (py - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f32, y: f32, w: f32, h: f32, score: f32) -> Detection {
        Detection {
            bbox: BBox::new(x, y, w, h),
            score,
        }
    }

    #[test]
    fn iou_by_hand() {
        let a = BBox::new(0.0, 0.0, 10.0, 10.0);
        let b = BBox::new(5.0, 0.0, 10.0, 10.0);
        // Intersection 50, union 150.
        assert!((a.iou(&b) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(a.iou(&BBox::new(10.0, 0.0, 5.0, 5.0)), 0.0);
        assert_eq!(a.iou(&a), 1.0);
    }

    #[test]
    fn nms_keeps_the_best_of_each_group() {
        let d = vec![
            det(0.0, 0.0, 10.0, 10.0, 0.6),
            det(1.0, 0.0, 10.0, 10.0, 0.9),
            det(50.0, 50.0, 10.0, 10.0, 0.5),
            det(0.0, 0.0, 10.0, 30.0, 0.7), // IoU 1/3 with the others: kept at 0.45
        ];
        let kept = nms(d, 0.45);
        let scores: Vec<f32> = kept.iter().map(|k| k.score).collect();
        assert_eq!(scores, vec![0.9, 0.7, 0.5]);
    }

    #[test]
    fn clamp_margin_and_pixels() {
        let b = BBox::new(-5.0, 10.0, 20.0, 20.0);
        assert_eq!(b.clamp(100, 100), Some(BBox::new(0.0, 10.0, 15.0, 20.0)));
        assert_eq!(BBox::new(200.0, 0.0, 5.0, 5.0).clamp(100, 100), None);
        assert_eq!(
            BBox::new(10.0, 10.0, 10.0, 20.0).expand(0.1),
            BBox::new(9.0, 8.0, 12.0, 24.0)
        );
        assert_eq!(BBox::new(1.5, 2.5, 3.0, 3.0).pixels(4, 100), Some((1, 2, 3, 4)));
    }

    #[test]
    fn polygon_membership() {
        let square = [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)];
        assert!(inside(&square, (5.0, 5.0)));
        assert!(!inside(&square, (15.0, 5.0)));
        let l_shape = [
            (0.0, 0.0),
            (10.0, 0.0),
            (10.0, 4.0),
            (4.0, 4.0),
            (4.0, 10.0),
            (0.0, 10.0),
        ];
        assert!(inside(&l_shape, (2.0, 8.0)));
        assert!(!inside(&l_shape, (8.0, 8.0)));
    }
}
