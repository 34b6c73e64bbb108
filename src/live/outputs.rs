//! The output stage: every event goes to the JSON-lines file, standard output, MQTT and the
//! operator's view, as configured. The file is flushed whenever the queue runs empty, so a crash loses at most the
//! events of one burst, and never lines already written.

use super::board::Board;
use super::events::{Event, EventKind, EventLog};
use super::homeassistant::States;
use super::metrics::Metrics;
use super::mqtt::MqttSink;
use crossbeam_channel::Receiver;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The configured destinations.
pub struct Sinks {
    pub log: Option<EventLog>,
    pub stdout: bool,
    pub mqtt: Option<MqttSink>,
    /// The operator's view, when the HTTP server or Home Assistant's sensors need it.
    pub board: Option<Arc<Board>>,
    /// Home Assistant's sensor states (published over `mqtt`).
    pub home_assistant: Option<States>,
}

/// Runs until `input` closes; returns the sinks for closing.
pub fn run(input: &Receiver<(Event, Instant)>, mut sinks: Sinks, metrics: &Metrics) -> Sinks {
    let latency = metrics.latency("reid_frame_to_event_seconds", &[]);
    let failed = metrics.counter(
        "reid_dropped_total",
        &[("stage", "events_file"), ("reason", "write_failed")],
    );
    let [new, update, end] = ["new", "update", "end"].map(|k| metrics.counter("reid_events_total", &[("type", k)]));
    if let Some(mqtt) = &sinks.mqtt {
        metrics.adopt(
            "reid_dropped_total",
            &[("stage", "mqtt"), ("reason", "queue_full")],
            Arc::clone(&mqtt.dropped.queue_full),
        );
        metrics.adopt(
            "reid_dropped_total",
            &[("stage", "mqtt"), ("reason", "disconnected")],
            Arc::clone(&mqtt.dropped.disconnected),
        );
    }
    let mut file_failing = false;
    while let Ok((event, arrived)) = input.recv() {
        match event.kind {
            EventKind::New => &new,
            EventKind::Update => &update,
            EventKind::End => &end,
        }
        .fetch_add(1, Ordering::Relaxed);
        let line = match serde_json::to_string(&event) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("serialising an event: {e}");
                continue;
            }
        };
        if let Some(log) = &mut sinks.log {
            match log.write(&line) {
                Ok(()) => file_failing = false,
                Err(e) => {
                    if !file_failing {
                        tracing::error!("{}", crate::base::Chain(&e));
                    }
                    file_failing = true;
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if sinks.stdout {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
        if let Some(mqtt) = &sinks.mqtt {
            mqtt.publish(&event, &line);
        }
        if let Some(board) = &sinks.board {
            board.record(&event);
            if let (Some(states), Some(mqtt)) = (&mut sinks.home_assistant, &sinks.mqtt) {
                states.publish(&event, board, mqtt.connections(), |state| mqtt.publish_retained(state));
            }
        }
        latency.observe(arrived.elapsed().as_secs_f64());
        if input.is_empty()
            && let Some(log) = &mut sinks.log
            && let Err(e) = log.flush()
        {
            tracing::error!("{}", crate::base::Chain(&e));
        }
    }
    if let Some(log) = &mut sinks.log
        && let Err(e) = log.flush()
    {
        tracing::error!("{}", crate::base::Chain(&e));
    }
    sinks
}
