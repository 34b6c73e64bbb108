//! `[cluster]`: the nodes of one site sharing one identity space through NATS JetStream. Without
//! the section a node works alone, as before.

use crate::config::checks;
use crate::config::{ConfigError, Source};
use serde::Deserialize;
use toml::Spanned;

/// How exemplar vectors travel between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorEncoding {
    /// IEEE half precision: 2 bytes a value, about 3 significant digits.
    F16,
    /// Signed bytes with one scale per vector: 1 byte a value.
    Int8,
}

/// A node's place in a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// NATS server URLs (`nats://host:port`), without credentials.
    pub servers: Vec<String>,
    /// This node's name: unique in the cluster, stable across restarts.
    pub node: String,
    /// User name, when the servers require one.
    pub user: Option<String>,
    /// Environment variable holding the password (read at start, never printed).
    pub password_env: Option<String>,
    /// Environment variable holding an authentication token.
    pub token_env: Option<String>,
    /// The JetStream stream of exemplars.
    pub stream: String,
    /// Subject prefix of exemplar messages (`<subject>.<node>.<identity>.<modality>`).
    pub subject: String,
    /// Key-value bucket of identity merges.
    pub bucket: String,
    /// Copies of the stream and bucket kept by the servers (1 to 5).
    pub replicas: usize,
    /// Exemplars older than this many seconds leave the stream.
    pub max_age_s: f64,
    /// The stream's size bound, in bytes (oldest exemplars leave first).
    pub max_bytes: i64,
    /// Exemplars kept per identity and modality in the stream.
    pub max_exemplars_per_identity: i64,
    pub vector: VectorEncoding,
    /// Exemplars waiting to be published while the servers are away; more are dropped, counted.
    pub outbox: usize,
    /// A second identity whose nearest exemplar lies within this share of the modality's
    /// threshold, and that another node created, is merged into the one chosen.
    pub merge_fraction: f32,
    /// Seconds to wait for the servers at start before working locally meanwhile.
    pub connect_timeout_s: f64,
    /// Seconds the end of a run waits to publish what is still queued.
    pub flush_timeout_s: f64,
    /// Identity events are also published here (a JetStream stream `<stream>_EVENTS` keeps them).
    pub events_subject: Option<String>,
}

impl Cluster {
    /// Node `node` of the cluster served by `servers`, with every other setting at its default
    /// (`max_exemplars`: the index's, the stream's cap per identity and modality).
    pub fn new(servers: Vec<String>, node: String, max_exemplars: usize) -> Cluster {
        Cluster {
            servers,
            node,
            user: None,
            password_env: None,
            token_env: None,
            stream: "REID_EXEMPLARS".to_owned(),
            subject: "reid.exemplars".to_owned(),
            bucket: "REID_MERGES".to_owned(),
            replicas: 1,
            max_age_s: 7.0 * 86_400.0,
            max_bytes: 1_024_000_000,
            max_exemplars_per_identity: max_exemplars as i64,
            vector: VectorEncoding::F16,
            outbox: 10_000,
            merge_fraction: 0.8,
            connect_timeout_s: 5.0,
            flush_timeout_s: 10.0,
            events_subject: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    servers: Spanned<Vec<String>>,
    node: Spanned<String>,
    user: Option<String>,
    password_env: Option<Spanned<String>>,
    token_env: Option<String>,
    stream: Option<Spanned<String>>,
    subject: Option<Spanned<String>>,
    bucket: Option<Spanned<String>>,
    replicas: Option<Spanned<i64>>,
    max_age_s: Option<Spanned<f64>>,
    max_mb: Option<Spanned<f64>>,
    max_exemplars_per_identity: Option<Spanned<i64>>,
    vector: Option<VectorEncoding>,
    outbox: Option<Spanned<i64>>,
    merge_fraction: Option<Spanned<f64>>,
    connect_timeout_s: Option<Spanned<f64>>,
    flush_timeout_s: Option<Spanned<f64>>,
    events_subject: Option<Spanned<String>>,
}

/// Letters, digits, `-` and `_`: safe as a NATS subject token, stream, bucket or consumer name.
fn name(src: &Source<'_>, key: &str, v: Option<Spanned<String>>, default: &str) -> Result<String, ConfigError> {
    let Some(v) = v else { return Ok(default.to_owned()) };
    let text = v.get_ref();
    if text.is_empty() || text.len() > 64 || !text.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) {
        return Err(src.error(
            key,
            v.span(),
            format!("expected 1 to 64 letters, digits, '-' or '_', found {text:?}"),
        ));
    }
    Ok(text.clone())
}

/// Dot-separated tokens of letters, digits, `-` and `_` (no wildcards).
fn subject(src: &Source<'_>, key: &str, v: Spanned<String>) -> Result<String, ConfigError> {
    let text = v.get_ref();
    let fine = text
        .split('.')
        .all(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)));
    if !fine {
        return Err(src.error(
            key,
            v.span(),
            format!("expected a subject such as \"reid.exemplars\" (no wildcards or spaces), found {text:?}"),
        ));
    }
    Ok(text.clone())
}

impl RawCluster {
    pub(super) fn check(self, src: &Source<'_>, index_max_exemplars: usize) -> Result<Cluster, ConfigError> {
        let d = Cluster::new(Vec::new(), String::new(), index_max_exemplars);
        let mut servers = Vec::new();
        for url in self.servers.get_ref() {
            let credentials = crate::config::url::split(url);
            if credentials.user.is_some() {
                // `user:password@` or a token as `token@`: either would be printed with the URL.
                return Err(src.error(
                    "cluster.servers",
                    self.servers.span(),
                    format!(
                        "{}://***@{} holds credentials: set cluster.user with cluster.password_env, or cluster.token_env, so that they are never printed",
                        url.split("://").next().unwrap_or("nats"),
                        credentials.clean.split("://").nth(1).unwrap_or("")
                    ),
                ));
            }
            if !(url.starts_with("nats://") || url.starts_with("tls://")) || credentials.clean.len() <= "nats://".len()
            {
                return Err(src.error(
                    "cluster.servers",
                    self.servers.span(),
                    format!("expected URLs such as \"nats://127.0.0.1:4222\", found {url:?}"),
                ));
            }
            servers.push(url.clone());
        }
        if servers.is_empty() {
            return Err(src.error(
                "cluster.servers",
                self.servers.span(),
                "expected at least one server URL",
            ));
        }
        let node = name(src, "cluster.node", Some(self.node), "")?;
        if let Some(p) = &self.password_env
            && self.user.is_none()
        {
            return Err(src.error(
                "cluster.password_env",
                p.span(),
                "a password needs a user: set cluster.user too",
            ));
        }
        let events_span = self.events_subject.as_ref().map(Spanned::span);
        let events_subject = match self.events_subject {
            Some(s) => Some(subject(src, "cluster.events_subject", s)?),
            None => None,
        };
        let subject_prefix = match self.subject {
            Some(s) => subject(src, "cluster.subject", s)?,
            None => d.subject.clone(),
        };
        if let (Some(events), Some(span)) = (&events_subject, events_span)
            && (events == &subject_prefix || events.starts_with(&format!("{subject_prefix}.")))
        {
            return Err(src.error(
                "cluster.events_subject",
                span,
                format!("{events:?} lies under the exemplars' subject {subject_prefix:?}: choose another"),
            ));
        }
        Ok(Cluster {
            servers,
            node,
            user: self.user,
            password_env: self.password_env.map(Spanned::into_inner),
            token_env: self.token_env,
            stream: name(src, "cluster.stream", self.stream, &d.stream)?,
            subject: subject_prefix,
            bucket: name(src, "cluster.bucket", self.bucket, &d.bucket)?,
            replicas: checks::int(src, "cluster.replicas", &self.replicas, d.replicas as i64, 1, 5)? as usize,
            // At most ten years.
            max_age_s: checks::float(src, "cluster.max_age_s", &self.max_age_s, d.max_age_s, 1.0, 3.2e8)?,
            max_bytes: (checks::float(src, "cluster.max_mb", &self.max_mb, d.max_bytes as f64 / 1e6, 1.0, 1e9)? * 1e6)
                as i64,
            max_exemplars_per_identity: checks::int(
                src,
                "cluster.max_exemplars_per_identity",
                &self.max_exemplars_per_identity,
                d.max_exemplars_per_identity,
                1,
                100_000,
            )?,
            vector: self.vector.unwrap_or(d.vector),
            outbox: checks::int(src, "cluster.outbox", &self.outbox, d.outbox as i64, 1, 10_000_000)? as usize,
            merge_fraction: checks::float(
                src,
                "cluster.merge_fraction",
                &self.merge_fraction,
                f64::from(d.merge_fraction),
                0.0,
                1.0,
            )? as f32,
            connect_timeout_s: checks::float(
                src,
                "cluster.connect_timeout_s",
                &self.connect_timeout_s,
                d.connect_timeout_s,
                0.1,
                600.0,
            )?,
            flush_timeout_s: checks::float(
                src,
                "cluster.flush_timeout_s",
                &self.flush_timeout_s,
                d.flush_timeout_s,
                0.0,
                600.0,
            )?,
            events_subject,
        })
    }
}
