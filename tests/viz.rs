//! `reid-pipe viz`: every figure rendered from a tiny model on generated data; the tests check
//! the image size and that the expected pixels were drawn.

mod common;

use common::bin;
use opencv::core::{Mat, Vec3b};
use opencv::prelude::*;
use reid_pipe::base::Backbone;
use reid_pipe::model::{LbaNet, ModelSpec, weights};
use reid_pipe::viz::{GREEN, RED, alignment, curves, retrieval};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `cmd`, which must succeed; its output.
fn ok(cmd: &mut Command) -> String {
    common::ok(cmd.output().expect("runs"))
}

/// A generated SYSU-MM01 set of 8 identities.
fn sysu(dir: &Path) -> PathBuf {
    let root = dir.join("SYSU-MM01");
    ok(bin()
        .args(["synth", "--format", "sysu", "--identities", "8", "--seed", "2", "--out"])
        .arg(&root));
    root
}

/// An untrained tiny LbA network (random weights from `seed`).
fn tiny(dir: &Path, seed: i64) -> PathBuf {
    tch::manual_seed(seed);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let net = LbaNet::new(&vs.root(), ModelSpec::new(Backbone::Tinyresnet, 0, (64, 32)));
    let w = dir.join(format!("tiny-{seed}.safetensors"));
    weights::save(&vs, &net.spec, &Default::default(), &w).expect("save");
    w
}

/// RGB of a pixel of a PNG read back.
fn rgb(img: &Mat, x: i32, y: i32) -> [u8; 3] {
    let p: &Vec3b = img.at_2d(y, x).expect("pixel");
    [p[2], p[1], p[0]]
}

fn read(path: &Path) -> Mat {
    let img = opencv::imgcodecs::imread(path, opencv::imgcodecs::IMREAD_COLOR).expect("imread");
    assert!(!img.empty(), "{}", path.display());
    img
}

/// The first image file of a SYSU camera/identity folder.
fn image(root: &Path, cam: u32, pid: u32) -> PathBuf {
    root.join(format!("cam{cam}/{pid:04}/0001.jpg"))
}

#[test]
fn retrieval_borders_agree_with_identities() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = sysu(dir.path());
    let w = tiny(dir.path(), 1);
    let png = dir.path().join("retrieval.png");
    let (queries, top) = (4, 5);
    ok(bin()
        .args([
            "viz",
            "retrieval",
            "--dataset",
            "sysu",
            "--trials",
            "0",
            "--device",
            "cpu",
            "--root",
        ])
        .arg(&root)
        .arg("--checkpoint")
        .arg(&w)
        .args(["--queries", &queries.to_string(), "--top", &top.to_string(), "--png"])
        .arg(&png));
    let img = read(&png);
    assert_eq!(
        (img.cols(), img.rows()),
        (retrieval::tile_x(top) + 8, retrieval::row_y(queries) + 8)
    );
    let rows: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(png.with_extension("json")).expect("json")).expect("rows");
    assert_eq!(rows.len(), queries);
    let pid = |p: &str| p.split('/').nth(1).expect("cam/pid/file").to_owned();
    let (mut green, mut red) = (0, 0);
    for (r, row) in rows.iter().enumerate() {
        let q = row["query"].as_str().expect("query");
        assert!(
            q.starts_with("cam3/") || q.starts_with("cam6/"),
            "SYSU queries are infrared: {q}"
        );
        let ranked = row["ranked"].as_array().expect("ranked");
        assert_eq!(ranked.len(), top);
        for (k, g) in ranked.iter().enumerate() {
            let path = g[0].as_str().expect("path");
            let right = g[1].as_bool().expect("bool");
            // Independent check of the label: the identity folder of both paths.
            assert_eq!(right, pid(path) == pid(q), "{q} vs {path}");
            let border = rgb(&img, retrieval::tile_x(k) + 1, retrieval::row_y(r) + 1);
            let want = if right { GREEN } else { RED };
            assert_eq!(border, want, "row {r} rank {k}");
            if right { green += 1 } else { red += 1 }
        }
    }
    assert!(red > 0, "a random network gets some wrong");
    println!("{green} green, {red} red borders");
}

#[test]
fn coattention_overlays_masks_and_maps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = sysu(dir.path());
    let w = tiny(dir.path(), 2);
    let out = dir.path().join("coattention.png");
    let ids: Vec<u32> = std::fs::read_dir(root.join("cam3"))
        .expect("cam3")
        .map(|e| e.expect("entry").file_name().to_string_lossy().parse().expect("id"))
        .filter(|&pid| image(&root, 1, pid).exists())
        .take(2)
        .collect();
    assert_eq!(ids.len(), 2);
    let mut cmd = bin();
    cmd.args(["viz", "coattention", "--stage", "layer3", "--checkpoint"])
        .arg(&w);
    for &pid in &ids {
        cmd.arg("--visible")
            .arg(image(&root, 1, pid))
            .arg("--thermal")
            .arg(image(&root, 3, pid));
    }
    ok(cmd.arg("--out").arg(&out));
    let img = read(&out);
    let (tw, th) = alignment::TILE;
    assert_eq!((img.cols(), img.rows()), (4 * tw + 50, 2 * (th + 20) + 10));
    // Each panel is the photo blended with a JET map: it differs from the photo alone, and the
    // heat map puts both warm (red) and cold (blue) colours into every panel.
    for row in 0..2 {
        for panel in 0..4 {
            let (x0, y0) = (10 + panel * (tw + 10), 10 + row * (th + 20));
            let (mut warm, mut cold) = (0, 0);
            for y in (y0..y0 + th).step_by(4) {
                for x in (x0..x0 + tw).step_by(4) {
                    let [r, _, b] = rgb(&img, x, y);
                    warm += usize::from(i32::from(r) > i32::from(b) + 40);
                    cold += usize::from(i32::from(b) > i32::from(r) + 40);
                }
            }
            assert!(
                warm > 0 && cold > 0,
                "row {row} panel {panel}: warm {warm}, cold {cold}"
            );
        }
    }
}

#[test]
fn correspondences_are_drawn_for_each_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = sysu(dir.path());
    let (w1, w2) = (tiny(dir.path(), 3), tiny(dir.path(), 4));
    let out = dir.path().join("corr.png");
    let pid: u32 = std::fs::read_dir(root.join("cam3"))
        .expect("cam3")
        .map(|e| e.expect("entry").file_name().to_string_lossy().parse().expect("id"))
        .find(|&pid| image(&root, 1, pid).exists())
        .expect("an id seen by cam1 and cam3");
    ok(bin()
        .args(["viz", "correspondence", "--stage", "layer3", "--checkpoint"])
        .arg(&w1)
        .arg("--checkpoint")
        .arg(&w2)
        .arg("--visible")
        .arg(image(&root, 1, pid))
        .arg("--thermal")
        .arg(image(&root, 3, pid))
        .arg("--out")
        .arg(&out));
    let img = read(&out);
    let (tw, th) = alignment::TILE;
    assert_eq!((img.cols(), img.rows()), (2 * tw + 30, 2 * (th + 20) + 10));
    let rows: Vec<Vec<Value>> =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).expect("json")).expect("matches");
    assert_eq!(rows.len(), 2);
    for (r, row) in rows.iter().enumerate() {
        assert!(!row.is_empty() && row.len() <= alignment::MATCHES);
        let y0 = 10 + r as i32 * (th + 20);
        let probs: Vec<f64> = row.iter().map(|m| m["probability"].as_f64().expect("p")).collect();
        assert!(probs.windows(2).all(|w| w[0] >= w[1]), "best first: {probs:?}");
        for m in row {
            let (fx, fy) = (
                m["from"][0].as_i64().expect("x") as i32,
                m["from"][1].as_i64().expect("y") as i32,
            );
            let (tx, ty) = (
                m["to"][0].as_i64().expect("x") as i32,
                m["to"][1].as_i64().expect("y") as i32,
            );
            assert!(
                (10..10 + tw).contains(&fx) && (y0..y0 + th).contains(&fy),
                "starts on the RGB image"
            );
            assert!(
                (20 + tw..20 + 2 * tw).contains(&tx) && (y0..y0 + th).contains(&ty),
                "ends on the IR image"
            );
        }
        // The end points carry a line colour (dots are drawn at both ends).
        let coloured = row
            .iter()
            .enumerate()
            .filter(|(k, m)| {
                let c = alignment::line_colour(*k);
                let want = [c[0] as u8, c[1] as u8, c[2] as u8];
                rgb(
                    &img,
                    m["from"][0].as_i64().unwrap_or(0) as i32,
                    m["from"][1].as_i64().unwrap_or(0) as i32,
                ) == want
            })
            .count();
        assert!(coloured * 2 >= row.len(), "{coloured} of {} dots found", row.len());
    }
}

#[test]
fn curves_plot_every_term_and_metric() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log.jsonl");
    let mut text = String::new();
    for epoch in 1..=5 {
        let e = f64::from(epoch);
        let eval = if epoch % 2 == 1 {
            format!("{{\"cmc\":[{}],\"map\":{},\"minp\":0.1}}", 0.1 * e, 0.05 * e)
        } else {
            "null".into()
        };
        text += &format!(
            "{{\"epoch\":{epoch},\"loss\":{{\"id\":{},\"tri\":{}}},\"eval\":{eval}}}\n",
            10.0 / e,
            0.5 + 0.1 * e
        );
    }
    std::fs::write(&log, text).expect("log");
    let out = dir.path().join("curves.png");
    ok(bin().args(["viz", "curves"]).arg(&log).arg("--out").arg(&out));
    let img = read(&out);
    assert_eq!((img.cols(), img.rows()), (2 * curves::PANEL.0, curves::PANEL.1));
    let (losses, metrics) = curves::read(&log).expect("read");
    assert_eq!(losses.len(), 2);
    assert_eq!(metrics["rank-1"].len(), 3, "epochs 1, 3, 5 evaluated");
    let colour = |i: usize| {
        let c = curves::colour(i);
        [c[0] as u8, c[1] as u8, c[2] as u8]
    };
    // id (series 0) at epoch 5 is 2/10 of its maximum; tri (series 1) at epoch 2 is 0.7 of its own.
    let p = curves::position(0, 5.0, 5.0, 0.2, 1.0);
    assert_eq!(rgb(&img, p.x, p.y), colour(0));
    let p = curves::position(0, 2.0, 5.0, 0.7, 1.0);
    assert_eq!(rgb(&img, p.x, p.y), colour(1));
    // rank-1 at epoch 3 is 30 % in the right panel (series order: mAP, mINP, rank-1).
    let p = curves::position(curves::PANEL.0, 3.0, 5.0, 30.0, 100.0);
    assert_eq!(rgb(&img, p.x, p.y), colour(2));
}
