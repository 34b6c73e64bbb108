//! Nearest-neighbour search backends behind one interface: HNSW (hnsw_rs with the SIMD unit
//! cosine) for large galleries, and exact search (one matrix product in libtorch, on the GPU when
//! present) for the small galleries live sites usually have.

use super::distance::{QuantizedUnitCosine, dot, quantize};
use hnsw_rs::hnsw::Hnsw;
use reid_core::config::site::IndexBackend;
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

/// hnsw_rs over 8-bit quantised vectors ([`QuantizedUnitCosine`]: a quarter of the memory
/// traffic of f32), with the candidates re-ranked by exact f32 distances, so results and
/// distances are those of the full-precision vectors.
pub struct HnswBackend {
    hnsw: Hnsw<'static, i8, QuantizedUnitCosine>,
    params: HnswParams,
    /// Full-precision vectors by id, for re-ranking.
    exact: std::collections::HashMap<usize, Vec<f32>>,
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
            QuantizedUnitCosine,
        );
        Self {
            hnsw,
            params,
            exact: std::collections::HashMap::new(),
            len: 0,
        }
    }

    /// Exact distances of candidate ids, nearest first, at most `k`.
    fn rerank(&self, query: &[f32], ids: impl Iterator<Item = usize>, k: usize) -> Vec<(usize, f32)> {
        let mut v: Vec<(usize, f32)> = ids
            .filter_map(|id| self.exact.get(&id).map(|e| (id, (1.0 - dot(query, e)).max(0.0))))
            .collect();
        v.sort_by(|a, b| a.1.total_cmp(&b.1));
        v.truncate(k);
        v
    }

    /// Changes the search breadth (recall against speed).
    pub fn set_ef(&mut self, ef: usize) {
        self.params.ef_search = ef;
    }
}

impl Backend for HnswBackend {
    fn insert(&mut self, points: &[(&[f32], usize)]) {
        let quantized: Vec<(Vec<i8>, usize)> = points.iter().map(|(v, id)| (quantize(v), *id)).collect();
        let refs: Vec<(&[i8], usize)> = quantized.iter().map(|(q, id)| (q.as_slice(), *id)).collect();
        if refs.len() > 1 {
            self.hnsw.parallel_insert_slice(&refs);
        } else if let Some(&p) = refs.first() {
            self.hnsw.insert_slice(p);
        }
        for (v, id) in points {
            self.exact.insert(*id, v.to_vec());
        }
        self.len += points.len();
    }

    fn search(&self, query: &[f32], k: usize, keep: &dyn Fn(usize) -> bool) -> Vec<(usize, f32)> {
        if self.len == 0 || k == 0 {
            return Vec::new();
        }
        // Plain search, filtered afterwards: fast while few points are dead (rebuilds keep it so).
        // Only when too few survive does the slower filtered graph search run. Twice k candidates
        // are re-ranked exactly.
        let q = quantize(query);
        let ef = self.params.ef_search.max(2 * k);
        let candidates: Vec<usize> = self
            .hnsw
            .search(&q, 2 * k, ef)
            .into_iter()
            .map(|n| n.d_id)
            .filter(|&id| keep(id))
            .collect();
        if candidates.len() >= k || candidates.len() == self.len {
            return self.rerank(query, candidates.into_iter(), k);
        }
        let filter = |id: &usize| keep(*id);
        let candidates = self
            .hnsw
            .search_filter(&q, 2 * k, ef, Some(&filter))
            .into_iter()
            .map(|n| n.d_id);
        self.rerank(query, candidates, k)
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
