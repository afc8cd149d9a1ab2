//! The job's HTTP endpoint (`--web-addr`, `--metrics-addr`): the REST API
//! under `/v1` ([`api`]), the live metrics in the Prometheus text
//! exposition format at `GET /metrics`, and the web view at `GET /` (one
//! page embedded in the binary, which polls the REST API).
//!
//! It binds where it is told (loopback in every example), requires
//! `Authorization: Bearer <token>` on every endpoint when a token is
//! configured (or, for a browser opening the page, `?token=`; compared in
//! constant time, never logged), refuses request bodies beyond
//! [`MAX_BODY`] with 413, and answers every error with a JSON reason. With
//! a certificate and key (`--tls-cert`, `--tls-key`) it speaks HTTPS only
//! (rustls). It runs on a thread of its own with a single-threaded tokio
//! runtime and stops when the job ends.

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

use axum_server::tls_rustls::RustlsConfig;

use crate::config::TlsFiles;
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
    /// Binds `addr` (port 0: any free port) and serves `job`, over TLS
    /// with `tls`.
    ///
    /// # Errors
    /// [`EngineError::Config`] naming `flag` and the address when it cannot
    /// be bound, or the TLS flag and file when the certificate or key
    /// cannot be read.
    pub(crate) fn start(
        flag: &str,
        addr: SocketAddr,
        job: Arc<LiveJob>,
        token: Option<String>,
        tls: Option<&TlsFiles>,
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
            .enable_time()
            .build()
            .map_err(|e| EngineError::Internal(format!("cannot start the HTTP runtime: {e}")))?;
        let tls = tls
            .map(|files| runtime.block_on(tls_config(files)))
            .transpose()?;
        let tls_on = tls.is_some();
        let app = router(Shared {
            job,
            token: token.map(Arc::from),
        });
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("eddy-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let served = match tls {
                        None => serve_plain(listener, app, stopped).await,
                        Some(tls) => serve_tls(listener, app, tls, stopped).await,
                    };
                    if let Err(e) = served {
                        tracing::warn!(error = %e, "the HTTP endpoint stopped");
                    }
                });
            })
            .map_err(|e| EngineError::Internal(format!("cannot spawn the HTTP thread: {e}")))?;
        tracing::info!(addr = %bound, tls = tls_on, "HTTP endpoint listening");
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

/// Serves `app` on `listener` in plain HTTP until `stopped`.
async fn serve_plain(
    listener: std::net::TcpListener,
    app: Router,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await
}

/// Serves `app` on `listener` over TLS until `stopped` (connections still
/// open get a second to finish).
async fn serve_tls(
    listener: std::net::TcpListener,
    app: Router,
    tls: RustlsConfig,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::new();
    let stopping = handle.clone();
    tokio::spawn(async move {
        let _ = stopped.await;
        stopping.graceful_shutdown(Some(std::time::Duration::from_secs(1)));
    });
    axum_server::from_tcp_rustls(listener, tls)?
        .handle(handle)
        .serve(app.into_make_service())
        .await
}

/// The server's TLS configuration from its PEM files.
async fn tls_config(files: &TlsFiles) -> Result<RustlsConfig, EngineError> {
    RustlsConfig::from_pem_file(&files.cert, &files.key)
        .await
        .map_err(|e| {
            EngineError::config(
                "--tls-cert / --tls-key",
                format!("{} / {}", files.cert.display(), files.key.display()),
                format!("cannot load the certificate chain and private key (PEM): {e}"),
            )
        })
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
        // Added after the token check: probes carry no token.
        .route("/healthz", get(healthz))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// `GET /healthz`: the endpoint is up (for liveness and readiness probes,
/// which carry no token; it says nothing about the job).
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
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
