//! Pairing the visible and thermal frames of a camera pair by presentation timestamp: frames whose
//! timestamps differ by at most the tolerance form a pair; a frame that can no longer find a
//! partner is passed on alone or dropped, by policy, and counted either way.

use super::source::Frame;

use reid_core::base::Modality;
use reid_core::config::site::UnpairedPolicy;
use std::collections::VecDeque;

/// What the pairer hands on.
#[derive(Debug)]
pub enum Paired {
    Pair {
        visible: Frame,
        thermal: Frame,
    },
    /// A frame without a partner (policy `process`).
    Single(Frame),
}

/// Counts of a pairer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PairCounts {
    pub pairs: u64,
    pub unpaired_visible: u64,
    pub unpaired_thermal: u64,
    /// Unpaired frames dropped by policy (a subset of the two above).
    pub dropped: u64,
}

/// Matches two timestamp-ordered streams.
pub struct Pairer {
    tolerance_ns: u64,
    policy: UnpairedPolicy,
    /// Frames waiting for a partner, per modality, at most this many.
    max_pending: usize,
    visible: VecDeque<Frame>,
    thermal: VecDeque<Frame>,
    pub counts: PairCounts,
}

impl Pairer {
    pub fn new(tolerance_ms: f64, policy: UnpairedPolicy, max_pending: usize) -> Self {
        Self {
            tolerance_ns: (tolerance_ms * 1e6).round() as u64,
            policy,
            max_pending: max_pending.max(1),
            visible: VecDeque::new(),
            thermal: VecDeque::new(),
            counts: PairCounts::default(),
        }
    }

    /// Adds a frame; returns what can be decided now.
    pub fn push(&mut self, frame: Frame) -> Vec<Paired> {
        let mut out = Vec::new();
        if frame.pts_ns.is_none() {
            self.unpaired(frame, &mut out);
            return out;
        }
        match frame.modality {
            Modality::Visible => self.visible.push_back(frame),
            Modality::Thermal => self.thermal.push_back(frame),
        }
        self.settle(&mut out);
        // One stream stalled: do not wait for it for ever.
        while self.visible.len() > self.max_pending {
            if let Some(f) = self.visible.pop_front() {
                self.unpaired(f, &mut out);
            }
        }
        while self.thermal.len() > self.max_pending {
            if let Some(f) = self.thermal.pop_front() {
                self.unpaired(f, &mut out);
            }
        }
        out
    }

    /// Frames of `modality` waiting for a partner.
    pub fn pending(&self, modality: Modality) -> usize {
        match modality {
            Modality::Visible => self.visible.len(),
            Modality::Thermal => self.thermal.len(),
        }
    }

    /// Everything still waiting, as unpaired (at the end of the streams).
    pub fn flush(&mut self) -> Vec<Paired> {
        let mut out = Vec::new();
        let rest: Vec<Frame> = self.visible.drain(..).chain(self.thermal.drain(..)).collect();
        for f in rest {
            self.unpaired(f, &mut out);
        }
        out
    }

    fn settle(&mut self, out: &mut Vec<Paired>) {
        while let (Some(v), Some(t)) = (self.visible.front(), self.thermal.front()) {
            let (vp, tp) = (v.pts_ns.unwrap_or(0), t.pts_ns.unwrap_or(0));
            if vp.abs_diff(tp) <= self.tolerance_ns {
                if let (Some(visible), Some(thermal)) = (self.visible.pop_front(), self.thermal.pop_front()) {
                    self.counts.pairs += 1;
                    out.push(Paired::Pair { visible, thermal });
                }
            } else {
                // The older frame can no longer be matched: the other stream is already past it.
                let older = if vp < tp {
                    self.visible.pop_front()
                } else {
                    self.thermal.pop_front()
                };
                if let Some(f) = older {
                    self.unpaired(f, out);
                }
            }
        }
    }

    fn unpaired(&mut self, frame: Frame, out: &mut Vec<Paired>) {
        match frame.modality {
            Modality::Visible => self.counts.unpaired_visible += 1,
            Modality::Thermal => self.counts.unpaired_thermal += 1,
        }
        match self.policy {
            UnpairedPolicy::Process => out.push(Paired::Single(frame)),
            UnpairedPolicy::Drop => self.counts.dropped += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reid_core::base::PixelFormat;

    fn frame(modality: Modality, ms: u64) -> Frame {
        gstreamer::init().expect("gstreamer");
        Frame {
            camera: "c".to_owned(),
            modality,
            pts_ns: Some(ms * 1_000_000),
            width: 1,
            height: 1,
            stride: 3,
            format: PixelFormat::Rgb,
            buffer: gstreamer::Buffer::new(),
            arrived: std::time::Instant::now(),
        }
    }

    fn kinds(v: &[Paired]) -> Vec<String> {
        v.iter()
            .map(|p| match p {
                Paired::Pair { visible, thermal } => {
                    format!(
                        "pair {}/{}",
                        visible.pts_ns.unwrap_or(0) / 1_000_000,
                        thermal.pts_ns.unwrap_or(0) / 1_000_000
                    )
                }
                Paired::Single(f) => format!("{} {}", f.modality, f.pts_ns.unwrap_or(0) / 1_000_000),
            })
            .collect()
    }

    #[test]
    fn pairs_within_tolerance_and_passes_on_the_rest() {
        let mut p = Pairer::new(10.0, UnpairedPolicy::Process, 8);
        let mut out = Vec::new();
        // Visible at 0, 40, 80, 120 ms; thermal at 3, 51 (11 ms from 40: too far), 85, 200.
        for (m, t) in [
            (Modality::Visible, 0),
            (Modality::Thermal, 3),
            (Modality::Visible, 40),
            (Modality::Thermal, 51),
            (Modality::Visible, 80),
            (Modality::Thermal, 85),
            (Modality::Visible, 120),
            (Modality::Thermal, 200),
        ] {
            out.extend(p.push(frame(m, t)));
        }
        out.extend(p.flush());
        assert_eq!(
            kinds(&out),
            [
                "pair 0/3",
                "visible 40",
                "thermal 51",
                "pair 80/85",
                "visible 120",
                "thermal 200"
            ]
        );
        assert_eq!(
            p.counts,
            PairCounts {
                pairs: 2,
                unpaired_visible: 2,
                unpaired_thermal: 2,
                dropped: 0
            }
        );
    }

    #[test]
    fn drop_policy_counts_and_a_stalled_stream_is_not_waited_for() {
        let mut p = Pairer::new(5.0, UnpairedPolicy::Drop, 3);
        let mut out = Vec::new();
        for t in 0..6 {
            out.extend(p.push(frame(Modality::Visible, t * 40)));
        }
        assert!(out.is_empty(), "dropped, not passed on");
        assert_eq!(
            (p.counts.unpaired_visible, p.counts.dropped),
            (3, 3),
            "at most 3 wait for the thermal stream"
        );
    }
}
