//! `reid-pipe import`: any weight file in (see [`super::weights`]), a reid-pipe weight file out —
//! safetensors with the network's description and where it came from — so that later commands
//! need no flags. Only tensors that came from the input are written: a backbone file stays a
//! backbone file (its head is initialised by whoever loads it).

use super::ModelSpec;
use super::weights::{self, Head, Provenance, WeightFile, WeightsError};
use std::fmt;
use std::path::{Path, PathBuf};

/// What to import.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub input: &'a Path,
    pub output: &'a Path,
    /// The identities the classifier must have.
    pub classes: Option<i64>,
    /// Input size for a file that does not record one (default: the recipe's).
    pub input_size: Option<(i64, i64)>,
    /// The RegDB trial the model was trained on.
    pub trial: Option<u32>,
    /// Replace an existing output file.
    pub overwrite: bool,
}

/// Errors of an import; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("{}: exists; pass --force to replace it", path.display())]
    Exists { path: PathBuf },
    #[error("OUTPUT")]
    Output(#[from] reid_core::base::OutputError),
    #[error("{}: the classifier has {found} identities, --classes says {expected}", path.display())]
    Classes { path: PathBuf, found: i64, expected: i64 },
    #[error("{}: records an input size of {recorded:?}, --input-size says {given:?}", path.display())]
    InputSize {
        path: PathBuf,
        recorded: (i64, i64),
        given: (i64, i64),
    },
}

/// What an import wrote.
#[derive(Debug, Clone)]
pub struct Imported {
    pub output: PathBuf,
    pub spec: ModelSpec,
    /// Tensors written (all from the input).
    pub written: usize,
    /// Input tensors not used (parts of official checkpoints no network uses, ImageNet heads,
    /// BN counters).
    pub ignored: usize,
}

impl fmt::Display for Imported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.spec;
        write!(
            f,
            "wrote {}: {:?} network, {}, input {}×{}, {}-d embedding; {} tensors, {} input tensors not used",
            self.output.display(),
            s.backbone,
            match s.classes {
                0 => "no classifier".to_owned(),
                n => format!("{n} identities"),
            },
            s.input_size.0,
            s.input_size.1,
            s.feature_dim(),
            self.written,
            self.ignored
        )
    }
}

/// Converts `req.input` into a reid-pipe weight file at `req.output`, atomically.
pub fn run(req: &Request<'_>) -> Result<Imported, ImportError> {
    let input = [("INPUT".to_owned(), req.input.to_path_buf())];
    reid_core::base::outputs::check(&[req.output.to_path_buf()], &input, true)?;
    if req.output.exists() && !req.overwrite {
        return Err(ImportError::Exists {
            path: req.output.to_path_buf(),
        });
    }
    let file = WeightFile::read(req.input)?;
    let spec = file.spec(req.input_size)?;
    if let (Some(recorded), Some(given)) = (file.spec.as_ref().map(|s| s.input_size), req.input_size)
        && recorded != given
    {
        return Err(ImportError::InputSize {
            path: req.input.to_path_buf(),
            recorded,
            given,
        });
    }
    if let Some(expected) = req.classes
        && expected != spec.classes
    {
        return Err(ImportError::Classes {
            path: req.input.to_path_buf(),
            found: spec.classes,
            expected,
        });
    }
    let opened = weights::open(&file, req.input_size, Head::Classifier, tch::Device::Cpu)?;
    let provenance = Provenance {
        trial: req.trial.or(file.provenance.trial),
        dataset: match req.trial {
            Some(_) => Some("regdb".to_owned()),
            None => file.provenance.dataset.clone(),
        },
        epoch: file.provenance.epoch,
        imported_from: req.input.file_name().map(|n| n.to_string_lossy().into_owned()),
    };
    let vars = opened.vs.variables();
    let from_file: Vec<(&str, &tch::Tensor)> = vars
        .iter()
        .filter(|(n, _)| !opened.report.initialised.contains(n))
        .map(|(n, t)| (n.as_str(), t))
        .collect();
    let written = from_file.len();
    weights::save_vars(req.output, from_file.into_iter(), &spec, &provenance)?;
    Ok(Imported {
        output: req.output.to_path_buf(),
        spec,
        written,
        ignored: opened.report.ignored,
    })
}
