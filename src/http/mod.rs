//! The HTTP surface for operators and orchestrators: `/livez`, `/readyz` and `/metrics`.
//!
//! - `/livez` answers 200 while the process serves HTTP at all: a hung runtime fails it
//!   and Kubernetes restarts the pod. It deliberately does not look at the broker: a
//!   broker outage is not cured by restarting workers.
//! - `/readyz` answers 200 only while the process is connected to the broker and
//!   consuming (set by the worker's delivery loop or the mirror through [`Readiness`]),
//!   503 otherwise, with the reason in the body.
//! - `/metrics` is the Prometheus text exposition of [`crate::metrics::global`], with the
//!   standard `process_*` series of this process read at each scrape.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// The Prometheus text format's content type.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether this process is ready for work, and if not, why. Clones share the state.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// `None` when ready; otherwise the reason `/readyz` gives.
    not_ready: Arc<Mutex<Option<String>>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness { not_ready: Arc::new(Mutex::new(Some("starting".to_string()))) }
    }
}

impl Readiness {
    /// A fresh handle, not ready ("starting").
    pub fn new() -> Self {
        Readiness::default()
    }

    /// The process-wide handle the worker loop and the mirror set, and `serve` reads.
    pub fn process() -> &'static Readiness {
        static PROCESS: OnceLock<Readiness> = OnceLock::new();
        PROCESS.get_or_init(Readiness::new)
    }

    /// Connected to the broker and consuming.
    pub fn set_ready(&self) {
        if let Ok(mut state) = self.not_ready.lock() {
            *state = None;
        }
    }

    /// Not consuming, for `reason` (`broker connection lost`, `shutting down`, ...).
    pub fn set_not_ready(&self, reason: &str) {
        if let Ok(mut state) = self.not_ready.lock() {
            *state = Some(reason.to_string());
        }
    }

    /// `Ok` when ready, the reason otherwise.
    pub fn check(&self) -> Result<(), String> {
        match self.not_ready.lock() {
            Ok(state) => state.clone().map_or(Ok(()), Err),
            Err(_) => Err("readiness state poisoned".to_string()),
        }
    }
}

/// The routes, reading `readiness`.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(readiness)
}

async fn ready(State(readiness): State<Readiness>) -> impl IntoResponse {
    match readiness.check() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")),
    }
}

async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], crate::metrics::global().render())
}

/// Why the HTTP surface could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr} for the health and metrics endpoints: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

impl crate::error::Classify for HttpError {
    fn failure_kind(&self) -> crate::error::FailureKind {
        crate::error::FailureKind::Validation
    }
    fn is_transient(&self) -> bool {
        false
    }
}

/// A bound listener, serving once [`HttpServer::serve`] runs.
pub struct HttpServer {
    listener: tokio::net::TcpListener,
}

impl HttpServer {
    /// Binds `addr` (port 0 picks a free port; see [`HttpServer::local_addr`]).
    pub async fn bind(addr: SocketAddr) -> Result<Self, HttpError> {
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|source| HttpError::Bind { addr, source })?;
        Ok(HttpServer { listener })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(self, readiness: Readiness, shutdown: impl Future<Output = ()> + Send + 'static) {
        let served = axum::serve(self.listener, router(readiness)).with_graceful_shutdown(shutdown).await;
        if let Err(error) = served {
            tracing::error!(%error, "health and metrics endpoint stopped");
        }
    }

    /// Serves in the background until `shutdown` is cancelled.
    pub fn spawn(
        self,
        readiness: Readiness,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move { self.serve(readiness, async move { shutdown.cancelled().await }).await })
    }
}
