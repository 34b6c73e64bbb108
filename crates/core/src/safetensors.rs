//! The safetensors format (8-byte little-endian header length, JSON header, raw little-endian
//! data), read and written with its `__metadata__` string map, which tch's own reader drops.
//! Writing is atomic. Written element types: F32, I64 and U8; read also: F16, BF16, F64 and I32
//! (as exported by other tools).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Errors naming the file and, where it applies, the tensor.
#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    #[error("{}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a safetensors file: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("{}: tensor `{name}`: {message}", path.display())]
    Tensor {
        path: PathBuf,
        name: String,
        message: String,
    },
}

/// Tensors by name plus the metadata map.
#[derive(Debug, Default)]
pub struct File {
    pub metadata: BTreeMap<String, String>,
    pub tensors: Vec<(String, Tensor)>,
}

impl File {
    /// The tensor with this name.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<i64>,
    data_offsets: [usize; 2],
}

/// Reads a whole safetensors file onto the CPU.
pub fn read(path: &Path) -> Result<File, SafetensorsError> {
    let bytes = std::fs::read(path).map_err(|source| SafetensorsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let format = |message: String| SafetensorsError::Format {
        path: path.to_path_buf(),
        message,
    };
    if bytes.len() < 8 {
        return Err(format(format!("{} bytes is too short for a header", bytes.len())));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[..8]);
    let header_len = u64::from_le_bytes(len) as usize;
    let data_start = 8usize
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            format(format!(
                "header length {header_len} runs past the end of the file ({} bytes)",
                bytes.len()
            ))
        })?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..data_start]).map_err(|e| format(format!("bad JSON header: {e}")))?;
    let data = &bytes[data_start..];
    let mut file = File::default();
    for (name, value) in header {
        if name == "__metadata__" {
            file.metadata = serde_json::from_value(value).map_err(|e| format(format!("bad __metadata__: {e}")))?;
            continue;
        }
        let bad = |message: String| SafetensorsError::Tensor {
            path: path.to_path_buf(),
            name: name.clone(),
            message,
        };
        let entry: Entry = serde_json::from_value(value).map_err(|e| bad(format!("bad header entry: {e}")))?;
        let (kind, width) = match entry.dtype.as_str() {
            "F32" => (Kind::Float, 4),
            "I64" => (Kind::Int64, 8),
            "U8" => (Kind::Uint8, 1),
            "F16" => (Kind::Half, 2),
            "BF16" => (Kind::BFloat16, 2),
            "F64" => (Kind::Double, 8),
            "I32" => (Kind::Int, 4),
            other => {
                return Err(bad(format!(
                    "element type {other} is not supported (F32, F16, BF16, F64, I64, I32, U8)"
                )));
            }
        };
        let [start, end] = entry.data_offsets;
        let bytes_needed = entry.shape.iter().try_fold(width as usize, |n: usize, &d| {
            usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
        });
        if end < start || end > data.len() || bytes_needed != Some(end - start) {
            return Err(bad(format!(
                "shape {:?} of {} does not fit data bytes {start}..{end} of {}",
                entry.shape,
                entry.dtype,
                data.len()
            )));
        }
        let tensor = Tensor::f_from_data_size(&data[start..end], &entry.shape, kind).map_err(|e| bad(e.to_string()))?;
        file.tensors.push((name, tensor));
    }
    Ok(file)
}

/// Writes tensors (moved to the CPU, made contiguous) and metadata atomically.
pub fn write(
    path: &Path,
    tensors: &[(&str, &Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<(), SafetensorsError> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".to_owned(), serde_json::json!(metadata));
    }
    let mut blobs = Vec::with_capacity(tensors.len());
    let mut offset = 0usize;
    for (name, t) in tensors {
        let bad = |message: String| SafetensorsError::Tensor {
            path: path.to_path_buf(),
            name: (*name).to_owned(),
            message,
        };
        let (dtype, width) = match t.kind() {
            Kind::Float => ("F32", 4),
            Kind::Int64 => ("I64", 8),
            Kind::Uint8 => ("U8", 1),
            other => return Err(bad(format!("element type {other:?} is not supported (F32, I64, U8)"))),
        };
        let t = t.to_device(tch::Device::Cpu).contiguous();
        let numel = t.numel();
        let mut blob = vec![0u8; numel * width];
        t.f_copy_data_u8(&mut blob, numel).map_err(|e| bad(e.to_string()))?;
        let entry = Entry {
            dtype: dtype.to_owned(),
            shape: t.size(),
            data_offsets: [offset, offset + blob.len()],
        };
        offset += blob.len();
        header.insert(
            (*name).to_owned(),
            serde_json::to_value(entry).map_err(|e| bad(e.to_string()))?,
        );
        blobs.push(blob);
    }
    let mut json = serde_json::to_vec(&header).map_err(|e| SafetensorsError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    // Pad the header so the data starts 8-byte aligned, as the reference writer does.
    while (8 + json.len()) % 8 != 0 {
        json.push(b' ');
    }
    crate::atomic::write_with(path, |f| {
        use std::io::Write;
        f.write_all(&(json.len() as u64).to_le_bytes())?;
        f.write_all(&json)?;
        blobs.iter().try_for_each(|b| f.write_all(b))
    })
    .map_err(|source| SafetensorsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_metadata() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t.safetensors");
        let a = Tensor::from_slice(&[1.5f32, -2.0, 3.25, 4.0, 5.0, 6.0]).view([2, 3]);
        let b = Tensor::from_slice(&[7i64, -8]);
        let meta = BTreeMap::from([("k".to_owned(), "v".to_owned())]);
        write(&p, &[("a", &a), ("b", &b)], &meta).expect("write");
        let f = read(&p).expect("read");
        assert_eq!(f.metadata, meta);
        assert!(f.get("a").expect("a").equal(&a));
        assert!(f.get("b").expect("b").equal(&b));
    }

    #[test]
    fn truncated_file_is_rejected_with_its_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t.safetensors");
        let a = Tensor::from_slice(&[1f32, 2.0, 3.0]);
        write(&p, &[("weights", &a)], &BTreeMap::new()).expect("write");
        let bytes = std::fs::read(&p).expect("read");
        std::fs::write(&p, &bytes[..bytes.len() - 4]).expect("truncate");
        let e = read(&p).expect_err("truncated");
        let s = e.to_string();
        assert!(s.contains("t.safetensors") && s.contains("`weights`"), "{s}");
    }
}
