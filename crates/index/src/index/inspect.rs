//! `reid-pipe index stats|query|export`: looking into a snapshot.

use super::IdentityIndex;
use reid_core::base::Modality;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Counts and time span of an index.
pub fn stats(path: &Path, index: &IdentityIndex) -> String {
    let mut out = String::new();
    let ex = index.exemplars();
    let count = |m: Modality| ex.iter().filter(|e| e.alive && e.modality == m).count();
    let mut cameras: BTreeMap<&str, usize> = BTreeMap::new();
    for e in ex.iter().filter(|e| e.alive) {
        *cameras.entry(e.camera.as_str()).or_default() += 1;
    }
    let ids = index.identities();
    let cross = ids
        .values()
        .filter(|i| !i.visible.is_empty() && !i.thermal.is_empty())
        .count();
    let first = ids.values().map(|i| i.first_seen).fold(f64::INFINITY, f64::min);
    let last = ids.values().map(|i| i.last_seen).fold(f64::NEG_INFINITY, f64::max);
    let _ = writeln!(out, "snapshot      {}", path.display());
    let _ = writeln!(out, "dimension     {}", index.settings().dim);
    let _ = writeln!(out, "model         {}", index.model().unwrap_or("not recorded"));
    let _ = writeln!(
        out,
        "identities    {} ({cross} seen in both modalities), next id {}",
        ids.len(),
        index.next_id()
    );
    let _ = writeln!(
        out,
        "exemplars     {} visible, {} thermal",
        count(Modality::Visible),
        count(Modality::Thermal)
    );
    let cams: Vec<String> = cameras.iter().map(|(c, n)| format!("{c}: {n}")).collect();
    let _ = writeln!(out, "cameras       {}", cams.join(", "));
    if ids.is_empty() {
        let _ = writeln!(out, "time span     -");
    } else {
        let _ = writeln!(out, "time span     {first:.1} s .. {last:.1} s");
    }
    out
}

/// Errors of `reid-pipe index query` and `index export`.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("no identity {0} in the snapshot")]
    NoIdentity(u64),
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    File(#[from] reid_core::safetensors::SafetensorsError),
}

/// The identities nearest to identity `id` (best distance between any of their exemplars).
pub fn query(index: &IdentityIndex, id: u64, k: usize) -> Result<Vec<(u64, f32, bool)>, InspectError> {
    let ident = index.identities().get(&id).ok_or(InspectError::NoIdentity(id))?;
    let mut best: BTreeMap<u64, (f32, bool)> = BTreeMap::new();
    for &i in ident.visible.iter().chain(&ident.thermal) {
        let e = &index.exemplars()[i];
        for m in [Modality::Visible, Modality::Thermal] {
            for (j, d) in index.nearest(&e.vector, m, k + 16) {
                let other = index.exemplars()[j].identity;
                if other == id {
                    continue;
                }
                let entry = best.entry(other).or_insert((f32::INFINITY, false));
                if d < entry.0 {
                    *entry = (d, m != e.modality);
                }
            }
        }
    }
    let mut v: Vec<(u64, f32, bool)> = best.into_iter().map(|(i, (d, c))| (i, d, c)).collect();
    v.sort_by(|a, b| a.1.total_cmp(&b.1));
    v.truncate(k);
    Ok(v)
}

/// Writes `identities.jsonl` (one identity per line) and `exemplars.safetensors` (tensor
/// `vectors` N×D, metadata `exemplars`: their identity, modality, camera, time) into `dir`.
pub fn export(index: &IdentityIndex, dir: &Path) -> Result<(), InspectError> {
    let path = dir.join("identities.jsonl");
    let write = |source: std::io::Error| InspectError::Write {
        path: path.clone(),
        source,
    };
    let mut lines = String::new();
    for i in index.identities().values() {
        lines.push_str(&serde_json::to_string(i).map_err(|e| write(e.into()))?);
        lines.push('\n');
    }
    reid_core::atomic::write(&path, lines.as_bytes()).map_err(write)?;
    let live: Vec<_> = index.exemplars().iter().filter(|e| e.alive).collect();
    let flat: Vec<f32> = live.iter().flat_map(|e| e.vector.iter().copied()).collect();
    let vectors = tch::Tensor::from_slice(&flat).view([live.len() as i64, index.settings().dim as i64]);
    let meta = BTreeMap::from([(
        "exemplars".to_owned(),
        serde_json::to_string(&live).map_err(|e| write(e.into()))?,
    )]);
    reid_core::safetensors::write(&dir.join("exemplars.safetensors"), &[("vectors", &vectors)], &meta)?;
    Ok(())
}
