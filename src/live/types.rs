//! What flows between the stages of the live pipeline.

use crate::base::{Image, ImageError, Modality, PixelFormat};
use crate::detect::BBox;
use crate::ingest::Frame;
use std::sync::Arc;
use std::time::Instant;

/// A track of one stream: (camera pair index, modality, tracker id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrackKey {
    pub camera: usize,
    pub modality: Modality,
    pub track: u64,
}

/// Pixels a crop is cut from: the decoded frame itself (no copy), or an 8-bit rendering of a
/// 16-bit thermal frame.
#[derive(Clone)]
pub enum Pixels {
    Frame(Frame),
    Grey {
        data: Arc<Vec<u8>>,
        width: u32,
        height: u32,
    },
}

/// Why a frame's pixels cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PixelsError {
    #[error("camera {camera} ({modality}): unreadable buffer")]
    Unmappable { camera: String, modality: Modality },
    #[error("frame")]
    Frame(#[from] ImageError),
    #[error("camera {camera} (thermal): cannot render the 16-bit frame in 8 bits")]
    Render {
        camera: String,
        #[source]
        source: crate::detect::DetectError,
    },
}

/// The readable bytes behind [`Pixels`], kept mapped while crops borrow them.
pub enum Mapped<'a> {
    Buffer(gstreamer::BufferMap<'a, gstreamer::buffer::Readable>, &'a Frame),
    Grey(&'a [u8], u32, u32),
}

impl Pixels {
    pub fn map(&self) -> Result<Mapped<'_>, PixelsError> {
        match self {
            Pixels::Frame(f) => {
                let map = f.buffer.map_readable().map_err(|_| PixelsError::Unmappable {
                    camera: f.camera.clone(),
                    modality: f.modality,
                })?;
                Ok(Mapped::Buffer(map, f))
            }
            Pixels::Grey { data, width, height } => Ok(Mapped::Grey(data, *width, *height)),
        }
    }
}

impl Mapped<'_> {
    pub fn image(&self) -> Result<Image<'_>, PixelsError> {
        Ok(match self {
            Mapped::Buffer(map, f) => Image::new(map.as_slice(), f.width, f.height, f.stride, f.format)?,
            Mapped::Grey(data, w, h) => Image::new(data, *w, *h, *w as usize, PixelFormat::Gray8)?,
        })
    }
}

/// A crop of a confirmed track to embed.
pub struct CropJob {
    pub key: TrackKey,
    pub pixels: Pixels,
    /// Crop rectangle (detection box with margin, clamped).
    pub crop: BBox,
    /// The detection itself.
    pub bbox: BBox,
    pub score: f32,
    pub quality: f32,
    pub pts_s: f64,
    /// When the frame left the pairer.
    pub arrived: Instant,
}

/// Track lifecycle notes, passed through the embedder in order with the crops.
#[derive(Debug, Clone)]
pub enum TrackNote {
    New {
        key: TrackKey,
        bbox: BBox,
        score: f32,
        pts_s: f64,
        arrived: Instant,
    },
    End {
        key: TrackKey,
        pts_s: f64,
        arrived: Instant,
    },
    /// A visible and a thermal track of one camera pair that overlapped long enough: one person.
    /// `further`: the thermal track had a live first partner already; the visible track is a
    /// fragment of the same person (see `tracking`).
    Fuse {
        visible: TrackKey,
        thermal: TrackKey,
        further: bool,
        arrived: Instant,
    },
}

/// Input of the embedding stage.
pub enum ToEmbed {
    Crop(CropJob),
    Note(TrackNote),
}

/// Input of the identity stage.
pub enum ToIdentity {
    Embedded {
        key: TrackKey,
        /// The crop's source and rectangle (for thumbnails).
        pixels: Pixels,
        crop: BBox,
        vector: Vec<f32>,
        quality: f32,
        bbox: BBox,
        score: f32,
        pts_s: f64,
        arrived: Instant,
    },
    Note(TrackNote),
}
