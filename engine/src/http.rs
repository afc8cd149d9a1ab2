//! The job's HTTP endpoint (`--metrics-addr` or `--web-addr`): `GET
//! /metrics` answers with the live metrics in the Prometheus text
//! exposition format, `GET /api/job` with the job's view as JSON, and `GET
//! /` with the web view (one page embedded in the binary, which polls
//! `/api/job`).
//!
//! It binds where it is told (loopback in every example), requires
//! `Authorization: Bearer <token>` when a token is configured (or, for a
//! browser opening the page, `?token=`; compared in constant time, never
//! logged), and takes no request bodies
//! beyond a few kilobytes. It runs on a thread of its own with a
//! single-threaded tokio runtime and stops when the job ends.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::error::EngineError;
use crate::metrics::JobMetrics;

/// The largest request body the endpoint reads.
const MAX_BODY: usize = 16 * 1024;

/// What the handlers share.
#[derive(Clone)]
struct Shared {
    metrics: Arc<JobMetrics>,
    token: Option<Arc<str>>,
}

/// A running endpoint; dropping it stops the server.
pub(crate) struct HttpServer {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `addr` (port 0: any free port) and serves `metrics`.
    ///
    /// # Errors
    /// [`EngineError::Config`] naming the address when it cannot be bound.
    pub(crate) fn start(
        flag: &str,
        addr: SocketAddr,
        metrics: Arc<JobMetrics>,
        token: Option<String>,
    ) -> Result<Self, EngineError> {
        let bind_error = |e: std::io::Error| EngineError::Config {
            option: flag.into(),
            value: addr.to_string(),
            reason: format!("cannot listen there: {e}; pick a free port (or port 0)"),
        };
        let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let bound = listener.local_addr().map_err(bind_error)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| EngineError::Internal(format!("cannot start the HTTP runtime: {e}")))?;
        let app = Router::new()
            .route("/metrics", get(scrape))
            .route("/api/job", get(job_view))
            .route("/", get(page))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(Shared {
                metrics,
                token: token.map(Arc::from),
            });
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("eddy-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let served = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                    if let Err(e) = served {
                        tracing::warn!(error = %e, "the metrics endpoint stopped");
                    }
                });
            })
            .map_err(|e| EngineError::Internal(format!("cannot spawn the HTTP thread: {e}")))?;
        tracing::info!(addr = %bound, "HTTP endpoint listening");
        Ok(HttpServer {
            addr: bound,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether the request carries the configured token (or none is needed).
fn authorized(headers: &HeaderMap, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    constant_time_eq(given.as_bytes(), token.as_bytes())
}

/// The refusal of a request without the token.
fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "a bearer token is required (Authorization: Bearer <token>)\n",
    )
        .into_response()
}

/// The web view's page, embedded in the binary.
const PAGE: &str = include_str!("web/index.html");

/// The page; with a token configured, it must come as `?token=` (the page
/// sends it on as a header).
async fn page(State(shared): State<Shared>, query: Query<PageQuery>) -> Response {
    if let Some(token) = shared.token.as_deref() {
        let given = query.token.as_deref().unwrap_or_default();
        if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return unauthorized();
        }
    }
    Html(PAGE).into_response()
}

/// The query of the page's address.
#[derive(serde::Deserialize)]
struct PageQuery {
    token: Option<String>,
}

async fn job_view(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    if !authorized(&headers, shared.token.as_deref()) {
        return unauthorized();
    }
    Json(shared.metrics.view()).into_response()
}

/// Compares without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in b.iter().enumerate() {
        diff |= usize::from(x ^ a.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

async fn scrape(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    if !authorized(&headers, shared.token.as_deref()) {
        return unauthorized();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_compared_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secre", b"secret"));
        assert!(!constant_time_eq(b"secrets", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
        let mut headers = HeaderMap::new();
        assert!(authorized(&headers, None));
        assert!(!authorized(&headers, Some("t")));
        headers.insert(header::AUTHORIZATION, "Bearer t".parse().unwrap());
        assert!(authorized(&headers, Some("t")));
    }
}
