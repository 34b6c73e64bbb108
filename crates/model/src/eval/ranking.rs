//! Cosine ranking of a gallery for blocks of queries with libtorch (one matrix product per
//! block, on the GPU when the tensors are there), so large query sets never materialise the
//! whole distance matrix.

use reid_core::base::normalize_rows;
use tch::Tensor;

/// Ranks `gallery` (G×D) for every row of `query` (Q×D) by descending cosine similarity and
/// calls `visit(query_row, ranked_gallery_rows)`. Rows are normalised here. Ties keep gallery
/// order (a stable sort; the reference's numpy quicksort may order exact ties differently).
pub fn rank(
    query: &Tensor,
    gallery: &Tensor,
    block_rows: i64,
    mut visit: impl FnMut(usize, &[i64]),
) -> Result<(), tch::TchError> {
    let _guard = tch::no_grad_guard();
    let q = normalize_rows(query)?;
    let g = normalize_rows(gallery)?;
    let gt = g.f_transpose(0, 1)?;
    let n = q.size()[0];
    let g_len = g.size()[0] as usize;
    let mut start = 0;
    let mut order = Vec::new();
    while start < n {
        let len = block_rows.min(n - start);
        let sims = q.f_narrow(0, start, len)?.f_matmul(&gt)?;
        let (_, idx) = sims.f_sort_stable(true, 1, true)?;
        let idx = idx.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
        order.resize(len as usize * g_len, 0i64);
        idx.f_copy_data(&mut order, len as usize * g_len)?;
        for (r, row) in order.chunks(g_len.max(1)).enumerate().take(len as usize) {
            visit(start as usize + r, row);
        }
        start += len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_cosine_not_by_length() {
        // q·g: g0 = 0.6 (long vector), g1 = 1.0, g2 = -1.0, g3 = 0.8.
        let query = Tensor::from_slice(&[1f32, 0.0, 0.0, 1.0]).view([2, 2]);
        let gallery = Tensor::from_slice(&[60f32, 80.0, 1.0, 0.0, -1.0, 0.0, 0.8, 0.6]).view([4, 2]);
        let mut rows = Vec::new();
        rank(&query, &gallery, 1, |q, r| rows.push((q, r.to_vec()))).expect("rank");
        assert_eq!(rows, vec![(0, vec![1, 3, 0, 2]), (1, vec![0, 3, 1, 2])]);
    }
}
