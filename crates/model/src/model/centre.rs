//! A site's embedding centre (`model.centre`): the mean of its own crops' embeddings, taken off
//! every embedding before it is re-normalised and matched.
//!
//! The test-time feature (pooled, pre-BN, L2-normalised; spec §2.5) comes out of a ReLU: every
//! component is non-negative, so all embeddings crowd into one corner of the sphere and cosine
//! distances between different people shrink to a few thousandths, where a fixed threshold
//! separates poorly. Centring spreads them out. Measured on the held-out tracks of a generated
//! site (three adapted models; track means, true people, at 1 % false joins between tracks of
//! different people): visible tracks of one person joined 50–66 % of the time raw and 76 %
//! centred, thermal 79–88 % and 90–93 %, visible to thermal 14–35 % and 46–53 %; live, the same
//! models kept their identities per person and rose from purity 0.74 to 0.89 (BENCHMARKS.md,
//! "Site adaptation"). Retrieval (`eval`) keeps the protocol's raw feature; the live pipeline
//! uses the centre when the site names one (`adapt` writes it, with the CRC-32 of the weights it
//! belongs to).

use super::embedder::{Embed, EmbedError, Phases};
use super::preprocess::{Staged, Stager};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// The tensor a centre file holds.
pub const TENSOR: &str = "centre";

/// Errors of a centre file, naming it.
#[derive(Debug, thiserror::Error)]
pub enum CentreError {
    #[error(transparent)]
    File(#[from] reid_core::safetensors::SafetensorsError),
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// Reads a centre file: one finite float vector named [`TENSOR`].
pub fn read(path: &Path) -> Result<Tensor, CentreError> {
    let invalid = |message: String| CentreError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let file = reid_core::safetensors::read(path)?;
    let t = file
        .get(TENSOR)
        .ok_or_else(|| invalid(format!("no tensor `{TENSOR}` (a centre file holds the mean embedding)")))?;
    if t.dim() != 1 || !t.is_floating_point() {
        return Err(invalid(format!(
            "tensor `{TENSOR}` has shape {:?} of {:?}, expected one float vector",
            t.size(),
            t.kind()
        )));
    }
    let t = t.to_kind(Kind::Float);
    if !bool::try_from(t.isfinite().all()).unwrap_or(false) {
        return Err(invalid(format!("tensor `{TENSOR}` is not finite")));
    }
    Ok(t)
}

/// The metadata key of the CRC-32 (8 hex digits) of the weight file a centre was computed with.
pub const WEIGHTS_CRC32: &str = "weights_crc32";

/// Writes `centre` (atomically) as a centre file; `weights_crc32`: that of the weight file it was
/// computed with, recorded so that a run can refuse it with other weights.
pub fn write(path: &Path, centre: &Tensor, weights_crc32: Option<u32>) -> Result<(), CentreError> {
    let centre = centre.to_kind(Kind::Float).contiguous();
    let metadata = weights_crc32
        .map(|crc| (WEIGHTS_CRC32.to_owned(), format!("{crc:08x}")))
        .into_iter()
        .collect();
    Ok(reid_core::safetensors::write(path, &[(TENSOR, &centre)], &metadata)?)
}

/// The CRC-32 of the weight file the centre at `path` was computed with, when it says.
pub fn made_for(path: &Path) -> Result<Option<u32>, CentreError> {
    let file = reid_core::safetensors::read(path)?;
    match file.metadata.get(WEIGHTS_CRC32) {
        None => Ok(None),
        Some(hex) => u32::from_str_radix(hex, 16)
            .map(Some)
            .map_err(|_| CentreError::Invalid {
                path: path.to_path_buf(),
                message: format!("metadata `{WEIGHTS_CRC32}` = {hex:?} is not 8 hex digits"),
            }),
    }
}

/// The mean of the rows of `embeddings` (N × D, each L2-normalised): the centre of those crops.
pub fn mean_of(embeddings: &Tensor) -> Tensor {
    embeddings
        .to_kind(Kind::Float)
        .mean_dim(&[0i64][..], false, Kind::Float)
}

/// Rows minus `centre`, L2-normalised again.
pub fn apply(rows: &Tensor, centre: &Tensor) -> Result<Tensor, EmbedError> {
    let moved = rows.f_sub(centre)?;
    Ok(moved.f_div(&moved.f_norm_scalaropt_dim(2, [1], true)?.f_clamp_min(1e-12)?)?)
}

/// An embedder whose embeddings are centred.
pub struct Centred {
    inner: Box<dyn Embed>,
    centre: Tensor,
}

impl Centred {
    /// Centres `inner`'s embeddings on the centre read from `path`, which must have its
    /// dimension.
    pub fn open(inner: Box<dyn Embed>, path: &Path) -> Result<Self, EmbedError> {
        let centre = read(path)?;
        if centre.size() != [inner.dim()] {
            return Err(CentreError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "the centre has {} components, the model's embeddings {}",
                    centre.size()[0],
                    inner.dim()
                ),
            }
            .into());
        }
        Ok(Self { inner, centre })
    }
}

impl Embed for Centred {
    fn dim(&self) -> i64 {
        self.inner.dim()
    }

    fn stager(&self) -> Stager {
        self.inner.stager()
    }

    fn infer(&self, staged: Staged, phases: &mut Phases) -> Result<Tensor, EmbedError> {
        let rows = self.inner.infer(staged, phases)?;
        if rows.size()[0] == 0 {
            return Ok(rows);
        }
        apply(&rows, &self.centre)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_centre_is_the_mean_and_comes_off_before_normalising() {
        let rows = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).view([2, 2]);
        let centre = mean_of(&rows);
        assert_eq!(Vec::<f32>::try_from(&centre).expect("vec"), [0.5, 0.5]);
        // (1, 0) − (0.5, 0.5) = (0.5, −0.5), of length √0.5.
        let got = Vec::<f32>::try_from(apply(&rows, &centre).expect("apply").view([-1])).expect("vec");
        let h = std::f32::consts::FRAC_1_SQRT_2;
        for (g, want) in got.iter().zip([h, -h, -h, h]) {
            assert!((g - want).abs() < 1e-6, "{got:?}");
        }
    }

    #[test]
    fn a_centre_file_is_one_finite_vector() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.safetensors");
        write(&path, &Tensor::from_slice(&[0.25f32, 0.5]), Some(0xdead_beef)).expect("write");
        assert_eq!(
            Vec::<f32>::try_from(&read(&path).expect("read")).expect("vec"),
            [0.25, 0.5]
        );
        assert_eq!(made_for(&path).expect("metadata"), Some(0xdead_beef));
        for (bad, why) in [
            (Tensor::from_slice(&[0.25f32, f32::NAN]), "not finite"),
            (
                Tensor::ones([2, 2], (Kind::Float, tch::Device::Cpu)),
                "expected one float vector",
            ),
        ] {
            write(&path, &bad, None).expect("write");
            let e = read(&path).expect_err("refused").to_string();
            assert!(e.contains("c.safetensors") && e.contains(why), "{e}");
        }
    }
}
