//! SGD with momentum, Nesterov and weight decay as `torch.optim.SGD` computes it, with parameter
//! groups and a state (momentum buffers) that can be saved and restored for exact resumption.

use std::collections::BTreeMap;
use tch::Tensor;

/// Parameter group of the LbA recipe (spec §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Stems and body (0.1 × the base learning rate).
    Backbone,
    /// BN neck (only its weight trains).
    Neck,
    Classifier,
}

impl Group {
    /// The group a variable belongs to, by name.
    pub fn of(name: &str) -> Self {
        if name.starts_with("bottleneck.") {
            Group::Neck
        } else if name.starts_with("classifier.") {
            Group::Classifier
        } else {
            Group::Backbone
        }
    }
}

/// Saved momentum buffers that do not fit the network.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MomentumError {
    #[error("momentum buffer for unknown variable `{0}`")]
    Unknown(String),
    #[error("momentum buffer `{name}` has shape {found:?}, the variable {expected:?}")]
    Shape {
        name: String,
        found: Vec<i64>,
        expected: Vec<i64>,
    },
}

/// The optimiser: trainable variables by name, their group, and momentum buffers.
pub struct Sgd {
    params: Vec<(String, Group, Tensor)>,
    buffers: BTreeMap<String, Tensor>,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
}

impl Sgd {
    /// Optimises every variable of `vars` that requires a gradient.
    pub fn new(
        vars: &std::collections::HashMap<String, Tensor>,
        momentum: f64,
        nesterov: bool,
        weight_decay: f64,
    ) -> Self {
        let mut params: Vec<(String, Group, Tensor)> = vars
            .iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(n, t)| (n.clone(), Group::of(n), t.shallow_clone()))
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            params,
            buffers: BTreeMap::new(),
            momentum,
            nesterov,
            weight_decay,
        }
    }

    /// Names of the optimised variables.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|(n, _, _)| n.as_str())
    }

    /// Clears every gradient.
    pub fn zero_grad(&mut self) {
        for (_, _, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// One step with the learning rate of each group:
    /// d = g + wd·p; buf = m·buf + d (buf = d at the first step); d = d + m·buf (Nesterov) or buf;
    /// p −= lr·d.
    pub fn step(&mut self, lr: impl Fn(Group) -> f64) {
        tch::no_grad(|| {
            for (name, group, p) in &mut self.params {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let d = &g + &*p * self.weight_decay;
                let buf = match self.buffers.get_mut(name) {
                    Some(buf) => {
                        let _ = buf.g_mul_scalar_(self.momentum).g_add_(&d);
                        buf.shallow_clone()
                    }
                    None => {
                        let buf = d.copy();
                        self.buffers.insert(name.clone(), buf.shallow_clone());
                        buf
                    }
                };
                let update = if self.nesterov { d + &buf * self.momentum } else { buf };
                let _ = p.g_sub_(&(update * lr(*group)));
            }
        });
    }

    /// The gradients of the optimised variables that have one (handles to the same storage).
    pub fn gradients(&self) -> Vec<Tensor> {
        self.params
            .iter()
            .map(|(_, _, p)| p.grad())
            .filter(Tensor::defined)
            .collect()
    }

    /// Momentum buffers by variable name, for checkpoints.
    pub fn state(&self) -> &BTreeMap<String, Tensor> {
        &self.buffers
    }

    /// Restores momentum buffers saved by [`Sgd::state`]; unknown names are an error.
    pub fn load_state(&mut self, buffers: BTreeMap<String, Tensor>) -> Result<(), MomentumError> {
        for (name, buf) in &buffers {
            let Some((_, _, p)) = self.params.iter().find(|(n, _, _)| n == name) else {
                return Err(MomentumError::Unknown(name.clone()));
            };
            if p.size() != buf.size() {
                return Err(MomentumError::Shape {
                    name: name.clone(),
                    found: buf.size(),
                    expected: p.size(),
                });
            }
        }
        let device = self.params.first().map_or(tch::Device::Cpu, |(_, _, p)| p.device());
        self.buffers = buffers.into_iter().map(|(n, b)| (n, b.to_device(device))).collect();
        Ok(())
    }
}
