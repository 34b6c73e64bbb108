//! The node's connection to NATS JetStream, on a thread of its own with a small tokio runtime:
//! it publishes the node's exemplars (each under a message id, so a retried publication is
//! stored once), reads every exemplar of the stream through the node's durable consumer, records
//! merges in the key-value bucket with compare-and-set, and watches the bucket for everyone's.
//!
//! While the servers are away the node goes on alone: exemplars wait in a bounded queue (what no
//! longer fits is dropped and counted) and are published when the servers return; a publication
//! without an acknowledgement is retried under the same message id.

use super::wire::{self, ExemplarMeta};
use super::{ClusterError, Counters};
use async_nats::jetstream::{self, consumer, kv, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use reid_core::config::site::Cluster;
use std::collections::VecDeque;
use std::future::IntoFuture;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Publications awaiting their acknowledgement at once.
const WINDOW: usize = 256;
/// Pause before retrying after an error.
const RETRY: Duration = Duration::from_millis(250);
/// Longest wait for a publication's acknowledgement, from its sending.
const ACK_WAIT: Duration = Duration::from_secs(5);

/// An exemplar (or an identity event) ready to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub subject: String,
    /// The message id JetStream deduplicates on.
    pub id: String,
    pub payload: Bytes,
    /// An identity event for `cluster.events_subject`, not an exemplar.
    pub event: bool,
}

/// What the stream and the bucket bring in, in stream order per kind.
#[derive(Debug)]
pub enum Incoming {
    /// An exemplar of the stream (any node's, this one's included) at `sequence`.
    Exemplar {
        sequence: u64,
        meta: ExemplarMeta,
        vector: Vec<f32>,
    },
    /// A stream message that is not an exemplar.
    Garbled { sequence: u64, error: wire::WireError },
    /// Identity `from` was merged into the set of `into`.
    Merge { from: u64, into: u64 },
    /// The stream was created again since the node's snapshot: it is read from `next` on.
    Rewound { next: u64 },
}

/// Where the stream starts for this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A new node (or one whose index holds nothing of the stream): every exemplar kept.
    Everything,
    /// After the last sequence the node's snapshot applied.
    After(u64),
}

/// The running connection.
pub struct Link {
    exemplars: mpsc::Sender<Outgoing>,
    merges: mpsc::Sender<(u64, u64)>,
    events_subject: Option<String>,
    /// Prefix of event message ids: the node and its run.
    event_ids: String,
    events_sent: std::sync::atomic::AtomicU64,
    incoming: crossbeam_channel::Receiver<Incoming>,
    finish: Option<oneshot::Sender<Duration>>,
    thread: Option<std::thread::JoinHandle<()>>,
    counters: Counters,
}

/// The key claiming a node number in the bucket.
fn claim_key(number: u64) -> String {
    format!("node.{number}")
}

/// The key holding merged-away identity `id`'s parent.
fn merge_key(id: u64) -> String {
    format!("id.{id}")
}

fn secret(var: &str, key: &'static str) -> Result<String, ClusterError> {
    std::env::var(var).map_err(|_| ClusterError::MissingSecret {
        key,
        var: var.to_owned(),
    })
}

fn connect_options(cfg: &Cluster, counters: &Counters) -> Result<async_nats::ConnectOptions, ClusterError> {
    let connected = counters.connected.clone();
    let mut opts = async_nats::ConnectOptions::new()
        .name(format!("reid-pipe {}", cfg.node))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempt| Duration::from_millis((100 * attempt as u64).min(2000)))
        .event_callback(move |event| {
            let connected = connected.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        connected.store(1, Ordering::Relaxed);
                        tracing::info!("cluster: connected to NATS");
                    }
                    async_nats::Event::Disconnected => {
                        connected.store(0, Ordering::Relaxed);
                        tracing::warn!("cluster: NATS disconnected; working locally, exemplars queued");
                    }
                    other => tracing::debug!("cluster: NATS {other}"),
                }
            }
        });
    if let Some(user) = &cfg.user {
        let password = match &cfg.password_env {
            Some(var) => secret(var, "cluster.password_env")?,
            None => String::new(),
        };
        opts = opts.user_and_password(user.clone(), password);
    }
    if let Some(var) = &cfg.token_env {
        opts = opts.token(secret(var, "cluster.token_env")?);
    }
    Ok(opts)
}

/// The stream, the bucket and this node's claim on its number.
async fn set_up(
    js: &jetstream::Context,
    cfg: &Cluster,
    number: u64,
) -> Result<(stream::Stream, kv::Store), ClusterError> {
    let nats = |what: &'static str| move |e: async_nats::Error| ClusterError::Nats { what, source: e };
    let exemplars = js
        .get_or_create_stream(stream::Config {
            name: cfg.stream.clone(),
            subjects: vec![format!("{}.>", cfg.subject)],
            max_age: Duration::from_secs_f64(cfg.max_age_s),
            max_bytes: cfg.max_bytes,
            max_messages_per_subject: cfg.max_exemplars_per_identity,
            num_replicas: cfg.replicas,
            // Long enough that a publication retried after an outage of minutes is still known.
            duplicate_window: Duration::from_secs(600),
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        })
        .await
        .map_err(|e| nats("the exemplar stream")(e.into()))?;
    if let Some(subject) = &cfg.events_subject {
        js.get_or_create_stream(stream::Config {
            name: format!("{}_EVENTS", cfg.stream),
            subjects: vec![subject.clone()],
            max_age: Duration::from_secs_f64(cfg.max_age_s),
            max_bytes: cfg.max_bytes,
            num_replicas: cfg.replicas,
            duplicate_window: Duration::from_secs(600),
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| nats("the event stream")(e.into()))?;
    }
    // The bucket's stream is created here, laid out as the key-value API lays out its buckets:
    // the client's `create_key_value` first asks for account information in a form a 2.9
    // server does not give.
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{}", cfg.bucket),
        subjects: vec![format!("$KV.{}.>", cfg.bucket)],
        max_messages_per_subject: 1,
        num_replicas: cfg.replicas,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(|e| nats("the merge bucket")(e.into()))?;
    let bucket = js
        .get_key_value(cfg.bucket.as_str())
        .await
        .map_err(|e| nats("the merge bucket")(e.into()))?;
    let key = claim_key(number);
    match bucket.create(&key, Bytes::from(cfg.node.clone())).await {
        Ok(_) => {}
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
            let holder = bucket.get(&key).await.map_err(|e| nats("the node claim")(e.into()))?;
            let holder = holder
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            if holder != cfg.node {
                return Err(ClusterError::NodeNumberTaken {
                    node: cfg.node.clone(),
                    number,
                    holder,
                });
            }
        }
        Err(e) => return Err(nats("the node claim")(e.into())),
    }
    Ok((exemplars, bucket))
}

impl Link {
    /// Connects (waiting up to `cluster.connect_timeout_s`; the node works alone meanwhile and
    /// the link goes on trying), sets up the stream and bucket, claims node `number` (an error
    /// when another node holds it), and starts reading the stream from `start`; `run` tells this
    /// process's messages from an earlier one's.
    pub fn start(cfg: &Cluster, number: u64, run: u64, start: Start, counters: Counters) -> Result<Link, ClusterError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ClusterError::Runtime)?;
        let opts = connect_options(cfg, &counters)?;
        let (exemplars_tx, exemplars_rx) = mpsc::channel(cfg.outbox);
        let (merges_tx, merges_rx) = mpsc::channel(1024);
        let (incoming_tx, incoming_rx) = crossbeam_channel::bounded(4096);
        let (finish_tx, finish_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let cfg_thread = cfg.clone();
        let counters_thread = counters.clone();
        let thread = std::thread::Builder::new()
            .name("cluster".into())
            .spawn(move || {
                rt.block_on(async move {
                    let cfg = cfg_thread;
                    let client = match opts.connect(cfg.servers.clone()).await {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = ready_tx.send(Err(ClusterError::Nats {
                                what: "the connection",
                                source: e.into(),
                            }));
                            return;
                        }
                    };
                    let js = jetstream::new(client.clone());
                    let mut finish_rx = finish_rx;
                    let mut failures = 0u32;
                    let set_up_done = loop {
                        let attempt = tokio::select! {
                            r = set_up(&js, &cfg, number) => r,
                            _ = &mut finish_rx => break None,
                        };
                        match attempt {
                            Ok(v) => break Some(v),
                            Err(e @ ClusterError::NodeNumberTaken { .. }) => {
                                tracing::error!("cluster: {e}; this node works alone");
                                let _ = ready_tx.send(Err(e));
                                break None;
                            }
                            Err(e) => {
                                // Once at warning level: a fault that stays is named, not buried.
                                if failures == 3 {
                                    tracing::warn!("cluster: set-up still failing: {}", reid_core::base::Chain(&e));
                                } else {
                                    tracing::debug!("cluster: set-up not done yet: {}", reid_core::base::Chain(&e));
                                }
                                failures += 1;
                                tokio::time::sleep(RETRY * 4).await;
                            }
                        }
                    };
                    let Some((stream, bucket)) = set_up_done else {
                        // Never connected (or refused): what was queued was never published.
                        let mut left = exemplars_rx;
                        left.close();
                        let mut n = 0;
                        while left.try_recv().is_ok() {
                            n += 1;
                        }
                        counters_thread.unsent_at_exit.fetch_add(n, Ordering::Relaxed);
                        return;
                    };
                    let _ = ready_tx.send(Ok(()));
                    let reader = tokio::spawn(read_stream(stream, cfg.node.clone(), start, incoming_tx.clone()));
                    let watcher = tokio::spawn(watch_merges(bucket.clone(), incoming_tx));
                    let recorder = tokio::spawn(record_merges(bucket, merges_rx, counters_thread.clone()));
                    publish(&js, exemplars_rx, finish_rx, &counters_thread).await;
                    for task in [reader, watcher, recorder] {
                        task.abort();
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
                });
            })
            .map_err(ClusterError::Runtime)?;
        match ready_rx.recv_timeout(Duration::from_secs_f64(cfg.connect_timeout_s)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => tracing::warn!(
                "cluster: NATS not reachable within {} s ({}); working locally, exemplars queued, still trying",
                cfg.connect_timeout_s,
                cfg.servers.join(", ")
            ),
        }
        Ok(Link {
            exemplars: exemplars_tx,
            merges: merges_tx,
            events_subject: cfg.events_subject.clone(),
            event_ids: format!("{}.{run:x}.event", cfg.node),
            events_sent: std::sync::atomic::AtomicU64::new(0),
            incoming: incoming_rx,
            finish: Some(finish_tx),
            thread: Some(thread),
            counters,
        })
    }

    /// Queues an exemplar; `false` (and counted) when the queue is full.
    pub fn publish(&self, out: Outgoing) -> bool {
        let sent = self.exemplars.try_send(out).is_ok();
        let counter = if sent {
            &self.counters.queued
        } else {
            &self.counters.dropped_outbox
        };
        counter.fetch_add(1, Ordering::Relaxed);
        sent
    }

    /// Asks for identities `a` and `b` to be merged (recorded in the bucket, applied by every
    /// node when it comes back through the watch).
    pub fn merge(&self, a: u64, b: u64) {
        if self.merges.try_send((a, b)).is_err() {
            self.counters.dropped_merges.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues an identity event (JSON) for the events subject, when one is configured; it
    /// shares the exemplars' queue, retries and end-of-run flush.
    pub fn event(&self, json: Bytes) {
        let Some(subject) = &self.events_subject else { return };
        let n = self.events_sent.fetch_add(1, Ordering::Relaxed);
        let out = Outgoing {
            subject: subject.clone(),
            id: format!("{}.{n}", self.event_ids),
            payload: json,
            event: true,
        };
        if self.exemplars.try_send(out).is_err() {
            self.counters.dropped_events.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What the stream and the bucket bring in.
    pub fn incoming(&self) -> &crossbeam_channel::Receiver<Incoming> {
        &self.incoming
    }

    /// Publishes what is queued (waiting at most `within`; the rest is counted as dropped) and
    /// closes the connection.
    pub fn finish(mut self, within: Duration) {
        if let Some(f) = self.finish.take() {
            let _ = f.send(within);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(f) = self.finish.take() {
            let _ = f.send(Duration::ZERO);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Publishes queued exemplars with up to [`WINDOW`] acknowledgements outstanding; one that fails
/// or is not acknowledged within [`ACK_WAIT`] of its sending is sent again under its message id,
/// after a pause. After `finish` it drains the queue until its deadline; what is left then is
/// counted as unsent.
async fn publish(
    js: &jetstream::Context,
    mut queue: mpsc::Receiver<Outgoing>,
    mut finish: oneshot::Receiver<Duration>,
    counters: &Counters,
) {
    type Sent = (Outgoing, jetstream::context::PublishAckFuture, tokio::time::Instant);
    let mut in_flight: VecDeque<Sent> = VecDeque::new();
    let mut retry: VecDeque<Outgoing> = VecDeque::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    let failed = |out: Outgoing, retry: &mut VecDeque<Outgoing>, why: &dyn std::fmt::Display| {
        tracing::debug!("cluster: publication not stored ({why}); sending again");
        counters.publish_retries.fetch_add(1, Ordering::Relaxed);
        retry.push_back(out);
    };
    loop {
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            break;
        }
        // Acknowledgements first when the window is full or there is nothing new to send.
        let next = if in_flight.len() >= WINDOW {
            None
        } else if let Some(o) = retry.pop_front() {
            Some(o)
        } else if deadline.is_some() || !in_flight.is_empty() {
            queue.try_recv().ok()
        } else {
            tokio::select! {
                o = queue.recv() => match o { Some(o) => Some(o), None => break },
                within = &mut finish => {
                    deadline = Some(tokio::time::Instant::now() + within.unwrap_or_default());
                    queue.close();
                    continue;
                }
            }
        };
        match next {
            Some(out) => {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(async_nats::header::NATS_MESSAGE_ID, out.id.as_str());
                match js
                    .publish_with_headers(out.subject.clone(), headers, out.payload.clone())
                    .await
                {
                    Ok(ack) => in_flight.push_back((out, ack, tokio::time::Instant::now())),
                    Err(e) => {
                        failed(out, &mut retry, &e);
                        tokio::time::sleep(RETRY).await;
                    }
                }
            }
            None => {
                let Some((out, ack, sent)) = in_flight.pop_front() else {
                    if deadline.is_some() && retry.is_empty() {
                        break;
                    }
                    continue;
                };
                // Timed from the sending, so a window lost with the connection expires at once,
                // not one acknowledgement wait after another.
                match tokio::time::timeout_at(sent + ACK_WAIT, ack.into_future()).await {
                    Ok(Ok(a)) if a.duplicate => {
                        counters.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Ok(_)) => {
                        if !out.event {
                            counters.published.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(Err(e)) => {
                        failed(out, &mut retry, &e);
                        tokio::time::sleep(RETRY).await;
                    }
                    Err(_) => {
                        failed(out, &mut retry, &"no acknowledgement");
                    }
                }
            }
        }
        if deadline.is_none()
            && let Ok(within) = finish.try_recv()
        {
            deadline = Some(tokio::time::Instant::now() + within);
            queue.close();
        }
    }
    // Whatever is left was never acknowledged.
    let mut left = (in_flight.len() + retry.len()) as u64;
    while queue.try_recv().is_ok() {
        left += 1;
    }
    if left > 0 {
        tracing::warn!("cluster: {left} exemplars or events not confirmed stored before the end (counted as dropped)");
    }
    counters.unsent_at_exit.fetch_add(left, Ordering::Relaxed);
}

/// Reads the stream through the node's durable consumer, created afresh at `start` (the
/// snapshot, not the server, knows what the index holds); reconnections resume it, and a
/// consumer lost on the server is created again after the last message read.
async fn read_stream(mut stream: stream::Stream, node: String, start: Start, out: crossbeam_channel::Sender<Incoming>) {
    let durable = format!("reid-pipe-{node}");
    // A consumer left from an earlier run would resume at its own position, not the snapshot's.
    loop {
        match stream.delete_consumer(&durable).await {
            Ok(_) => break,
            Err(e)
                if matches!(e.kind(), stream::ConsumerErrorKind::JetStream(j)
                if j.error_code() == async_nats::jetstream::ErrorCode::CONSUMER_NOT_FOUND) =>
            {
                break;
            }
            Err(e) => {
                tracing::debug!("cluster: cannot clear the old consumer yet: {e}");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
    let mut next = match start {
        Start::Everything => 1,
        Start::After(seq) => seq + 1,
    };
    loop {
        // A position past the stream's end means the stream was created again: from its start.
        if let Ok(info) = stream.info().await
            && next > info.state.last_sequence + 1
        {
            tracing::warn!(
                "cluster: the index applied up to stream sequence {}, the stream ends at {} (it was created again): reading it from its start",
                next - 1,
                info.state.last_sequence
            );
            next = 1;
            if !send_blocking(&out, Incoming::Rewound { next }).await {
                return;
            }
        }
        let consumer = match stream
            .get_or_create_consumer(
                &durable,
                consumer::pull::Config {
                    durable_name: Some(durable.clone()),
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: next },
                    ack_policy: consumer::AckPolicy::Explicit,
                    max_ack_pending: 10_000,
                    ..Default::default()
                },
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("cluster: consumer not created yet: {e}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("cluster: cannot read the stream yet: {e}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        // Errors in a row: the consumer (or the stream) may be gone; it is looked up again.
        let mut errors = 0;
        while let Some(m) = messages.next().await {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!("cluster: stream read: {e}");
                    errors += 1;
                    if errors >= 5 {
                        break;
                    }
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            errors = 0;
            let Ok(sequence) = m.info().map(|i| i.stream_sequence) else {
                continue;
            };
            let item = match wire::decode(&m.payload) {
                Ok((meta, vector)) => Incoming::Exemplar { sequence, meta, vector },
                Err(error) => Incoming::Garbled { sequence, error },
            };
            if !send_blocking(&out, item).await {
                return;
            }
            next = next.max(sequence + 1);
            let _ = m.ack().await;
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Hands `item` to the node, waiting (without blocking the runtime) while its queue is full;
/// `false` when the node is gone.
async fn send_blocking(out: &crossbeam_channel::Sender<Incoming>, mut item: Incoming) -> bool {
    loop {
        match out.try_send(item) {
            Ok(()) => return true,
            Err(crossbeam_channel::TrySendError::Full(back)) => {
                item = back;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => return false,
        }
    }
}

/// Every merge record, from the first, then as they come.
async fn watch_merges(bucket: kv::Store, out: crossbeam_channel::Sender<Incoming>) {
    let mut next_revision = 1;
    loop {
        let mut watch = match bucket.watch_all_from_revision(next_revision).await {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!("cluster: cannot watch merges yet: {e}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        while let Some(entry) = watch.next().await {
            let Ok(entry) = entry else { continue };
            next_revision = entry.revision + 1;
            let Some(from) = entry.key.strip_prefix("id.").and_then(|k| k.parse().ok()) else {
                continue;
            };
            let Some(into) = std::str::from_utf8(&entry.value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
            else {
                continue;
            };
            // As `root` reads them: a parent is always the smaller id.
            if into >= from {
                continue;
            }
            if !send_blocking(&out, Incoming::Merge { from, into }).await {
                return;
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// The canonical id of `id` as the bucket has it now. A record that is not an id smaller than
/// its key (not written by reid-pipe) ends the walk there, so it cannot loop.
async fn root(bucket: &kv::Store, mut id: u64) -> Result<u64, async_nats::Error> {
    while let Some(parent) = bucket.get(merge_key(id)).await? {
        match std::str::from_utf8(&parent).ok().and_then(|p| p.parse::<u64>().ok()) {
            Some(p) if p < id => id = p,
            _ => {
                tracing::warn!("cluster: merge record {} is not a smaller id; ignored", merge_key(id));
                break;
            }
        }
    }
    Ok(id)
}

/// Records each requested merge: the larger root points at the smaller, created only when it
/// has no parent yet (compare-and-set); a node that lost the race reads the new roots and tries
/// again, so concurrent merges end in one set with one canonical id.
async fn record_merges(bucket: kv::Store, mut requests: mpsc::Receiver<(u64, u64)>, counters: Counters) {
    while let Some((a, b)) = requests.recv().await {
        for attempt in 0.. {
            if attempt == 100 {
                tracing::warn!(
                    "cluster: merge of {a} and {b} not recorded after 100 tries (a foreign record in the bucket?); dropped"
                );
                counters.dropped_merges.fetch_add(1, Ordering::Relaxed);
                break;
            }
            let roots = async { Ok::<_, async_nats::Error>((root(&bucket, a).await?, root(&bucket, b).await?)) };
            let (ra, rb) = match roots.await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!("cluster: merge of {a} and {b} waits: {e}");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            if ra == rb {
                break;
            }
            let (into, from) = (ra.min(rb), ra.max(rb));
            match bucket.create(merge_key(from), Bytes::from(into.to_string())).await {
                Ok(_) => {
                    counters.merges_recorded.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("cluster: identity {from} merged into {into}");
                    break;
                }
                // Another node merged one of the two meanwhile: read the new roots.
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => {
                    tracing::debug!("cluster: merge of {a} and {b} waits: {e}");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }
}
