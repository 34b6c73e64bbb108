//! The identity index: recall against brute force, assignment scenarios, expiry, background
//! rebuilds, snapshot round trips, corruption and crashes while writing.

use reid_pipe::base::Modality;
use reid_pipe::config::site::IndexBackend;
use reid_pipe::index::backend::{Backend, ExactBackend, HnswBackend, HnswParams};
use reid_pipe::index::snapshot;
use reid_pipe::index::{IdentityIndex, Settings};
use std::path::Path;
use std::time::Duration;
use tch::{Device, Kind, Tensor};

/// `n` unit vectors around `centres` random centres (noise `spread`), row-major.
fn clustered(n: usize, centres: usize, dim: usize, spread: f64, seed: i64) -> Vec<Vec<f32>> {
    tch::manual_seed(seed);
    let c = Tensor::randn([centres as i64, dim as i64], (Kind::Float, Device::Cpu));
    let pick = Tensor::randint(centres as i64, [n as i64], (Kind::Int64, Device::Cpu));
    let x = c.index_select(0, &pick) + Tensor::randn([n as i64, dim as i64], (Kind::Float, Device::Cpu)) * spread;
    let x = reid_pipe::base::normalize_rows(&x).expect("normalise");
    (0..n as i64)
        .map(|i| Vec::<f32>::try_from(x.get(i)).expect("row"))
        .collect()
}

fn unit(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

#[test]
fn hnsw_recall_against_brute_force_on_clustered_embeddings() {
    let dim = 128;
    let data = clustered(4000, 200, dim, 0.3, 1);
    // Queries near data points, as a new sighting of a known person would be.
    let queries = data.iter().take(200).map(|v| {
        unit(
            v.iter()
                .enumerate()
                .map(|(i, x)| x + if i % 7 == 0 { 0.01 } else { 0.0 })
                .collect(),
        )
    });
    let mut hnsw = HnswBackend::new(
        4000,
        HnswParams {
            max_connections: 16,
            ef_construction: 200,
            ef_search: 64,
        },
    );
    let mut exact = ExactBackend::new(dim, Device::Cpu);
    let points: Vec<(&[f32], usize)> = data.iter().enumerate().map(|(i, v)| (v.as_slice(), i)).collect();
    hnsw.insert(&points);
    exact.insert(&points);
    assert_eq!((hnsw.len(), exact.len()), (4000, 4000));
    let (mut hits1, mut hits10, mut total) = (0, 0, 0);
    for q in queries {
        let truth: Vec<usize> = exact.search(&q, 10, &|_| true).into_iter().map(|(i, _)| i).collect();
        let got: Vec<usize> = hnsw.search(&q, 10, &|_| true).into_iter().map(|(i, _)| i).collect();
        hits1 += usize::from(got.first() == truth.first());
        hits10 += got.iter().filter(|i| truth.contains(i)).count();
        total += 1;
    }
    let recall10 = hits10 as f64 / (10 * total) as f64;
    assert!(recall10 >= 0.98, "recall@10 {recall10}");
    assert!(
        hits1 as f64 / total as f64 >= 0.98,
        "recall@1 {}",
        hits1 as f64 / total as f64
    );
    // The filter is honoured.
    let odd = hnsw.search(&data[1], 5, &|i| i % 2 == 1);
    assert!(!odd.is_empty() && odd.iter().all(|(i, _)| i % 2 == 1));
}

fn settings(backend: IndexBackend, dim: usize) -> Settings {
    Settings {
        dim,
        backend,
        hnsw: HnswParams::default(),
        same_modality_threshold: 0.2,
        cross_modality_threshold: 0.4,
        max_exemplars: 4,
        expiry_s: 100.0,
        neighbours: 8,
        rebuild_dead_fraction: 0.3,
        also_fraction: 0.0,
        device: Device::Cpu,
    }
}

/// A pseudo-random ±1 direction (near-orthogonal to the others in 64 dimensions), unit length.
fn direction(key: usize) -> Vec<f32> {
    // splitmix64 of (key, i): one random bit per coordinate.
    let bit = |x: u64| {
        let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) & 1
    };
    unit(
        (0..64u64)
            .map(|i| if bit(key as u64 * 64 + i) == 0 { 1.0 } else { -1.0 })
            .collect(),
    )
}

/// A person's embedding seen through `modality`: the person's direction, plus a common offset for
/// thermal images (cross-modal distances run larger, about 0.3 here) and a little noise.
fn sighting(person: usize, modality: Modality, k: usize) -> Vec<f32> {
    let base = direction(person + 1);
    let thermal = direction(10_007);
    let noise = direction(person * 1000 + k + 77);
    base.iter()
        .zip(&thermal)
        .zip(&noise)
        .map(|((b, t), n)| b + if modality == Modality::Thermal { *t } else { 0.0 } + 0.05 * n)
        .collect::<Vec<f32>>()
        .pipe(unit)
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

#[test]
fn assignment_scenarios() {
    for backend in [IndexBackend::Hnsw, IndexBackend::Exact] {
        let mut idx = IdentityIndex::new(settings(backend, 64));
        let a1 = idx
            .assign(&sighting(0, Modality::Visible, 0), Modality::Visible, "gate", 1.0)
            .expect("finite");
        assert!(a1.created);
        let a2 = idx
            .assign(&sighting(0, Modality::Visible, 1), Modality::Visible, "gate", 2.0)
            .expect("finite");
        assert_eq!(
            (a2.identity, a2.created, a2.cross_modal),
            (a1.identity, false, false),
            "{backend:?}: same person twice"
        );
        let b = idx
            .assign(&sighting(1, Modality::Visible, 0), Modality::Visible, "gate", 3.0)
            .expect("finite");
        assert!(b.created && b.identity != a1.identity, "{backend:?}: two people");
        let a3 = idx
            .assign(&sighting(0, Modality::Thermal, 2), Modality::Thermal, "gate", 4.0)
            .expect("finite");
        assert_eq!(
            a3.identity, a1.identity,
            "{backend:?}: a cross-modal pair within threshold"
        );
        assert!(
            a3.cross_modal && a3.distance.is_some_and(|d| d > 0.05 && d <= 0.4),
            "{a3:?}"
        );
        // Expiry (100 s): at t=103.5 person 1 (last seen at t=3) is gone, person 0 (t=4) stays.
        assert_eq!(idx.expire(103.5), vec![b.identity]);
        assert_eq!(idx.identities().len(), 1);
        let b2 = idx
            .assign(&sighting(1, Modality::Visible, 3), Modality::Visible, "gate", 104.0)
            .expect("finite");
        assert!(
            b2.created && b2.identity != b.identity,
            "an expired identity is not matched again; ids are never reused"
        );
    }
}

#[test]
fn exemplars_are_bounded_and_a_rebuild_keeps_every_identity_findable() {
    let mut idx = IdentityIndex::new(settings(IndexBackend::Hnsw, 64));
    let mut ids = Vec::new();
    for person in 0..6 {
        ids.push(
            idx.assign(&sighting(person, Modality::Visible, 0), Modality::Visible, "c", 0.0)
                .expect("finite")
                .identity,
        );
    }
    for round in 1..40 {
        for (person, &id) in ids.iter().enumerate() {
            let d = idx
                .assign(
                    &sighting(person, Modality::Visible, round),
                    Modality::Visible,
                    "c",
                    f64::from(round as u32),
                )
                .expect("finite");
            assert_eq!(d.identity, id, "round {round}, person {person}");
        }
    }
    idx.finish_rebuild();
    for ident in idx.identities().values() {
        assert!(ident.visible.len() <= 4);
    }
    assert!(
        idx.exemplars().len() < 6 * 40,
        "dead exemplars were compacted away by a rebuild"
    );
    for (person, &id) in ids.iter().enumerate() {
        let d = idx
            .assign(&sighting(person, Modality::Visible, 99), Modality::Visible, "c", 50.0)
            .expect("finite");
        assert_eq!(d.identity, id);
    }
}

fn filled(dir_settings: Settings, people: usize) -> IdentityIndex {
    let mut idx = IdentityIndex::new(dir_settings);
    for p in 0..people {
        for m in [Modality::Visible, Modality::Thermal] {
            idx.assign(&sighting(p, m, p), m, "gate", p as f64).expect("finite");
        }
    }
    idx
}

#[test]
fn snapshot_round_trip_is_equal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = settings(IndexBackend::Hnsw, 64);
    let idx = filled(s, 5);
    let path = snapshot::save(&snapshot::freeze(&idx), dir.path()).expect("save");
    let (loaded_from, back) = snapshot::load(dir.path(), s, None).expect("load").expect("present");
    assert_eq!(loaded_from, path);
    assert_eq!(back.identities(), idx.identities());
    assert_eq!(back.next_id(), idx.next_id());
    let live: Vec<_> = idx.exemplars().iter().filter(|e| e.alive).collect();
    assert_eq!(back.exemplars().len(), live.len());
    for (a, b) in back.exemplars().iter().zip(live) {
        assert_eq!(
            (a.identity, a.modality, &a.camera, a.time, &a.vector),
            (b.identity, b.modality, &b.camera, b.time, &b.vector)
        );
    }
    assert_eq!(
        snapshot::encode(&snapshot::freeze(&back)),
        snapshot::encode(&snapshot::freeze(&idx)),
        "byte-identical when re-encoded"
    );
}

#[test]
fn truncated_or_bit_flipped_snapshots_fall_back_to_the_previous_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = settings(IndexBackend::Exact, 64);
    let older = snapshot::save(&snapshot::freeze(&filled(s, 3)), dir.path()).expect("save");
    let newer = snapshot::save(&snapshot::freeze(&filled(s, 5)), dir.path()).expect("save");
    let bytes = std::fs::read(&newer).expect("read");
    for (what, damaged) in [
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("bit-flipped", {
            let mut b = bytes.clone();
            b[bytes.len() / 3] ^= 0x10;
            b
        }),
    ] {
        std::fs::write(&newer, &damaged).expect("damage");
        let e = snapshot::decode(&newer, &damaged, s, None).err().expect("rejected");
        assert!(
            e.to_string().contains(&newer.display().to_string()) && e.to_string().contains("corrupt"),
            "{what}: {e}"
        );
        let (from, idx) = snapshot::load(dir.path(), s, None)
            .expect("load")
            .expect("the older one");
        assert_eq!(from, older, "{what}");
        assert_eq!(idx.identities().len(), 3);
        // `index stats/query/export` make the same choice.
        let (from, _) = snapshot::load_for_inspection(dir.path())
            .expect("inspect")
            .expect("the older one");
        assert_eq!(from, older, "{what}: inspection");
    }
    std::fs::write(&older, b"garbage").expect("damage");
    let e = snapshot::load(dir.path(), s, None).err().expect("nothing usable");
    assert!(e.to_string().contains("no usable snapshot"), "{e}");
}

#[test]
fn stray_snapshot_names_neither_wrap_the_numbering_nor_get_pruned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = settings(IndexBackend::Exact, 64);
    let stray = dir.path().join("snapshot-18446744073709551615.ridx");
    std::fs::write(&stray, b"not ours").expect("stray");
    let mut written = Vec::new();
    for people in 1..=5 {
        written.push(snapshot::save(&snapshot::freeze(&filled(s, people)), dir.path()).expect("save"));
    }
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(names[0], "snapshot-0000000001.ridx");
    assert_eq!(names[4], "snapshot-0000000005.ridx");
    // The newest written is the one loaded, the three newest are kept, the stray is untouched.
    let (from, idx) = snapshot::load(dir.path(), s, None).expect("load").expect("present");
    assert_eq!((from, idx.identities().len()), (written[4].clone(), 5));
    assert!(written[2..].iter().all(|p| p.exists()) && !written[1].exists());
    assert_eq!(std::fs::read(&stray).expect("stray kept"), b"not ours");
}

/// A torn snapshot among the newest never counts as one of the kept: pruning leaves `KEEP`
/// loadable snapshots behind it.
#[test]
fn a_corrupt_snapshot_is_not_counted_among_the_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = settings(IndexBackend::Exact, 64);
    let mut written = Vec::new();
    for people in 1..=3 {
        written.push(snapshot::save(&snapshot::freeze(&filled(s, people)), dir.path()).expect("save"));
    }
    let bytes = std::fs::read(&written[2]).expect("read");
    std::fs::write(&written[2], &bytes[..bytes.len() / 2]).expect("tear");
    let newest = snapshot::save(&snapshot::freeze(&filled(s, 4)), dir.path()).expect("save");
    // Kept: the new one and the two intact ones before the torn file; the torn one does not count.
    assert!(
        newest.exists() && written[0].exists() && written[1].exists(),
        "{written:?}"
    );
    let next = snapshot::save(&snapshot::freeze(&filled(s, 5)), dir.path()).expect("save");
    assert!(next.exists() && newest.exists() && written[1].exists());
    assert!(!written[0].exists(), "the oldest goes once three intact ones are newer");
    assert_eq!(snapshot::KEEP, 3);
}

/// NaN or infinite vectors, or vectors of another dimension, never enter the index, and a snapshot
/// holding one is refused naming the exemplar.
#[test]
fn non_finite_vectors_are_refused() {
    let s = settings(IndexBackend::Exact, 64);
    let mut idx = filled(s, 2);
    let mut nan = sighting(0, Modality::Visible, 1);
    nan[7] = f32::NAN;
    let e = idx.assign(&nan, Modality::Visible, "gate", 9.0).expect_err("refused");
    assert!(e.to_string().contains("position 7"), "{e}");
    let short = vec![0.5f32; 8];
    assert!(idx.assign(&short, Modality::Visible, "gate", 9.0).is_err());
    assert!(idx.extend(1, &nan, Modality::Visible, "gate", 9.0).is_err());
    assert_eq!(idx.identities().len(), 2, "nothing was added");
    // A snapshot whose vector bytes hold a NaN (checksum recomputed: a well-formed file).
    let mut bytes = snapshot::encode(&snapshot::freeze(&idx));
    let body = bytes.len() - 4;
    bytes[body - 4..body].copy_from_slice(&f32::NAN.to_le_bytes());
    let crc = snapshot::crc32(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
    let e = snapshot::decode(Path::new("nan.ridx"), &bytes, s, None)
        .err()
        .expect("refused");
    assert!(e.to_string().contains("non-finite"), "{e}");
}

/// Snapshots record the model whose vectors they hold: another model of the same dimension is
/// refused (and set aside on request) like one of another dimension; a snapshot without a model
/// id (an older build's) is judged by its dimension.
#[test]
fn snapshots_of_another_model_of_the_same_dimension_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = settings(IndexBackend::Exact, 64);
    let written = snapshot::save(
        &snapshot::freeze(&filled(s, 3).with_model("aaaa0001".into())),
        dir.path(),
    )
    .expect("save");
    let (_, same) = snapshot::load(dir.path(), s, Some("aaaa0001"))
        .expect("load")
        .expect("present");
    assert_eq!(same.model(), Some("aaaa0001"));
    let e = snapshot::load(dir.path(), s, Some("bbbb0002")).err().expect("refused");
    assert!(
        e.to_string().contains("64-d vectors of model aaaa0001")
            && e.to_string().contains("64-d vectors of model bbbb0002")
            && e.to_string().contains("--fresh-index"),
        "{e}"
    );
    let moved = snapshot::set_aside_other_models(dir.path(), 64, Some("bbbb0002")).expect("set aside");
    assert_eq!(moved.len(), 1);
    assert!(!written.exists() && moved[0].exists());
    // An older build's snapshot (no model id) of the right dimension loads and takes the model.
    snapshot::save(&snapshot::freeze(&filled(s, 2)), dir.path()).expect("save");
    let (_, old) = snapshot::load(dir.path(), s, Some("bbbb0002"))
        .expect("load")
        .expect("present");
    assert_eq!((old.identities().len(), old.model()), (2, Some("bbbb0002")));
}

/// Child side of the crash test: writes snapshots in a loop until killed.
#[test]
fn snapshot_writer_child() {
    let Ok(dir) = std::env::var("REID_SNAPSHOT_CHILD_DIR") else {
        return;
    };
    let s = settings(IndexBackend::Exact, 64);
    let mut idx = filled(s, 2);
    let mut k = 0usize;
    loop {
        // Grow the index so snapshots differ and take a while to write.
        for _ in 0..20 {
            k += 1;
            idx.assign(
                &sighting(k % 50, Modality::Visible, k),
                Modality::Visible,
                "gate",
                k as f64,
            )
            .expect("finite");
        }
        snapshot::save(&snapshot::freeze(&idx), Path::new(&dir)).expect("save");
    }
}

#[test]
fn a_writer_killed_at_random_points_always_leaves_a_complete_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = settings(IndexBackend::Exact, 64);
    let exe = std::env::current_exe().expect("test binary");
    let mut last_identities = 0;
    let mut seen_any = false;
    for round in 0..25u64 {
        let mut child = std::process::Command::new(&exe)
            .args(["--exact", "snapshot_writer_child", "--test-threads", "1"])
            .env("REID_SNAPSHOT_CHILD_DIR", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        // The child needs a few hundred ms to start (loading libtorch) before it writes; give the
        // first rounds longer on a loaded machine.
        let base = if seen_any { 400 } else { 1500 };
        std::thread::sleep(Duration::from_millis(base + (round * 37) % 300));
        child.kill().expect("kill");
        let _ = child.wait();
        match snapshot::load(dir.path(), s, None).expect("a complete snapshot always loads") {
            Some((_, idx)) => {
                assert!(idx.identities().len() >= 2);
                last_identities = idx.identities().len();
                seen_any = true;
            }
            None => assert!(!seen_any, "round {round}: a complete snapshot existed and none loads"),
        }
    }
    assert!(last_identities >= 2);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(
        leftovers
            .iter()
            .filter(|n| n.to_string_lossy().ends_with(".ridx"))
            .count()
            <= snapshot::KEEP + 1
    );
}

#[test]
fn index_command_inspects_a_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = settings(IndexBackend::Hnsw, 64);
    snapshot::save(&snapshot::freeze(&filled(s, 4)), dir.path()).expect("save");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_reid-pipe"))
            .arg("index")
            .args(args)
            .output()
            .expect("runs");
        let text = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{text}");
        text
    };
    let d = dir.path().to_str().expect("utf-8");
    let stats = run(&["stats", d]);
    assert!(stats.contains("identities    4 (4 seen in both modalities)"), "{stats}");
    assert!(
        stats.contains("4 visible, 4 thermal") && stats.contains("gate: 8"),
        "{stats}"
    );
    let q = run(&["query", d, "--identity", "1", "-k", "2"]);
    // The snapshot used (stderr), the header and two neighbours.
    assert!(q.contains("snapshot-0000000001.ridx"), "{q}");
    assert_eq!(q.lines().filter(|l| !l.starts_with("snapshot ")).count(), 3, "{q}");
    let out = dir.path().join("export");
    run(&["export", d, "--out", out.to_str().expect("utf-8")]);
    assert_eq!(
        std::fs::read_to_string(out.join("identities.jsonl"))
            .expect("jsonl")
            .lines()
            .count(),
        4
    );
    let ex = reid_pipe::safetensors::read(&out.join("exemplars.safetensors")).expect("vectors");
    assert_eq!(ex.get("vectors").expect("vectors").size(), [8, 64]);
    let empty = tempfile::tempdir().expect("tempdir");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_reid-pipe"))
        .args(["index", "stats"])
        .arg(empty.path())
        .output()
        .expect("runs");
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no snapshot in"));
}
