//! Cosine distance for unit vectors, 1 − ⟨a, b⟩, as hnsw_rs [`Distance`]s: on f32 vectors, and on
//! 8-bit quantised ones ([`quantize`]: a per-vector scale and one signed byte per dimension, a
//! quarter of the memory traffic). AVX2 (+ FMA) when the CPU has them (checked at run time), a
//! portable loop otherwise. hnsw_rs's own `DistCosine` renormalises every pair and is not
//! vectorised; embeddings here are normalised once, so a dot product is all a distance needs.

use hnsw_rs::anndists::dist::Distance;

/// 1 − ⟨a, b⟩ on L2-normalised vectors (in [0, 2]).
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitCosine;

impl Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

/// Bytes at the front of a quantised vector holding its scale (an f32).
pub const SCALE_BYTES: usize = 4;

/// Quantises a vector: `SCALE_BYTES` bytes of scale s = max|x|/127, then round(x/s) per entry.
pub fn quantize(v: &[f32]) -> Vec<i8> {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let mut out = Vec::with_capacity(SCALE_BYTES + v.len());
    out.extend(scale.to_le_bytes().map(|b| b as i8));
    out.extend(v.iter().map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8));
    out
}

fn scale_of(q: &[i8]) -> f32 {
    let mut b = [0u8; 4];
    for (d, s) in b.iter_mut().zip(q) {
        *d = *s as u8;
    }
    f32::from_le_bytes(b)
}

/// 1 − ⟨a, b⟩ on vectors made by [`quantize`] from unit vectors.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuantizedUnitCosine;

impl Distance<i8> for QuantizedUnitCosine {
    fn eval(&self, a: &[i8], b: &[i8]) -> f32 {
        if a.len() < SCALE_BYTES || b.len() < SCALE_BYTES {
            return 1.0;
        }
        let dot = dot_i8(&a[SCALE_BYTES..], &b[SCALE_BYTES..]) as f32;
        (1.0 - dot * scale_of(a) * scale_of(b)).max(0.0)
    }
}

/// Integer dot product of two byte vectors.
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { dot_i8_avx2(a, b) };
        }
    }
    a.iter().zip(b).map(|(x, y)| i32::from(*x) * i32::from(*y)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_si256();
    let mut acc1 = _mm256_setzero_si256();
    let mut i = 0;
    // SAFETY (all loads): i + 32 ≤ n keeps every 16-byte read inside both slices.
    while i + 32 <= n {
        let a0 = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(pa.add(i) as *const __m128i) });
        let b0 = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(pb.add(i) as *const __m128i) });
        let a1 = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(pa.add(i + 16) as *const __m128i) });
        let b1 = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(pb.add(i + 16) as *const __m128i) });
        acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(a0, b0));
        acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(a1, b1));
        i += 32;
    }
    let mut lanes = [0i32; 8];
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, _mm256_add_epi32(acc0, acc1)) };
    let mut s: i32 = lanes.iter().sum();
    while i < n {
        s += i32::from(a[i]) * i32::from(b[i]);
        i += 1;
    }
    s
}

/// ⟨a, b⟩ over the shorter length.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_portable(a, b)
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = [0f32; 8];
    let chunks = n / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..n {
        s += a[i] * b[i];
    }
    s
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY (all loads): i + 32 ≤ n, resp. i + 8 ≤ n, keeps every read inside both slices.
    while i + 32 <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            let x = unsafe { _mm256_loadu_ps(pa.add(i + 8 * j)) };
            let y = unsafe { _mm256_loadu_ps(pb.add(i + 8 * j)) };
            *acc = _mm256_fmadd_ps(x, y, *acc);
        }
        i += 32;
    }
    while i + 8 <= n {
        let x = unsafe { _mm256_loadu_ps(pa.add(i)) };
        let y = unsafe { _mm256_loadu_ps(pb.add(i)) };
        acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0f32; 8];
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    let mut s: f32 = lanes.iter().sum();
    while i < n {
        s += a[i] * b[i];
        i += 1;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_and_portable_agree_with_a_plain_sum() {
        for n in [0usize, 1, 7, 8, 31, 33, 100, 2048] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            assert!((f64::from(dot(&a, &b)) - want).abs() < 1e-3, "n={n}");
            assert!((f64::from(dot_portable(&a, &b)) - want).abs() < 1e-3, "n={n}");
        }
        let q: Vec<i8> = (0..100i32).map(|i| (i * 37 % 255 - 127) as i8).collect();
        let r: Vec<i8> = (0..100i32).map(|i| (i * 91 % 255 - 127) as i8).collect();
        let want: i32 = q.iter().zip(&r).map(|(x, y)| i32::from(*x) * i32::from(*y)).sum();
        assert_eq!(dot_i8(&q, &r), want);
        let u = [0.6f32, 0.8];
        assert!((UnitCosine.eval(&u, &u)).abs() < 1e-6);
        assert!((UnitCosine.eval(&u, &[-0.6, -0.8]) - 2.0).abs() < 1e-6);
    }
}

#[cfg(test)]
mod quantized_tests {
    use super::*;

    #[test]
    fn quantised_distance_is_close_to_the_exact_one() {
        let a: Vec<f32> = (0..2048).map(|i| (i * 37 % 101) as f32 - 50.0).collect();
        let b: Vec<f32> = (0..2048)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) + 0.5 * ((i * 37 % 101) as f32 - 50.0))
            .collect();
        let norm = |v: &[f32]| {
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / n).collect::<Vec<f32>>()
        };
        let (a, b) = (norm(&a), norm(&b));
        let exact = UnitCosine.eval(&a, &b);
        let approx = QuantizedUnitCosine.eval(&quantize(&a), &quantize(&b));
        assert!((exact - approx).abs() < 0.01, "{exact} vs {approx}");
        assert!(QuantizedUnitCosine.eval(&quantize(&a), &quantize(&a)) < 0.01);
    }
}
