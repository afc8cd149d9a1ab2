//! What a running job can be asked, and the fallback way of asking it from
//! another process without its REST API (`<job> savepoint [DIR]`, `<job>
//! stop [--savepoint DIR]`, `<job> cancel` without `--rest`): the command
//! writes a request file into the job's checkpoint directory, the running
//! job picks it up (it looks every 100 ms), takes the savepoint, and writes
//! the answer next to it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use serde::{Deserialize, Serialize};

use crate::checkpoint::coordinator::SavepointRequest;
use crate::error::EngineError;

const POLL_EVERY: Duration = Duration::from_millis(100);
/// How long a request may wait for a running job to pick it up.
const PICKUP: Duration = Duration::from_secs(5);

#[derive(Serialize, Deserialize)]
struct RequestFile {
    /// `None`: the job's default savepoint directory.
    #[serde(default)]
    dir: Option<PathBuf>,
    stop: bool,
    /// A cancel request (no savepoint).
    #[serde(default)]
    cancel: bool,
}

/// What a running job was asked: through its REST API, a [`crate::dsl::JobControl`],
/// or a request file.
pub(crate) enum Request {
    /// A savepoint, perhaps then a stop.
    Savepoint(SavepointRequest),
    /// Stop without a savepoint (answered when picked up).
    Cancel,
}

#[derive(Serialize, Deserialize)]
struct AnswerFile {
    result: Result<PathBuf, String>,
}

/// The running job's side: watches `<job root>/requests/`.
pub(crate) struct RequestInbox {
    dir: PathBuf,
    next_poll: Instant,
    waiting: Vec<(PathBuf, Receiver<Result<PathBuf, String>>)>,
}

impl RequestInbox {
    pub(crate) fn new(job_root: &Path) -> Self {
        RequestInbox {
            dir: job_root.join("requests"),
            next_poll: Instant::now(),
            waiting: Vec::new(),
        }
    }

    /// When the inbox next wants [`Self::poll`].
    pub(crate) fn next_deadline(&self) -> Instant {
        self.next_poll
    }

    /// Writes the answers that are ready and picks up new requests.
    pub(crate) fn poll(&mut self, now: Instant) -> Vec<Request> {
        self.waiting
            .retain(|(answer_path, rx)| match rx.try_recv() {
                Ok(result) => {
                    write_answer(answer_path, result);
                    false
                }
                Err(TryRecvError::Disconnected) => {
                    write_answer(
                        answer_path,
                        Err("the job ended before the savepoint".into()),
                    );
                    false
                }
                Err(TryRecvError::Empty) => true,
            });
        if now < self.next_poll {
            return Vec::new();
        }
        self.next_poll = now + POLL_EVERY;
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut requests = Vec::new();
        for path in entries.filter_map(Result::ok).map(|e| e.path()) {
            if path.extension().is_none_or(|e| e != "request") {
                continue;
            }
            let parsed = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<RequestFile>(&b).ok());
            let _ = fs::remove_file(&path);
            let answer_path = path.with_extension("answer");
            let Some(request) = parsed else {
                write_answer(&answer_path, Err("unreadable request".into()));
                continue;
            };
            if request.cancel {
                write_answer(&answer_path, Ok(PathBuf::new()));
                requests.push(Request::Cancel);
                continue;
            }
            let (reply, rx) = crossbeam_channel::bounded(1);
            self.waiting.push((answer_path, rx));
            requests.push(Request::Savepoint(SavepointRequest {
                dir: request.dir,
                stop: request.stop,
                reply,
            }));
        }
        requests
    }
}

fn write_answer(path: &Path, result: Result<PathBuf, String>) {
    let tmp = path.with_extension("answer.tmp");
    if let Ok(bytes) = serde_json::to_vec(&AnswerFile { result }) {
        if fs::write(&tmp, bytes).is_ok() {
            let _ = fs::rename(&tmp, path);
        }
    }
}

/// The requesting side: asks the job whose checkpoint directory is
/// `job_root` for a savepoint in `dir` (`None`: the job's default) and
/// waits up to `timeout`.
pub(crate) fn request_savepoint(
    job_root: &Path,
    dir: Option<&Path>,
    stop: bool,
    timeout: Duration,
) -> Result<PathBuf, EngineError> {
    let context = format!(
        "requesting a savepoint from the job using {}",
        job_root.display()
    );
    let dir = dir
        .map(std::path::absolute)
        .transpose()
        .map_err(|e| EngineError::checkpoint(&context, e))?;
    let request = RequestFile {
        dir,
        stop,
        cancel: false,
    };
    send(job_root, &request, timeout, &context)
}

/// The requesting side: asks the job whose checkpoint directory is
/// `job_root` to stop without a savepoint.
pub(crate) fn request_cancel(job_root: &Path, timeout: Duration) -> Result<(), EngineError> {
    let context = format!("cancelling the job using {}", job_root.display());
    let request = RequestFile {
        dir: None,
        stop: false,
        cancel: true,
    };
    send(job_root, &request, timeout, &context).map(|_| ())
}

/// Drops `request` into the job's inbox and waits for its answer.
fn send(
    job_root: &Path,
    request: &RequestFile,
    timeout: Duration,
    context: &str,
) -> Result<PathBuf, EngineError> {
    let requests = job_root.join("requests");
    fs::create_dir_all(&requests).map_err(|e| EngineError::checkpoint(context, e))?;
    let name = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    let tmp = requests.join(format!("{name}.tmp"));
    let bytes = serde_json::to_vec(request).map_err(|e| EngineError::checkpoint(context, e))?;
    let request = requests.join(format!("{name}.request"));
    fs::write(&tmp, bytes)
        .and_then(|()| fs::rename(&tmp, &request))
        .map_err(|e| EngineError::checkpoint(context, e))?;
    let answer = request.with_extension("answer");
    // A running job picks a request up within its polling interval.
    let pickup = Instant::now() + PICKUP;
    while request.exists() {
        if Instant::now() >= pickup {
            let _ = fs::remove_file(&request);
            return Err(EngineError::checkpoint(
                context,
                format!(
                    "no running job picked the request up within {}; is the job running, with the same --checkpoint-dir and job name?",
                    humantime::format_duration(PICKUP)
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(bytes) = fs::read(&answer) {
            let _ = fs::remove_file(&answer);
            let parsed: AnswerFile =
                serde_json::from_slice(&bytes).map_err(|e| EngineError::checkpoint(context, e))?;
            return parsed
                .result
                .map_err(|reason| EngineError::checkpoint(context, reason));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = fs::remove_file(&request);
    Err(EngineError::checkpoint(
        context,
        format!(
            "no answer within {}; is the job running with the same --checkpoint-dir?",
            humantime::format_duration(timeout)
        ),
    ))
}
