//! One exemplar on the wire: `u32` length (little endian) · JSON metadata · the vector, in half
//! precision (2 bytes a value) or as signed bytes with one scale (`value = byte × scale`).

use reid_core::base::Modality;
use reid_core::config::site::VectorEncoding;

/// What a node says about an exemplar it added.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExemplarMeta {
    /// The node that saw it.
    pub node: String,
    /// That node's process run (random per start): tells a node its own live publications from
    /// those of an earlier run, which it must apply after a restart.
    pub run: u64,
    pub identity: u64,
    pub modality: Modality,
    pub camera: String,
    /// Unix seconds.
    pub time: f64,
    /// The model whose vector it is.
    pub model: String,
    pub encoding: VectorEncoding,
    /// Scale of an `int8` vector (1 for `f16`).
    pub scale: f32,
}

/// A message that cannot be an exemplar.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0} bytes: shorter than its header")]
    Short(usize),
    #[error("unreadable metadata")]
    Meta(#[source] serde_json::Error),
    #[error("{found} vector bytes do not hold whole {encoding:?} values")]
    Vector { found: usize, encoding: VectorEncoding },
}

/// The message id JetStream deduplicates on: one exemplar, however often it is sent.
pub fn message_id(meta: &ExemplarMeta) -> String {
    format!(
        "{}.{}.{}.{}",
        meta.node,
        meta.identity,
        meta.modality,
        (meta.time * 1e6).round() as i64
    )
}

/// Encodes an exemplar (`meta.scale` is set here for `int8`).
pub fn encode(meta: &ExemplarMeta, vector: &[f32]) -> Vec<u8> {
    let mut meta = meta.clone();
    let body: Vec<u8> = match meta.encoding {
        VectorEncoding::F16 => {
            meta.scale = 1.0;
            vector
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect()
        }
        VectorEncoding::Int8 => {
            let peak = vector.iter().fold(0f32, |m, v| m.max(v.abs()));
            meta.scale = if peak > 0.0 { peak / 127.0 } else { 1.0 };
            vector
                .iter()
                .map(|&v| (v / meta.scale).round().clamp(-127.0, 127.0) as i8 as u8)
                .collect()
        }
    };
    let json = serde_json::to_vec(&meta).expect("exemplar metadata is plain data");
    let mut out = Vec::with_capacity(4 + json.len() + body.len());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&body);
    out
}

/// Decodes an exemplar.
pub fn decode(bytes: &[u8]) -> Result<(ExemplarMeta, Vec<f32>), WireError> {
    let short = || WireError::Short(bytes.len());
    let len = u32::from_le_bytes(bytes.get(..4).ok_or_else(short)?.try_into().map_err(|_| short())?) as usize;
    let json = bytes.get(4..4 + len).ok_or_else(short)?;
    let meta: ExemplarMeta = serde_json::from_slice(json).map_err(WireError::Meta)?;
    let body = &bytes[4 + len..];
    let vector = match meta.encoding {
        VectorEncoding::F16 => {
            if !body.len().is_multiple_of(2) {
                return Err(WireError::Vector {
                    found: body.len(),
                    encoding: meta.encoding,
                });
            }
            body.chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect()
        }
        VectorEncoding::Int8 => body.iter().map(|&b| f32::from(b as i8) * meta.scale).collect(),
    };
    Ok((meta, vector))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(encoding: VectorEncoding) -> ExemplarMeta {
        ExemplarMeta {
            node: "gate-a".into(),
            run: 7,
            identity: (3 << 40) | 12,
            modality: Modality::Thermal,
            camera: "door".into(),
            time: 1_790_000_000.123_456,
            model: "m1".into(),
            encoding,
            scale: 0.0,
        }
    }

    #[test]
    fn round_trips_within_the_encodings_precision() {
        let v: Vec<f32> = (0..64).map(|i| ((i as f32) * 0.37).sin() / 8.0).collect();
        for (encoding, tolerance) in [
            (VectorEncoding::F16, 1e-3),
            (VectorEncoding::Int8, 0.5 / 127.0 / 8.0 + 1e-6),
        ] {
            let bytes = encode(&meta(encoding), &v);
            let (m, back) = decode(&bytes).unwrap();
            assert_eq!(m.identity, meta(encoding).identity);
            assert_eq!(m.modality, Modality::Thermal);
            assert_eq!(back.len(), v.len());
            let worst = v.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= tolerance, "{encoding:?}: worst error {worst}");
            assert!(worst > 0.0, "{encoding:?} should lose some precision");
        }
    }

    #[test]
    fn refuses_truncated_messages() {
        let bytes = encode(&meta(VectorEncoding::F16), &[0.5; 8]);
        assert!(matches!(decode(&bytes[..3]), Err(WireError::Short(3))));
        assert!(matches!(decode(&bytes[..20]), Err(WireError::Short(20))));
        assert!(matches!(
            decode(&bytes[..bytes.len() - 1]),
            Err(WireError::Vector { .. })
        ));
    }

    #[test]
    fn one_exemplar_one_message_id() {
        let a = meta(VectorEncoding::F16);
        let mut b = a.clone();
        assert_eq!(message_id(&a), message_id(&b));
        b.time += 1e-3;
        assert_ne!(message_id(&a), message_id(&b));
        assert_eq!(message_id(&a), "gate-a.3298534883340.thermal.1790000000123456");
    }
}
