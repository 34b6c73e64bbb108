//! The cluster against real NATS servers (`nats-server` with JetStream, started here on
//! 127.0.0.1 in temporary folders): identity indices of two or three nodes share exemplars
//! through the stream, merge identities met at two nodes to one canonical id, catch up after a
//! restart, lose nothing uncounted while the server is away, and keep replicating when one of
//! three clustered servers dies.

mod common;

use common::{NatsServer, free_port, free_ports, nats_server};
use reid_pipe::base::Modality;
use reid_pipe::cluster::{Counters, Node, node_number};
use reid_pipe::config::site::{Cluster, IndexBackend};
use reid_pipe::index::backend::HnswParams;
use reid_pipe::index::identities::{IdentityIndex, Settings, origin};
use reid_pipe::index::snapshot;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const DIM: usize = 64;

fn settings() -> Settings {
    Settings {
        dim: DIM,
        backend: IndexBackend::Exact,
        hnsw: HnswParams::default(),
        same_modality_threshold: 0.2,
        cross_modality_threshold: 0.4,
        max_exemplars: 8,
        expiry_s: 1e9,
        neighbours: 8,
        rebuild_dead_fraction: 0.5,
        also_fraction: 0.8,
        device: tch::Device::Cpu,
    }
}

fn cluster(ports: &[u16], node: &str) -> Cluster {
    let servers = ports.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect();
    Cluster {
        max_age_s: 3600.0,
        max_bytes: 100_000_000,
        outbox: 1000,
        connect_timeout_s: 20.0,
        ..Cluster::new(servers, node.to_owned(), 8)
    }
}

/// A unit vector pointing a pseudo-random ±1 way (near-orthogonal to others in 64 dimensions).
fn person(key: u64, noise: f32) -> Vec<f32> {
    let bit = |x: u64| {
        let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) & 1
    };
    let sign = |k: u64, i: u64| if bit(k * 64 + i) == 0 { 1.0f32 } else { -1.0 };
    let v: Vec<f32> = (0..DIM as u64)
        .map(|i| sign(key, i) + noise * sign(key * 7919 + 13, i))
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

struct Member {
    index: IdentityIndex,
    node: Node,
    counters: Counters,
}

fn join(ports: &[u16], name: &str, model: &str, index: Option<IdentityIndex>) -> Member {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let mut index = index.unwrap_or_else(|| IdentityIndex::new(settings()).with_model(model.into()));
    let counters = Counters::default();
    let node = Node::start(&cluster(ports, name), &mut index, model, counters.clone()).expect("join the cluster");
    Member { index, node, counters }
}

impl Member {
    fn sees(&mut self, key: u64, modality: Modality) -> u64 {
        let v = person(key, 0.05);
        // One time for the index and the stream, as the identity stage does.
        let time = now();
        let d = self
            .index
            .assign(&v, modality, "door", time)
            .expect("a unit vector of the index's dimension");
        self.node.added(d.identity, &v, modality, "door", time);
        self.node.propose_merges(&d);
        d.identity
    }

    /// Applies what arrives until `done` holds (panics after 30 s).
    fn pump_until(&mut self, what: &str, done: impl Fn(&IdentityIndex) -> bool) {
        let until = Instant::now() + Duration::from_secs(30);
        while !done(&self.index) {
            assert!(Instant::now() < until, "{what}: not reached in 30 s");
            if let Ok(item) = self.node.incoming().recv_timeout(Duration::from_millis(50)) {
                self.node.apply(&mut self.index, item);
            }
        }
    }

    /// Applies what arrives for `quiet` after the last item.
    fn settle(&mut self, quiet: Duration) {
        while let Ok(item) = self.node.incoming().recv_timeout(quiet) {
            self.node.apply(&mut self.index, item);
        }
    }

    fn live_exemplars(&self) -> usize {
        self.index.exemplars().iter().filter(|e| e.alive).count()
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn server(dir: &Path) -> (u16, NatsServer) {
    let port = free_port();
    (port, nats_server(dir, port, None))
}

#[test]
fn a_person_seen_at_one_node_is_recognised_at_another() {
    let tmp = tempfile::tempdir().unwrap();
    let (port, srv) = server(tmp.path());
    let mut a = join(&[port], "gate-a", "model-1", None);
    let mut b = join(&[port], "gate-b", "model-1", None);
    let mut c = join(&[port], "gate-c", "model-2", None);
    let first = a.sees(1, Modality::Visible);
    assert_eq!(
        origin(first),
        node_number("gate-a"),
        "ids carry the creating node's number"
    );
    b.pump_until("B holds A's identity", |ix| ix.identities().contains_key(&first));
    // B's own sighting of the same person (another noise draw) joins A's identity.
    let v = person(1, 0.07);
    let d = b.index.assign(&v, Modality::Visible, "lobby", now()).unwrap();
    assert_eq!(d.identity, first, "B's first sighting gets A's identity");
    assert!(!d.created);
    // And through the other modality: A's visible exemplar answers B's thermal query.
    let d = b.index.assign(&v, Modality::Thermal, "lobby", now()).unwrap();
    assert_eq!((d.identity, d.cross_modal), (first, true));
    // So does a new person B meets first, at A afterwards.
    let second = b.sees(2, Modality::Thermal);
    assert_eq!(origin(second), node_number("gate-b"));
    a.pump_until("A holds B's identity", |ix| ix.identities().contains_key(&second));
    let d = a
        .index
        .assign(&person(2, 0.07), Modality::Thermal, "door", now())
        .unwrap();
    assert_eq!(d.identity, second);
    // A node of another model refuses both nodes' vectors, and counts them.
    c.settle(Duration::from_millis(1500));
    assert!(
        c.index.identities().is_empty(),
        "another model's exemplars were applied"
    );
    assert_eq!(c.counters.other_model.load(Ordering::Relaxed), 2);
    assert_eq!(a.counters.published.load(Ordering::Relaxed), 1);
    assert_eq!(b.counters.applied.load(Ordering::Relaxed), 1);
    for m in [a, b, c] {
        m.node.finish();
    }
    srv.stop();
}

#[test]
fn concurrent_creation_at_two_nodes_converges_to_one_canonical_id() {
    let tmp = tempfile::tempdir().unwrap();
    let (port, srv) = server(tmp.path());
    let mut a = join(&[port], "gate-a", "m", None);
    let mut b = join(&[port], "gate-b", "m", None);
    // Both meet person 5 before either hears of the other; and persons 6 and 7 likewise.
    let ids: Vec<(u64, u64)> = [5, 6, 7]
        .iter()
        .map(|&p| (a.sees(p, Modality::Visible), b.sees(p, Modality::Visible)))
        .collect();
    for (x, y) in &ids {
        assert_ne!(x, y);
    }
    a.pump_until("A holds both nodes' identities", |ix| ix.identities().len() == 6);
    b.pump_until("B holds both nodes' identities", |ix| ix.identities().len() == 6);
    // Both see everyone again at once: each proposes every merge, concurrently.
    for p in [5, 6, 7] {
        a.sees(p, Modality::Visible);
        b.sees(p, Modality::Visible);
    }
    for m in [&mut a, &mut b] {
        m.pump_until("one identity per person", |ix| ix.identities().len() == 3);
    }
    for (x, y) in &ids {
        let canonical = *x.min(y);
        assert!(a.index.identities().contains_key(&canonical));
        assert!(b.index.identities().contains_key(&canonical));
        assert_eq!(a.node.canonical(*x.max(y)), canonical);
        assert_eq!(b.node.canonical(*x.max(y)), canonical);
    }
    // Each pair was recorded once, whoever won the race.
    let recorded =
        a.counters.merges_recorded.load(Ordering::Relaxed) + b.counters.merges_recorded.load(Ordering::Relaxed);
    assert_eq!(recorded, 3);
    // A later exemplar of a merged-away id joins the canonical identity.
    let (x, y) = ids[0];
    let gone = x.max(y);
    let mut c = join(&[port], "gate-c", "m", None);
    c.pump_until("a new node rebuilds the three people from the stream", |ix| {
        ix.identities().len() == 3 && ix.exemplars().iter().filter(|e| e.alive).count() == 12
    });
    assert!(!c.index.identities().contains_key(&gone));
    a.node.finish();
    b.node.finish();
    c.node.finish();
    srv.stop();
}

#[test]
fn a_restarted_node_catches_up_without_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshots = tmp.path().join("snapshots");
    std::fs::create_dir_all(&snapshots).unwrap();
    let store = tmp.path().join("nats");
    let (port, srv) = server(&store);
    let mut a = join(&[port], "gate-a", "m", None);
    let mut b = join(&[port], "gate-b", "m", None);
    for p in 0..5 {
        a.sees(p, Modality::Visible);
    }
    b.pump_until("B holds A's five", |ix| ix.identities().len() == 5);
    // B's own exemplars: one before its snapshot, two after it (lost with B, kept by the stream).
    b.sees(100, Modality::Thermal);
    a.pump_until("A holds B's first", |ix| ix.identities().len() == 6);
    // Saved before B's own exemplar came back through the stream: after the restart it arrives
    // beyond the snapshot's position and must not be added twice.
    snapshot::save(&snapshot::freeze(&b.index), &snapshots).unwrap();
    b.sees(101, Modality::Thermal);
    b.sees(102, Modality::Thermal);
    assert_eq!(b.live_exemplars(), 8);
    b.node.finish(); // published before it goes
    // While B is away A meets five more.
    for p in 10..15 {
        a.sees(p, Modality::Visible);
    }
    a.pump_until("A holds B's later two", |ix| ix.identities().len() == 13);
    let (_, restored) = snapshot::load(&snapshots, settings(), Some("m")).unwrap().unwrap();
    assert_eq!(restored.identities().len(), 6);
    assert!(restored.replica().is_some_and(|r| r.node == "gate-b" && r.applied > 0));
    let mut b = join(&[port], "gate-b", "m", Some(restored));
    b.pump_until("B back with everyone", |ix| ix.identities().len() == 13);
    b.settle(Duration::from_millis(500));
    // Every exemplar once: A's ten, B's three (two of them from its earlier run, via the stream).
    assert_eq!(b.live_exemplars(), 13, "duplicates or losses after the restart");
    assert_eq!(a.live_exemplars(), 13);
    a.node.finish();
    b.node.finish();
    srv.stop();
}

#[test]
fn a_server_outage_loses_only_counted_exemplars() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("nats");
    let (port, srv) = server(&store);
    let mut cfg = cluster(&[port], "gate-a");
    cfg.outbox = 20;
    let mut a_index = IdentityIndex::new(settings()).with_model("m".into());
    let counters = Counters::default();
    let a_node = Node::start(&cfg, &mut a_index, "m", counters.clone()).unwrap();
    let mut b = join(&[port], "gate-b", "m", None);
    srv.stop();
    // The server is gone: A goes on alone, queueing what it can.
    let sent = 600u64;
    for p in 0..sent {
        let v = person(1000 + p, 0.05);
        let time = now();
        let d = a_index.assign(&v, Modality::Visible, "door", time).unwrap();
        assert!(d.created, "A keeps working locally");
        a_node.added(d.identity, &v, Modality::Visible, "door", time);
    }
    let dropped = counters.dropped_outbox.load(Ordering::Relaxed);
    assert!(dropped > 0 && dropped < sent, "dropped {dropped} of {sent}");
    let srv = nats_server(&store, port, None);
    let expected = (sent - dropped) as usize;
    b.pump_until("B holds every exemplar not counted as dropped", |ix| {
        ix.identities().len() == expected
    });
    b.settle(Duration::from_millis(1000));
    assert_eq!(b.index.identities().len(), expected);
    a_node.finish();
    // Each stored exemplar was acknowledged once: as new, or as a duplicate of a first try
    // whose acknowledgement was lost with the server.
    let stored = counters.published.load(Ordering::Relaxed) + counters.duplicates.load(Ordering::Relaxed);
    assert_eq!(stored, sent - dropped);
    assert_eq!(counters.unsent_at_exit.load(Ordering::Relaxed), 0);
    b.node.finish();
    srv.stop();
}

#[test]
fn three_clustered_servers_keep_replicating_when_one_dies() {
    let tmp = tempfile::tempdir().unwrap();
    let chosen = free_ports(6);
    let (ports, routes) = chosen.split_at(3);
    let servers: Vec<NatsServer> = (0..3)
        .map(|i| {
            let dir = tmp.path().join(format!("s{i}"));
            let others: Vec<u16> = (0..3).filter(|&j| j != i).map(|j| routes[j]).collect();
            nats_server(&dir, ports[i], Some((routes[i], &others)))
        })
        .collect();
    let replicated = |name: &str, order: [usize; 3]| {
        let mut c = cluster(&order.map(|i| ports[i]), name);
        c.replicas = 3;
        c.connect_timeout_s = 60.0;
        c
    };
    let mut a_index = IdentityIndex::new(settings()).with_model("m".into());
    let a_counters = Counters::default();
    let a = Node::start(&replicated("gate-a", [0, 1, 2]), &mut a_index, "m", a_counters.clone()).unwrap();
    let mut b_index = IdentityIndex::new(settings()).with_model("m".into());
    let mut b = Node::start(&replicated("gate-b", [1, 2, 0]), &mut b_index, "m", Counters::default()).unwrap();
    let mut see = |p: u64| {
        let v = person(p, 0.05);
        let time = now();
        let d = a_index.assign(&v, Modality::Visible, "door", time).unwrap();
        a.added(d.identity, &v, Modality::Visible, "door", time);
    };
    for p in 0..5 {
        see(p);
    }
    let pump = |b: &mut Node, b_index: &mut IdentityIndex, n: usize| {
        let until = Instant::now() + Duration::from_secs(60);
        while b_index.identities().len() < n {
            assert!(
                Instant::now() < until,
                "B reached {} of {n} identities",
                b_index.identities().len()
            );
            if let Ok(item) = b.incoming().recv_timeout(Duration::from_millis(50)) {
                b.apply(b_index, item);
            }
        }
    };
    pump(&mut b, &mut b_index, 5);
    // The server A is connected to dies; the other two keep a quorum of the three replicas.
    let mut servers = servers.into_iter();
    servers.next().unwrap().stop();
    for p in 5..10 {
        see(p);
    }
    pump(&mut b, &mut b_index, 10);
    assert_eq!(a_counters.dropped_outbox.load(Ordering::Relaxed), 0);
    a.finish();
    b.finish();
    for s in servers {
        s.stop();
    }
}

/// A site file for `node` playing `clip` with the ImageNet MobileNetV2, in the cluster of the
/// server on `port`; returns it and its events file.
fn node_site(dir: &Path, clip: &Path, port: u16, node: &str, extra: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = dir.join(node);
    std::fs::create_dir_all(&dir).unwrap();
    let events = dir.join("events.jsonl");
    let model = format!(
        "backbone = \"mobilenetv2\"\nweights = \"{}\"\ninput_size = [256, 128]\n",
        common::repo("models/weights/mobilenetv2_imagenet.safetensors").display()
    );
    let site = common::scene_site(
        &dir,
        clip,
        None,
        &model,
        &format!(
            "[outputs]\nevents = \"{}\"\n[cluster]\nservers = [\"nats://127.0.0.1:{port}\"]\nnode = \"{node}\"\n{extra}",
            events.display()
        ),
    );
    (site, events)
}

/// Starts `reid-pipe run` on `site` with `args`, its output captured.
fn spawn_run(site: &Path, args: &[&str]) -> std::process::Child {
    common::bin()
        .args(["--log", "warn", "run"])
        .args(args)
        .arg(site)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run")
}

/// Runs a node to its end: its events and its output.
fn run_node(site: &Path, events: &Path, args: &[&str]) -> (Vec<serde_json::Value>, String) {
    let text = common::ok(spawn_run(site, args).wait_with_output().expect("run"));
    (read_events(events), text)
}

fn read_events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Each track's identity at its end: (modality, track id) → identity.
fn final_identities(events: &[serde_json::Value]) -> std::collections::BTreeMap<(String, u64), u64> {
    events
        .iter()
        .filter(|e| e["type"] == "end")
        .filter_map(|e| {
            Some((
                e["modality"].as_str()?.to_owned(),
                e["track_id"].as_u64()?,
                e["identity"].as_u64()?,
            ))
        })
        .map(|(m, t, id)| ((m, t), id))
        .collect()
}

/// Two `reid-pipe run` nodes on one NATS server, the second playing the same people after the
/// first: the second node's first sighting of each person already carries the first node's
/// identity, and it creates none of its own.
#[test]
fn the_second_node_recognises_the_first_nodes_people() {
    let tmp = tempfile::tempdir().unwrap();
    let (port, srv) = server(&tmp.path().join("nats"));
    let clip = common::clip(tmp.path(), 4, 3);
    let run = |node: &str, extra: &str| {
        let (site, events) = node_site(tmp.path(), &clip, port, node, extra);
        run_node(&site, &events, &[])
    };
    let (a, _) = run("gate-a", "");
    let (b, text) = run("gate-b", "events_subject = \"reid.events.gate-b\"\n");
    let identities = |events: &[serde_json::Value]| -> std::collections::BTreeSet<u64> {
        events.iter().filter_map(|e| e["identity"].as_u64()).collect()
    };
    let (at_a, at_b) = (identities(&a), identities(&b));
    assert!(at_a.len() >= 4, "A saw the four people: {at_a:?}");
    assert!(at_a.iter().all(|&id| origin(id) == node_number("gate-a")));
    // Each of B's tracks: its first identity.
    let mut first = std::collections::BTreeMap::new();
    for e in &b {
        if let Some(id) = e["identity"].as_u64() {
            first
                .entry((e["modality"].to_string(), e["track_id"].as_u64()))
                .or_insert(id);
        }
    }
    let from_a = first
        .values()
        .filter(|&&id| origin(id) == node_number("gate-a"))
        .count();
    println!(
        "B: {from_a} of {} tracks began with A's identities; B's identities {at_b:?}",
        first.len()
    );
    assert!(first.len() >= 4, "{text}");
    assert_eq!(from_a, first.len(), "tracks of B that did not begin with A's identity");
    assert!(b.iter().all(|e| e["new_identity"] != true), "B created an identity");
    assert!(at_b.is_subset(&at_a), "B's identities {at_b:?} are A's {at_a:?}");
    // B's events went to its JetStream subject too, every one of them.
    let stored = stored(port, "REID_EXEMPLARS_EVENTS", "reid.events.gate-b").expect("the events stream");
    assert_eq!(stored, b.len() as u64, "events in the stream");
    srv.stop();
}

/// Two `reid-pipe run` nodes at once on the same people (the same clip: the same tracks): each
/// creates identities the other learns within milliseconds, and where both created one for the
/// same person the merge joins them. Every track ends with the same canonical identity at both.
#[test]
fn two_nodes_at_once_agree_on_every_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let (port, srv) = server(&tmp.path().join("nats"));
    let clip = common::clip(tmp.path(), 4, 3);
    let nodes: Vec<_> = ["gate-a", "gate-b"]
        .iter()
        .map(|node| {
            let (site, events) = node_site(tmp.path(), &clip, port, node, "");
            (spawn_run(&site, &[]), events)
        })
        .collect();
    let ends: Vec<_> = nodes
        .into_iter()
        .map(|(child, events)| {
            common::ok(child.wait_with_output().expect("run"));
            final_identities(&read_events(&events))
        })
        .collect();
    // The merges every node knows, read by a node that joins afterwards.
    let mut observer = join(&[port], "observer", "another model", None);
    observer.settle(Duration::from_millis(1500));
    let canonical = |id: u64| observer.node.canonical(id);
    assert!(ends[0].len() >= 8, "{:?}", ends[0]);
    assert_eq!(
        ends[0].keys().collect::<Vec<_>>(),
        ends[1].keys().collect::<Vec<_>>(),
        "the same tracks"
    );
    for (key, &a) in &ends[0] {
        let b = ends[1][key];
        assert_eq!(canonical(a), canonical(b), "{key:?}: {a} at A, {b} at B");
    }
    let creators: std::collections::BTreeSet<u64> = ends[0].values().map(|&id| origin(canonical(id))).collect();
    println!("final identities from nodes {creators:?}; A {:?}", ends[0]);
    observer.node.finish();
    srv.stop();
}

/// Messages stored under `filter` in `stream` (`None` while the server is away).
fn stored(port: u16, stream: &str, filter: &str) -> Option<u64> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let opts = async_nats::ConnectOptions::new().connection_timeout(Duration::from_millis(500));
            let client = opts.connect(format!("nats://127.0.0.1:{port}")).await.ok()?;
            let js = async_nats::jetstream::new(client);
            let stream = js.get_stream(stream).await.ok()?;
            let mut subjects = stream.info_with_subjects(filter).await.ok()?;
            let mut n = 0;
            while let Some(Ok((_, count))) = futures_util::StreamExt::next(&mut subjects).await {
                n += count as u64;
            }
            Some(n)
        })
}

/// A `reid-pipe run` node whose NATS server stops once it has stored exemplars and comes back
/// two seconds later: every exemplar the node queued is in the stream once, or counted as not
/// stored; none is lost uncounted, none stored twice.
#[test]
fn a_run_that_loses_nats_mid_way_stores_all_it_does_not_count() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("nats");
    let (port, srv) = server(&store);
    let clip = common::clip(tmp.path(), 4, 3);
    // No retention cap in the way of the count; time at the end for the outage and the
    // reconnection on a loaded machine, so what is in flight is acknowledged, not cut off.
    let (site, _) = node_site(
        tmp.path(),
        &clip,
        port,
        "gate-a",
        "max_exemplars_per_identity = 100000\nflush_timeout_s = 60\n",
    );
    let mut child = spawn_run(&site, &[]);
    let until = Instant::now() + Duration::from_secs(60);
    while stored(port, "REID_EXEMPLARS", "reid.exemplars.gate-a.>").unwrap_or(0) == 0 {
        assert!(Instant::now() < until, "no exemplar stored");
        std::thread::sleep(Duration::from_millis(100));
    }
    srv.stop();
    assert!(child.try_wait().unwrap().is_none(), "the run ended before the outage");
    std::thread::sleep(Duration::from_secs(2));
    let srv = nats_server(&store, port, None);
    let text = common::ok(child.wait_with_output().expect("run"));
    let line = text
        .lines()
        .find(|l| l.starts_with("cluster: "))
        .unwrap_or_else(|| panic!("no cluster summary: {text}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|t| t.parse().ok())
        .collect();
    let [
        queued,
        stored_new,
        stored_again,
        _applied,
        _merges,
        _full,
        unsent,
        _other,
    ] = numbers[..]
    else {
        panic!("{line}")
    };
    println!("{line}");
    assert!(queued > 0);
    assert_eq!(queued, stored_new + stored_again + unsent, "{line}");
    assert_eq!(
        stored(port, "REID_EXEMPLARS", "reid.exemplars.gate-a.>"),
        Some(stored_new + stored_again),
        "{line}"
    );
    srv.stop();
}

/// A `reid-pipe run` node stopped part-way through the recording, while others go on, catches
/// up from its snapshot's stream position when it comes back: it applies what it missed, ends
/// holding every identity the others created, and creates none of its own.
#[test]
fn a_node_back_from_a_stop_catches_up_from_its_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let (port, srv) = server(&tmp.path().join("nats"));
    let clip = common::clip(tmp.path(), 4, 3);
    let run = |node: &str, args: &[&str]| {
        let (site, events) = node_site(tmp.path(), &clip, port, node, "");
        run_node(&site, &events, args)
    };
    let summary = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("cluster: "))
            .unwrap_or_default()
            .to_owned()
    };
    let (a, _) = run("gate-a", &[]);
    // B sees the first 40 frames and stops; C plays the whole recording meanwhile.
    let (b_first, _) = run("gate-b", &["--max-frames", "40"]);
    let (c, _) = run("gate-c", &[]);
    // B comes back: its events file starts again, its index from its snapshot.
    let (b_second, text) = run("gate-b", &[]);
    let applied = |line: &str| -> u64 {
        line.split(" stored already (retries), ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"))
    };
    let line = summary(&text);
    println!("B again: {line}");
    assert!(applied(&line) > 0, "B applied nothing it missed: {line}");
    for e in b_first.iter().chain(&b_second).chain(&c) {
        assert!(e["new_identity"] != true, "an identity created after A's: {e}");
    }
    // A's identities, less those A merged into others (a track's provisional identity settled).
    let merged_at_a: std::collections::BTreeSet<u64> = a
        .iter()
        .filter_map(|e| e["merged_from"].as_array())
        .flatten()
        .filter_map(serde_json::Value::as_u64)
        .collect();
    let created_at_a: std::collections::BTreeSet<u64> = a
        .iter()
        .filter(|e| e["new_identity"] == true)
        .filter_map(|e| e["identity"].as_u64())
        .filter(|id| !merged_at_a.contains(id))
        .collect();
    assert!(!created_at_a.is_empty());
    let (_, index) = snapshot::load_for_inspection(&tmp.path().join("gate-b/index"))
        .unwrap()
        .expect("B's snapshot");
    let held: std::collections::BTreeSet<u64> = index.identities().keys().copied().collect();
    assert!(created_at_a.is_subset(&held), "A's {created_at_a:?}, B holds {held:?}");
    srv.stop();
}
