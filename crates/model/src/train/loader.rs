//! The training loader: `[loader] workers` threads assemble the batches of an epoch (gather the
//! sampled images, flip the chosen ones; pinned on CUDA so their upload does not block) up to
//! `prefetch` batches ahead of the training step, which takes them in order.
//!
//! Determinism: the sampler's batches and every flip are drawn on the training thread, in the
//! order the step consumes them, before any worker starts; worker w assembles batches w, w + N,
//! w + 2N, … into its own queue and the step reads the queues in turn. So the batches are the
//! same for a given seed whatever the worker count.

use super::sampler::Batch;
use crossbeam_channel::{Receiver, bounded};
use std::time::{Duration, Instant};
use tch::{Device, Tensor};

/// One modality's half of a planned batch: image rows and whether each is flipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Half {
    pub rows: Vec<usize>,
    pub flips: Vec<bool>,
}

/// A batch as planned on the training thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub visible: Half,
    pub infrared: Half,
}

/// Draws the flips of an epoch's batches (visible rows, then infrared, batch after batch: the
/// order of the reference's per-image `random.random() < 0.5`), with `flip` giving each draw.
pub fn plan(batches: &[Batch], mut flip: impl FnMut() -> bool) -> Vec<Planned> {
    batches
        .iter()
        .map(|b| {
            let mut half = |rows: &[usize]| Half {
                rows: rows.to_vec(),
                flips: rows.iter().map(|_| flip()).collect(),
            };
            let visible = half(&b.visible);
            let infrared = half(&b.infrared);
            Planned { visible, infrared }
        })
        .collect()
}

/// An assembled batch: u8 B×H×W×3 pixels of each modality, on the host.
pub struct Assembled {
    pub visible: Tensor,
    pub infrared: Tensor,
}

/// Gathers the rows of `pixels` (N×H×W×3) and mirrors the flipped ones left to right.
pub fn assemble_half(pixels: &Tensor, half: &Half) -> Result<Tensor, tch::TchError> {
    let rows: Vec<i64> = half.rows.iter().map(|&r| r as i64).collect();
    let x = pixels.f_index_select(0, &Tensor::from_slice(&rows))?;
    let mask = Tensor::from_slice(&half.flips).f_view([-1, 1, 1, 1])?;
    x.f_flip([2i64].as_slice())?.f_where_self(&mask, &x)
}

/// Batches being assembled by worker threads, taken in order.
pub struct Loader {
    queues: Vec<Receiver<Result<Assembled, tch::TchError>>>,
    next: usize,
    /// Time the training thread spent waiting for a batch.
    pub waited: Duration,
}

impl Loader {
    /// Starts `workers` threads in `scope` assembling `plan` from the two modalities' pixels,
    /// at most `prefetch` batches ahead; pinned for `device` when it is CUDA.
    pub fn start<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        pixels: (&Tensor, &Tensor),
        plan: Vec<Planned>,
        workers: usize,
        prefetch: usize,
        device: Device,
    ) -> Self {
        let workers = workers.clamp(1, plan.len().max(1));
        let depth = prefetch.div_ceil(workers).max(1);
        let mut queues = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = bounded(depth);
            queues.push(rx);
            // Handles to the same storage; the workers only read it.
            let (visible, infrared) = (pixels.0.shallow_clone(), pixels.1.shallow_clone());
            let mine: Vec<Planned> = plan.iter().skip(w).step_by(workers).cloned().collect();
            scope.spawn(move || {
                for planned in mine {
                    let assembled = (|| {
                        let pin = |t: Tensor| {
                            if device.is_cuda() {
                                reid_core::libtorch::pin_memory(&t)
                            } else {
                                Ok(t)
                            }
                        };
                        Ok(Assembled {
                            visible: pin(assemble_half(&visible, &planned.visible)?)?,
                            infrared: pin(assemble_half(&infrared, &planned.infrared)?)?,
                        })
                    })();
                    let failed = assembled.is_err();
                    // The training thread is gone (it stopped early): nothing more to do.
                    if tx.send(assembled).is_err() || failed {
                        return;
                    }
                }
            });
        }
        Self {
            queues,
            next: 0,
            waited: Duration::ZERO,
        }
    }

    /// The next batch in plan order; None after the last.
    pub fn next_batch(&mut self) -> Option<Result<Assembled, tch::TchError>> {
        let queue = &self.queues[self.next % self.queues.len()];
        let started = Instant::now();
        let batch = queue.recv().ok();
        self.waited += started.elapsed();
        self.next += 1;
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn pixels(n: i64, offset: i64) -> Tensor {
        (Tensor::arange(n * 4 * 3 * 3, (Kind::Int64, Device::Cpu)) + offset)
            .remainder(251)
            .to_kind(Kind::Uint8)
            .view([n, 4, 3, 3])
    }

    fn batches(n: usize) -> Vec<Batch> {
        (0..n)
            .map(|i| Batch {
                visible: vec![i % 5, (i + 2) % 5],
                infrared: vec![(i + 1) % 4, i % 4],
            })
            .collect()
    }

    fn run(workers: usize, prefetch: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let (v, t) = (pixels(5, 0), pixels(4, 100));
        let mut draws = 0u32;
        let plan = plan(&batches(9), || {
            draws += 1;
            draws.is_multiple_of(3)
        });
        std::thread::scope(|s| {
            let mut loader = Loader::start(s, (&v, &t), plan, workers, prefetch, Device::Cpu);
            let mut out = Vec::new();
            while let Some(b) = loader.next_batch() {
                let b = b.expect("assembled");
                out.push((
                    Vec::try_from(b.visible.flatten(0, -1)).expect("v"),
                    Vec::try_from(b.infrared.flatten(0, -1)).expect("t"),
                ));
            }
            out
        })
    }

    #[test]
    fn batches_are_the_same_whatever_the_workers_and_in_plan_order() {
        let one = run(1, 1);
        assert_eq!(one.len(), 9);
        assert_eq!(run(3, 4), one);
        assert_eq!(run(4, 1), one);
        assert_eq!(run(16, 64), one);
        // Batch 0: visible rows 0 and 2; draws 1 and 2 are not flips, so row 0 comes as it is.
        let row0: Vec<u8> = Vec::try_from(pixels(5, 0).get(0).flatten(0, -1)).expect("row");
        assert_eq!(&one[0].0[..row0.len()], &row0[..]);
        // Draw 3 (batch 0's first infrared image, row 1) is a flip: its columns are mirrored.
        let row1 = pixels(4, 100).get(1);
        let mirrored: Vec<u8> = Vec::try_from(row1.flip([1i64].as_slice()).flatten(0, -1)).expect("row");
        assert_eq!(&one[0].1[..mirrored.len()], &mirrored[..]);
    }
}
