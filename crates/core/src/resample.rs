//! Antialiased Lanczos resampling of 8-bit images, pixel for pixel what Pillow's
//! `Image.resize(size, Image.LANCZOS)` produces (`Image.ANTIALIAS` in the LbA reference code,
//! spec §5.2 and §9.12).
//!
//! Pillow's algorithm (`libImaging/Resample.c`), reproduced step by step so that the integer
//! results agree exactly:
//! - per axis, a Lanczos-3 kernel stretched by the scale when shrinking (the antialiasing), its
//!   taps computed in double precision, normalised to sum 1 and rounded to 22-bit fixed point;
//! - a horizontal pass over the rows the vertical pass will read, rounded and clipped to 8 bits,
//!   then a vertical pass over that intermediate image;
//! - an axis whose size does not change is not resampled.

use std::f64::consts::PI;

/// Fixed-point precision of the taps (Pillow's `PRECISION_BITS`).
pub const PRECISION_BITS: u32 = 32 - 8 - 2;
/// Half-width of the Lanczos-3 kernel at scale 1.
pub const SUPPORT: f64 = 3.0;

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * PI;
        x.sin() / x
    }
}

fn lanczos(x: f64) -> f64 {
    if (-SUPPORT..SUPPORT).contains(&x) {
        sinc(x) * sinc(x / SUPPORT)
    } else {
        0.0
    }
}

/// The taps of one axis: for output position `i`, input samples `first[i]..first[i] + count[i]`
/// weighted by `weights[i * width..][..count[i]]`.
#[derive(Debug)]
struct Taps {
    first: Vec<usize>,
    count: Vec<usize>,
    width: usize,
    weights: Vec<i32>,
}

impl Taps {
    fn new(in_size: usize, out_size: usize) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let inv_scale = 1.0 / filter_scale;
        let support = SUPPORT * filter_scale;
        let width = support.ceil() as usize * 2 + 1;
        let mut first = Vec::with_capacity(out_size);
        let mut count = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * width];
        let mut k = vec![0f64; width];
        for i in 0..out_size {
            let center = (i as f64 + 0.5) * scale;
            // C's `(int)` truncates toward zero, as `as` does.
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = hi.saturating_sub(lo);
            let mut sum = 0.0;
            for (x, w) in k.iter_mut().enumerate().take(n) {
                *w = lanczos(((x + lo) as f64 - center + 0.5) * inv_scale);
                sum += *w;
            }
            let one = f64::from(1u32 << PRECISION_BITS);
            for (x, w) in k.iter().enumerate().take(n) {
                let w = if sum != 0.0 { w / sum } else { *w };
                weights[i * width + x] = if w < 0.0 {
                    (-0.5 + w * one) as i32
                } else {
                    (0.5 + w * one) as i32
                };
            }
            first.push(lo);
            count.push(n);
        }
        Self {
            first,
            count,
            width,
            weights,
        }
    }

    fn of(&self, i: usize) -> (usize, &[i32]) {
        (self.first[i], &self.weights[i * self.width..][..self.count[i]])
    }
}

fn clip8(acc: i32) -> u8 {
    if acc >= (1 << PRECISION_BITS << 8) {
        255
    } else if acc <= 0 {
        0
    } else {
        (acc >> PRECISION_BITS) as u8
    }
}

/// An 8-bit image view: `channels` interleaved samples per pixel, rows `stride` bytes apart.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub pixels: &'a [u8],
    pub width: usize,
    pub height: usize,
    pub stride: usize,
    pub channels: usize,
}

impl<'a> View<'a> {
    /// A view of tightly packed rows.
    pub fn packed(pixels: &'a [u8], width: usize, height: usize, channels: usize) -> Self {
        Self {
            pixels,
            width,
            height,
            stride: width * channels,
            channels,
        }
    }

    fn row(&self, y: usize) -> &[u8] {
        &self.pixels[y * self.stride..][..self.width * self.channels]
    }
}

/// One pass along rows: `rows` of `src`, each resampled to `taps.first.len()` samples, into
/// `out` (tightly packed, `src.channels` per pixel).
fn horizontal(src: &View<'_>, rows: std::ops::Range<usize>, taps: &Taps, out: &mut [u8]) {
    match src.channels {
        1 => horizontal_n::<1>(src, rows, taps, out),
        _ => horizontal_n::<3>(src, rows, taps, out),
    }
}

fn horizontal_n<const C: usize>(src: &View<'_>, rows: std::ops::Range<usize>, taps: &Taps, out: &mut [u8]) {
    let out_w = taps.first.len();
    for (line, y) in out.chunks_exact_mut(out_w * C).zip(rows) {
        let row = src.row(y);
        for (x, px) in line.chunks_exact_mut(C).enumerate() {
            let (lo, w) = taps.of(x);
            let mut acc = [1i32 << (PRECISION_BITS - 1); C];
            for (input, &wj) in row[lo * C..].chunks_exact(C).zip(w) {
                for ch in 0..C {
                    acc[ch] += i32::from(input[ch]) * wj;
                }
            }
            for ch in 0..C {
                px[ch] = clip8(acc[ch]);
            }
        }
    }
}

/// One pass along columns: output row `y` from rows `taps.of(y)` of `src`, shifted up by
/// `first_row` (the first row `src` holds), into `out` (tightly packed). Whole rows are
/// accumulated at a time, which the compiler vectorises.
fn vertical(src: &View<'_>, first_row: usize, taps: &Taps, out: &mut [u8]) {
    let n = src.width * src.channels;
    let mut acc = vec![0i32; n];
    for (y, line) in out.chunks_exact_mut(n).enumerate() {
        let (lo, w) = taps.of(y);
        acc.fill(1 << (PRECISION_BITS - 1));
        for (j, &wj) in w.iter().enumerate() {
            let row = src.row(lo - first_row + j);
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += i32::from(v) * wj;
            }
        }
        for (v, &a) in line.iter_mut().zip(&acc) {
            *v = clip8(a);
        }
    }
}

/// Whether Pillow 13 resamples an `in_w`×`in_h` image to `out_w`×`out_h` rows first (the
/// horizontal pass, then the vertical one): unless the height shrinks by more than twice as many
/// pixels as the width (`Resample.c`) or the image is over 100 times taller than wide and its
/// height shrinks (`Image.resize`). Pillow before 13 always went rows first (but for the second
/// rule, from 12.2); on natural images the orders differ by at most one grey level in a few
/// pixels.
pub fn rows_first(in_w: usize, in_h: usize, out_w: usize, out_h: usize) -> bool {
    let (in_w, in_h, out_w, out_h) = (in_w as i64, in_h as i64, out_w as i64, out_h as i64);
    let shrink_v = in_h - out_h;
    let tall = in_h > in_w * 100 && shrink_v > 0;
    !(tall || (shrink_v > 0 && shrink_v > (in_w - out_w) * 2))
}

/// Resizes `src` (1 or 3 channels) to `out_w`×`out_h` into `dst`, a tightly packed
/// `out_h`×`out_w`×3 buffer; a grey image is replicated to three channels. The caller checks
/// that `src` holds its rows and that `dst` is `out_h * out_w * 3` bytes.
///
/// Pass order as in Pillow 13 ([`rows_first`]).
pub fn lanczos_rgb(src: View<'_>, out_w: usize, out_h: usize, dst: &mut [u8]) {
    let c = src.channels;
    assert!(c == 1 || c == 3, "lanczos_rgb takes 1 or 3 channels, not {c}");
    assert_eq!(
        dst.len(),
        out_w * out_h * 3,
        "lanczos_rgb: the destination is not out_h × out_w × 3"
    );
    let need_h = out_w != src.width;
    let need_v = out_h != src.height;
    let rows_first = rows_first(src.width, src.height, out_w, out_h);
    // The last pass writes straight into `dst` for RGB; grey goes through one buffer and is
    // spread to three channels.
    let mut grey = vec![0u8; if c == 1 { out_w * out_h } else { 0 }];
    let out: &mut [u8] = if c == 3 { &mut *dst } else { &mut grey };
    match (need_h, need_v, rows_first) {
        (false, false, _) => {
            for (line, y) in out.chunks_exact_mut(out_w * c).zip(0..src.height) {
                line.copy_from_slice(src.row(y));
            }
        }
        (true, false, _) => horizontal(&src, 0..src.height, &Taps::new(src.width, out_w), out),
        (false, true, _) => vertical(&src, 0, &Taps::new(src.height, out_h), out),
        (true, true, true) => {
            // The horizontal pass covers only the rows the vertical pass reads.
            let vert = Taps::new(src.height, out_h);
            let (lo, hi) = (vert.first[0], vert.first[out_h - 1] + vert.count[out_h - 1]);
            let mut mid = vec![0u8; (hi - lo) * out_w * c];
            horizontal(&src, lo..hi, &Taps::new(src.width, out_w), &mut mid);
            vertical(&View::packed(&mid, out_w, hi - lo, c), lo, &vert, out);
        }
        (true, true, false) => {
            let mut mid = vec![0u8; src.width * out_h * c];
            vertical(&src, 0, &Taps::new(src.height, out_h), &mut mid);
            let mid = View::packed(&mid, src.width, out_h, c);
            horizontal(&mid, 0..out_h, &Taps::new(src.width, out_w), out);
        }
    }
    if c == 1 {
        for (px, &v) in dst.chunks_exact_mut(3).zip(&grey) {
            px.fill(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resize(pixels: &[u8], w: usize, h: usize, c: usize, ow: usize, oh: usize) -> Vec<u8> {
        let mut out = vec![0u8; ow * oh * 3];
        let src = View {
            pixels,
            width: w,
            height: h,
            stride: w * c,
            channels: c,
        };
        lanczos_rgb(src, ow, oh, &mut out);
        out
    }

    #[test]
    fn taps_sum_to_one_in_fixed_point() {
        for (i, o) in [(100, 288), (400, 288), (288, 288), (7, 3), (3, 144)] {
            let t = Taps::new(i, o);
            for p in 0..o {
                let (lo, w) = t.of(p);
                assert!(lo + w.len() <= i);
                let sum: i64 = w.iter().map(|&v| i64::from(v)).sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= w.len() as i64,
                    "{i}->{o} at {p}: {sum}"
                );
            }
        }
    }

    #[test]
    fn constant_images_stay_constant_and_grey_is_replicated() {
        for (w, h, ow, oh) in [(50, 120, 144, 288), (400, 700, 144, 288), (144, 100, 144, 288)] {
            let grey = vec![173u8; w * h];
            assert!(resize(&grey, w, h, 1, ow, oh).iter().all(|&v| v == 173));
            let rgb: Vec<u8> = (0..w * h).flat_map(|_| [10u8, 200, 90]).collect();
            let out = resize(&rgb, w, h, 3, ow, oh);
            assert!(out.chunks(3).all(|p| p == [10, 200, 90]));
        }
    }

    #[test]
    fn same_size_is_a_copy() {
        let img: Vec<u8> = (0..6 * 4 * 3).map(|i| (i * 7 % 256) as u8).collect();
        assert_eq!(resize(&img, 6, 4, 3, 6, 4), img);
    }
}
