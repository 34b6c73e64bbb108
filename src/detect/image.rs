//! A borrowed view of one frame's pixels, shown to OpenCV without copying and cut into crops for
//! the embedder.

use super::{BBox, DetectError};
use crate::config::site::PixelFormat;
use crate::ingest::Modality;
use crate::model::preprocess::Crop;
use opencv::core::Mat;

/// Pixels of one frame: packed RGB, 8-bit grey or 16-bit grey (little-endian), rows `stride`
/// bytes apart.
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    pub pixels: &'a [u8],
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    pub format: PixelFormat,
}

impl<'a> Image<'a> {
    /// A checked view; fails when the buffer cannot hold `height` rows of `stride` bytes.
    pub fn new(
        pixels: &'a [u8],
        width: u32,
        height: u32,
        stride: usize,
        format: PixelFormat,
    ) -> Result<Self, DetectError> {
        let row = width as usize * format.bytes_per_pixel();
        if width == 0 || height == 0 || stride < row || pixels.len() < stride * (height as usize - 1) + row {
            return Err(DetectError::Input(format!(
                "{} bytes cannot hold a {width}x{height} {format:?} frame with stride {stride}",
                pixels.len()
            )));
        }
        Ok(Self {
            pixels,
            width,
            height,
            stride,
            format,
        })
    }

    /// Runs `f` on an OpenCV header over these pixels (CV_8UC3, CV_8UC1 or CV_16UC1).
    pub fn with_mat<R>(&self, f: impl FnOnce(&Mat) -> Result<R, DetectError>) -> Result<R, DetectError> {
        let typ = match self.format {
            PixelFormat::Rgb => opencv::core::CV_8UC3,
            PixelFormat::Gray8 => opencv::core::CV_8UC1,
            PixelFormat::Gray16 => opencv::core::CV_16UC1,
        };
        // SAFETY: `new` checked that `pixels` holds `height` rows of `stride` bytes; the header
        // lives only during `f`, which cannot keep it, and OpenCV only reads through it.
        let mat = unsafe {
            Mat::new_rows_cols_with_data_unsafe(
                self.height as i32,
                self.width as i32,
                typ,
                self.pixels.as_ptr() as *mut _,
                self.stride,
            )
        }?;
        f(&mat)
    }

    /// The pixels under `bbox` as an embedder crop, borrowed from the frame (8-bit formats only;
    /// 16-bit frames are scaled to 8 bits first, see [`super::thermal::to_u8`]).
    pub fn crop(&self, bbox: &BBox, modality: Modality) -> Option<Crop<'a>> {
        let channels = match self.format {
            PixelFormat::Rgb => 3,
            PixelFormat::Gray8 => 1,
            PixelFormat::Gray16 => return None,
        };
        let (x, y, w, h) = bbox.pixels(self.width, self.height)?;
        let start = y * self.stride + x * channels;
        Some(Crop {
            pixels: &self.pixels[start..],
            width: w,
            height: h,
            stride: self.stride,
            channels,
            modality,
        })
    }
}

impl PixelFormat {
    /// Bytes of one pixel.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgb => 3,
            PixelFormat::Gray8 => 1,
            PixelFormat::Gray16 => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_borrows_the_right_pixels() {
        // 4x3 grey frame with stride 6; pixel value = 10 * row + column.
        let mut px = vec![0u8; 6 * 3];
        for r in 0..3 {
            for c in 0..4 {
                px[r * 6 + c] = (10 * r + c) as u8;
            }
        }
        let img = Image::new(&px, 4, 3, 6, PixelFormat::Gray8).unwrap();
        let crop = img.crop(&BBox::new(1.0, 1.0, 2.0, 2.0), Modality::Thermal).unwrap();
        assert_eq!((crop.width, crop.height, crop.stride, crop.channels), (2, 2, 6, 1));
        assert_eq!(&crop.pixels[..2], &[11, 12]);
        assert_eq!(&crop.pixels[6..8], &[21, 22]);
        assert!(Image::new(&px[..10], 4, 3, 6, PixelFormat::Gray8).is_err());
    }
}
