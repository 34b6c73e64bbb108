//! Which half of a camera pair something comes from, and the stream it names.

use std::fmt;

/// Which half of a camera pair a frame comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Visible,
    Thermal,
}

impl Modality {
    /// `"visible"` or `"thermal"`, as in site files, events and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Visible => "visible",
            Modality::Thermal => "thermal",
        }
    }
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stream of a site: a camera pair (by its position in the site file) and a modality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamId {
    pub camera: usize,
    pub modality: Modality,
}

impl StreamId {
    /// The stream of `camera` (position in the site file) in `modality`.
    pub fn new(camera: usize, modality: Modality) -> Self {
        Self { camera, modality }
    }
}
