//! Crops in, the network's input out, in two halves that can run on two threads: [`Stager`]
//! does what must touch the frames' memory (on the host), [`Staged::input`] the rest on the
//! model's device.
//!
//! Two ways (`model.preprocess`):
//! - **host**: each crop is resized on the CPU with Pillow's antialiased Lanczos
//!   ([`reid_core::resample`]) straight into its slot of a u8 B×H×W×3 batch, which the device
//!   normalises.
//! - **tensor**: the crops' pixels are packed as they are (no resize) into one host buffer —
//!   pinned on CUDA and reused —, uploaded at once without blocking, and cut out, resized and
//!   normalised on the device: one gather for every crop of a batch, then per pass order two
//!   batched matrix products with Pillow's Lanczos taps (built on the device from the crop
//!   sizes), rounded and clipped to 8 bits after each pass as Pillow does. In float32 this lands
//!   within one grey level of the host way (tests/preprocess.rs); the CPU runs the same code.

use reid_core::base::{Crop, CropProblem, Modality};
use reid_core::config::site::Preprocess;
use reid_core::resample;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// Errors of preprocessing, naming the crop involved.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("crop {index}")]
    Crop {
        index: usize,
        #[source]
        problem: CropProblem,
    },
    #[error("libtorch")]
    Torch(#[from] tch::TchError),
}

/// Checks crop `index` of a batch.
fn checked(index: usize, crop: &Crop<'_>) -> Result<(), PreprocessError> {
    crop.check().map_err(|problem| PreprocessError::Crop { index, problem })
}

/// Resizes every crop into one u8 batch tensor, B×H×W×3 (grey crops are replicated to RGB),
/// with Pillow's antialiased Lanczos ([`reid_core::resample`]): the same pixels as the reference
/// code's `Image.resize((W, H), Image.ANTIALIAS)`.
pub fn batch_pixels(crops: &[Crop<'_>], (height, width): (i64, i64)) -> Result<Tensor, PreprocessError> {
    let batch = Tensor::f_zeros([crops.len() as i64, height, width, 3], (Kind::Uint8, Device::Cpu))?;
    let slot_bytes = (height * width * 3) as usize;
    if crops.is_empty() {
        return Ok(batch);
    }
    // SAFETY: `batch` is a contiguous CPU u8 tensor of exactly crops.len() × slot_bytes bytes,
    // owned here and not aliased while the slice lives.
    let all = unsafe { std::slice::from_raw_parts_mut(batch.data_ptr() as *mut u8, crops.len() * slot_bytes) };
    for ((index, c), slot) in crops.iter().enumerate().zip(all.chunks_exact_mut(slot_bytes)) {
        checked(index, c)?;
        let view = resample::View {
            pixels: c.pixels,
            width: c.width,
            height: c.height,
            stride: c.stride,
            channels: c.channels,
        };
        resample::lanczos_rgb(view, width as usize, height as usize, slot);
    }
    Ok(batch)
}

/// Per-channel normalisation of inputs scaled to [0, 1]: `(x - mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalisation {
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

impl Normalisation {
    /// Mean and std as float tensors of `shape` (three elements) on `device`.
    fn tensors(&self, shape: [i64; 4], device: Device) -> Result<(Tensor, Tensor), PreprocessError> {
        let t = |v: &[f64; 3]| {
            Tensor::from_slice(v)
                .f_to_kind(Kind::Float)?
                .f_view(shape)?
                .f_to_device(device)
        };
        Ok((t(&self.mean)?, t(&self.std)?))
    }
}

/// Turns a u8 B×H×W×3 batch into the network's normalised B×3×H×W input on `device`, laid out
/// channels-last, in `kind`.
pub fn normalise(batch: &Tensor, norm: &Normalisation, device: Device, kind: Kind) -> Result<Tensor, PreprocessError> {
    let (mean, std) = norm.tensors([1, 3, 1, 1], device)?;
    // The u8 batch is B×H×W×3, so the permuted view is already channels-last; the arithmetic
    // keeps that layout.
    let x = batch
        .f_to_device(device)?
        .f_permute([0, 3, 1, 2])?
        .f_to_kind(Kind::Float)?;
    Ok(x.f_div_scalar(255.0)?.f_sub(&mean)?.f_div(&std)?.f_to_kind(kind)?)
}

/// The host half of an embedder: owned by the thread that stages batches (it holds no network).
#[derive(Clone)]
pub struct Stager {
    size: (i64, i64),
    way: Preprocess,
    device: Device,
    /// Host buffers of the tensor way (pinned on CUDA), reused once a batch is done with them.
    buffers: Arc<Mutex<Vec<Tensor>>>,
}

/// Buffers kept for reuse: one being filled, one waiting, one being uploaded, and a spare.
const KEEP_BUFFERS: usize = 4;

impl Stager {
    /// A stager for a network of `size` (height, width) on `device`; `Auto` is the tensor way
    /// on CUDA and the host way on the CPU.
    pub fn new(size: (i64, i64), preprocess: Preprocess, device: Device) -> Self {
        let way = match preprocess {
            Preprocess::Auto if device.is_cuda() => Preprocess::Tensor,
            Preprocess::Auto => Preprocess::Host,
            way => way,
        };
        Self {
            size,
            way,
            device,
            buffers: Arc::default(),
        }
    }

    /// The network's input height and width.
    pub fn input_size(&self) -> (i64, i64) {
        self.size
    }

    /// The way in use (never `Auto`).
    pub fn way(&self) -> Preprocess {
        self.way
    }

    /// Stages `crops` for [`Staged::input`]; the crops' memory is not needed afterwards.
    pub fn stage(&self, crops: &[Crop<'_>]) -> Result<Staged, PreprocessError> {
        let started = Instant::now();
        let pixels = match self.way {
            Preprocess::Tensor => self.pack(crops)?,
            _ => Pixels::Resized(batch_pixels(crops, self.size)?),
        };
        Ok(Staged {
            modalities: crops.iter().map(|c| c.modality).collect(),
            pixels,
            size: self.size,
            prepare: started.elapsed(),
            buffers: self.buffers.clone(),
        })
    }

    /// Copies the crops' rows, tightly packed one crop after another, into a reused buffer.
    fn pack(&self, crops: &[Crop<'_>]) -> Result<Pixels, PreprocessError> {
        for (index, c) in crops.iter().enumerate() {
            checked(index, c)?;
        }
        let total: usize = crops.iter().map(|c| c.width * c.height * c.channels).sum();
        let buffer = self.buffer(total.max(1))?;
        // SAFETY: `buffer` is a contiguous CPU u8 tensor of at least `total` bytes that no one
        // else holds (taken from the pool or just made; a device copy of it finished before it
        // went back to the pool, see `Staged::recycle`).
        let dst = unsafe { std::slice::from_raw_parts_mut(buffer.data_ptr() as *mut u8, total) };
        let mut geometry = Vec::with_capacity(crops.len());
        let mut at = 0;
        for c in crops {
            let row = c.width * c.channels;
            for (y, out) in dst[at..at + row * c.height].chunks_exact_mut(row).enumerate() {
                out.copy_from_slice(c.row(y));
            }
            geometry.push(Geometry {
                offset: at as i64,
                width: c.width as i64,
                height: c.height as i64,
                channels: c.channels as i64,
            });
            at += row * c.height;
        }
        Ok(Pixels::Packed {
            bytes: Some(buffer),
            used: total as i64,
            geometry,
        })
    }

    /// A host buffer of at least `bytes` bytes: a kept one, or a new one (pinned on CUDA, so
    /// that its upload can run while the host goes on).
    fn buffer(&self, bytes: usize) -> Result<Tensor, PreprocessError> {
        let mut kept = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = kept.iter().position(|b| b.numel() >= bytes) {
            return Ok(kept.swap_remove(i));
        }
        drop(kept);
        // Grown in powers of two from 1 MiB, so that a site's batches soon fit one size.
        let capacity = bytes.next_power_of_two().max(1 << 20) as i64;
        let buffer = Tensor::f_empty([capacity], (Kind::Uint8, Device::Cpu))?;
        Ok(if self.device.is_cuda() {
            reid_core::libtorch::pin_memory(&buffer)?
        } else {
            buffer
        })
    }
}

/// Where one crop's pixels sit in a packed buffer.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    offset: i64,
    width: i64,
    height: i64,
    channels: i64,
}

enum Pixels {
    /// The host way: resized, u8 B×H×W×3.
    Resized(Tensor),
    /// The tensor way: crops packed as they are.
    Packed {
        bytes: Option<Tensor>,
        used: i64,
        geometry: Vec<Geometry>,
    },
}

/// A batch staged on the host, ready for the device.
pub struct Staged {
    /// Each crop's modality, in order.
    pub modalities: Vec<Modality>,
    pixels: Pixels,
    size: (i64, i64),
    /// Host time spent staging.
    pub prepare: Duration,
    buffers: Arc<Mutex<Vec<Tensor>>>,
}

impl Staged {
    /// Crops in the batch.
    pub fn len(&self) -> usize {
        self.modalities.len()
    }

    /// Whether the batch has no crops.
    pub fn is_empty(&self) -> bool {
        self.modalities.is_empty()
    }

    /// The network input on `device`: B×3×H×W, normalised, channels-last, in `kind`. On CUDA
    /// the upload does not block; the work is queued behind what the device is doing.
    pub fn input(&self, norm: &Normalisation, device: Device, kind: Kind) -> Result<Tensor, PreprocessError> {
        match &self.pixels {
            Pixels::Resized(batch) => normalise(batch, norm, device, kind),
            Pixels::Packed { bytes, used, geometry } => {
                let bytes = bytes.as_ref().expect("a staged buffer is only taken by recycle");
                let on_device = bytes
                    .f_narrow(0, 0, *used)?
                    .f_to_device_(device, Kind::Uint8, true, false)?;
                let x = resize_packed(&on_device, geometry, self.size, device)?;
                // Per channel, with scalars (no upload): (x / 255 − mean) / std.
                for c in 0..3 {
                    let mut channel = x.f_narrow(2, c as i64, 1)?;
                    let _ = channel.f_div_scalar_(255.0 * norm.std[c])?;
                    let _ = channel.f_sub_scalar_(norm.mean[c] / norm.std[c])?;
                }
                // B×H×3×W → B×H×W×3 memory, viewed as B×3×H×W: channels-last.
                Ok(x.f_permute([0, 1, 3, 2])?
                    .f_contiguous()?
                    .f_permute([0, 3, 1, 2])?
                    .f_to_kind(kind)?)
            }
        }
    }

    /// Gives the host buffer back for the next batch. Call only once the device has finished
    /// reading it (after a result of this batch came back to the host); a batch dropped without
    /// this frees its buffer instead.
    pub fn recycle(mut self) {
        if let Pixels::Packed { bytes, .. } = &mut self.pixels
            && let Some(b) = bytes.take()
        {
            let mut kept = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
            if kept.len() < KEEP_BUFFERS {
                kept.push(b);
            }
        }
    }
}

/// Cuts every crop out of the packed bytes (on the device) and resizes it to `size` (height,
/// width): B×H×3×W float32 holding 8-bit values, crops in order.
fn resize_packed(
    bytes: &Tensor,
    geometry: &[Geometry],
    (out_h, out_w): (i64, i64),
    device: Device,
) -> Result<Tensor, PreprocessError> {
    // Crops grouped by pass order (Pillow's rule), rows first before columns first.
    let rows_first =
        |g: &Geometry| resample::rows_first(g.width as usize, g.height as usize, out_w as usize, out_h as usize);
    let mut order: Vec<usize> = (0..geometry.len()).collect();
    order.sort_by_key(|&i| !rows_first(&geometry[i]));
    // Every per-crop number in one upload: offset, width, height, channels, batch position.
    let numbers: Vec<i64> = order
        .iter()
        .flat_map(|&i| {
            let g = geometry[i];
            [g.offset, g.width, g.height, g.channels, i as i64]
        })
        .collect();
    let numbers = Tensor::from_slice(&numbers)
        .f_view([geometry.len() as i64, 5])?
        .f_to_device(device)?;
    let mut out = Tensor::f_empty([geometry.len() as i64, out_h, 3, out_w], (Kind::Float, device))?;
    let split = order.iter().take_while(|&&i| rows_first(&geometry[i])).count();
    for (first, group) in [(true, &order[..split]), (false, &order[split..])] {
        if group.is_empty() {
            continue;
        }
        let n = group.len() as i64;
        let start = if first { 0 } else { split as i64 };
        let column = |c: i64| -> Result<Tensor, PreprocessError> {
            Ok(numbers.f_narrow(0, start, n)?.f_select(1, c)?.f_view([n, 1, 1, 1])?)
        };
        let (offset, width, height, channels) = (column(0)?, column(1)?, column(2)?, column(3)?);
        let widths: Vec<i64> = group.iter().map(|&i| geometry[i].width).collect();
        let heights: Vec<i64> = group.iter().map(|&i| geometry[i].height).collect();
        let hm = heights.iter().copied().max().unwrap_or(1);
        let wm = widths.iter().copied().max().unwrap_or(1);
        // Index of every sample of the group's crops, padded to hm × wm by repeating the last
        // row and column (their taps are zero), grey repeated over the three channels.
        let long = (Kind::Int64, device);
        let rows = Tensor::f_arange(hm, long)?
            .f_view([1, hm, 1, 1])?
            .f_minimum(&(&height - 1))?
            .f_mul(&(&width * &channels))?
            .f_add(&offset)?;
        let channel = Tensor::f_arange(3, long)?
            .f_view([1, 1, 3, 1])?
            .f_minimum(&(&channels - 1))?;
        let cols = Tensor::f_arange(wm, long)?
            .f_view([1, 1, 1, wm])?
            .f_minimum(&(&width - 1))?
            .f_mul(&channels)?
            .f_add(&channel)?;
        let x = bytes.f_take(&rows.f_add(&cols)?)?.f_to_kind(Kind::Float)?; // n×hm×3×wm
        let wx = taps(&width, &widths, wm, out_w, device)?.f_transpose(1, 2)?; // n×wm×out_w
        let wy = taps(&height, &heights, hm, out_h, device)?; // n×out_h×hm
        let y = if first {
            let mid = to_8bit(&x.f_view([n, hm * 3, wm])?.f_bmm(&wx)?)?; // n×(hm·3)×out_w
            to_8bit(&wy.f_bmm(&mid.f_view([n, hm, 3 * out_w])?)?)?
        } else {
            let mid = to_8bit(&wy.f_bmm(&x.f_view([n, hm, 3 * wm])?)?)?; // n×out_h×(3·wm)
            to_8bit(&mid.f_view([n, out_h * 3, wm])?.f_bmm(&wx)?)?
        };
        let position = numbers.f_narrow(0, start, n)?.f_select(1, 4)?;
        let _ = out.f_index_copy_(0, &position, &y.f_view([n, out_h, 3, out_w])?)?;
    }
    Ok(out)
}

/// Pillow's rounding and clipping of a pass's sums to 8-bit values.
fn to_8bit(x: &Tensor) -> Result<Tensor, PreprocessError> {
    Ok(x.f_add_scalar(0.5)?.f_floor()?.f_clamp(0.0, 255.0)?)
}

/// Lanczos taps of one axis for each crop, as [`resample`] computes them (double precision,
/// normalised, rounded to Pillow's fixed point): n×`out`×`in_max` float32, where crop i's input
/// size is `sizes[i]` (n×1×1×1, int64, the same numbers as `host_sizes`) and columns from its
/// size on are zero. Each output sample's window (at most Pillow's `ceil(support)·2 + 1` inputs)
/// is computed, then scattered into the dense matrix.
fn taps(sizes: &Tensor, host_sizes: &[i64], in_max: i64, out: i64, device: Device) -> Result<Tensor, PreprocessError> {
    let window = host_sizes
        .iter()
        .map(|&s| ((resample::SUPPORT * (s as f64 / out as f64).max(1.0)).ceil() as i64) * 2 + 1)
        .max()
        .unwrap_or(1);
    let double = (Kind::Double, device);
    let size = sizes.f_view([-1, 1, 1])?.f_to_kind(Kind::Double)?;
    let scale = size.f_div_scalar(out as f64)?;
    let filter_scale = scale.f_clamp_min(1.0)?;
    let support = filter_scale.f_mul_scalar(resample::SUPPORT)?;
    let center = Tensor::f_arange(out, double)?
        .f_view([1, out, 1])?
        .f_add_scalar(0.5)?
        .f_mul(&scale)?;
    // C's `(int)` truncates toward zero.
    let lo = center.f_sub(&support)?.f_add_scalar(0.5)?.f_trunc()?.f_clamp_min(0.0)?;
    let hi = center.f_add(&support)?.f_add_scalar(0.5)?.f_trunc()?.f_minimum(&size)?;
    // Input positions of each output sample's window: n×out×window.
    let x = Tensor::f_arange(window, double)?.f_view([1, 1, window])?.f_add(&lo)?;
    let inside = x.f_lt_tensor(&hi)?;
    let arg = x.f_sub(&center)?.f_add_scalar(0.5)?.f_div(&filter_scale)?;
    let k = lanczos(&arg)?.f_mul(&inside)?;
    let sum = k.f_sum_dim_intlist(-1, true, Kind::Double)?;
    let sum = sum.f_masked_fill(&sum.f_eq(0.0)?, 1.0)?;
    let one = f64::from(1u32 << resample::PRECISION_BITS);
    let fixed = k.f_div(&sum)?.f_mul_scalar(one)?;
    // Rounded half away from zero, as Pillow's `(int)(±0.5 + w * one)`.
    let rounded = fixed.f_sign()?.f_mul_scalar(0.5)?.f_add(&fixed)?.f_trunc()?;
    let weights = rounded.f_div_scalar(one)?.f_to_kind(Kind::Float)?;
    // Positions past the input carry zero weight; clamped, they add nothing.
    let columns = x.f_clamp_max((in_max - 1) as f64)?.f_to_kind(Kind::Int64)?;
    let dense = Tensor::f_zeros([host_sizes.len() as i64, out, in_max], (Kind::Float, device))?;
    Ok(dense.f_scatter_add(2, &columns, &weights)?)
}

/// Pillow's Lanczos-3 kernel: sinc(x)·sinc(x/3) on [-3, 3), zero elsewhere.
fn lanczos(x: &Tensor) -> Result<Tensor, PreprocessError> {
    let support = resample::SUPPORT;
    let window = x.f_ge(-support)?.f_logical_and(&x.f_lt(support)?)?;
    Ok(sinc(x)?.f_mul(&sinc(&x.f_div_scalar(support)?)?)?.f_mul(&window)?)
}

fn sinc(x: &Tensor) -> Result<Tensor, PreprocessError> {
    let px = x.f_mul_scalar(std::f64::consts::PI)?;
    Ok(px.f_sin()?.f_div(&px)?.f_masked_fill(&x.f_eq(0.0)?, 1.0)?)
}
