//! Fault tolerance: checkpoints by asynchronous barrier snapshotting,
//! restarts from the latest complete checkpoint, and savepoints.
//!
//! A coordinator (on the thread that runs the job) triggers checkpoint `n` at
//! every source subtask; each snapshots its split positions and sends
//! `Barrier(n)` down its outputs. A task with several inputs aligns the
//! barrier (exactly-once) or not (at-least-once), snapshots every operator of
//! its chain on its own thread (the synchronous part: capture and encode),
//! forwards the barrier, and hands the encoded state to its worker's snapshot
//! writer, which writes it off the task threads (the asynchronous part) and
//! acknowledges with a handle to the file. When every task has
//! acknowledged, the coordinator writes `_metadata` atomically — only then is
//! `n` complete — and notifies every task, so that two-phase-commit sinks
//! commit what they prepared for `n`.
//!
//! The state format is the same for checkpoints and savepoints and does not
//! depend on the backend: state by operator uid, state name and key group,
//! each entry with its key's hash and a self-describing encoding of key,
//! namespace and value (see [`snapshot`]). So a restore may change the
//! parallelism and even the number of key groups.

pub(crate) mod coordinator;
pub(crate) mod requests;
pub(crate) mod restart;
pub(crate) mod restore;
pub mod snapshot;
pub(crate) mod status;
pub(crate) mod storage;
pub(crate) mod writer;

use std::path::PathBuf;
use std::time::Duration;

pub use coordinator::CompletedCheckpoint;
pub use restart::RestartStrategy;
pub use restore::RestoredState;
pub use snapshot::{Redistribution, StateSnapshot};
pub use storage::SnapshotKind;

use crate::error::EngineError;

/// The newest complete checkpoint of job `job` under checkpoint root `dir`
/// (what `run --restore <dir>/<job>` would use), if there is one.
pub fn latest_checkpoint(dir: &std::path::Path, job: &str) -> Option<PathBuf> {
    storage::latest_complete(&coordinator::job_root(dir, job))
}

/// Whether tasks with several inputs align barriers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CheckpointingMode {
    /// Align: after a barrier arrives on an input, hold that input until the
    /// barrier has arrived on every input. State reflects each record once.
    #[default]
    ExactlyOnce,
    /// Do not align: state may reflect records after the barrier, which are
    /// then replayed after a restore (each record at least once).
    AtLeastOnce,
}

/// Checkpoint, restart and restore settings of a job.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointConfig {
    /// Interval between periodic checkpoints; `None` (the default) takes none.
    pub interval: Option<Duration>,
    /// Barrier alignment (default exactly-once).
    pub mode: CheckpointingMode,
    /// Root of checkpoint storage; a job's checkpoints go to `<dir>/<job>/`
    /// (default `<temp dir>/eddy-checkpoints`).
    pub dir: PathBuf,
    /// A checkpoint not complete after this long is abandoned (default 10 min).
    pub timeout: Duration,
    /// Checkpoints in flight at once (default 1).
    pub max_concurrent: usize,
    /// Complete checkpoints kept (default 1).
    pub retained: usize,
    /// What to do when a task fails (default: no restart without
    /// checkpoints; exponential backoff with them, as in Flink).
    pub restart: Option<RestartStrategy>,
    /// Start from this savepoint or checkpoint.
    pub restore: Option<PathBuf>,
    /// Without `restore`: start from this job's newest complete checkpoint
    /// in `dir` if there is one, from scratch otherwise (what a supervisor
    /// restarting a crashed process needs).
    pub resume: bool,
    /// Allow a restore whose snapshot holds state of uids the job lacks.
    pub allow_non_restored_state: bool,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            interval: None,
            mode: CheckpointingMode::ExactlyOnce,
            dir: std::env::temp_dir().join("eddy-checkpoints"),
            timeout: Duration::from_secs(600),
            max_concurrent: 1,
            retained: 1,
            restart: None,
            restore: None,
            resume: false,
            allow_non_restored_state: false,
        }
    }
}

impl CheckpointConfig {
    /// The restart strategy in force: the configured one, or Flink's
    /// defaults (none without checkpoints, exponential backoff with them).
    pub fn restart_strategy(&self) -> RestartStrategy {
        self.restart.clone().unwrap_or(if self.interval.is_some() {
            RestartStrategy::default_with_checkpoints()
        } else {
            RestartStrategy::None
        })
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`EngineError::Config`] naming the option.
    pub fn validate(&self) -> Result<(), EngineError> {
        if self.interval.is_some_and(|d| d < Duration::from_millis(10)) {
            return Err(EngineError::config(
                "--checkpoint-interval",
                humantime::format_duration(self.interval.unwrap_or_default()),
                "must be at least 10ms, e.g. 1s",
            ));
        }
        if self.max_concurrent == 0 {
            return Err(EngineError::config(
                "--max-concurrent-checkpoints",
                0,
                "must be at least 1",
            ));
        }
        if self.retained == 0 {
            return Err(EngineError::config(
                "--retained-checkpoints",
                0,
                "must be at least 1",
            ));
        }
        if self.timeout.is_zero() {
            return Err(EngineError::config(
                "--checkpoint-timeout",
                "0s",
                "must be positive, e.g. 10min",
            ));
        }
        Ok(())
    }
}
