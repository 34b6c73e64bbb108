//! Publishing events over MQTT (rumqttc): one topic per camera pair,
//! `<topic_prefix>/<camera>/events`, JSON payloads (`docs/event.schema.json`), the configured QoS;
//! with `home_assistant`, also the discovery configs, availability and sensor states of
//! [`super::homeassistant`], retained.
//!
//! A background thread drives the connection and reconnects (every second) when the broker goes
//! away. Meanwhile events wait in the client's queue, bounded by `outputs.mqtt.buffer`; events
//! that find the queue full are dropped and counted. The session is persistent (clean session
//! off), so QoS 1 and 2 publications in flight when the connection broke are sent again once the
//! broker resumes the session; at QoS 0, and with a broker that lost its sessions, they are lost.

use super::events::Event;
use super::homeassistant::{self, Retained};
use crate::config::site::Mqtt;
use rumqttc::{Client, Connection, LastWill, MqttOptions, QoS, Transport};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The MQTT side of the outputs.
pub struct MqttSink {
    client: Client,
    qos: QoS,
    prefix: String,
    /// Events dropped because the queue was full, while the broker was connected and while not.
    pub dropped: Drops,
    published: Arc<AtomicU64>,
    /// Whether the broker connection is up (for the drop reason).
    connected: Arc<AtomicBool>,
    connections: Arc<AtomicU64>,
    closing: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The availability topic, with Home Assistant on.
    availability: Option<String>,
}

/// Events dropped with the queue full, by the state of the connection at the time.
#[derive(Debug, Clone, Default)]
pub struct Drops {
    /// The broker was connected but slower than the events.
    pub queue_full: Arc<AtomicU64>,
    /// The broker was away and the queue filled up.
    pub disconnected: Arc<AtomicU64>,
}

impl Drops {
    /// Both reasons together.
    pub fn total(&self) -> u64 {
        self.queue_full.load(Ordering::Relaxed) + self.disconnected.load(Ordering::Relaxed)
    }
}

/// Settings of `outputs.mqtt` that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("outputs.mqtt.password_env: the variable {0} is not set")]
    PasswordUnset(String),
    #[error("outputs.mqtt: cannot start the client thread")]
    Thread(#[source] std::io::Error),
}

impl MqttSink {
    /// Connects in the background; fails only on settings that cannot work (a password variable
    /// that is not set). `cameras` name the camera pairs for Home Assistant's sensors.
    pub fn start(cfg: &Mqtt, cameras: &[String]) -> Result<Self, MqttError> {
        let mut opts = MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
        opts.set_keep_alive(Duration::from_secs(10));
        // A persistent session: after a reconnect the broker resumes it, so publications that
        // were in flight are sent again instead of being discarded with a fresh session.
        opts.set_clean_session(false);
        if let Some(user) = &cfg.username {
            let password = match &cfg.password_env {
                Some(var) => std::env::var(var).map_err(|_| MqttError::PasswordUnset(var.clone()))?,
                None => String::new(),
            };
            opts.set_credentials(user, password);
        }
        if cfg.tls {
            // rustls on ring; the system's root certificates.
            let _ = rustls::crypto::ring::default_provider().install_default();
            opts.set_transport(Transport::tls_with_default_config());
        }
        let availability = cfg.home_assistant.then(|| homeassistant::availability_topic(cfg));
        if let Some(topic) = &availability {
            opts.set_last_will(LastWill::new(topic, "offline", QoS::AtLeastOnce, true));
        }
        // Room for the announcements on top of the events' buffer.
        let announce = if cfg.home_assistant {
            homeassistant::announcements(cfg, cameras)
        } else {
            Vec::new()
        };
        let (client, connection) = Client::new(opts, cfg.buffer + announce.len() + 1);
        let qos = match cfg.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        let closing = Arc::new(AtomicBool::new(false));
        let published = Arc::new(AtomicU64::new(0));
        let connected = Arc::new(AtomicBool::new(false));
        let broker = format!("{}:{}", cfg.host, cfg.port);
        let connections = Arc::new(AtomicU64::new(0));
        let link = Link {
            closing: Arc::clone(&closing),
            published: Arc::clone(&published),
            connected: Arc::clone(&connected),
            connections: Arc::clone(&connections),
            client: client.clone(),
            announce,
        };
        let thread = std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || drive(connection, &broker, &link))
            .map_err(MqttError::Thread)?;
        Ok(Self {
            client,
            qos,
            prefix: cfg.topic_prefix.trim_end_matches('/').to_owned(),
            dropped: Drops::default(),
            published,
            connected,
            connections,
            closing,
            thread: Some(thread),
            availability,
        })
    }

    /// Queues a retained message at QoS 1 (a Home Assistant state); never blocks. A full queue
    /// drops it (`false`), counted with the events.
    pub fn publish_retained(&self, (topic, payload): Retained) -> bool {
        let queued = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, true, payload.into_bytes())
            .is_ok();
        if !queued {
            self.count_drop();
        }
        queued
    }

    /// Connections made to the broker so far (each reconnection counts).
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    fn count_drop(&self) {
        let reason = if self.connected.load(Ordering::Relaxed) {
            &self.dropped.queue_full
        } else {
            &self.dropped.disconnected
        };
        reason.fetch_add(1, Ordering::Relaxed);
    }

    /// Queues one event; never blocks.
    pub fn publish(&self, event: &Event, payload: &str) {
        let topic = format!("{}/{}/events", self.prefix, event.camera);
        if self
            .client
            .try_publish(topic, self.qos, false, payload.as_bytes().to_vec())
            .is_err()
        {
            self.count_drop();
        }
    }

    /// Publications written to the broker connection (retransmissions included).
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Sends what is queued (waiting up to `grace` for an absent broker), then disconnects.
    pub fn close(mut self, grace: Duration) {
        // A clean stop says so (the last will covers the others).
        if let Some(topic) = self.availability.take() {
            let _ = self.publish_retained((topic, "offline".to_owned()));
        }
        // Never blocks: with the broker away and the queue full, the disconnect is skipped and
        // the connection thread is left to end at its next timeout.
        let _ = self.client.try_disconnect();
        let deadline = Instant::now() + grace;
        while let Some(t) = &self.thread {
            if t.is_finished() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.closing.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && t.is_finished()
        {
            let _ = t.join();
        }
    }
}

/// What the connection thread shares with the sink.
struct Link {
    closing: Arc<AtomicBool>,
    published: Arc<AtomicU64>,
    connected: Arc<AtomicBool>,
    connections: Arc<AtomicU64>,
    /// Queues the announcements.
    client: Client,
    /// Sent (retained) on each connection, before anything else.
    announce: Vec<Retained>,
}

/// Drives the connection; on each connection, queues the announcements first.
fn drive(mut connection: Connection, broker: &str, link: &Link) {
    let Link {
        closing,
        published,
        connected,
        connections,
        client,
        announce,
    } = link;
    let mut down_since: Option<Instant> = None;
    loop {
        // Longer than a connection attempt (TCP, TLS), which a timeout would cancel.
        match connection.recv_timeout(Duration::from_secs(8)) {
            Ok(Ok(event)) => {
                use rumqttc::{Event, Outgoing, Packet};
                match event {
                    Event::Incoming(Packet::ConnAck(_)) => {
                        connected.store(true, Ordering::Relaxed);
                        connections.fetch_add(1, Ordering::Relaxed);
                        for (topic, payload) in announce {
                            let _ = client.try_publish(topic, QoS::AtLeastOnce, true, payload.clone().into_bytes());
                        }
                        if down_since.take().is_some() {
                            tracing::info!("MQTT broker {broker}: reconnected");
                        }
                    }
                    Event::Outgoing(Outgoing::Publish(_)) => {
                        published.fetch_add(1, Ordering::Relaxed);
                    }
                    Event::Outgoing(Outgoing::Disconnect) => return,
                    _ => {}
                }
            }
            Ok(Err(e)) => {
                connected.store(false, Ordering::Relaxed);
                if down_since.is_none() {
                    tracing::warn!("MQTT broker {broker}: {e}; retrying every second, events are queued");
                    down_since = Some(Instant::now());
                }
                if closing.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(rumqttc::RecvTimeoutError::Timeout) => {
                if closing.load(Ordering::Relaxed) {
                    return;
                }
            }
            Err(rumqttc::RecvTimeoutError::Disconnected) => return,
        }
    }
}
