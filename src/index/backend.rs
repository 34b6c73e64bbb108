//! Nearest-neighbour search backends behind one interface: HNSW (hnsw_rs with the SIMD unit
//! cosine) for large galleries, and exact search (one matrix product in libtorch, on the GPU when
//! present) for the small galleries live sites usually have.

use super::distance::UnitCosine;
use crate::config::site::IndexBackend;
use hnsw_rs::hnsw::Hnsw;
use tch::{Device, Kind, Tensor};

/// HNSW construction and search settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    /// Links per node (M).
    pub max_connections: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self {
            max_connections: 16,
            ef_construction: 200,
            ef_search: 64,
        }
    }
}

/// A k-NN index over unit vectors; ids are the caller's point numbers.
pub trait Backend: Send {
    /// Adds points.
    fn insert(&mut self, points: &[(&[f32], usize)]);
    /// Up to `k` nearest points accepted by `keep`, as (id, cosine distance), nearest first.
    fn search(&self, query: &[f32], k: usize, keep: &dyn Fn(usize) -> bool) -> Vec<(usize, f32)>;
    /// Points inserted, alive or not.
    fn len(&self) -> usize;
    /// True when nothing was inserted.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Builds an empty backend of the configured kind.
pub fn new_backend(
    kind: IndexBackend,
    dim: usize,
    capacity: usize,
    params: HnswParams,
    device: Device,
) -> Box<dyn Backend> {
    match kind {
        IndexBackend::Hnsw => Box::new(HnswBackend::new(capacity, params)),
        IndexBackend::Exact => Box::new(ExactBackend::new(dim, device)),
    }
}

/// hnsw_rs with [`UnitCosine`].
pub struct HnswBackend {
    hnsw: Hnsw<'static, f32, UnitCosine>,
    params: HnswParams,
    len: usize,
}

impl HnswBackend {
    pub fn new(capacity: usize, params: HnswParams) -> Self {
        let layers = 16;
        let hnsw = Hnsw::new(
            params.max_connections,
            capacity.max(1024),
            layers,
            params.ef_construction,
            UnitCosine,
        );
        Self { hnsw, params, len: 0 }
    }

    /// Changes the search breadth (recall against speed).
    pub fn set_ef(&mut self, ef: usize) {
        self.params.ef_search = ef;
    }
}

impl Backend for HnswBackend {
    fn insert(&mut self, points: &[(&[f32], usize)]) {
        if points.len() > 1 {
            self.hnsw.parallel_insert_slice(&points.to_vec());
        } else if let Some(&p) = points.first() {
            self.hnsw.insert_slice(p);
        }
        self.len += points.len();
    }

    fn search(&self, query: &[f32], k: usize, keep: &dyn Fn(usize) -> bool) -> Vec<(usize, f32)> {
        if self.len == 0 || k == 0 {
            return Vec::new();
        }
        let filter = |id: &usize| keep(*id);
        let found = self
            .hnsw
            .search_filter(query, k, self.params.ef_search.max(k), Some(&filter));
        found.into_iter().map(|n| (n.d_id, n.distance)).collect()
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// Exact search: similarities of the query with every point in one matrix product. Rows live in
/// a tensor on the device whose capacity doubles as it fills.
pub struct ExactBackend {
    dim: usize,
    device: Device,
    matrix: Tensor,
    ids: Vec<usize>,
}

impl ExactBackend {
    pub fn new(dim: usize, device: Device) -> Self {
        Self {
            dim,
            device,
            matrix: Tensor::zeros([64, dim as i64], (Kind::Float, device)),
            ids: Vec::new(),
        }
    }
}

impl Backend for ExactBackend {
    fn insert(&mut self, points: &[(&[f32], usize)]) {
        if points.is_empty() {
            return;
        }
        let (n, m, d) = (self.ids.len() as i64, points.len() as i64, self.dim as i64);
        let capacity = self.matrix.size()[0];
        if n + m > capacity {
            let grown = Tensor::zeros([(2 * capacity).max(n + m), d], (Kind::Float, self.device));
            grown.narrow(0, 0, n).copy_(&self.matrix.narrow(0, 0, n));
            self.matrix = grown;
        }
        let mut flat = Vec::with_capacity(points.len() * self.dim);
        for (v, id) in points {
            flat.extend(v.iter().copied().chain(std::iter::repeat(0.0)).take(self.dim));
            self.ids.push(*id);
        }
        let rows = Tensor::from_slice(&flat).view([m, d]).to_device(self.device);
        self.matrix.narrow(0, n, m).copy_(&rows);
    }

    fn search(&self, query: &[f32], k: usize, keep: &dyn Fn(usize) -> bool) -> Vec<(usize, f32)> {
        let n = self.ids.len();
        if n == 0 || k == 0 {
            return Vec::new();
        }
        let q: Vec<f32> = query
            .iter()
            .copied()
            .chain(std::iter::repeat(0.0))
            .take(self.dim)
            .collect();
        let q = Tensor::from_slice(&q).to_device(self.device);
        let sims = tch::no_grad(|| self.matrix.narrow(0, 0, n as i64).mv(&q)).to_device(Device::Cpu);
        let sims: Vec<f32> = Vec::try_from(&sims).unwrap_or_default();
        let mut scored: Vec<(usize, f32)> = sims
            .iter()
            .zip(&self.ids)
            .filter(|(_, id)| keep(**id))
            .map(|(s, id)| (*id, (1.0 - s).max(0.0)))
            .collect();
        let k = k.min(scored.len());
        if k == 0 {
            return Vec::new();
        }
        scored.select_nth_unstable_by(k - 1, |a, b| a.1.total_cmp(&b.1));
        scored.truncate(k);
        scored.sort_by(|a, b| a.1.total_cmp(&b.1));
        scored
    }

    fn len(&self) -> usize {
        self.ids.len()
    }
}
