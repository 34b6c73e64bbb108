//! `torch.save` files (`.pt`, `.pth`, `.t`, `.tar`…), read without Python by the
//! `pytorch-reader` crate (the Burn project's checkpoint reader: every container `torch.save` has
//! written, parsed with limits against hostile files, tensors read lazily).
//!
//! A checkpoint dict holds its state dict under `net` (the official LbA checkpoints),
//! `state_dict`, `model` or `model_state_dict`; a bare state dict is read as it is. Scalars beside
//! the state dict (`epoch`, `mAP`…) are kept as metadata.

use super::WeightsError;
use pytorch_reader::{DType, PickleValue, PytorchReader};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Kind, Tensor};

/// Keys a checkpoint dict keeps its state dict under, in the order they are tried.
const STATE_DICT_KEYS: [&str; 4] = ["net", "state_dict", "model", "model_state_dict"];

/// The state dict of a `torch.save` file, every tensor on the CPU, plus the scalars saved
/// beside it.
pub struct TorchFile {
    pub tensors: Vec<(String, Tensor)>,
    /// Top-level numbers and strings of a checkpoint dict (e.g. `epoch`).
    pub scalars: BTreeMap<String, String>,
}

/// Tells a `torch.save` file from its first bytes: a ZIP archive (PyTorch ≥ 1.6), a pickle
/// (the legacy format starts with the PROTO opcode) or a TAR archive (before 0.1.10). A
/// safetensors file (an 8-byte header length, then `{`) is not one, whatever its first byte.
pub fn is_torch_save(head: &[u8]) -> bool {
    let safetensors = head.get(8) == Some(&b'{');
    !safetensors
        && (head.starts_with(b"PK\x03\x04") || head.first() == Some(&0x80) || head.get(257..262) == Some(b"ustar"))
}

/// Reads the state dict of a `torch.save` file: the dict under the first of
/// [`STATE_DICT_KEYS`] the top-level dict has (tensors beside it, such as optimiser state, are
/// not weights), else the whole file.
pub fn read(path: &Path) -> Result<TorchFile, WeightsError> {
    let unreadable = |source| WeightsError::TorchSave {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    let top = match PytorchReader::read_pickle_data(path, None).map_err(unreadable)? {
        PickleValue::Dict(d) => d,
        _ => Default::default(),
    };
    let container = STATE_DICT_KEYS
        .into_iter()
        .find(|k| matches!(top.get(*k), Some(PickleValue::Dict(_))));
    let reader = match container {
        Some(key) => PytorchReader::with_top_level_key(path, key),
        None => PytorchReader::new(path),
    }
    .map_err(unreadable)?;
    let mut tensors = reader
        .tensors()
        .iter()
        .map(|(name, t)| Ok((name.clone(), to_tch(path, name, t)?)))
        .collect::<Result<Vec<_>, WeightsError>>()?;
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let scalars = top
        .into_iter()
        .filter_map(|(k, v)| {
            let v = match v {
                PickleValue::Int(i) => i.to_string(),
                PickleValue::Float(f) => f.to_string(),
                PickleValue::String(s) if s.len() <= 200 => s,
                _ => return None,
            };
            Some((k, v))
        })
        .collect();
    Ok(TorchFile { tensors, scalars })
}

fn to_tch(path: &Path, name: &str, t: &pytorch_reader::Tensor) -> Result<Tensor, WeightsError> {
    let bad = |message: String| WeightsError::Tensor {
        path: path.to_path_buf(),
        name: name.to_owned(),
        message,
    };
    let kind = match t.dtype() {
        DType::F32 => Kind::Float,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::F64 => Kind::Double,
        DType::I64 => Kind::Int64,
        DType::I32 => Kind::Int,
        DType::I16 => Kind::Int16,
        DType::I8 => Kind::Int8,
        DType::U8 => Kind::Uint8,
        DType::Bool => Kind::Bool,
        other => return Err(bad(format!("element type {other:?} is not supported"))),
    };
    let bytes = t.read().map_err(|e| bad(format!("cannot read its data: {e}")))?;
    if bytes.len() != t.byte_len() {
        return Err(bad(format!(
            "{} bytes of data for {} expected",
            bytes.len(),
            t.byte_len()
        )));
    }
    let shape: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
    Tensor::f_from_data_size(&bytes, &shape, kind).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::is_torch_save;

    #[test]
    fn formats_are_told_apart_by_their_first_bytes() {
        assert!(is_torch_save(b"PK\x03\x04archive"));
        assert!(is_torch_save(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20"));
        // A safetensors header of 0x0280 bytes starts with 0x80 too.
        assert!(!is_torch_save(b"\x80\x02\0\0\0\0\0\0{\"a\":"));
        let mut tar = vec![0u8; 300];
        tar[257..262].copy_from_slice(b"ustar");
        assert!(is_torch_save(&tar));
        assert!(!is_torch_save(b"hello"));
    }
}
