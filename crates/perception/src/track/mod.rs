//! Multi-object tracking per stream (SORT: IoU matching of Kalman predictions by the Hungarian
//! method), and the quality-weighted mean of a track's embeddings that reaches the index.

pub mod assign;
pub mod kalman;
pub mod sort;

pub use sort::{TrackUpdate, Tracker};

/// The running, quality-weighted mean of one track's embeddings over an interval.
#[derive(Debug, Clone, Default)]
pub struct EmbeddingMean {
    sum: Vec<f32>,
    weight: f32,
    count: usize,
}

impl EmbeddingMean {
    /// Adds an embedding with weight `quality` (> 0; non-positive weights are ignored).
    pub fn add(&mut self, embedding: &[f32], quality: f32) {
        if quality <= 0.0 || !quality.is_finite() {
            return;
        }
        if self.sum.len() != embedding.len() {
            self.sum = vec![0.0; embedding.len()];
            self.weight = 0.0;
            self.count = 0;
        }
        for (s, e) in self.sum.iter_mut().zip(embedding) {
            *s += quality * e;
        }
        self.weight += quality;
        self.count += 1;
    }

    /// Embeddings added since the last [`EmbeddingMean::take`].
    pub fn count(&self) -> usize {
        self.count
    }

    /// The L2-normalised weighted mean and how many embeddings it summarises (`None` before the
    /// first, or when they cancel out).
    pub fn mean(&self) -> Option<(Vec<f32>, usize)> {
        let norm = self.sum.iter().map(|x| x * x).sum::<f32>().sqrt();
        if self.count == 0 || norm <= 0.0 || !norm.is_finite() {
            return None;
        }
        Some((self.sum.iter().map(|x| x / norm).collect(), self.count))
    }

    /// Like [`EmbeddingMean::mean`], and resets the mean.
    pub fn take(&mut self) -> Option<(Vec<f32>, usize)> {
        let mean = self.mean();
        *self = Self::default();
        mean
    }
}

/// Quality of a crop for the embedding mean: the detector's confidence, reduced for boxes much
/// smaller than the embedder input (they carry less detail) and for boxes cut by the frame edge.
pub fn crop_quality(score: f32, box_height: f32, input_height: f32, truncated: bool) -> f32 {
    let size = (box_height / input_height).clamp(0.1, 1.0);
    score * size * if truncated { 0.5 } else { 1.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_mean_by_hand() {
        let mut m = EmbeddingMean::default();
        m.add(&[1.0, 0.0], 3.0);
        m.add(&[0.0, 1.0], 1.0);
        m.add(&[5.0, 5.0], 0.0); // ignored
        let kept = m.mean().unwrap();
        let (mean, n) = m.take().unwrap();
        assert_eq!(kept, (mean.clone(), n), "mean leaves the interval as it was");
        assert_eq!(n, 2);
        let norm = (9.0f32 + 1.0).sqrt();
        assert!((mean[0] - 3.0 / norm).abs() < 1e-6 && (mean[1] - 1.0 / norm).abs() < 1e-6);
        assert!(m.take().is_none(), "take resets the interval");
    }

    #[test]
    fn quality_prefers_large_whole_boxes() {
        assert!(crop_quality(0.9, 256.0, 256.0, false) > crop_quality(0.9, 64.0, 256.0, false));
        assert!(crop_quality(0.9, 256.0, 256.0, false) > crop_quality(0.9, 256.0, 256.0, true));
    }
}
