//! The JSON API: `/api/stats`, `/api/cameras`, `/api/identities`, `/api/identities/{id}`,
//! `/api/events`, and the JPEGs (latest annotated frame, exemplar thumbnails). Errors are JSON
//! (`{"error": "…"}`) with 400 for a bad parameter and 404 for what does not exist.

use super::{ApiError, Shared};
use crate::live::board::{EventFilter, IdentityRecord};
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// A path segment (`{id}`, `{name}`), refused as JSON when it does not decode.
pub type Segment<T> = Result<Path<T>, PathRejection>;

/// The decoded path segments, or a 400 that says why not.
pub fn segment<T>(path: Segment<T>) -> Result<T, ApiError> {
    path.map(|Path(v)| v)
        .map_err(|e| ApiError::bad_request(format!("malformed path: {e}")))
}

/// The query parameters, refusing malformed ones and any not in `known`.
fn params(query: Params, known: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let Query(map) = query.map_err(|e| ApiError::bad_request(format!("malformed query: {e}")))?;
    if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown parameter {unknown:?}; this endpoint takes {}",
            known.join(", ")
        )));
    }
    Ok(map)
}

/// Parameter `name` parsed as `T`, if given.
fn parsed<T: std::str::FromStr>(map: &HashMap<String, String>, name: &str, what: &str) -> Result<Option<T>, ApiError> {
    map.get(name)
        .map(|v| {
            v.parse()
                .map_err(|_| ApiError::bad_request(format!("parameter {name}: expected {what}, found {v:?}")))
        })
        .transpose()
}

/// `limit`, between 1 and `max` (default `default`).
fn limit(map: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, ApiError> {
    let what = format!("a whole number from 1 to {max}");
    match parsed::<usize>(map, "limit", &what)? {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "parameter limit: expected {what}, found {n}"
        ))),
    }
}

fn identity_id(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("identity: expected a whole number, found {text:?}")))
}

/// An identity as the API shows it.
pub fn identity_json(id: u64, r: &IdentityRecord, with_sightings: bool) -> Value {
    let mut v = json!({
        "id": id,
        "first_seen": r.first_seen,
        "last_seen": r.last_seen,
        "present": r.present(),
        "cameras": r.cameras,
        "modalities": r.modalities,
        "cross_modal": r.cross_modal,
        "tracks": r.tracks_seen,
        "live_tracks": r.live_tracks.iter().map(|(c, m, t)| json!({"camera": c, "modality": m, "track_id": t})).collect::<Vec<_>>(),
        "thumbnails": (0..r.thumbnails.len()).map(|n| format!("/api/identities/{id}/thumbnails/{n}")).collect::<Vec<_>>(),
    });
    if with_sightings {
        v["sightings"] = json!(r.sightings);
    }
    v
}

/// `GET /api/identities?limit=&present=`: most recently seen first.
pub async fn identities(State(s): State<Arc<Shared>>, query: Params) -> Result<Json<Value>, ApiError> {
    let map = params(query, &["limit", "present"])?;
    let limit = limit(&map, 100, 10_000)?;
    let present = parsed::<bool>(&map, "present", "true or false")?;
    let list: Vec<Value> = s
        .board
        .identities(limit, present)
        .iter()
        .map(|(id, r)| identity_json(*id, r, false))
        .collect();
    Ok(Json(json!({ "identities": list })))
}

/// `GET /api/identities/{id}`: with its recent sightings.
pub async fn identity(State(s): State<Arc<Shared>>, id: Segment<String>) -> Result<Json<Value>, ApiError> {
    let id = identity_id(&segment(id)?)?;
    let r = s
        .board
        .identity(id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no identity {id}")))?;
    Ok(Json(identity_json(id, &r, true)))
}

/// `GET /api/identities/{id}/thumbnails/{n}`: an exemplar JPEG.
pub async fn thumbnail(
    State(s): State<Arc<Shared>>,
    Path((id, n)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = identity_id(&id)?;
    let n: usize = n
        .parse()
        .map_err(|_| ApiError::bad_request(format!("thumbnail: expected a whole number, found {n:?}")))?;
    let r = s
        .board
        .identity(id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no identity {id}")))?;
    let t = r
        .thumbnails
        .get(n)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("identity {id} has no thumbnail {n}")))?;
    Ok(jpeg(t.jpeg.clone()))
}

fn jpeg(bytes: axum::body::Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        bytes,
    )
        .into_response()
}

/// `GET /api/events?after=&camera=&identity=&limit=`: newest first.
pub async fn events(State(s): State<Arc<Shared>>, query: Params) -> Result<Json<Value>, ApiError> {
    let map = params(query, &["after", "camera", "identity", "limit"])?;
    let after = parsed::<f64>(&map, "after", "a Unix time in seconds")?;
    if after.is_some_and(|t| !t.is_finite()) {
        return Err(ApiError::bad_request(
            "parameter after: expected a finite Unix time in seconds",
        ));
    }
    let camera = map.get("camera").cloned();
    if let Some(c) = &camera
        && !s.board.cameras().contains(c)
    {
        return Err(ApiError::bad_request(format!(
            "parameter camera: no camera pair named {c:?} (there are {})",
            s.board.cameras().join(", ")
        )));
    }
    let filter = EventFilter {
        after,
        camera,
        identity: parsed::<u64>(&map, "identity", "an identity id (a whole number)")?,
    };
    let events = s
        .board
        .events(&filter, limit(&map, 100, crate::live::board::EVENTS_KEPT)?);
    Ok(Json(json!({ "events": events })))
}

/// `GET /api/cameras`: each camera pair, its people and its latest frame.
pub async fn cameras(State(s): State<Arc<Shared>>) -> Json<Value> {
    let present = s.board.present();
    let list: Vec<Value> = s
        .board
        .cameras()
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let frame = s.board.frame(i);
            let (people, tracks) = present.get(name).copied().unwrap_or_default();
            json!({
                "name": name,
                "people_present": people,
                "tracks_with_identity": tracks,
                "latest_frame": frame.as_ref().map(|_| format!("/api/cameras/{name}/latest.jpg")),
                "latest_frame_time": frame.as_ref().map(|f| f.time),
                "frame_size": frame.as_ref().map(|f| [f.width, f.height]),
            })
        })
        .collect();
    Json(json!({ "cameras": list }))
}

/// `GET /api/cameras/{name}/latest.jpg`.
pub async fn latest_frame(State(s): State<Arc<Shared>>, name: Segment<String>) -> Result<Response, ApiError> {
    let name = segment(name)?;
    let i = s
        .board
        .cameras()
        .iter()
        .position(|c| *c == name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no camera pair named {name:?}")))?;
    let frame = s
        .board
        .frame(i)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("camera pair {name:?} has no frame yet")))?;
    Ok(jpeg(frame.jpeg))
}

/// `GET /api/stats`.
pub async fn stats(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(super::stats::report(&s))
}
