//! What every operator, source reader and sink writer knows about the
//! subtask it runs in.

use std::sync::Arc;

use crate::checkpoint::RestoredState;
use crate::clock::Clock;
use crate::config::StateBackendKind;
use crate::element::Timestamp;
use crate::error::Location;
use crate::keygroup::KeyGroupRange;
use crate::metrics::MetricGroup;
use std::path::PathBuf;

/// Information about the running subtask, handed to user code when it opens.
#[derive(Clone, Debug)]
pub struct RuntimeContext {
    pub(crate) job: Arc<str>,
    pub(crate) location: Location,
    pub(crate) max_parallelism: usize,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) restored: Option<Arc<RestoredState>>,
    pub(crate) checkpointing: bool,
    pub(crate) state_backend: StateBackendKind,
    pub(crate) state_dir: PathBuf,
    pub(crate) staging_root: PathBuf,
    pub(crate) metrics: MetricGroup,
}

impl RuntimeContext {
    /// A context for running a single operator outside a job (harnesses, tools).
    pub fn standalone(
        operator: &str,
        subtask: usize,
        parallelism: usize,
        max_parallelism: usize,
        clock: Arc<dyn Clock>,
    ) -> Self {
        RuntimeContext {
            job: Arc::from("standalone"),
            location: Location {
                operator: operator.to_owned(),
                uid: operator.to_owned(),
                subtask,
                parallelism,
            },
            max_parallelism,
            clock,
            restored: None,
            checkpointing: false,
            state_backend: StateBackendKind::Heap,
            state_dir: std::env::temp_dir().join("eddy-state"),
            staging_root: std::env::temp_dir().join("eddy-staging"),
            metrics: MetricGroup::default(),
        }
    }

    /// The same context with keyed state kept in `backend` (harnesses).
    pub fn with_state_backend(mut self, backend: StateBackendKind) -> Self {
        self.state_backend = backend;
        self
    }

    /// Where keyed state lives.
    pub fn state_backend(&self) -> StateBackendKind {
        self.state_backend
    }

    /// A fresh working directory for this subtask's disk-based state.
    pub fn state_dir_for_subtask(&self) -> PathBuf {
        static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.state_dir.join(format!(
            "{}-{}-{}-{n}",
            safe_file_name(self.uid()),
            self.subtask(),
            std::process::id()
        ))
    }

    /// Where this operator's subtasks keep what they prepare for a
    /// checkpoint and commit once it completes (a sink's data too large to
    /// hold in memory): under the job's checkpoint storage when the job
    /// checkpoints, so it outlives a failure and every subtask sees what the
    /// others left (a rescaled restore commits them); under the state
    /// directory otherwise. Shared by all subtasks of the operator: name
    /// files by subtask. Not created until used.
    pub fn staging_dir(&self) -> PathBuf {
        self.staging_root.join(safe_file_name(self.uid()))
    }

    /// Where this subtask registers live series of its own (exported by
    /// the job's metrics endpoint, labelled with the job, operator and
    /// subtask).
    pub fn metrics(&self) -> &MetricGroup {
        &self.metrics
    }

    /// The same context with staging directories under `root` (harnesses).
    pub fn with_staging_root(mut self, root: PathBuf) -> Self {
        self.staging_root = root;
        self
    }

    /// The same context with `state` to restore from (harnesses, tools).
    pub fn with_restored_state(mut self, state: RestoredState) -> Self {
        self.restored = Some(Arc::new(state));
        self
    }

    /// The state this subtask restores from, when the job started from a
    /// checkpoint or savepoint that holds state of this operator.
    pub fn restored_state(&self) -> Option<&RestoredState> {
        self.restored.as_deref()
    }

    /// True when the job takes checkpoints, so two-phase-commit sinks commit
    /// on checkpoint completion rather than when the input ends.
    pub fn is_checkpointing(&self) -> bool {
        self.checkpointing
    }

    /// The job's name.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The operator's name.
    pub fn operator(&self) -> &str {
        &self.location.operator
    }

    /// The operator's stable uid.
    pub fn uid(&self) -> &str {
        &self.location.uid
    }

    /// Index of this subtask, `0..parallelism`.
    pub fn subtask(&self) -> usize {
        self.location.subtask
    }

    /// Number of parallel subtasks of this operator.
    pub fn parallelism(&self) -> usize {
        self.location.parallelism
    }

    /// Number of key groups of this operator.
    pub fn max_parallelism(&self) -> usize {
        self.max_parallelism
    }

    /// The key groups this subtask owns.
    pub fn key_groups(&self) -> KeyGroupRange {
        KeyGroupRange::for_subtask(self.subtask(), self.parallelism(), self.max_parallelism)
    }

    /// Current processing time.
    pub fn processing_time(&self) -> Timestamp {
        self.clock.now()
    }

    /// The job's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Where this subtask is, for error messages.
    pub fn location(&self) -> &Location {
        &self.location
    }
}

/// `name` with every character but ASCII letters and digits replaced by `_`.
fn safe_file_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}
