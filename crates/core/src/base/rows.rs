//! Row normalisation shared by the embedders, the index and the evaluation.

use tch::Tensor;

/// L2-normalises the rows of a 2-D tensor as `F.normalize(x, dim=1, eps=1e-12)` does; an error
/// (not a panic) for a tensor of another rank.
pub fn normalize_rows(x: &Tensor) -> Result<Tensor, tch::TchError> {
    let norm = x.f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?.f_clamp_min(1e-12)?;
    x.f_div(&norm)
}
