//! The operator's HTTP server on `outputs.http_listen` (127.0.0.1 unless configured otherwise):
//! the page (`/`, `/identities/{id}`), the JSON API (`/api/…`) and `/metrics`.
//!
//! Built on axum (hyper and tokio, the most used and best kept Rust HTTP stack; tokio is already
//! in the tree through the MQTT client). It runs on a single-threaded tokio runtime of its own
//! thread, so requests never take CPU from the pipeline's threads beyond their own work, and it
//! only reads what the stages publish (the [`Board`], the [`Metrics`]): a slow or broken client
//! cannot stall a stage. The server does no authentication; put a reverse proxy in front of it
//! to expose it beyond the machine (README: deployment).

mod api;
mod page;
mod stats;

use super::board::Board;
use super::events::unix_now as now;
use super::metrics::Metrics;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use stats::Rates;

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("outputs.http_listen {addr}: cannot listen")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("outputs.http_listen: cannot start the server thread")]
    Thread(#[source] std::io::Error),
}

/// What the handlers read.
pub struct Shared {
    pub board: Arc<Board>,
    pub metrics: Arc<Metrics>,
    pub rates: Rates,
}

/// The running server.
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens on `addr` (port 0 picks one) and serves until [`Server::stop`].
    pub fn start(addr: SocketAddr, board: Arc<Board>, metrics: Arc<Metrics>) -> Result<Self, HttpError> {
        let listen = |source| HttpError::Listen { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(listen)?;
        let bound = listener.local_addr().map_err(listen)?;
        listener.set_nonblocking(true).map_err(listen)?;
        let shared = Arc::new(Shared {
            board,
            metrics,
            rates: Rates::default(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(HttpError::Thread)?;
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                runtime.block_on(serve(listener, shared, stopped));
            })
            .map_err(HttpError::Thread)?;
        Ok(Self {
            addr: bound,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening, lets requests in progress finish (up to three seconds) and ends the thread.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shut();
    }
}

async fn serve(listener: std::net::TcpListener, shared: Arc<Shared>, stopped: tokio::sync::oneshot::Receiver<()>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("outputs.http_listen: {e}");
            return;
        }
    };
    let sampler = tokio::spawn(stats::sample_every_second(Arc::clone(&shared)));
    let (quit, quitting) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, router(shared))
            .with_graceful_shutdown(async {
                let _ = quitting.await;
            })
            .into_future(),
    );
    let _ = stopped.await;
    let _ = quit.send(());
    sampler.abort();
    // Open streams (a page left open) get three seconds; the runtime then drops what is left.
    let _ = tokio::time::timeout(Duration::from_secs(3), server).await;
}

/// Every route.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/identities/{id}", get(page::identity))
        .route("/metrics", get(metrics))
        .route("/api/stats", get(api::stats))
        .route("/api/cameras", get(api::cameras))
        .route("/api/cameras/{name}/latest.jpg", get(api::latest_frame))
        .route("/api/identities", get(api::identities))
        .route("/api/identities/{id}", get(api::identity))
        .route("/api/identities/{id}/thumbnails/{n}", get(api::thumbnail))
        .route("/api/events", get(api::events))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(shared)
}

async fn metrics(axum::extract::State(shared): axum::extract::State<Arc<Shared>>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, super::metrics::content_type())],
        shared.metrics.render(),
    )
        .into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such page or endpoint: {}", uri.path()),
    )
    .into_response()
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let message = format!("{method} {}: only GET is served", uri.path());
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, message).into_response()
}

/// An error answered as JSON: `{"error": "…"}` with its status code.
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}
