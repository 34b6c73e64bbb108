//! Index snapshots: the identity table and every live exemplar with its vector, in one file that
//! is written atomically and checked on load.
//!
//! File `snapshot-<sequence>.ridx`:
//! `RPIDXSNP` (8 bytes) · version u32 · JSON length u64 · JSON (identities, exemplar metadata,
//! dimension, model id, next id) · exemplar vectors (f32, little endian) · CRC-32 (IEEE) of all the bytes
//! before it, u32. The newest [`KEEP`] snapshots are kept; loading takes the newest that passes
//! every check and reports the ones that do not, so a torn or corrupted file falls back to the
//! previous snapshot.

use super::identities::{Exemplar, Identity, IdentityIndex, Replica, Settings};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"RPIDXSNP";
const VERSION: u32 = 1;
/// Snapshots kept on disk.
pub const KEEP: usize = 3;

/// Errors naming the snapshot file.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set {} aside as {}", path.display(), to.display())]
    SetAside {
        path: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: corrupt or incomplete snapshot: {problem}", path.display())]
    Corrupt { path: PathBuf, problem: String },
    #[error("{}: snapshot numbers are exhausted ({DIGITS} digits); move the old snapshots away", dir.display())]
    Exhausted { dir: PathBuf },
    #[error("no usable snapshot in {}: {}", dir.display(), reasons.join("; "))]
    NoneUsable { dir: PathBuf, reasons: Vec<String> },
    #[error(
        "{}: identities of another model ({found}; the configured model gives {expected}). Start with `run --fresh-index` to set the other model's snapshots aside (renamed, kept) and begin an empty index",
        path.display()
    )]
    OtherModel {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

/// Name prefix of snapshots set aside after a model change: never loaded, never pruned.
pub const SET_ASIDE: &str = "set-aside-";

#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    dim: usize,
    /// The model whose vectors these are (absent in snapshots of older builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    next_id: u64,
    /// The cluster node's stream position (absent outside a cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replica: Option<Replica>,
    identities: Vec<Identity>,
    exemplars: Vec<Exemplar>,
}

/// `crc` updated with the bytes of the file at `path` (see [`crc32_update`]), read in pieces.
pub fn crc32_file_update(mut crc: u32, path: &std::path::Path) -> Result<u32, std::io::Error> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut chunk)? {
            0 => return Ok(crc),
            n => crc = crc32_update(crc, &chunk[..n]),
        }
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's).
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32_update(0, bytes)
}

/// The CRC-32 of the bytes `crc` was computed over followed by `bytes` (zlib's `crc32(crc, …)`),
/// for data read in pieces.
pub fn crc32_update(crc: u32, bytes: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            *slot = c;
        }
        t
    });
    !bytes
        .iter()
        .fold(!crc, |c, &b| table[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8))
}

/// The live part of an index, frozen for a snapshot: identities with their exemplar lists
/// renumbered, and the live exemplars sharing their vectors with the index (no vector is copied),
/// so a writer thread can encode it while the index goes on changing.
pub struct Frozen(Meta);

/// Freezes the live part of `index` (cheap: the vectors are shared, not copied).
pub fn freeze(index: &IdentityIndex) -> Frozen {
    let mut renumber = BTreeMap::new();
    let mut exemplars = Vec::new();
    for (i, e) in index.exemplars().iter().enumerate() {
        if e.alive {
            renumber.insert(i, exemplars.len());
            exemplars.push(e.clone());
        }
    }
    let identities = index
        .identities()
        .values()
        .map(|id| {
            let map = |l: &VecDeque<usize>| l.iter().filter_map(|i| renumber.get(i).copied()).collect();
            Identity {
                visible: map(&id.visible),
                thermal: map(&id.thermal),
                ..id.clone()
            }
        })
        .collect();
    Frozen(Meta {
        dim: index.settings().dim,
        model: index.model().map(str::to_owned),
        next_id: index.next_id(),
        replica: index.replica().cloned(),
        identities,
        exemplars,
    })
}

/// Serialises a frozen index.
pub fn encode(frozen: &Frozen) -> Vec<u8> {
    let meta = &frozen.0;
    let json = serde_json::to_vec(meta).expect("snapshot metadata is plain data");
    let floats: usize = meta.exemplars.iter().map(|e| e.vector.len()).sum();
    let mut out = Vec::with_capacity(24 + json.len() + floats * 4 + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for e in &meta.exemplars {
        for v in e.vector.iter() {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// What vectors a snapshot holds, as its messages describe them.
fn describe(dim: usize, model: Option<&str>) -> String {
    match model {
        Some(m) => format!("{dim}-d vectors of model {m}"),
        None => format!("{dim}-d vectors"),
    }
}

/// Whether a snapshot's vectors (dimension, model id) are another model's than `dim`, `model`.
/// A snapshot or a caller without a model id is judged by the dimension alone.
fn other_model(found: (usize, Option<&str>), dim: usize, model: Option<&str>) -> bool {
    found.0 != dim || matches!((found.1, model), (Some(a), Some(b)) if a != b)
}

/// Checks and decodes a snapshot into an index with `settings` (whose `dim` must match) of the
/// model `model` (when both it and the snapshot record one, they must match).
pub fn decode(
    path: &Path,
    bytes: &[u8],
    settings: Settings,
    model: Option<&str>,
) -> Result<IdentityIndex, SnapshotError> {
    let corrupt = |problem: String| SnapshotError::Corrupt {
        path: path.to_path_buf(),
        problem,
    };
    if bytes.len() < 24 {
        return Err(corrupt(format!("{} bytes, shorter than the header", bytes.len())));
    }
    if &bytes[..8] != MAGIC {
        return Err(corrupt("not a reid-pipe index snapshot (bad magic)".to_owned()));
    }
    let (body, tail) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(tail.try_into().expect("4 bytes"));
    let actual = crc32(body);
    if stored != actual {
        return Err(corrupt(format!(
            "checksum {actual:08x} does not match the stored {stored:08x} (truncated or altered)"
        )));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(corrupt(format!("format version {version}, this build reads {VERSION}")));
    }
    let json_len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes")) as usize;
    let json_end = 20usize
        .checked_add(json_len)
        .filter(|&e| e <= body.len())
        .ok_or_else(|| corrupt("metadata runs past the end".to_owned()))?;
    let mut meta: Meta = serde_json::from_slice(&body[20..json_end]).map_err(|e| corrupt(format!("metadata: {e}")))?;
    if other_model((meta.dim, meta.model.as_deref()), settings.dim, model) {
        return Err(SnapshotError::OtherModel {
            path: path.to_path_buf(),
            found: describe(meta.dim, meta.model.as_deref()),
            expected: describe(settings.dim, model),
        });
    }
    let floats = &body[json_end..];
    if floats.len() != meta.exemplars.len() * meta.dim * 4 {
        return Err(corrupt(format!(
            "{} vector bytes for {} exemplars of dimension {}",
            floats.len(),
            meta.exemplars.len(),
            meta.dim
        )));
    }
    for (e, chunk) in meta
        .exemplars
        .iter_mut()
        .zip(floats.chunks_exact((meta.dim * 4).max(1)))
    {
        e.vector = chunk
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        e.alive = true;
    }
    if let Some(i) = meta
        .exemplars
        .iter()
        .position(|e| !e.vector.iter().all(|v| v.is_finite()))
    {
        return Err(corrupt(format!(
            "exemplar {i} (identity {}) has a non-finite value",
            meta.exemplars[i].identity
        )));
    }
    let n = meta.exemplars.len();
    if meta
        .identities
        .iter()
        .flat_map(|i| i.visible.iter().chain(&i.thermal))
        .any(|&i| i >= n)
    {
        return Err(corrupt("an identity refers to a missing exemplar".to_owned()));
    }
    let identities = meta.identities.into_iter().map(|i| (i.id, i)).collect();
    let mut index = IdentityIndex::from_parts(settings, meta.exemplars, identities, meta.next_id);
    if let Some(r) = meta.replica {
        index.set_replica(r);
    }
    // A snapshot of an older build, loaded by a caller that knows its model, takes that model.
    Ok(match meta.model.or_else(|| model.map(str::to_owned)) {
        Some(m) => index.with_model(m),
        None => index,
    })
}

fn snapshots(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SnapshotError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(SnapshotError::Read {
                path: dir.to_path_buf(),
                source: e,
            });
        }
    };
    let mut out: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            Some((sequence(&name)?, e.path()))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Digits of a snapshot's sequence number: its file names sort as its numbers do.
const DIGITS: usize = 10;

/// The sequence number of a snapshot file name: `snapshot-` and exactly [`DIGITS`] digits, then
/// `.ridx`. Any other name (a stray `snapshot-18446744073709551615.ridx`, say) is not a snapshot:
/// never loaded, never pruned, never the base of the next number.
fn sequence(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("snapshot-")?.strip_suffix(".ridx")?;
    (digits.len() == DIGITS && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Checks, without creating it, that snapshots can be written to `dir`: an existing folder takes
/// (and loses at once) a probe file; a missing one needs its nearest existing ancestor to be a
/// folder that takes one.
pub fn check_writable(dir: &Path) -> Result<(), SnapshotError> {
    let fail = |source: std::io::Error| SnapshotError::Write {
        path: dir.to_path_buf(),
        source,
    };
    let mut folder = dir;
    while !folder.as_os_str().is_empty() && !folder.exists() {
        folder = folder.parent().unwrap_or(Path::new(""));
    }
    if folder.as_os_str().is_empty() {
        folder = Path::new(".");
    }
    if !folder.is_dir() {
        return Err(fail(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            format!("{} is not a folder", folder.display()),
        )));
    }
    let probe = folder.join(format!(".reid-pipe-probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)
}

/// Writes a new snapshot of a frozen index atomically and prunes old ones; returns its path.
pub fn save(frozen: &Frozen, dir: &Path) -> Result<PathBuf, SnapshotError> {
    let existing = snapshots(dir)?;
    let seq = existing.last().map_or(1, |(s, _)| s + 1);
    let name = format!("snapshot-{seq:0DIGITS$}.ridx");
    if sequence(&name).is_none() {
        return Err(SnapshotError::Exhausted { dir: dir.to_path_buf() });
    }
    let path = dir.join(name);
    reid_core::atomic::write(&path, &encode(frozen)).map_err(|source| SnapshotError::Write {
        path: path.clone(),
        source,
    })?;
    remember_intact(&path);
    prune(dir)?;
    Ok(path)
}

/// Removes every snapshot older than the [`KEEP`]-th newest intact one: a corrupt file never
/// counts as kept, so pruning never leaves fewer than `KEEP` loadable snapshots behind.
fn prune(dir: &Path) -> Result<(), SnapshotError> {
    let mut intact_seen = 0;
    for (_, path) in snapshots(dir)?.iter().rev() {
        if intact_seen >= KEEP {
            let _ = std::fs::remove_file(path);
            intact_files().remove(path);
        } else if intact(path) {
            intact_seen += 1;
        }
    }
    Ok(())
}

/// Snapshot files found whole, by path, with the length and modification time they had then:
/// they are not read again while those stay the same.
type IntactFiles = std::collections::HashMap<PathBuf, (u64, std::time::SystemTime)>;

fn intact_files() -> std::sync::MutexGuard<'static, IntactFiles> {
    static FILES: std::sync::OnceLock<std::sync::Mutex<IntactFiles>> = std::sync::OnceLock::new();
    FILES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The length and modification time of a file.
fn stamp(path: &Path) -> Option<(u64, std::time::SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// Records a snapshot just written (atomically, so whole) as intact.
fn remember_intact(path: &Path) {
    if let Some(s) = stamp(path) {
        intact_files().insert(path.to_path_buf(), s);
    }
}

/// Whether a snapshot file is whole: its magic and checksum hold.
fn intact(path: &Path) -> bool {
    let Some(s) = stamp(path) else {
        return false;
    };
    if intact_files().get(path) == Some(&s) {
        return true;
    }
    let whole = std::fs::read(path).is_ok_and(|bytes| {
        bytes.len() >= 24 && &bytes[..8] == MAGIC && {
            let (body, tail) = bytes.split_at(bytes.len() - 4);
            crc32(body).to_le_bytes() == tail
        }
    });
    if whole {
        intact_files().insert(path.to_path_buf(), s);
    }
    whole
}

/// Loads the newest usable snapshot of `dir`: `Ok(None)` when there is none at all; corrupt
/// newer files are reported through `tracing` and skipped. When the newest readable snapshot
/// holds another model's vectors, that is the error ([`SnapshotError::OtherModel`]): history is
/// not dropped silently.
pub fn load(
    dir: &Path,
    settings: Settings,
    model: Option<&str>,
) -> Result<Option<(PathBuf, IdentityIndex)>, SnapshotError> {
    newest_usable(dir, |_| (settings, model))
}

/// The newest snapshot of `dir` that decodes with the settings `settings_for` gives its bytes;
/// the ones skipped are logged, and another model's snapshot stops the search.
fn newest_usable<'m>(
    dir: &Path,
    settings_for: impl Fn(&[u8]) -> (Settings, Option<&'m str>),
) -> Result<Option<(PathBuf, IdentityIndex)>, SnapshotError> {
    let all = snapshots(dir)?;
    if all.is_empty() {
        return Ok(None);
    }
    let mut reasons = Vec::new();
    for (_, path) in all.iter().rev() {
        let result = std::fs::read(path)
            .map_err(|e| SnapshotError::Read {
                path: path.clone(),
                source: e,
            })
            .and_then(|bytes| {
                let (settings, model) = settings_for(&bytes);
                decode(path, &bytes, settings, model)
            });
        match result {
            Ok(index) => {
                for r in &reasons {
                    tracing::warn!("skipped snapshot: {r}");
                }
                return Ok(Some((path.clone(), index)));
            }
            Err(e @ SnapshotError::OtherModel { .. }) => return Err(e),
            Err(e) => reasons.push(reid_core::base::Chain(&e).to_string()),
        }
    }
    Err(SnapshotError::NoneUsable {
        dir: dir.to_path_buf(),
        reasons,
    })
}

/// Renames every snapshot of `dir` whose vectors are another model's (not `dim`-dimensional, or
/// recorded as another `model`) to `set-aside-<name>` (kept, never loaded or pruned); returns the
/// new paths.
pub fn set_aside_other_models(dir: &Path, dim: usize, model: Option<&str>) -> Result<Vec<PathBuf>, SnapshotError> {
    let mut moved = Vec::new();
    for (_, path) in snapshots(dir)? {
        let bytes = std::fs::read(&path).map_err(|e| SnapshotError::Read {
            path: path.clone(),
            source: e,
        })?;
        if declared(&bytes).is_some_and(|(d, m)| other_model((d, m.as_deref()), dim, model)) {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let to = dir.join(format!("{SET_ASIDE}{name}"));
            std::fs::rename(&path, &to).map_err(|source| SnapshotError::SetAside {
                path: path.clone(),
                to: to.clone(),
                source,
            })?;
            moved.push(to);
        }
    }
    Ok(moved)
}

/// Snapshots of `dir` set aside after a model change.
pub fn set_aside(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(SET_ASIDE))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The vector dimension and model id a snapshot file declares (read before its full check).
fn declared(bytes: &[u8]) -> Option<(usize, Option<String>)> {
    let json_len = u64::from_le_bytes(bytes.get(12..20)?.try_into().ok()?) as usize;
    let json = bytes.get(20..20usize.checked_add(json_len)?)?;
    #[derive(serde::Deserialize)]
    struct Declared {
        dim: usize,
        #[serde(default)]
        model: Option<String>,
    }
    serde_json::from_slice::<Declared>(json).ok().map(|d| (d.dim, d.model))
}

/// Loads the newest usable snapshot of `dir` for inspection, whatever its dimension, with exact
/// search (nothing to configure): the same choice `run` makes, so a torn newest file falls back
/// to the older one (reported), and only a directory without any usable snapshot is an error.
pub fn load_for_inspection(dir: &Path) -> Result<Option<(PathBuf, IdentityIndex)>, SnapshotError> {
    newest_usable(dir, |bytes| {
        (inspection_settings(declared(bytes).map_or(0, |(dim, _)| dim)), None)
    })
}

/// Index settings for inspecting a snapshot of dimension `dim`.
fn inspection_settings(dim: usize) -> Settings {
    Settings {
        dim,
        backend: reid_core::config::site::IndexBackend::Exact,
        hnsw: super::backend::HnswParams::default(),
        same_modality_threshold: 0.3,
        cross_modality_threshold: 0.5,
        max_exemplars: usize::MAX,
        expiry_s: f64::INFINITY,
        neighbours: 16,
        rebuild_dead_fraction: 1.0,
        also_fraction: 0.0,
        device: tch::Device::Cpu,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc32_matches_zlib() {
        // python3 -c "import zlib; print(hex(zlib.crc32(b'123456789')))" → 0xcbf43926
        assert_eq!(super::crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(super::crc32_update(super::crc32(b"1234"), b"56789"), 0xcbf4_3926);
        assert_eq!(super::crc32(b""), 0);
    }

    #[test]
    fn only_ten_digit_names_are_snapshots() {
        assert_eq!(super::sequence("snapshot-0000000042.ridx"), Some(42));
        assert_eq!(super::sequence("snapshot-18446744073709551615.ridx"), None);
        assert_eq!(super::sequence("snapshot-42.ridx"), None);
        assert_eq!(super::sequence("snapshot-00000000x1.ridx"), None);
        assert_eq!(super::sequence("set-aside-snapshot-0000000001.ridx"), None);
    }
}
