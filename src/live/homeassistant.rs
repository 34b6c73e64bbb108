//! Home Assistant over MQTT (`outputs.mqtt.home_assistant = true`), the way its MQTT integration
//! expects: discovery configs (retained) under `<discovery_prefix>/sensor/<node>/<sensor>/config`
//! for the identities present, and per camera pair the people present and the last identity
//! seen; an availability topic `<topic_prefix>/availability` (`online` on each connection,
//! `offline` as the last will and on a clean stop, retained); and the sensors' states, retained,
//! published when they change.

use super::board::Board;
use super::events::Event;
use crate::config::site::Mqtt;
use serde_json::json;
use std::collections::HashMap;

/// A retained message: topic and payload.
pub type Retained = (String, String);

/// The availability topic.
pub fn availability_topic(cfg: &Mqtt) -> String {
    format!("{}/availability", cfg.topic_prefix.trim_end_matches('/'))
}

/// The node id in discovery topics and unique ids: the client id with characters other than
/// letters, digits, `_` and `-` replaced by `_`.
fn node_id(cfg: &Mqtt) -> String {
    cfg.client_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A topic level and object id Home Assistant accepts: `[A-Za-z0-9_-]` (a `.` becomes `_`).
fn object_id(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The sensors: (object id, name, state topic, unit).
fn sensors(cfg: &Mqtt, cameras: &[String]) -> Vec<(String, String, String, Option<&'static str>)> {
    let prefix = cfg.topic_prefix.trim_end_matches('/');
    let mut out = vec![(
        "identities_present".to_owned(),
        "Identities present".to_owned(),
        format!("{prefix}/identities_present"),
        Some("people"),
    )];
    for c in cameras {
        let id = object_id(c);
        out.push((
            format!("{id}_people"),
            format!("{c} people"),
            format!("{prefix}/{c}/people"),
            Some("people"),
        ));
        out.push((
            format!("{id}_last_identity"),
            format!("{c} last identity"),
            format!("{prefix}/{c}/last_identity"),
            None,
        ));
    }
    out
}

/// What is sent on each connection: `online`, then every discovery config.
pub fn announcements(cfg: &Mqtt, cameras: &[String]) -> Vec<Retained> {
    let node = node_id(cfg);
    let availability = availability_topic(cfg);
    let mut out = vec![(availability.clone(), "online".to_owned())];
    for (object, name, state, unit) in sensors(cfg, cameras) {
        let mut config = json!({
            "name": name,
            "unique_id": format!("{node}_{object}"),
            "object_id": format!("reid_pipe_{object}"),
            "state_topic": state,
            "availability_topic": availability,
            "device": {
                "identifiers": [node],
                "name": format!("reid-pipe {node}"),
                "manufacturer": "reid-pipe",
                "model": "visible–thermal re-identification",
                "sw_version": env!("CARGO_PKG_VERSION"),
            },
        });
        if let Some(unit) = unit {
            config["unit_of_measurement"] = json!(unit);
            config["state_class"] = json!("measurement");
        }
        let topic = format!("{}/sensor/{node}/{object}/config", cfg.discovery_prefix);
        out.push((topic, config.to_string()));
    }
    out
}

/// The sensors' states as last queued for the broker.
pub struct States {
    prefix: String,
    published: HashMap<String, String>,
    /// The broker connection those were sent on: a new one gets every state again.
    connection: u64,
}

impl States {
    pub fn new(cfg: &Mqtt) -> Self {
        Self {
            prefix: cfg.topic_prefix.trim_end_matches('/').to_owned(),
            published: HashMap::new(),
            connection: 0,
        }
    }

    /// Publishes, through `send` (false when it could not queue), the states that changed with
    /// `event` (already recorded on `board`), or every state on a new `connection`. A state that
    /// could not be queued is tried again with the next event.
    pub fn publish(&mut self, event: &Event, board: &Board, connection: u64, mut send: impl FnMut(Retained) -> bool) {
        if connection != self.connection {
            self.connection = connection;
            self.published.clear();
        }
        for (topic, payload) in self.changed(event, board) {
            if send((topic.clone(), payload.clone())) {
                self.published.insert(topic, payload);
            }
        }
    }

    /// The states that differ from those queued last.
    fn changed(&self, event: &Event, board: &Board) -> Vec<Retained> {
        let present = board.present();
        let mut now: Vec<Retained> = vec![(
            format!("{}/identities_present", self.prefix),
            board.identities_present().to_string(),
        )];
        for (camera, (people, _)) in &present {
            now.push((format!("{}/{camera}/people", self.prefix), people.to_string()));
        }
        if let Some(id) = event.identity {
            now.push((
                format!("{}/{}/last_identity", self.prefix, event.camera),
                id.to_string(),
            ));
        }
        now.retain(|(topic, payload)| self.published.get(topic) != Some(payload));
        now
    }
}
