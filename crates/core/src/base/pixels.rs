//! Pixel formats and borrowed views of pixels: a whole frame ([`Image`]) and one person's crop
//! of it ([`Crop`]), neither copying.

use super::Modality;
use opencv::core::Mat;

/// Pixel format of frames coming out of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// 8-bit RGB (visible cameras).
    Rgb,
    /// 8-bit grey (thermal).
    Gray8,
    /// 16-bit grey, e.g. radiometric thermal data (little endian).
    Gray16,
}

impl PixelFormat {
    /// The GStreamer caps format name.
    pub fn gst_name(self) -> &'static str {
        match self {
            PixelFormat::Rgb => "RGB",
            PixelFormat::Gray8 => "GRAY8",
            PixelFormat::Gray16 => "GRAY16_LE",
        }
    }

    /// Bytes of one pixel.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgb => 3,
            PixelFormat::Gray8 => 1,
            PixelFormat::Gray16 => 2,
        }
    }
}

/// A buffer that cannot hold the frame it is said to hold.
#[derive(Debug, thiserror::Error)]
#[error("{bytes} bytes cannot hold a {width}x{height} {format:?} frame with stride {stride}")]
pub struct ImageError {
    pub bytes: usize,
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    pub format: PixelFormat,
}

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
    ) -> Result<Self, ImageError> {
        let row = width as usize * format.bytes_per_pixel();
        if width == 0 || height == 0 || stride < row || pixels.len() < stride * (height as usize - 1) + row {
            return Err(ImageError {
                bytes: pixels.len(),
                width,
                height,
                stride,
                format,
            });
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
    pub fn with_mat<R>(&self, f: impl FnOnce(&Mat) -> opencv::Result<R>) -> opencv::Result<R> {
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

    /// The pixels of the rectangle `(x, y, width, height)` as an embedder crop, borrowed from
    /// the frame; `None` for 16-bit frames (scaled to 8 bits first) and rectangles outside it.
    pub fn crop(&self, (x, y, width, height): (usize, usize, usize, usize), modality: Modality) -> Option<Crop<'a>> {
        let channels = match self.format {
            PixelFormat::Rgb => 3,
            PixelFormat::Gray8 => 1,
            PixelFormat::Gray16 => return None,
        };
        if width == 0 || height == 0 || x + width > self.width as usize || y + height > self.height as usize {
            return None;
        }
        Some(Crop {
            pixels: &self.pixels[y * self.stride + x * channels..],
            width,
            height,
            stride: self.stride,
            channels,
            modality,
        })
    }
}

/// One crop: 8-bit pixels, rows `stride` bytes apart, 1 (grey) or 3 (RGB) channels.
#[derive(Debug, Clone, Copy)]
pub struct Crop<'a> {
    pub pixels: &'a [u8],
    pub width: usize,
    pub height: usize,
    pub stride: usize,
    pub channels: usize,
    pub modality: Modality,
}

/// What is wrong with a crop.
#[derive(Debug, thiserror::Error)]
pub enum CropProblem {
    #[error("empty crop {width}x{height}")]
    Empty { width: usize, height: usize },
    #[error("{0} channels; expected 1 (grey) or 3 (RGB)")]
    Channels(usize),
    #[error("{bytes} bytes cannot hold {width}x{height}x{channels} with stride {stride}")]
    Short {
        bytes: usize,
        width: usize,
        height: usize,
        channels: usize,
        stride: usize,
    },
}

impl Crop<'_> {
    /// Checks that the crop is non-empty, grey or RGB, and that its bytes hold its rows.
    pub fn check(&self) -> Result<(), CropProblem> {
        if self.width == 0 || self.height == 0 {
            Err(CropProblem::Empty {
                width: self.width,
                height: self.height,
            })
        } else if self.channels != 1 && self.channels != 3 {
            Err(CropProblem::Channels(self.channels))
        } else if self.stride < self.width * self.channels
            || self.pixels.len() < self.stride * (self.height - 1) + self.width * self.channels
        {
            Err(CropProblem::Short {
                bytes: self.pixels.len(),
                width: self.width,
                height: self.height,
                channels: self.channels,
                stride: self.stride,
            })
        } else {
            Ok(())
        }
    }

    /// Row `y`'s pixels (the crop must have passed [`Crop::check`]).
    pub fn row(&self, y: usize) -> &[u8] {
        &self.pixels[y * self.stride..][..self.width * self.channels]
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
        let crop = img.crop((1, 1, 2, 2), Modality::Thermal).unwrap();
        assert_eq!((crop.width, crop.height, crop.stride, crop.channels), (2, 2, 6, 1));
        assert_eq!(crop.row(0), &[11, 12]);
        assert_eq!(crop.row(1), &[21, 22]);
        assert!(crop.check().is_ok());
        assert!(img.crop((3, 0, 2, 1), Modality::Thermal).is_none());
        assert!(Image::new(&px[..10], 4, 3, 6, PixelFormat::Gray8).is_err());
    }
}
