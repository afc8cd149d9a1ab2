//! The checkpoint coordinator: triggers checkpoints at the sources, collects
//! the acknowledgements of the tasks' snapshot writers (each names the state
//! file a task's writer wrote, see [`super::writer`]), completes checkpoints
//! by writing `_metadata` last, and notifies the tasks.
//!
//! Besides periodic checkpoints it takes savepoints on request (optionally
//! stopping the job), and the end-of-input checkpoint of a bounded job: each
//! task, after it has finished, snapshots once more (two-phase-commit sinks
//! prepare their last output) and waits; when all have, the coordinator
//! completes that checkpoint and the tasks commit and exit.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};

use crate::checkpoint::snapshot::OperatorSnapshot;
use crate::checkpoint::storage::{self, FileEntry, Metadata, OperatorEntry, SnapshotKind};
use crate::checkpoint::writer::{
    Acknowledgement, StateHandle, TaskReport, WriterCommand, WriterInput,
};
use crate::checkpoint::CheckpointConfig;
use crate::clock::Clock;
use crate::element::{Barrier, CheckpointId};
use crate::error::EngineError;
use crate::metrics::{CheckpointTimes, JobMetrics};

/// What a task is told by the coordinator.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum TaskCommand {
    /// (Sources only) snapshot and emit this barrier.
    Trigger(Barrier),
    /// Checkpoint `id` is complete: commit what was prepared for it.
    /// `Complete(END)` tells a finished task that a completed checkpoint
    /// holds its end-of-input state: it commits everything and ends.
    Complete(CheckpointId),
    /// Checkpoint or savepoint `id` was abandoned (a task waiting for a
    /// stop-with-savepoint goes on).
    Abort(CheckpointId),
    /// (Sources only) new splits from the enumerator: a `Vec` of the
    /// source's split type. Sent on the same channel as triggers, so a
    /// barrier after it covers them.
    AddSplits(SplitBatch),
    /// (Sources only) the enumerator will send no more splits: a reader done
    /// with its splits ends.
    NoMoreSplits,
}

/// A batch of splits of a source's own type, on its way to a reader:
/// a `Vec` of them encoded as state values are
/// ([`crate::checkpoint::snapshot::encode_value`]), so it can cross processes.
#[derive(Serialize, Deserialize)]
pub(crate) struct SplitBatch(pub Vec<u8>);

impl std::fmt::Debug for SplitBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SplitBatch({} bytes)", self.0.len())
    }
}

/// The state of the operators of one task's chain, by uid.
pub(crate) type TaskState = Vec<(String, OperatorSnapshot)>;

/// A task's line to the coordinator.
#[derive(Clone)]
pub(crate) struct CheckpointLink {
    /// This task's index among all tasks of the job.
    pub task: usize,
    pub commands: Receiver<TaskCommand>,
    /// The snapshot writer of the task's worker.
    pub reports: Sender<WriterInput>,
    /// False when the job takes no checkpoints: tasks then end without
    /// waiting for an end-of-input checkpoint.
    pub enabled: bool,
    /// The newest abandoned checkpoint this task heard of (its barrier may
    /// arrive after the notice).
    pub aborted: std::cell::Cell<Option<CheckpointId>>,
}

impl CheckpointLink {
    /// Takes note of a command the task read; returns it.
    pub(crate) fn heard(&self, command: TaskCommand) -> TaskCommand {
        if let TaskCommand::Abort(id) = &command {
            let id = *id;
            self.aborted.set(self.aborted.get().max(Some(id)));
        }
        command
    }

    /// True when the coordinator abandoned checkpoint `id`.
    pub(crate) fn was_aborted(&self, id: CheckpointId) -> bool {
        self.aborted.get() == Some(id)
    }

    /// Sends a report to the writer; a writer that is gone means the job is
    /// ending.
    pub(crate) fn report(&self, report: TaskReport) {
        let _ = self.reports.send(WriterInput::Task(report));
    }
}

/// A request to take a savepoint, from the API or the command line.
pub(crate) struct SavepointRequest {
    /// Where to write it; `None`: `<job root>/savepoints/savepoint-<id>`.
    pub dir: Option<PathBuf>,
    pub stop: bool,
    pub reply: Sender<Result<PathBuf, String>>,
}

/// Where a task sits, for the metadata.
pub(crate) struct TaskInfo {
    pub vertex: usize,
    pub subtask: usize,
    pub commands: Sender<TaskCommand>,
    pub is_source: bool,
    /// Index of its worker's snapshot writer among the coordinator's.
    pub writer: usize,
}

struct Pending {
    started: Instant,
    dir: PathBuf,
    kind: SnapshotKind,
    /// What the tasks are told completed: the id, or `END` for the
    /// end-of-input checkpoint.
    notify: CheckpointId,
    acked: HashSet<usize>,
    files: Vec<FileEntry>,
    /// Shared files the written task states refer to.
    shared: HashSet<String>,
    /// Finished tasks whose end-of-input state was asked to stand in.
    stand_ins: Vec<usize>,
    request: Option<SavepointRequest>,
    /// The longest barrier alignment of the tasks that acknowledged.
    alignment: Duration,
}

impl Pending {
    fn new(
        dir: PathBuf,
        kind: SnapshotKind,
        notify: CheckpointId,
        request: Option<SavepointRequest>,
    ) -> Self {
        Pending {
            started: Instant::now(),
            dir,
            kind,
            notify,
            acked: HashSet::new(),
            files: Vec::new(),
            shared: HashSet::new(),
            stand_ins: Vec::new(),
            request,
            alignment: Duration::ZERO,
        }
    }

    /// Whether the checkpoint timeout applies: not to the end-of-input
    /// checkpoint, which waits for no barrier (only for its writes), and
    /// without which the job cannot end.
    fn times_out(&self) -> bool {
        self.notify != CheckpointId::END
    }

    /// Records a task's written state.
    fn add(&mut self, handle: StateHandle) {
        self.shared.extend(handle.shared);
        self.files.push(handle.file);
    }
}

/// What was written for a checkpoint whose tasks have all acknowledged.
struct Written {
    kind: SnapshotKind,
    /// A stop-with-savepoint.
    stop: bool,
    files: Vec<FileEntry>,
    shared: HashSet<String>,
    started: Instant,
    /// The longest barrier alignment among the tasks.
    alignment: Duration,
    /// Finished tasks whose end-of-input state stood in for them.
    stand_ins: Vec<usize>,
}

/// What a completed stop-with-savepoint means for the job.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    Running,
    /// A stop-with-savepoint completed: the tasks end after committing.
    Stopping(PathBuf),
}

/// Coordinates the checkpoints of one run of a job.
pub(crate) struct Coordinator {
    job: String,
    root: PathBuf,
    config: CheckpointConfig,
    clock: Arc<dyn Clock>,
    tasks: Vec<TaskInfo>,
    /// The snapshot writers of the workers.
    writers: Vec<Sender<WriterInput>>,
    operators: Vec<OperatorEntry>,
    next_id: CheckpointId,
    next_trigger: Instant,
    pending: BTreeMap<CheckpointId, Pending>,
    /// Tasks that have finished; their writers hold their end-of-input state.
    finished: BTreeSet<usize>,
    stopping: bool,
    /// Completed checkpoints and savepoints of this run, for statistics.
    pub completed: Vec<CompletedCheckpoint>,
    metrics: Arc<JobMetrics>,
}

/// A checkpoint that completed, for statistics.
#[derive(Clone, Debug)]
pub struct CompletedCheckpoint {
    /// Its id.
    pub id: CheckpointId,
    /// Checkpoint or savepoint.
    pub kind: SnapshotKind,
    /// Where it is stored.
    pub path: PathBuf,
    /// Bytes of state files written (for incremental checkpoints: without
    /// the shared files).
    pub bytes: u64,
    /// Bytes of new files put into shared storage by this checkpoint.
    pub uploaded_bytes: u64,
    /// Bytes of all shared files this checkpoint refers to.
    pub shared_bytes: u64,
    /// From trigger to complete metadata.
    pub duration: Duration,
    /// The job stopped with it (stop-with-savepoint).
    pub stop: bool,
}

impl Coordinator {
    pub(crate) fn new(
        job: &str,
        config: &CheckpointConfig,
        clock: Arc<dyn Clock>,
        tasks: Vec<TaskInfo>,
        writers: Vec<Sender<WriterInput>>,
        operators: Vec<OperatorEntry>,
        metrics: Arc<JobMetrics>,
    ) -> Self {
        let root = job_root(&config.dir, job);
        let interval = config.interval.unwrap_or(Duration::MAX);
        Coordinator {
            job: job.to_owned(),
            next_id: storage::next_id(&root),
            root,
            config: config.clone(),
            clock,
            tasks,
            writers,
            operators,
            next_trigger: Instant::now()
                .checked_add(interval)
                .unwrap_or_else(far_future),
            pending: BTreeMap::new(),
            finished: BTreeSet::new(),
            stopping: false,
            completed: Vec::new(),
            metrics,
        }
    }

    /// When the coordinator next needs [`Self::tick`].
    pub(crate) fn next_deadline(&self) -> Instant {
        let timeouts = self
            .pending
            .values()
            .filter(|p| p.times_out())
            .map(|p| {
                p.started
                    .checked_add(self.config.timeout)
                    .unwrap_or_else(far_future)
            })
            .min()
            .unwrap_or_else(far_future);
        self.next_trigger.min(timeouts)
    }

    /// Triggers a periodic checkpoint when due; abandons timed-out ones.
    pub(crate) fn tick(&mut self, now: Instant) -> Result<(), EngineError> {
        let timeout = self.config.timeout;
        let expired: Vec<CheckpointId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.times_out() && now.duration_since(p.started) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            tracing::warn!(
                checkpoint = id.0,
                ?timeout,
                "checkpoint timed out; abandoned"
            );
            self.abandon(
                id,
                &format!("timed out after {}", humantime::format_duration(timeout)),
            );
        }
        if now >= self.next_trigger {
            let interval = self.config.interval.unwrap_or(Duration::MAX);
            self.next_trigger = now.checked_add(interval).unwrap_or_else(far_future);
            let periodic = self
                .pending
                .values()
                .filter(|p| p.kind == SnapshotKind::Checkpoint)
                .count();
            if periodic < self.config.max_concurrent && self.sources_running() && !self.stopping {
                let dir = storage::checkpoint_dir(&self.root, self.next_id);
                self.trigger(dir, SnapshotKind::Checkpoint, None)?;
            }
        }
        Ok(())
    }

    /// The next checkpoint id, recorded so that no later run reuses it.
    fn take_id(&mut self) -> CheckpointId {
        let id = self.next_id;
        self.next_id = CheckpointId(id.0 + 1);
        storage::record_next_id(&self.root, self.next_id);
        id
    }

    /// True while a source task has not finished (barriers can still flow).
    fn sources_running(&self) -> bool {
        self.tasks
            .iter()
            .enumerate()
            .any(|(t, info)| info.is_source && !self.finished.contains(&t))
    }

    /// Starts a savepoint.
    pub(crate) fn savepoint(&mut self, request: SavepointRequest) {
        if self.stopping || !self.sources_running() {
            let _ = request.reply.send(Err(
                "the job is stopping, or all its sources have finished; no savepoint taken".into(),
            ));
            return;
        }
        let dir = request.dir.clone().unwrap_or_else(|| {
            self.root
                .join("savepoints")
                .join(format!("savepoint-{}", self.next_id.0))
        });
        if let Err(e) = std::fs::create_dir_all(&dir) {
            let _ = request.reply.send(Err(format!(
                "cannot create savepoint directory {}: {e}",
                dir.display()
            )));
            return;
        }
        if dir.join(storage::METADATA).exists() {
            let _ = request.reply.send(Err(format!(
                "{} already holds a savepoint; choose an empty directory",
                dir.display()
            )));
            return;
        }
        self.stopping = request.stop;
        if let Err(e) = self.trigger(dir, SnapshotKind::Savepoint, Some(request)) {
            tracing::warn!(error = %e, "savepoint could not be triggered");
        }
    }

    fn trigger(
        &mut self,
        dir: PathBuf,
        kind: SnapshotKind,
        request: Option<SavepointRequest>,
    ) -> Result<(), EngineError> {
        let id = self.take_id();
        if let Err(e) = std::fs::create_dir_all(&dir) {
            let error = EngineError::checkpoint(format!("creating {}", dir.display()), e);
            if let Some(r) = request {
                let _ = r.reply.send(Err(error.to_string()));
            }
            return Err(error);
        }
        let stop = request.as_ref().is_some_and(|r| r.stop);
        let barrier = Barrier {
            id,
            triggered_at: self.clock.now(),
            stop,
            savepoint: kind == SnapshotKind::Savepoint,
        };
        tracing::debug!(checkpoint = id.0, ?kind, "triggering");
        self.begin(id, Pending::new(dir, kind, id, request));
        for (t, info) in self.tasks.iter().enumerate() {
            if info.is_source && !self.finished.contains(&t) {
                let _ = info.commands.send(TaskCommand::Trigger(barrier));
            }
        }
        Ok(())
    }

    /// Tells every writer where `id` goes (before any task can snapshot
    /// for it), and waits for it.
    fn begin(&mut self, id: CheckpointId, pending: Pending) {
        self.tell_writers(WriterCommand::Begin {
            id,
            dir: pending.dir.clone(),
        });
        self.pending.insert(id, pending);
    }

    fn tell_writers(&self, command: WriterCommand) {
        for w in &self.writers {
            let _ = w.send(WriterInput::Command(command.clone()));
        }
    }

    /// Handles a writer's acknowledgement.
    pub(crate) fn on_report(&mut self, report: Acknowledgement) -> Result<Progress, EngineError> {
        match report {
            Acknowledgement::Ack {
                task,
                id,
                handle,
                alignment,
            } => self.on_ack(task, id, handle, alignment),
            Acknowledgement::Decline { task, id } => {
                tracing::debug!(checkpoint = id.0, task, "checkpoint declined");
                self.abandon(id, "a task declined it (overtaken by a newer one)");
                Ok(Progress::Running)
            }
            Acknowledgement::Failed { task, id, reason } => {
                // A write for a checkpoint abandoned meanwhile may fail as
                // its directory goes: that says nothing new.
                let Some(p) = self.pending.get(&id) else {
                    return Ok(Progress::Running);
                };
                // Every task waits for the end-of-input checkpoint: without
                // it the job cannot end, so the run fails (and restarts).
                if p.notify == CheckpointId::END {
                    return Err(EngineError::checkpoint(
                        format!("writing the end-of-input checkpoint {}", id.0),
                        reason,
                    ));
                }
                tracing::warn!(checkpoint = id.0, task, error = %reason, "checkpoint failed");
                self.abandon(id, &reason);
                Ok(Progress::Running)
            }
            Acknowledgement::Finished { task } => {
                // A finished task acknowledges nothing any more: its
                // end-of-input state stands in for it (all its inputs have
                // ended, so that state is final).
                self.finished.insert(task);
                if self.finished.len() == self.tasks.len() {
                    self.abort_all("the job finished first");
                    if self.config.interval.is_some() {
                        self.begin_end_of_input()?;
                    }
                }
                let ids: Vec<CheckpointId> = self.pending.keys().copied().collect();
                let mut progress = Progress::Running;
                for id in ids {
                    if let Progress::Stopping(p) = self.try_complete(id)? {
                        progress = Progress::Stopping(p);
                    }
                }
                Ok(progress)
            }
        }
    }

    fn on_ack(
        &mut self,
        task: usize,
        id: CheckpointId,
        handle: StateHandle,
        alignment: Duration,
    ) -> Result<Progress, EngineError> {
        let Some(p) = self.pending.get_mut(&id) else {
            return Ok(Progress::Running); // abandoned meanwhile
        };
        if !p.acked.insert(task) {
            return Ok(Progress::Running);
        }
        p.add(handle);
        if !p.stand_ins.contains(&task) {
            p.alignment = p.alignment.max(alignment);
            let info = &self.tasks[task];
            self.metrics.checkpoint_acknowledged(
                info.vertex,
                info.subtask,
                p.started.elapsed(),
                alignment,
            );
        }
        self.try_complete(id)
    }

    /// Completes `id` when every task has acknowledged it, asking the
    /// writers of finished tasks for their stand-ins first.
    fn try_complete(&mut self, id: CheckpointId) -> Result<Progress, EngineError> {
        let Some(p) = self.pending.get_mut(&id) else {
            return Ok(Progress::Running);
        };
        for &task in &self.finished {
            if !p.acked.contains(&task) && !p.stand_ins.contains(&task) {
                p.stand_ins.push(task);
                let writer = &self.writers[self.tasks[task].writer];
                let _ = writer.send(WriterInput::Command(WriterCommand::StandIn { id, task }));
            }
        }
        if p.acked.len() < self.tasks.len() {
            return Ok(Progress::Running);
        }
        let p = self.pending.remove(&id).expect("present");
        self.tell_writers(WriterCommand::Forget(id));
        let stop = p.request.as_ref().is_some_and(|r| r.stop);
        let dir = p.dir.clone();
        let written = Written {
            kind: p.kind,
            stop,
            files: p.files,
            shared: p.shared,
            started: p.started,
            alignment: p.alignment,
            stand_ins: p.stand_ins,
        };
        match self.complete(id, p.notify, &p.dir, written) {
            Ok(()) => {
                if let Some(r) = p.request {
                    let _ = r.reply.send(Ok(dir.clone()));
                }
                Ok(if stop {
                    Progress::Stopping(dir)
                } else {
                    Progress::Running
                })
            }
            Err(e) => {
                if let Some(r) = p.request {
                    let _ = r.reply.send(Err(e.to_string()));
                }
                if p.kind == SnapshotKind::Checkpoint {
                    storage::discard(&self.root, id);
                }
                Err(e)
            }
        }
    }

    /// Writes the metadata of `id` and tells every task that `notify`
    /// (`id`, or `END` for the end-of-input checkpoint) is complete.
    fn complete(
        &mut self,
        id: CheckpointId,
        notify: CheckpointId,
        dir: &Path,
        written: Written,
    ) -> Result<(), EngineError> {
        let Written {
            kind,
            stop,
            files,
            shared,
            started,
            alignment,
            stand_ins,
        } = written;
        let _span = tracing::info_span!("checkpoint", id = id.0).entered();
        let mut metadata = Metadata::new(&self.job, id, kind, self.clock.now().millis());
        metadata.operators = self.operators.clone();
        metadata.shared = shared.into_iter().collect();
        metadata.shared.sort_unstable();
        let bytes = files.iter().map(|f| f.bytes).sum();
        let uploaded_bytes = files.iter().map(|f| f.uploaded).sum();
        let shared_bytes = storage::shared_size(&self.root, &metadata.shared);
        metadata.files = files;
        storage::write_metadata(dir, &metadata)?;
        let duration = started.elapsed();
        tracing::info!(
            checkpoint = id.0,
            ?kind,
            bytes,
            ?duration,
            ?alignment,
            "checkpoint complete"
        );
        self.metrics.checkpoint_completed(
            id.0,
            kind,
            dir,
            CheckpointTimes {
                duration,
                alignment,
            },
            bytes,
        );
        self.completed.push(CompletedCheckpoint {
            id,
            kind,
            path: dir.to_path_buf(),
            bytes,
            uploaded_bytes,
            shared_bytes,
            duration,
            stop,
        });
        // An intermediate savepoint commits nothing (as in Flink): a restart
        // goes back to the last checkpoint, which must not find its output
        // committed. Its transactions are committed with the next checkpoint.
        if kind == SnapshotKind::Checkpoint || stop {
            for t in &self.tasks {
                let _ = t.commands.send(TaskCommand::Complete(notify));
            }
            // Finished tasks whose final state this holds commit and end
            // (told already when this is the end-of-input checkpoint).
            let stand_ins = stand_ins
                .into_iter()
                .filter(|_| notify != CheckpointId::END);
            for t in stand_ins {
                let _ = self.tasks[t]
                    .commands
                    .send(TaskCommand::Complete(CheckpointId::END));
            }
        }
        if kind == SnapshotKind::Checkpoint {
            let in_flight: HashSet<String> = self
                .pending
                .values()
                .flat_map(|p| p.shared.iter().cloned())
                .collect();
            storage::prune(&self.root, self.config.retained, &in_flight);
        }
        Ok(())
    }

    /// Starts the end-of-input checkpoint: every task has finished, and
    /// their writers are asked for their end-of-input states.
    fn begin_end_of_input(&mut self) -> Result<(), EngineError> {
        let id = self.take_id();
        let dir = storage::checkpoint_dir(&self.root, id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| EngineError::checkpoint(format!("creating {}", dir.display()), e))?;
        let pending = Pending::new(dir, SnapshotKind::Checkpoint, CheckpointId::END, None);
        self.begin(id, pending);
        Ok(())
    }

    fn abandon(&mut self, id: CheckpointId, reason: &str) {
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        self.tell_writers(WriterCommand::Forget(id));
        self.metrics.checkpoint_failed();
        // Tasks waiting for a stop-with-savepoint go on: the job resumes.
        if p.request.as_ref().is_some_and(|r| r.stop) {
            self.stopping = false;
        }
        for t in &self.tasks {
            let _ = t.commands.send(TaskCommand::Abort(id));
        }
        match p.kind {
            SnapshotKind::Checkpoint => storage::discard(&self.root, id),
            SnapshotKind::Savepoint => {
                for f in &p.files {
                    let _ = std::fs::remove_file(p.dir.join(&f.name));
                }
            }
        }
        if let Some(r) = p.request {
            let _ = r
                .reply
                .send(Err(format!("savepoint {} failed: {reason}", id.0)));
        }
    }

    /// Abandons everything in flight (the run failed or was cancelled).
    pub(crate) fn abort_all(&mut self, reason: &str) {
        let ids: Vec<CheckpointId> = self.pending.keys().copied().collect();
        for id in ids {
            self.abandon(id, reason);
        }
    }
}

/// The checkpoint directory of job `job` under `dir`.
pub(crate) fn job_root(dir: &Path, job: &str) -> PathBuf {
    let safe: String = job
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(safe)
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}
