//! The page: HTML rendered by the server, with a little JavaScript that refreshes the camera
//! frames every second and the identity and event lists every three. Nothing is loaded from
//! elsewhere: styles and script are inline.

use super::api::{Segment, segment};
use super::{ApiError, Shared};
use crate::live::board::{Board, IdentityRecord};
use crate::live::events::Event;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Html;
use std::fmt::Write as _;
use std::sync::Arc;

/// Events listed on the page.
const EVENTS_SHOWN: usize = 50;
/// Identities listed on the page.
const IDENTITIES_SHOWN: usize = 100;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1em 2em;background:#fafafa;color:#222}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}table{border-collapse:collapse;font-size:.9em}\
td,th{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:middle}\
.cameras{display:flex;flex-wrap:wrap;gap:1em}.camera img{max-width:640px;width:100%;background:#333;min-height:120px}\
img.thumb{height:64px;border-radius:3px}.thumbs img{height:128px;margin:.2em}.yes{color:#080}.no{color:#999}\
.muted{color:#777}a{color:#05a}";

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `HH:MM:SS` (UTC) of a Unix time.
fn clock(t: f64) -> String {
    let s = t.max(0.0) as u64 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn page(title: &str, body: &str, script: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <meta name=\"viewport\" content=\"width=device-width\"><style>{STYLE}</style></head>\
         <body>{body}<script>{script}</script></body></html>",
        esc(title)
    ))
}

fn summary(board: &Board, identities: usize, present: usize) -> String {
    format!(
        "<p id=\"summary\">{} camera pair(s) · {identities} identities · {present} present now · up {:.0} s · \
         times in UTC · <a href=\"/api/stats\">stats</a> · <a href=\"/metrics\">metrics</a></p>",
        board.cameras().len(),
        super::now() - board.started
    )
}

fn identity_row(id: u64, r: &IdentityRecord) -> String {
    let thumb = if r.thumbnails.is_empty() {
        "<span class=\"muted\">—</span>".to_owned()
    } else {
        format!("<img class=\"thumb\" src=\"/api/identities/{id}/thumbnails/0\" alt=\"identity {id}\">")
    };
    let cameras: Vec<&str> = r.cameras.iter().map(String::as_str).collect();
    let modalities: Vec<&str> = r.modalities.iter().copied().collect();
    format!(
        "<tr class=\"identity\"><td>{thumb}</td><td><a href=\"/identities/{id}\">{id}</a></td><td>{}</td><td>{}</td>\
         <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        clock(r.first_seen),
        clock(r.last_seen),
        esc(&cameras.join(", ")),
        modalities.join(" + "),
        if r.cross_modal {
            "<span class=\"yes\">✓</span>"
        } else {
            ""
        },
        if r.present() {
            "<span class=\"yes\">● present</span>"
        } else {
            "<span class=\"no\">gone</span>"
        },
    )
}

fn event_row(e: &Event) -> String {
    let kind = e.kind.as_str();
    let identity = e
        .identity
        .map_or_else(String::new, |id| format!("<a href=\"/identities/{id}\">{id}</a>"));
    format!(
        "<tr class=\"event\"><td>{}</td><td>{kind}</td><td>{}</td><td>{}</td><td>{}</td><td>{identity}</td><td>{}</td><td>{}</td></tr>",
        clock(e.time),
        esc(&e.camera),
        e.modality,
        e.track_id,
        e.distance.map_or_else(String::new, |d| format!("{d:.3}")),
        if e.cross_modal {
            "<span class=\"yes\">✓</span>"
        } else {
            ""
        },
    )
}

/// Reloads each `img.live` every second, and the parts with `data-refresh` every three.
const SCRIPT: &str = "setInterval(()=>{for(const i of document.querySelectorAll('img.live')){\
i.src=i.dataset.src+'?t='+Date.now();}},1000);\
setInterval(async()=>{try{const r=await fetch(location.pathname,{cache:'no-store'});if(!r.ok)return;\
const d=new DOMParser().parseFromString(await r.text(),'text/html');\
for(const e of document.querySelectorAll('[data-refresh]')){const n=d.getElementById(e.id);if(n)e.innerHTML=n.innerHTML;}}catch(e){}},3000);";

/// `GET /`: cameras, identities, events.
pub async fn index(State(s): State<Arc<Shared>>) -> Html<String> {
    let board = &s.board;
    let (known, present) = board.counts();
    let identities = board.identities(IDENTITIES_SHOWN, None);
    let mut body = String::from("<h1>reid-pipe</h1>");
    body.push_str("<div id=\"head\" data-refresh>");
    body.push_str(&summary(board, known, present));
    body.push_str("</div><h2>Cameras</h2><div class=\"cameras\">");
    let people = board.present();
    for name in board.cameras() {
        let n = people.get(name).map_or(0, |p| p.0);
        let src = format!("/api/cameras/{}/latest.jpg", esc(name));
        let _ = write!(
            body,
            "<figure class=\"camera\"><img class=\"live\" src=\"{src}\" data-src=\"{src}\" alt=\"camera pair {} (visible | thermal)\">\
             <figcaption>{} · visible | thermal · <span id=\"people-{}\" data-refresh>{n} present</span></figcaption></figure>",
            esc(name),
            esc(name),
            esc(name)
        );
    }
    body.push_str(
        "</div><h2>Identities</h2><table><thead><tr><th></th><th>id</th><th>first seen</th><th>last seen</th>\
                   <th>cameras</th><th>modalities</th><th>cross-modal</th><th>now</th></tr></thead>\
                   <tbody id=\"identities\" data-refresh>",
    );
    for (id, r) in &identities {
        body.push_str(&identity_row(*id, r));
    }
    body.push_str(
        "</tbody></table><h2>Events</h2><table><thead><tr><th>time</th><th>type</th><th>camera</th>\
                   <th>modality</th><th>track</th><th>identity</th><th>distance</th><th>cross-modal</th></tr></thead>\
                   <tbody id=\"events\" data-refresh>",
    );
    for e in board.events(&Default::default(), EVENTS_SHOWN) {
        body.push_str(&event_row(&e));
    }
    body.push_str("</tbody></table>");
    page("reid-pipe", &body, SCRIPT)
}

/// A strip of sightings over time: one row per camera and modality, one dot per sighting.
fn timeline(r: &IdentityRecord) -> String {
    let rows: Vec<(String, &'static str)> = r
        .cameras
        .iter()
        .flat_map(|c| ["visible", "thermal"].map(|m| (c.clone(), m)))
        .collect();
    let (t0, t1) = (r.first_seen, r.last_seen.max(r.first_seen + 1.0));
    let (width, row_h, left) = (720.0, 22.0, 150.0);
    let mut svg = format!(
        "<svg id=\"timeline\" width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"sightings over time\">",
        width + left + 10.0,
        row_h * rows.len() as f64 + 24.0
    );
    for (i, (camera, modality)) in rows.iter().enumerate() {
        let y = row_h * i as f64 + row_h / 2.0;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{:.0}\" font-size=\"12\">{} {modality}</text><line x1=\"{left}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#ddd\"/>",
            y + 4.0,
            esc(camera),
            left + width
        );
        for sg in r
            .sightings
            .iter()
            .filter(|s| &s.camera == camera && s.modality.as_str() == *modality)
        {
            let x = left + width * (sg.time - t0) / (t1 - t0);
            let colour = if *modality == "visible" { "#1f77b4" } else { "#d62728" };
            let _ = write!(svg, "<circle cx=\"{x:.1}\" cy=\"{y}\" r=\"4\" fill=\"{colour}\"/>");
        }
    }
    let bottom = row_h * rows.len() as f64 + 18.0;
    let _ = write!(
        svg,
        "<text x=\"{left}\" y=\"{bottom}\" font-size=\"11\">{}</text><text x=\"{}\" y=\"{bottom}\" font-size=\"11\" text-anchor=\"end\">{}</text></svg>",
        clock(t0),
        left + width,
        clock(t1)
    );
    svg
}

/// `GET /identities/{id}`: sightings over time and exemplar thumbnails.
pub async fn identity(State(s): State<Arc<Shared>>, id: Segment<String>) -> Result<Html<String>, ApiError> {
    let id = segment(id)?;
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("identity: expected a whole number, found {:?}", id)))?;
    let r = s
        .board
        .identity(id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no identity {id}")))?;
    let mut body =
        format!("<p><a href=\"/\">← all cameras</a></p><h1>Identity {id}</h1><div id=\"about\" data-refresh><table>");
    body.push_str(
        "<thead><tr><th></th><th>id</th><th>first seen</th><th>last seen</th><th>cameras</th><th>modalities</th>\
                   <th>cross-modal</th><th>now</th></tr></thead><tbody>",
    );
    body.push_str(&identity_row(id, &r));
    let _ = write!(
        body,
        "</tbody></table><p>{} track(s) carried it.</p></div>",
        r.tracks_seen
    );
    body.push_str("<h2>Exemplars</h2><div class=\"thumbs\" id=\"thumbs\" data-refresh>");
    for (n, t) in r.thumbnails.iter().enumerate() {
        let _ = write!(
            body,
            "<img src=\"/api/identities/{id}/thumbnails/{n}\" alt=\"{} {} at {}\" title=\"{} {} at {}\">",
            esc(&t.camera),
            t.modality,
            clock(t.time),
            esc(&t.camera),
            t.modality,
            clock(t.time)
        );
    }
    body.push_str("</div><h2>Sightings over time</h2><div id=\"time\" data-refresh>");
    body.push_str(&timeline(&r));
    body.push_str("<table><thead><tr><th>time</th><th>type</th><th>camera</th><th>modality</th><th>track</th><th>distance</th><th>cross-modal</th></tr></thead><tbody>");
    for sg in r.sightings.iter().rev() {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            clock(sg.time),
            sg.kind.as_str(),
            esc(&sg.camera),
            sg.modality,
            sg.track_id,
            sg.distance.map_or_else(String::new, |d| format!("{d:.3}")),
            if sg.cross_modal { "✓" } else { "" }
        );
    }
    body.push_str("</tbody></table></div>");
    Ok(page(&format!("reid-pipe · identity {id}"), &body, SCRIPT))
}
