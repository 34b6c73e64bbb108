//! The operator's view against real clients while `reid-pipe run` plays a generated scene in a
//! loop: the JSON API (shapes, filters, errors, 50 clients at once), `/metrics` through
//! `promtool check metrics`, the page in headless Chromium (with a screenshot), the RTSP restream
//! played by `gst-launch-1.0`, and bad input (a port in use, a malformed request, a client that
//! leaves mid-answer); Home Assistant's discovery on a real mosquitto broker, and the events
//! against their published JSON Schema.

mod common;

use common::{bin, broker, clip, fails, free_port, free_ports, ok, repo, scene_site, terminate};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A response: status code, content type, body.
struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` over HTTP/1.1 with `Connection: close`.
fn get(port: u16, path: &str) -> Reply {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    write!(c, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").expect("request");
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).expect("response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("headers end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    let mut body = raw[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = unchunk(&body);
    }
    Reply {
        status,
        content_type,
        body,
    }
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").expect("chunk size");
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).expect("hex").trim(), 16).expect("size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 4 + size..];
    }
}

/// The pixel size of a JPEG, decoded by OpenCV (panics if it does not decode).
fn jpeg_size(bytes: &[u8]) -> (i32, i32) {
    use opencv::prelude::*;
    let buf = opencv::core::Vector::<u8>::from_slice(bytes);
    let m = opencv::imgcodecs::imdecode(&buf, opencv::imgcodecs::IMREAD_COLOR).expect("decode");
    assert!(!m.empty(), "not a JPEG");
    (m.cols(), m.rows())
}

fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The scene site, its sources looping in real time (10 frames/s, as live cameras deliver them;
/// the run goes on until stopped), with the page on `http` and the restream on `rtsp`.
fn looping_site(dir: &Path, http: u16, rtsp: u16) -> PathBuf {
    let clip = clip(dir, 3, 11);
    let template = dir.join("looping.pipeline");
    let images = std::fs::read_to_string(repo("pipelines/images.pipeline")).expect("template");
    let live = images
        .replace("index=0", "index=0 loop=true")
        .replace("! pngdec !", "! pngdec ! identity sync=true !");
    assert_ne!(live, images);
    std::fs::write(&template, live).expect("template");
    let model = format!(
        "backbone = \"mobilenetv2\"\nweights = \"{}\"\ninput_size = [256, 128]\n",
        repo("models/weights/mobilenetv2_imagenet.safetensors").display()
    );
    let extra = format!(
        "[outputs]\nhttp_listen = \"127.0.0.1:{http}\"\nevents = \"{}\"\n[outputs.rtsp]\nlisten = \"127.0.0.1:{rtsp}\"\nfps = 5\n",
        dir.join("events.jsonl").display()
    );
    let site = scene_site(dir, &clip, None, &model, &extra);
    let text = std::fs::read_to_string(&site).expect("site");
    let looped = text.replace(
        &repo("pipelines/images.pipeline").display().to_string(),
        &template.display().to_string(),
    );
    assert_ne!(looped, text);
    std::fs::write(&site, looped).expect("site");
    site
}

/// Stops the run with SIGINT on drop (a failed assertion must not leave it running).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        let _ = Command::new("kill").args(["-INT", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_operator_view_serves_the_page_the_api_metrics_and_rtsp_while_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = free_ports(2);
    let (http, rtsp) = (ports[0], ports[1]);
    let site = looping_site(dir.path(), http, rtsp);
    let child = bin()
        .args(["--log", "warn", "run"])
        .arg(&site)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let mut running = Running(child);

    // An identity with a thumbnail, and events.
    let id = wait_for("an identity with a thumbnail", Duration::from_secs(240), || {
        let r = TcpStream::connect(("127.0.0.1", http))
            .ok()
            .map(|_| get(http, "/api/identities"))?;
        let v = r.json();
        v["identities"]
            .as_array()?
            .iter()
            .find(|i| i["thumbnails"].as_array().is_some_and(|t| !t.is_empty()))
            .and_then(|i| i["id"].as_u64())
    });

    // --- /api/cameras and the latest frame
    let cams = get(http, "/api/cameras").json();
    let gate = &cams["cameras"][0];
    assert_eq!(gate["name"], "gate", "{cams}");
    let frame_url = wait_for("a frame", Duration::from_secs(30), || {
        get(http, "/api/cameras").json()["cameras"][0]["latest_frame"]
            .as_str()
            .map(str::to_owned)
    });
    let frame = get(http, &frame_url);
    assert_eq!((frame.status, frame.content_type.as_str()), (200, "image/jpeg"));
    let (w, h) = jpeg_size(&frame.body);
    assert!(w > h && h > 0, "visible | thermal side by side: {w}×{h}");
    assert_eq!(get(http, "/api/cameras/nope/latest.jpg").status, 404);

    // --- identities
    let list = get(http, "/api/identities").json();
    let first = &list["identities"][0];
    for key in [
        "id",
        "first_seen",
        "last_seen",
        "present",
        "cameras",
        "modalities",
        "cross_modal",
        "thumbnails",
    ] {
        assert!(!first[key].is_null(), "{key} in {first}");
    }
    let one = get(http, &format!("/api/identities/{id}")).json();
    assert_eq!(one["id"].as_u64(), Some(id));
    assert!(
        one["sightings"]
            .as_array()
            .is_some_and(|s| !s.is_empty() && s.iter().all(|x| x["camera"] == "gate")),
        "{one}"
    );
    let thumb = get(http, one["thumbnails"][0].as_str().expect("thumbnail url"));
    assert_eq!((thumb.status, thumb.content_type.as_str()), (200, "image/jpeg"));
    jpeg_size(&thumb.body);
    let unknown = get(http, "/api/identities/987654321");
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("987654321"))
    );
    let bad = get(http, "/api/identities/abc");
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].as_str().is_some_and(|e| e.contains("abc")));
    assert_eq!(get(http, &format!("/api/identities/{id}/thumbnails/99")).status, 404);

    // --- events: newest first, filters, errors
    let events = get(http, "/api/events?limit=20").json();
    let list = events["events"].as_array().expect("events");
    assert!(!list.is_empty() && list.len() <= 20, "{events}");
    let times: Vec<f64> = list.iter().map(|e| e["time"].as_f64().expect("time")).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    let cutoff = times[times.len() / 2];
    let after = get(http, &format!("/api/events?after={cutoff}&limit=1000")).json();
    let later: Vec<f64> = after["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["time"].as_f64().expect("time"))
        .collect();
    // Times compared within a microsecond: JSON numbers parse back within an ulp.
    assert!(
        !later.is_empty() && later.iter().all(|t| *t > cutoff - 1e-6),
        "after={cutoff}: {later:?}"
    );
    let oldest = times[times.len() - 1];
    assert!(
        oldest >= cutoff - 1e-6 || !later.iter().any(|t| (t - oldest).abs() < 1e-6),
        "after={cutoff}: {later:?}"
    );
    let recent = list
        .iter()
        .find_map(|e| e["identity"].as_u64())
        .expect("a recent event with an identity");
    let of_id = get(http, &format!("/api/events?identity={recent}")).json();
    let of_id = of_id["events"].as_array().expect("events");
    assert!(!of_id.is_empty() && of_id.iter().all(|e| e["identity"].as_u64() == Some(recent)));
    let at_gate = get(http, "/api/events?camera=gate&limit=5").json();
    assert!(
        at_gate["events"]
            .as_array()
            .expect("events")
            .iter()
            .all(|e| e["camera"] == "gate")
    );
    for (query, named) in [
        ("camera=nope", "camera"),
        ("limit=many", "limit"),
        ("limit=0", "limit"),
        ("after=yesterday", "after"),
        ("identity=-1", "identity"),
        ("colour=red", "colour"),
    ] {
        let r = get(http, &format!("/api/events?{query}"));
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        assert!(
            r.json()["error"].as_str().is_some_and(|e| e.contains(named)),
            "{query}: {}",
            r.text()
        );
    }
    let mut c = TcpStream::connect(("127.0.0.1", http)).expect("connect");
    c.write_all(b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    c.read_to_string(&mut answer).expect("answer");
    assert!(
        answer.starts_with("HTTP/1.1 405") && answer.contains("only GET"),
        "{answer}"
    );
    let undecodable = get(http, "/api/identities/%FF");
    assert_eq!(undecodable.status, 400);
    assert!(undecodable.json()["error"].is_string());
    let nowhere = get(http, "/api/nothing");
    assert_eq!(nowhere.status, 404);
    assert!(nowhere.json()["error"].is_string());

    // --- stats
    let stats = wait_for("frame rates", Duration::from_secs(20), || {
        let s = get(http, "/api/stats").json();
        (s["cameras"]["gate"]["visible"]["fps_in"].as_f64()? > 0.0).then_some(s)
    });
    // Sources play at 10 frames/s: a rate well above that would be a wrong window or a total
    // (frames held back by a stall are let through at once after it: some margin above 10).
    let fps = stats["cameras"]["gate"]["visible"]["fps_in"].as_f64().expect("fps");
    assert!(fps <= 25.0, "fps_in {fps}: {stats}");
    assert!(stats["embed"]["batches"].as_u64() > Some(0), "{stats}");
    assert!(
        stats["cameras"]["gate"]["thermal"]["frames_processed"].as_u64() > Some(0),
        "{stats}"
    );
    assert!(stats["dropped"].is_array() && stats["queues"].is_object(), "{stats}");
    assert_eq!(stats["device"], "cpu");
    assert!(stats["process"]["rss_bytes"].as_u64() > Some(0), "{stats}");

    // --- /metrics through promtool
    let metrics = get(http, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        metrics.content_type
    );
    let text = metrics.text();
    assert!(
        text.contains("reid_frames_in_total{camera=\"gate\",modality=\"visible\"}"),
        "{text}"
    );
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus, installed by scripts/setup.sh)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // --- 50 clients at once, while the pipeline runs
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let path = ["/api/stats", "/api/identities", "/api/events", "/", "/metrics"][i % 5];
            std::thread::spawn(move || get(http, path).status)
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("client"), 200);
    }

    // --- bad clients: a malformed request line, one that leaves mid-answer
    let mut c = TcpStream::connect(("127.0.0.1", http)).expect("connect");
    c.write_all(b"NOT HTTP AT ALL\r\n\r\n").expect("write");
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400"), "{answer}");
    for _ in 0..5 {
        let mut c = TcpStream::connect(("127.0.0.1", http)).expect("connect");
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        drop(c);
    }
    assert_eq!(get(http, "/api/stats").status, 200, "the server goes on");

    // --- the page, in headless Chromium
    let page = get(http, "/");
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    let screenshot = dir.path().join("operator-view.png");
    let chromium = |args: &[&str]| {
        Command::new("timeout")
            .args([
                "120",
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--virtual-time-budget=4000",
            ])
            .args(args)
            .arg(format!("http://127.0.0.1:{http}/"))
            .output()
            .expect("chromium (Debian package chromium, installed by scripts/setup.sh)")
    };
    let dom = chromium(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(dom.contains("<figcaption>gate"), "the camera pair is listed: {dom}");
    assert!(
        dom.contains("class=\"identity\"") && dom.contains("class=\"thumb\""),
        "identities with thumbnails: {dom}"
    );
    assert!(dom.contains("class=\"event\""), "event rows: {dom}");
    let shot = chromium(&[
        &format!("--screenshot={}", screenshot.display()),
        "--window-size=1280,1000",
    ]);
    assert!(
        screenshot.exists(),
        "screenshot: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let target = repo("target/operator-view.png");
    let _ = std::fs::copy(&screenshot, &target);
    let identity_page = get(http, &format!("/identities/{id}"));
    assert_eq!(identity_page.status, 200);
    assert!(identity_page.text().contains("<svg id=\"timeline\""));
    assert_eq!(get(http, "/identities/987654321").status, 404);

    // --- the RTSP restream, played by a real client
    let played = Command::new("timeout")
        .args(["90", "gst-launch-1.0", "-q", "rtspsrc"])
        .arg(format!("location=rtsp://127.0.0.1:{rtsp}/annotated/gate"))
        .args([
            "protocols=tcp",
            "!",
            "rtph264depay",
            "!",
            "h264parse",
            "!",
            "openh264dec",
            "!",
            "fakesink",
            "num-buffers=10",
        ])
        .output()
        .expect("gst-launch-1.0");
    assert!(
        played.status.success(),
        "10 decoded frames from the restream: {}{}",
        String::from_utf8_lossy(&played.stdout),
        String::from_utf8_lossy(&played.stderr)
    );

    // --- a second run on the same port stops before its sources start, naming the key
    let busy = fails(
        bin()
            .args(["--log", "warn", "run"])
            .arg(&site)
            .output()
            .expect("second run"),
    );
    assert!(
        busy.contains("outputs.http_listen") && busy.contains("cannot listen"),
        "{busy}"
    );

    // --- the run stops cleanly on SIGINT
    let _ = Command::new("kill")
        .args(["-INT", &running.0.id().to_string()])
        .status();
    let status = wait_for("the run to stop", Duration::from_secs(60), || {
        running.0.try_wait().ok().flatten()
    });
    let mut stderr = String::new();
    if let Some(mut e) = running.0.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Every retained message under `topics` on the broker: (topic, payload).
fn retained(port: u16, topics: &[&str]) -> Vec<(String, String)> {
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-v",
        "--retained-only",
        "-W",
        "3",
    ]);
    for t in topics {
        cmd.args(["-t", t]);
    }
    let out = cmd.output().expect("mosquitto_sub");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(t, p)| (t.to_owned(), p.to_owned())))
        .collect()
}

#[test]
fn home_assistant_discovery_is_retained_and_events_follow_their_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let store = dir.path().join("broker");
    std::fs::create_dir_all(&store).expect("store");
    let b = broker(&store, port);
    let clip = clip(dir.path(), 3, 5);
    let model = format!(
        "backbone = \"mobilenetv2\"\nweights = \"{}\"\ninput_size = [256, 128]\n",
        repo("models/weights/mobilenetv2_imagenet.safetensors").display()
    );
    let events = dir.path().join("events.jsonl");
    let extra = format!(
        "[outputs]\nevents = \"{}\"\n[outputs.mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nclient_id = \"site-a\"\nhome_assistant = true\n",
        events.display()
    );
    let site = scene_site(dir.path(), &clip, None, &model, &extra);
    ok(bin().args(["--log", "warn", "run"]).arg(&site).output().expect("run"));
    let messages = retained(port, &["homeassistant/#", "reid-pipe/#"]);
    terminate(b);
    let get = |topic: &str| {
        messages
            .iter()
            .find(|(t, _)| t == topic)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| panic!("no retained {topic} in {messages:?}"))
    };
    // Discovery: a config per sensor, pointing at its state and the availability topic.
    for (object, state) in [
        ("identities_present", "reid-pipe/identities_present"),
        ("gate_people", "reid-pipe/gate/people"),
        ("gate_last_identity", "reid-pipe/gate/last_identity"),
    ] {
        let config: Value =
            serde_json::from_str(&get(&format!("homeassistant/sensor/site-a/{object}/config"))).expect("json");
        assert_eq!(config["state_topic"], state, "{config}");
        assert_eq!(config["availability_topic"], "reid-pipe/availability");
        assert_eq!(config["unique_id"], format!("site-a_{object}"));
        assert_eq!(config["device"]["identifiers"][0], "site-a");
    }
    // A clean stop leaves "offline"; every track ended, so nobody is present.
    assert_eq!(get("reid-pipe/availability"), "offline");
    assert_eq!(get("reid-pipe/gate/people"), "0");
    assert_eq!(get("reid-pipe/identities_present"), "0");
    let last: u64 = get("reid-pipe/gate/last_identity").parse().expect("an identity id");
    let lines = std::fs::read_to_string(&events).expect("events");
    let ids: Vec<u64> = lines
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["identity"].as_u64())
        .collect();
    assert_eq!(ids.last(), Some(&last), "the last identity seen at the gate");

    // Every event matches docs/event.schema.json, and the schema refuses a broken one.
    let check = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
lines = open(sys.argv[2]).read().splitlines()
assert lines, "no events"
for n, line in enumerate(lines, 1):
    errors = list(v.iter_errors(json.loads(line)))
    assert not errors, f"line {n}: {errors[0].message}"
broken = json.loads(lines[0]); broken["type"] = "bogus"; del broken["camera"]
assert len(list(v.iter_errors(broken))) == 2
print(len(lines))
"#;
    let out = Command::new("python3")
        .args(["-c", check])
        .arg(repo("docs/event.schema.json"))
        .arg(&events)
        .output()
        .expect("python3 with jsonschema (Debian package python3-jsonschema, installed by scripts/setup.sh)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let checked: usize = String::from_utf8_lossy(&out.stdout).trim().parse().expect("count");
    assert_eq!(checked, lines.lines().count());
}
