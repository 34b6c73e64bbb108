//! Mixed-precision training (`schedule.amp`): the forward pass under CUDA autocast, in bfloat16
//! where the GPU runs it natively and float16 otherwise (or as `schedule.amp_dtype` says); with
//! float16, dynamic loss scaling as PyTorch's `GradScaler` does it (scale 2¹⁶, halved on a step
//! whose gradients are not finite — that step is skipped —, doubled after 2,000 good steps).
//! Weights, gradients and checkpoints stay float32; the scaler's state is saved with the
//! checkpoint so that `--resume` continues exactly.

use super::sgd::{Group, Sgd};
use reid_core::config::train::AmpDtype;
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

/// Why mixed precision cannot run.
#[derive(Debug, thiserror::Error)]
pub enum AmpError {
    #[error("schedule.amp (mixed precision) needs a CUDA device; this run's device is the CPU")]
    NeedsCuda,
    #[error("libtorch refused to enter CUDA autocast")]
    Autocast,
    #[error("the checkpoint's loss scaler state: {0}")]
    State(String),
}

/// The loss scaler's settings (PyTorch's `GradScaler` defaults).
const INITIAL_SCALE: f64 = 65_536.0;
const GROWTH_FACTOR: f64 = 2.0;
const BACKOFF_FACTOR: f64 = 0.5;
const GROWTH_INTERVAL: i64 = 2_000;

/// Checkpoint keys of the scaler's state.
const SCALE_KEY: &str = "amp/scale";
const GROWTH_KEY: &str = "amp/growth_tracker";

/// How a training step runs: in float32, or in mixed precision.
pub struct Precision {
    /// The autocast element type (None: float32 throughout).
    autocast: Option<Kind>,
    scaler: Option<Scaler>,
}

/// Dynamic loss scaling for float16.
struct Scaler {
    scale: Tensor,
    growth_tracker: Tensor,
}

/// What became of one optimiser step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stepped {
    /// The weights were updated.
    Updated,
    /// The gradients were not finite at this loss scale: no update, the scale was lowered.
    Skipped,
}

impl Precision {
    /// float32 when `amp` is off; otherwise mixed precision on `device` (CUDA only).
    pub fn new(amp: bool, dtype: AmpDtype, device: Device) -> Result<Self, AmpError> {
        if !amp {
            return Ok(Self {
                autocast: None,
                scaler: None,
            });
        }
        if !device.is_cuda() {
            return Err(AmpError::NeedsCuda);
        }
        let bfloat16 = match dtype {
            AmpDtype::Bfloat16 => true,
            AmpDtype::Float16 => false,
            AmpDtype::Auto => reid_core::libtorch::cuda_native_bfloat16(),
        };
        let scaler = (!bfloat16).then(|| Scaler {
            scale: Tensor::full([1], INITIAL_SCALE, (Kind::Float, device)),
            growth_tracker: Tensor::zeros([1], (Kind::Int, device)),
        });
        Ok(Self {
            autocast: Some(if bfloat16 { Kind::BFloat16 } else { Kind::Half }),
            scaler,
        })
    }

    /// The forward element type, for logs: "float32", "bfloat16" or "float16".
    pub fn name(&self) -> &'static str {
        match self.autocast {
            None => "float32",
            Some(Kind::BFloat16) => "bfloat16",
            Some(_) => "float16",
        }
    }

    /// Whether a step whose loss is not finite is the scaler's business (skipped, scale lowered)
    /// rather than a divergence.
    pub fn skips_non_finite(&self) -> bool {
        self.scaler.is_some()
    }

    /// Runs the forward pass `f` under autocast (or as it is, in float32).
    pub fn forward<T>(&self, f: impl FnOnce() -> T) -> Result<T, AmpError> {
        let Some(kind) = self.autocast else {
            return Ok(f());
        };
        reid_core::libtorch::cuda_autocast(kind, f).map_err(|_| AmpError::Autocast)
    }

    /// Back-propagates `loss` and steps `sgd` with the learning rate of each group. With the
    /// float16 scaler: the loss is scaled, gradients are unscaled and checked, a step with
    /// non-finite gradients is skipped and the scale updated.
    pub fn backward_and_step(
        &mut self,
        loss: &Tensor,
        sgd: &mut Sgd,
        lr: impl Fn(Group) -> f64,
    ) -> Result<Stepped, tch::TchError> {
        sgd.zero_grad();
        let Some(scaler) = &mut self.scaler else {
            loss.f_backward()?;
            sgd.step(lr);
            return Ok(Stepped::Updated);
        };
        loss.f_mul(&scaler.scale)?.f_backward()?;
        let inverse = scaler.scale.f_reciprocal()?;
        let sums = tch::no_grad(|| -> Result<Vec<Tensor>, tch::TchError> {
            let mut sums = Vec::new();
            for mut g in sgd.gradients() {
                let _ = g.f_mul_(&inverse)?;
                // A NaN or infinity anywhere makes the sum non-finite.
                sums.push(g.f_sum(Kind::Float)?);
            }
            Ok(sums)
        })?;
        let found_inf = if sums.is_empty() {
            Tensor::f_zeros([1], (Kind::Float, scaler.scale.device()))?
        } else {
            Tensor::f_stack(&sums, 0)?
                .f_isfinite()?
                .f_all()?
                .f_logical_not()?
                .f_to_kind(Kind::Float)?
                .f_view([1])?
        };
        let skipped = found_inf.f_double_value(&[0])? != 0.0;
        if !skipped {
            sgd.step(lr);
        }
        let _ = scaler.scale.f_internal_amp_update_scale_(
            &scaler.growth_tracker,
            &found_inf,
            GROWTH_FACTOR,
            BACKOFF_FACTOR,
            GROWTH_INTERVAL,
        )?;
        Ok(if skipped { Stepped::Skipped } else { Stepped::Updated })
    }

    /// The current loss scale (1 without a scaler).
    pub fn loss_scale(&self) -> f64 {
        self.scaler
            .as_ref()
            .and_then(|s| s.scale.f_double_value(&[0]).ok())
            .unwrap_or(1.0)
    }

    /// The scaler's state for a checkpoint (nothing without a scaler): the scale (float32) and
    /// the growth tracker (stored as int64, which checkpoints hold; libtorch counts in int32).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.scaler.as_ref().map_or_else(Vec::new, |s| {
            vec![
                (SCALE_KEY.to_owned(), s.scale.shallow_clone()),
                (GROWTH_KEY.to_owned(), s.growth_tracker.to_kind(Kind::Int64)),
            ]
        })
    }

    /// Restores the scaler's state from a checkpoint's tensors (ignored without a scaler; a
    /// checkpoint of a float32 or bfloat16 run starts the scaler afresh).
    pub fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>) -> Result<(), AmpError> {
        let Some(scaler) = &mut self.scaler else {
            return Ok(());
        };
        let (Some(scale), Some(growth)) = (tensors.get(SCALE_KEY), tensors.get(GROWTH_KEY)) else {
            tracing::info!(
                "the checkpoint has no loss scaler state (another precision): the scale starts at {INITIAL_SCALE}"
            );
            return Ok(());
        };
        if scale.size() != [1] || growth.size() != [1] {
            return Err(AmpError::State(format!(
                "{SCALE_KEY} {:?} and {GROWTH_KEY} {:?}, expected one element each",
                scale.size(),
                growth.size()
            )));
        }
        let value = scale.double_value(&[0]);
        if !(value.is_finite() && value > 0.0) {
            return Err(AmpError::State(format!("{SCALE_KEY} is {value}")));
        }
        let device = scaler.scale.device();
        scaler.scale = scale.to_kind(Kind::Float).to_device(device);
        scaler.growth_tracker = growth.to_kind(Kind::Int).to_device(device);
        Ok(())
    }

    /// Whether a checkpoint key belongs to the scaler.
    pub fn owns(key: &str) -> bool {
        key.starts_with("amp/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The float16 scaler on any device (the CPU here: the scaler's arithmetic does not need
    /// CUDA, autocast does).
    fn scaler_on(device: Device) -> Precision {
        Precision {
            autocast: None,
            scaler: Some(Scaler {
                scale: Tensor::full([1], INITIAL_SCALE, (Kind::Float, device)),
                growth_tracker: Tensor::zeros([1], (Kind::Int, device)),
            }),
        }
    }

    fn one_weight(value: f64) -> (tch::nn::VarStore, Sgd) {
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let _ = vs.root().sub("neck").var("w", &[2], tch::nn::Init::Const(value));
        let sgd = Sgd::new(&vs.variables(), 0.0, false, 0.0);
        (vs, sgd)
    }

    fn weight(vs: &tch::nn::VarStore) -> Vec<f32> {
        Vec::try_from(vs.variables().values().next().expect("w").detach()).expect("values")
    }

    #[test]
    fn the_scaler_unscales_skips_overflows_and_adapts_its_scale() {
        let (vs, mut sgd) = one_weight(1.0);
        let w = vs.variables().values().next().expect("w").shallow_clone();
        let mut p = scaler_on(Device::Cpu);
        // loss = 3·Σw: gradient 3 per element whatever the scale; lr 0.1 → w = 1 − 0.3.
        let loss = (&w * 3.0).sum(Kind::Float);
        assert_eq!(
            p.backward_and_step(&loss, &mut sgd, |_| 0.1).expect("step"),
            Stepped::Updated
        );
        for v in weight(&vs) {
            assert!((v - 0.7).abs() < 1e-6, "{v}");
        }
        assert_eq!(p.loss_scale(), INITIAL_SCALE);
        // An infinite gradient: no update, scale halved.
        let loss = (&w * f64::INFINITY).sum(Kind::Float);
        assert_eq!(
            p.backward_and_step(&loss, &mut sgd, |_| 0.1).expect("step"),
            Stepped::Skipped
        );
        assert!(weight(&vs).iter().all(|v| (v - 0.7).abs() < 1e-6));
        assert_eq!(p.loss_scale(), INITIAL_SCALE * BACKOFF_FACTOR);
        // The state survives a checkpoint file round trip; a bad one is refused.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("checkpoint.safetensors");
        let saved = p.state();
        let named: Vec<(&str, &Tensor)> = saved.iter().map(|(n, t)| (n.as_str(), t)).collect();
        reid_core::safetensors::write(&path, &named, &BTreeMap::new()).expect("write");
        let state: BTreeMap<String, Tensor> = reid_core::safetensors::read(&path)
            .expect("read")
            .tensors
            .into_iter()
            .collect();
        let mut q = scaler_on(Device::Cpu);
        q.load_state(&state).expect("load");
        assert_eq!(q.loss_scale(), INITIAL_SCALE * BACKOFF_FACTOR);
        let mut bad = state;
        bad.insert(SCALE_KEY.to_owned(), Tensor::from_slice(&[f32::NAN]));
        assert!(q.load_state(&bad).is_err());
    }

    #[test]
    fn mixed_precision_is_refused_on_the_cpu_and_float32_is_plain() {
        let err = Precision::new(true, AmpDtype::Auto, Device::Cpu)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("needs a CUDA device"), "{err}");
        let p = Precision::new(false, AmpDtype::Auto, Device::Cpu).expect("float32");
        assert_eq!(p.name(), "float32");
        assert!(!p.skips_non_finite());
        assert!(p.state().is_empty());
        assert_eq!(p.forward(|| 3).expect("forward"), 3);
    }
}
