//! The benchmarks' evaluation protocols: which images are queries, which form the gallery of
//! each trial, which gallery entries a query may not match, and how CMC is counted.

use super::metrics::CmcMode;
use crate::data::{DataError, Item, market, regdb, sysu};
use reid_core::base::PyRandom;
use std::path::Path;

/// Gallery entries removed per query before ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exclusion {
    /// Nothing is removed (RegDB).
    None,
    /// SYSU-MM01: a query from camera 3 may not match *any* camera-2 image (same room).
    SysuCam3Cam2,
    /// Market/Duke: entries of the query's identity seen by the query's camera, and junk (pid -1).
    SameIdSameCam,
}

impl Exclusion {
    /// Whether gallery item `g` stays in the ranking of query `q`.
    pub fn keeps(self, q: &Item, g: &Item) -> bool {
        match self {
            Exclusion::None => true,
            Exclusion::SysuCam3Cam2 => !(q.cam == 3 && g.cam == 2),
            Exclusion::SameIdSameCam => g.pid != -1 && !(g.pid == q.pid && g.cam == q.cam),
        }
    }
}

/// One query set against one gallery.
#[derive(Debug, Clone)]
pub struct Trial {
    pub name: String,
    pub query: Vec<Item>,
    pub gallery: Vec<Item>,
}

/// A complete protocol: trials whose metrics are averaged.
#[derive(Debug, Clone)]
pub struct Protocol {
    pub name: String,
    pub cmc: CmcMode,
    pub exclusion: Exclusion,
    pub trials: Vec<Trial>,
}

/// SYSU-MM01 search mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysuMode {
    /// Visible cameras 1, 2, 4, 5.
    All,
    /// Visible cameras 1, 2.
    Indoor,
}

/// SYSU-MM01 gallery size per identity and camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shots {
    /// One image (the published protocol of every VI re-ID paper).
    Single,
    /// Ten images, drawn with `random.sample` (all of them when a folder has fewer).
    Multi,
}

/// Images per identity and camera in the multi-shot gallery.
pub const MULTI_SHOT: usize = 10;

/// SYSU-MM01, as the published code evaluates it: queries are all infrared images of the test ids
/// (cam3 then cam6, files sorted); trial t's gallery is drawn after `random.seed(t)` by
/// `random.choice(sorted(files))` for each test id (ascending) and visible camera of the mode.
pub fn sysu(root: &Path, mode: SysuMode, shots: Shots, trials: &[u64]) -> Result<Protocol, DataError> {
    let mut ids = sysu::read_ids(root, "test")?;
    ids.sort_unstable();
    let mut query = Vec::new();
    for &pid in &ids {
        let before = query.len();
        for cam in sysu::INFRARED_CAMS {
            query.extend(sysu::images(root, cam, pid)?);
        }
        if query.len() == before {
            let mut visible = 0;
            for cam in sysu::VISIBLE_CAMS {
                visible += sysu::images(root, cam, pid)?.len();
            }
            if visible == 0 {
                return Err(DataError::new(
                    &root.join("exp/test_id.txt"),
                    format!("person {pid} is listed but has no images in any camera (no cam*/{pid:04}/)"),
                ));
            }
        }
    }
    let cams: &[i64] = match mode {
        SysuMode::All => &sysu::VISIBLE_CAMS,
        SysuMode::Indoor => &sysu::INDOOR_VISIBLE_CAMS,
    };
    // The reference code walks every (id, camera) folder once per trial; list them once here.
    let mut folders = Vec::new();
    for &pid in &ids {
        for &cam in cams {
            let files = sysu::images(root, cam, pid)?;
            if !files.is_empty() {
                folders.push(files);
            }
        }
    }
    let mut out = Vec::new();
    for &t in trials {
        let mut rng = PyRandom::new(t);
        let mut gallery = Vec::new();
        for files in &folders {
            match shots {
                Shots::Single => gallery.extend(rng.choice(files).cloned()),
                Shots::Multi => {
                    let k = MULTI_SHOT.min(files.len());
                    gallery.extend(rng.sample(files, k).unwrap_or_default());
                }
            }
        }
        out.push(Trial {
            name: format!("trial {t}"),
            query: query.clone(),
            gallery,
        });
    }
    let name = format!(
        "SYSU-MM01 {}-search {}-shot",
        match mode {
            SysuMode::All => "all",
            SysuMode::Indoor => "indoor",
        },
        match shots {
            Shots::Single => "single",
            Shots::Multi => "multi",
        }
    );
    Ok(Protocol {
        name,
        cmc: CmcMode::Deduplicated,
        exclusion: Exclusion::SysuCam3Cam2,
        trials: out,
    })
}

/// RegDB search direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegdbDirection {
    /// Visible queries, thermal gallery.
    VisibleToThermal,
    /// Thermal queries, visible gallery.
    ThermalToVisible,
}

/// RegDB: each trial's test split, `idx/test_visible_{t}.txt` against `idx/test_thermal_{t}.txt`
/// (or the reverse); standard CMC, nothing excluded.
pub fn regdb(root: &Path, direction: RegdbDirection, trials: &[u32]) -> Result<Protocol, DataError> {
    let mut out = Vec::new();
    for &t in trials {
        let visible = regdb::read_index(root, t, regdb::Split::Test, regdb::Spectrum::Visible)?;
        let thermal = regdb::read_index(root, t, regdb::Split::Test, regdb::Spectrum::Thermal)?;
        let (query, gallery) = match direction {
            RegdbDirection::VisibleToThermal => (visible, thermal),
            RegdbDirection::ThermalToVisible => (thermal, visible),
        };
        out.push(Trial {
            name: format!("trial {t}"),
            query,
            gallery,
        });
    }
    let name = match direction {
        RegdbDirection::VisibleToThermal => "RegDB visible→thermal",
        RegdbDirection::ThermalToVisible => "RegDB thermal→visible",
    };
    Ok(Protocol {
        name: name.to_owned(),
        cmc: CmcMode::Standard,
        exclusion: Exclusion::None,
        trials: out,
    })
}

/// Market-1501 / DukeMTMC-reID: `query/` against `bounding_box_test/`, excluding the query's
/// identity in the query's camera and junk images; distractors (pid 0) stay.
pub fn market(root: &Path, name: &str) -> Result<Protocol, DataError> {
    let query: Vec<Item> = market::read_folder(root, "query")?
        .into_iter()
        .filter(|i| i.pid > 0)
        .collect();
    let gallery = market::read_folder(root, "bounding_box_test")?;
    Ok(Protocol {
        name: name.to_owned(),
        cmc: CmcMode::Standard,
        exclusion: Exclusion::SameIdSameCam,
        trials: vec![Trial {
            name: "test".to_owned(),
            query,
            gallery,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pid: i64, cam: i64) -> Item {
        Item {
            path: String::new(),
            pid,
            cam,
        }
    }

    #[test]
    fn exclusion_rules() {
        let q3 = item(1, 3);
        let q6 = item(1, 6);
        assert!(
            !Exclusion::SysuCam3Cam2.keeps(&q3, &item(9, 2)),
            "cam3 queries lose every cam2 image"
        );
        assert!(Exclusion::SysuCam3Cam2.keeps(&q3, &item(1, 1)));
        assert!(
            Exclusion::SysuCam3Cam2.keeps(&q6, &item(9, 2)),
            "cam6 queries keep cam2"
        );
        let q = item(5, 1);
        assert!(!Exclusion::SameIdSameCam.keeps(&q, &item(5, 1)));
        assert!(Exclusion::SameIdSameCam.keeps(&q, &item(5, 2)));
        assert!(Exclusion::SameIdSameCam.keeps(&q, &item(0, 1)), "distractors stay");
        assert!(!Exclusion::SameIdSameCam.keeps(&q, &item(-1, 2)), "junk goes");
    }
}
