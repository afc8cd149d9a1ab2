//! The REST API of the job running in this process (described in
//! `docs/rest-api.md` and `docs/openapi.yaml`). A job's id is its name.
//!
//! Savepoints are asynchronous, as in Flink: `POST …/savepoints` (or
//! `…/stop`) answers 202 with a request id at once, `GET
//! …/savepoints/{request}` tells whether it is still in progress, where it
//! was written, or why it failed. One savepoint at a time: a second request
//! while one is in progress is refused with 409.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use serde::{Deserialize, Serialize};

use super::{ApiError, Shared};
use crate::checkpoint::coordinator::SavepointRequest;
use crate::checkpoint::requests::Request;
use crate::metrics::{CheckpointView, JobMetrics, JobState, JobView};

/// How many finished savepoint requests are remembered for polling.
const REMEMBERED: usize = 64;

/// The `/v1` routes.
pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/jobs", get(list_jobs))
        .route("/v1/jobs/{job}", get(job_status))
        .route("/v1/jobs/{job}/checkpoints", get(checkpoints))
        .route("/v1/jobs/{job}/savepoints", post(trigger_savepoint))
        .route("/v1/jobs/{job}/savepoints/{request}", get(savepoint_status))
        .route("/v1/jobs/{job}/stop", post(stop))
        .route("/v1/jobs/{job}/cancel", post(cancel))
        .route("/v1/workers", get(workers))
}

/// What the REST API sees of, and can ask from, the job running in this
/// process.
pub(crate) struct LiveJob {
    metrics: Arc<JobMetrics>,
    requests: Sender<Request>,
    savepoints: Mutex<Savepoints>,
}

impl LiveJob {
    /// The job whose live metrics are `metrics` and which reads its
    /// requests from the other end of `requests`.
    pub(crate) fn new(metrics: Arc<JobMetrics>, requests: Sender<Request>) -> Arc<Self> {
        Arc::new(LiveJob {
            metrics,
            requests,
            savepoints: Mutex::new(Savepoints::default()),
        })
    }

    /// Its live metrics.
    pub(crate) fn metrics(&self) -> &JobMetrics {
        &self.metrics
    }

    /// 404 unless `job` is this job's id.
    fn check(&self, job: &str) -> Result<(), ApiError> {
        if job == self.metrics.job() {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no job '{job}' here; this endpoint runs '{}' (GET /v1/jobs)",
                self.metrics.job()
            ),
        ))
    }

    /// Waits, at most `max`, until the outcome of every stop-with-savepoint
    /// requested through the API was read: the job has ended, and with it
    /// goes the endpoint, but the client must learn where the savepoint is.
    pub(crate) fn linger(&self, max: Duration) {
        let deadline = Instant::now() + max;
        while Instant::now() < deadline {
            let mut savepoints = self.savepoints();
            savepoints.refresh();
            if savepoints.0.iter().all(|t| !t.stop || t.told) {
                return;
            }
            drop(savepoints);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn savepoints(&self) -> std::sync::MutexGuard<'_, Savepoints> {
        self.savepoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The savepoint requests made through the API, oldest first (at most
/// [`REMEMBERED`] finished ones, so a scan is cheap).
#[derive(Default)]
struct Savepoints(Vec<Triggered>);

/// One savepoint request.
struct Triggered {
    id: String,
    stop: bool,
    outcome: Outcome,
    /// Its outcome was read by a poll.
    told: bool,
}

enum Outcome {
    InProgress(Receiver<Result<PathBuf, String>>),
    Completed(PathBuf),
    Failed(String),
}

impl Savepoints {
    /// Takes in the answers that arrived; forgets the oldest finished
    /// requests beyond [`REMEMBERED`].
    fn refresh(&mut self) {
        for t in &mut self.0 {
            if let Outcome::InProgress(answer) = &t.outcome {
                t.outcome = match answer.try_recv() {
                    Ok(Ok(path)) => Outcome::Completed(path),
                    Ok(Err(reason)) => Outcome::Failed(reason),
                    Err(TryRecvError::Disconnected) => {
                        Outcome::Failed("the job ended before the savepoint completed".into())
                    }
                    Err(TryRecvError::Empty) => continue,
                };
            }
        }
        while self.0.len() > REMEMBERED {
            let Some(pos) = self.0.iter().position(|t| !t.is_in_progress()) else {
                break;
            };
            self.0.remove(pos);
        }
    }

    fn in_progress(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|t| t.is_in_progress())
            .map(|t| t.id.as_str())
    }
}

impl Triggered {
    fn is_in_progress(&self) -> bool {
        matches!(self.outcome, Outcome::InProgress(_))
    }
}

/// A fresh request id: 16 hex digits.
fn request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!(
        "{nanos}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()))
}

/// `GET /v1/jobs`.
#[derive(Serialize)]
struct JobList {
    jobs: Vec<JobSummary>,
}

#[derive(Serialize)]
struct JobSummary {
    id: String,
    name: String,
    state: JobState,
    started_at_ms: i64,
}

async fn list_jobs(State(shared): State<Shared>) -> Json<JobList> {
    let metrics = &shared.job.metrics;
    Json(JobList {
        jobs: vec![JobSummary {
            id: metrics.job().to_owned(),
            name: metrics.job().to_owned(),
            state: metrics.state(),
            started_at_ms: metrics.started_at_ms(),
        }],
    })
}

/// `GET /v1/jobs/{job}`: the job's view with its id.
#[derive(Serialize)]
struct JobStatus {
    id: String,
    #[serde(flatten)]
    view: JobView,
}

async fn job_status(
    State(shared): State<Shared>,
    Path(job): Path<String>,
) -> Result<Json<JobStatus>, ApiError> {
    shared.job.check(&job)?;
    Ok(Json(JobStatus {
        id: job,
        view: shared.job.metrics.view(),
    }))
}

/// `GET /v1/jobs/{job}/checkpoints`.
#[derive(Serialize)]
struct Checkpoints {
    completed: u64,
    failed: u64,
    latest: Option<CheckpointView>,
    /// Newest last.
    history: Vec<CheckpointView>,
}

async fn checkpoints(
    State(shared): State<Shared>,
    Path(job): Path<String>,
) -> Result<Json<Checkpoints>, ApiError> {
    shared.job.check(&job)?;
    let view = shared.job.metrics.view();
    Ok(Json(Checkpoints {
        completed: view.checkpoints_completed,
        failed: view.checkpoints_failed,
        latest: view.checkpoints.last().cloned(),
        history: view.checkpoints,
    }))
}

/// The body of `POST …/savepoints` and `…/stop` (it may be empty).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SavepointBody {
    /// An absolute path; none: `<checkpoint dir>/<job>/savepoints/savepoint-<id>`.
    target_directory: Option<PathBuf>,
}

/// The answer to a savepoint request.
#[derive(Serialize)]
struct Accepted {
    request_id: String,
}

async fn trigger_savepoint(
    State(shared): State<Shared>,
    Path(job): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    request_savepoint(&shared.job, &job, body, false)
}

async fn stop(
    State(shared): State<Shared>,
    Path(job): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    request_savepoint(&shared.job, &job, body, true)
}

fn request_savepoint(
    live: &LiveJob,
    job: &str,
    body: Result<Bytes, BytesRejection>,
    stop: bool,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    live.check(job)?;
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let body: SavepointBody = if body.iter().all(u8::is_ascii_whitespace) {
        SavepointBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the body is not a savepoint request: {e}; send {{\"target_directory\": \"/absolute/path\"}} or nothing"),
            )
        })?
    };
    if let Some(dir) = body.target_directory.as_ref().filter(|d| !d.is_absolute()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "target_directory '{}' is relative; give an absolute path",
                dir.display()
            ),
        ));
    }
    let mut savepoints = live.savepoints();
    savepoints.refresh();
    if let Some(id) = savepoints.in_progress() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("savepoint request {id} is in progress; poll GET /v1/jobs/{job}/savepoints/{id} and ask again when it is done"),
        ));
    }
    let (reply, answer) = crossbeam_channel::bounded(1);
    let request = SavepointRequest {
        dir: body.target_directory,
        stop,
        reply,
    };
    live.requests
        .send(Request::Savepoint(request))
        .map_err(|_| ApiError::new(StatusCode::CONFLICT, "the job is ending"))?;
    let id = request_id();
    savepoints.0.push(Triggered {
        id: id.clone(),
        stop,
        outcome: Outcome::InProgress(answer),
        told: false,
    });
    Ok((StatusCode::ACCEPTED, Json(Accepted { request_id: id })))
}

/// `GET /v1/jobs/{job}/savepoints/{request}`.
#[derive(Serialize)]
struct SavepointStatus {
    request_id: String,
    /// `IN_PROGRESS`, `COMPLETED` or `FAILED`.
    status: &'static str,
    /// The job stops after it.
    stop: bool,
    /// Where it was written (`COMPLETED`).
    location: Option<PathBuf>,
    /// Why not (`FAILED`).
    failure: Option<String>,
}

async fn savepoint_status(
    State(shared): State<Shared>,
    Path((job, request)): Path<(String, String)>,
) -> Result<Json<SavepointStatus>, ApiError> {
    shared.job.check(&job)?;
    let mut savepoints = shared.job.savepoints();
    savepoints.refresh();
    let t = savepoints
        .0
        .iter_mut()
        .find(|t| t.id == request)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no savepoint request {request} (the latest {REMEMBERED} are remembered)"),
            )
        })?;
    let (status, location, failure) = match &t.outcome {
        Outcome::InProgress(_) => ("IN_PROGRESS", None, None),
        Outcome::Completed(path) => ("COMPLETED", Some(path.clone()), None),
        Outcome::Failed(reason) => ("FAILED", None, Some(reason.clone())),
    };
    t.told = location.is_some() || failure.is_some();
    Ok(Json(SavepointStatus {
        request_id: request,
        status,
        stop: t.stop,
        location,
        failure,
    }))
}

/// The answer to `POST …/cancel`.
#[derive(Serialize)]
struct Cancelling {
    state: JobState,
}

async fn cancel(
    State(shared): State<Shared>,
    Path(job): Path<String>,
) -> Result<(StatusCode, Json<Cancelling>), ApiError> {
    shared.job.check(&job)?;
    shared
        .job
        .requests
        .send(Request::Cancel)
        .map_err(|_| ApiError::new(StatusCode::CONFLICT, "the job is ending"))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Cancelling {
            state: JobState::Cancelling,
        }),
    ))
}

/// `GET /v1/workers`: the workers of the current run (the local runtime:
/// this process) and their slots.
#[derive(Serialize)]
struct Workers {
    workers: Vec<crate::metrics::WorkerView>,
}

async fn workers(State(shared): State<Shared>) -> Json<Workers> {
    Json(Workers {
        workers: shared.job.metrics.workers(),
    })
}
