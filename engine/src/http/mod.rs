//! The job's HTTP endpoint (`--web-addr`, `--metrics-addr`): the REST API
//! under `/v1` ([`api`]), the live metrics in the Prometheus text
//! exposition format at `GET /metrics`, and the web view at `GET /` (one
//! page embedded in the binary, which polls the REST API).
//!
//! It binds where it is told (loopback in every example), requires
//! `Authorization: Bearer <token>` on every endpoint when a token is
//! configured (or, for a browser opening the page, `?token=`; compared in
//! constant time, never logged), refuses request bodies beyond
//! [`MAX_BODY`] with 413, and answers every error with a JSON reason. It
//! runs on a thread of its own with a single-threaded tokio runtime and
//! stops when the job ends.

mod api;
pub(crate) mod client;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

pub(crate) use api::LiveJob;

use crate::error::EngineError;

/// The largest request body the endpoint reads.
pub(crate) const MAX_BODY: usize = 16 * 1024;

/// What the handlers share.
#[derive(Clone)]
struct Shared {
    job: Arc<LiveJob>,
    token: Option<Arc<str>>,
}

/// A running endpoint; dropping it stops the server.
pub(crate) struct HttpServer {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `addr` (port 0: any free port) and serves `job`.
    ///
    /// # Errors
    /// [`EngineError::Config`] naming `flag` and the address when it cannot
    /// be bound.
    pub(crate) fn start(
        flag: &str,
        addr: SocketAddr,
        job: Arc<LiveJob>,
        token: Option<String>,
    ) -> Result<Self, EngineError> {
        let bind_error = |e: std::io::Error| {
            EngineError::config(
                flag,
                addr,
                format!("cannot listen there: {e}; pick a free port (or port 0)"),
            )
        };
        let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let bound = listener.local_addr().map_err(bind_error)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| EngineError::Internal(format!("cannot start the HTTP runtime: {e}")))?;
        let app = router(Shared {
            job,
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
                        tracing::warn!(error = %e, "the HTTP endpoint stopped");
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

/// Every route, behind the token check and the body limit.
fn router(shared: Shared) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/", get(page))
        .merge(api::routes())
        .fallback(no_such_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// An error answer: a status and a JSON body `{"error": reason}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    reason: String,
}

impl ApiError {
    /// An error with `status` and `reason`.
    pub(crate) fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        ApiError {
            status,
            reason: reason.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.reason }));
        if self.status == StatusCode::UNAUTHORIZED {
            return (self.status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response();
        }
        (self.status, body).into_response()
    }
}

/// Refuses requests without the configured token: in the `Authorization`
/// header, or for the page (which a browser opens by address) as `?token=`.
async fn require_token(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    let Some(token) = shared.token.as_deref() else {
        return next.run(request).await;
    };
    let given = if request.uri().path() == "/" {
        page_token(request.uri())
    } else {
        bearer(request.headers()).map(str::to_owned)
    };
    if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required (Authorization: Bearer <token>)",
        )
        .into_response();
    }
    next.run(request).await
}

/// The token of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// The `token` parameter of the page's address.
fn page_token(uri: &Uri) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct PageQuery {
        token: Option<String>,
    }
    axum::extract::Query::<PageQuery>::try_from_uri(uri)
        .ok()?
        .0
        .token
}

/// Compares without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in b.iter().enumerate() {
        diff |= usize::from(x ^ a.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// The web view's page, embedded in the binary.
const PAGE: &str = include_str!("../web/index.html");

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn scrape(State(shared): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.job.metrics().encode(),
    )
        .into_response()
}

async fn no_such_endpoint(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no endpoint {method} {}; the API is described in docs/rest-api.md (GET /v1/jobs lists the jobs)",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {method}", uri.path()),
    )
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
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer t".parse().unwrap());
        assert_eq!(bearer(&headers), Some("t"));
        let uri: Uri = "/?token=a%20b&x=1".parse().unwrap();
        assert_eq!(page_token(&uri).as_deref(), Some("a b"));
        assert_eq!(page_token(&"/".parse().unwrap()), None);
    }
}
