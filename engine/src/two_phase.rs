//! Two-phase-commit sinks: output becomes visible only when the checkpoint
//! that covers it completes, so a job that fails and restarts from that
//! checkpoint neither loses nor repeats visible output.
//!
//! On every checkpoint barrier the writer *prepares*: it closes the current
//! transaction (say, a hidden file) and returns a committable that describes
//! it. The committable is kept in the sink's operator state until it is
//! committed. When the checkpoint completes, the sink *commits* it (say,
//! renames the file into place) — on a thread of the subtask's own, so a
//! slow commit does not hold records up, retried with backoff; a commit that
//! keeps failing fails the job, which restarts and commits again. After a
//! restore, the committables of the restored checkpoint are committed again
//! — some may have been committed before the failure — so commits must be
//! idempotent. Each goes back to the subtask that prepared it when the
//! parallelism is unchanged, and is dealt round-robin otherwise. Without
//! checkpoints, the output is committed when the input ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Redistribution, StateSnapshot};
use crate::context::RuntimeContext;
use crate::element::{CheckpointId, Data, Record};
use crate::error::BoxError;
use crate::sink::{Sink, SinkWriter};

/// An exactly-once sink. Wrap it in [`ExactlyOnce`] to use it as a [`Sink`].
pub trait TwoPhaseCommitSink: Send + Sync + 'static {
    /// The records it accepts.
    type In: Data;
    /// What a prepared transaction needs to be committed; kept in
    /// checkpoints, and shared (not copied) with the commit thread.
    type Committable: Data + Sync;
    /// Its per-subtask writer.
    type Writer: TwoPhaseCommitWriter<In = Self::In, Committable = Self::Committable>;

    /// Creates the writer of one subtask, on that subtask's thread.
    ///
    /// # Errors
    /// When the destination cannot be opened.
    fn create_writer(&self, ctx: &RuntimeContext) -> Result<Self::Writer, BoxError>;

    /// Makes a prepared transaction visible. Called when its checkpoint
    /// completes (off the task thread, and again after a failed attempt) and
    /// after a restore: committing twice must be the same as committing
    /// once.
    ///
    /// # Errors
    /// A commit failure; it is retried, then fails the job (which restarts
    /// and commits again).
    fn commit(&self, committable: &Self::Committable) -> Result<(), BoxError>;

    /// Called on each subtask of a restored job, after its own restored
    /// committables were committed and before its writer is created, with
    /// every committable the restored checkpoint holds (of all subtasks).
    /// A sink whose killed writers may have left transactions behind that
    /// no checkpoint refers to (they can never commit) deletes them here —
    /// only those this subtask is responsible for, since the other
    /// subtasks run at the same time. Does nothing by default.
    ///
    /// # Errors
    /// A failure to clean up; it fails the job.
    fn clean_up_after_restore(
        &self,
        _ctx: &RuntimeContext,
        _restored: &[&Self::Committable],
    ) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Writes the records of one subtask into the current transaction.
pub trait TwoPhaseCommitWriter: 'static {
    /// The records it accepts.
    type In: Data;
    /// What [`Self::prepare`] returns.
    type Committable: Data;

    /// Writes a batch into the current transaction.
    ///
    /// # Errors
    /// A write failure.
    fn write(&mut self, batch: &mut Vec<Record<Self::In>>) -> Result<(), BoxError>;

    /// Ends the current transaction as part of checkpoint `id`
    /// ([`CheckpointId::END`] for the last one of a bounded input) and starts
    /// a new one; `None` when it holds nothing.
    ///
    /// # Errors
    /// A write failure.
    fn prepare(&mut self, id: CheckpointId) -> Result<Option<Self::Committable>, BoxError>;
}

/// Name of the operator list state holding the committables not yet
/// known to be committed, each with the subtask that prepared it.
const PENDING: &str = "pending-commits";

/// How often a failing commit is tried, and the first pause between tries
/// (doubling each time: about 3 s of pauses in all).
const COMMIT_ATTEMPTS: u32 = 7;
const FIRST_RETRY: Duration = Duration::from_millis(50);

/// A committable in the sink's state, with where it came from.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pending<C> {
    subtask: usize,
    parallelism: usize,
    id: CheckpointId,
    committable: C,
}

/// Runs a [`TwoPhaseCommitSink`] as a [`Sink`].
pub struct ExactlyOnce<S> {
    sink: Arc<S>,
}

impl<S: TwoPhaseCommitSink> ExactlyOnce<S> {
    /// Wraps `sink`.
    pub fn new(sink: S) -> Self {
        ExactlyOnce {
            sink: Arc::new(sink),
        }
    }
}

/// What one subtask's commits did, for the job statistics (`commits`,
/// `commit_retries`, `commit_ms`: the time spent in commits, retries and
/// their pauses included).
#[derive(Default)]
struct CommitMetrics {
    commits: AtomicU64,
    retries: AtomicU64,
    micros: AtomicU64,
}

impl CommitMetrics {
    fn report(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("commits", self.commits.load(Ordering::Relaxed)),
            ("commit_retries", self.retries.load(Ordering::Relaxed)),
            ("commit_ms", self.micros.load(Ordering::Relaxed) / 1_000),
        ]
    }
}

/// Commits `committable`, retrying with backoff; counts into `metrics`.
fn commit_with_retries<S: TwoPhaseCommitSink>(
    sink: &S,
    committable: &S::Committable,
    metrics: &CommitMetrics,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    let outcome = retry_commit(sink, committable, metrics);
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    metrics.micros.fetch_add(micros, Ordering::Relaxed);
    if outcome.is_ok() {
        metrics.commits.fetch_add(1, Ordering::Relaxed);
    }
    outcome
}

fn retry_commit<S: TwoPhaseCommitSink>(
    sink: &S,
    committable: &S::Committable,
    metrics: &CommitMetrics,
) -> Result<(), String> {
    let mut pause = FIRST_RETRY;
    for attempt in 1..=COMMIT_ATTEMPTS {
        match sink.commit(committable) {
            Ok(()) => return Ok(()),
            Err(e) if attempt == COMMIT_ATTEMPTS => {
                return Err(format!("commit failed after {attempt} attempts: {e}"))
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "commit failed; trying again");
                metrics.retries.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(pause);
                pause *= 2;
            }
        }
    }
    Err("no commit attempt was made".into())
}

impl<S: TwoPhaseCommitSink> Sink for ExactlyOnce<S> {
    type In = S::In;
    type Writer = ExactlyOnceWriter<S>;

    /// The two-phase-commit sink's name, e.g. `TransactionalRedisSink`.
    fn name(&self) -> String {
        crate::dsl::short_type_name::<S>()
    }

    fn create_writer(&self, ctx: &RuntimeContext) -> Result<Self::Writer, BoxError> {
        // What the restored checkpoint prepared may not have been committed
        // before the failure: commit it (again), before anything new.
        let metrics = Arc::new(CommitMetrics::default());
        let restored = restored_pending::<S::Committable>(ctx)?;
        for (_, committable) in restored.iter().filter(|(mine, _)| *mine) {
            commit_with_retries(&*self.sink, committable, &metrics)?;
        }
        if ctx.restored_state().is_some() {
            let every: Vec<&S::Committable> = restored.iter().map(|(_, c)| c).collect();
            self.sink.clean_up_after_restore(ctx, &every)?;
        }
        let (work_tx, work_rx) = crossbeam_channel::unbounded();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let sink = Arc::clone(&self.sink);
        let thread_metrics = Arc::clone(&metrics);
        let committer = std::thread::Builder::new()
            .name(format!("eddy-commit-{}.{}", ctx.uid(), ctx.subtask()))
            .spawn(move || run_committer(&*sink, &work_rx, &done_tx, &thread_metrics))?;
        Ok(ExactlyOnceWriter {
            writer: self.sink.create_writer(ctx)?,
            subtask: ctx.subtask(),
            parallelism: ctx.parallelism(),
            prepared: Vec::new(),
            committing: Vec::new(),
            work: Some(work_tx),
            done: done_rx,
            committer: Some(committer),
            checkpointing: ctx.is_checkpointing(),
            metrics,
        })
    }
}

/// Every committable the restored state holds (of all subtasks), each with
/// whether this subtask commits it: its own when the parallelism is
/// unchanged, a round-robin share otherwise. Those under the older, unrouted
/// state name are this subtask's share already.
fn restored_pending<C: Data>(ctx: &RuntimeContext) -> Result<Vec<(bool, C)>, BoxError> {
    let Some(restored) = ctx.restored_state() else {
        return Ok(Vec::new());
    };
    let (subtask, parallelism) = (ctx.subtask(), ctx.parallelism());
    let mut all: Vec<(bool, C)> = restored
        .list::<Pending<C>>(PENDING)?
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let mine = match p.parallelism == parallelism {
                true => p.subtask == subtask,
                false => i % parallelism == subtask,
            };
            (mine, p.committable)
        })
        .collect();
    all.extend(
        restored
            .list::<C>("committables")?
            .into_iter()
            .map(|c| (true, c)),
    );
    Ok(all)
}

/// The commit thread of one subtask: commits what it is sent, in order, and
/// reports each outcome.
fn run_committer<S: TwoPhaseCommitSink>(
    sink: &S,
    work: &Receiver<(CheckpointId, Arc<S::Committable>)>,
    done: &Sender<(CheckpointId, Result<(), String>)>,
    metrics: &CommitMetrics,
) {
    for (id, committable) in work.iter() {
        let outcome = commit_with_retries(sink, &committable, metrics);
        let failed = outcome.is_err();
        if done.send((id, outcome)).is_err() || failed {
            return;
        }
    }
}

/// The writer of an [`ExactlyOnce`] sink: prepared transactions wait here
/// for their checkpoint to complete, then for their commit.
pub struct ExactlyOnceWriter<S: TwoPhaseCommitSink> {
    writer: S::Writer,
    subtask: usize,
    parallelism: usize,
    /// Prepared, waiting for their checkpoint to complete.
    prepared: Vec<(CheckpointId, S::Committable)>,
    /// Handed to the commit thread (shared with it, not copied), not yet
    /// reported committed.
    committing: Vec<(CheckpointId, Arc<S::Committable>)>,
    work: Option<Sender<(CheckpointId, Arc<S::Committable>)>>,
    done: Receiver<(CheckpointId, Result<(), String>)>,
    committer: Option<JoinHandle<()>>,
    checkpointing: bool,
    metrics: Arc<CommitMetrics>,
}

impl<S: TwoPhaseCommitSink> ExactlyOnceWriter<S> {
    /// Takes note of finished commits; fails with a commit that failed.
    fn collect_commits(&mut self) -> Result<(), BoxError> {
        while let Ok((id, outcome)) = self.done.try_recv() {
            outcome?;
            if let Some(i) = self.committing.iter().position(|(c, _)| *c == id) {
                self.committing.remove(i);
            }
        }
        Ok(())
    }

    /// Hands every committable of checkpoints up to `id` to the commit thread.
    fn commit_up_to(&mut self, id: CheckpointId) -> Result<(), BoxError> {
        let due = self.prepared.iter().take_while(|(p, _)| *p <= id).count();
        for (p, committable) in self.prepared.drain(..due) {
            let committable = Arc::new(committable);
            if let Some(work) = &self.work {
                work.send((p, Arc::clone(&committable)))
                    .map_err(|_| "the commit thread has stopped")?;
            }
            self.committing.push((p, committable));
        }
        self.collect_commits()
    }

    /// Waits until every commit handed over is done; no commit can follow.
    fn drain_commits(&mut self) -> Result<(), BoxError> {
        self.stop_committer()?;
        self.collect_commits()?;
        if self.committing.is_empty() {
            Ok(())
        } else {
            Err("some commits did not finish".into())
        }
    }
}

impl<S: TwoPhaseCommitSink> SinkWriter for ExactlyOnceWriter<S> {
    type In = S::In;

    fn write(&mut self, batch: &mut Vec<Record<S::In>>) -> Result<(), BoxError> {
        self.collect_commits()?;
        self.writer.write(batch)
    }

    fn snapshot_state(&mut self, out: &mut StateSnapshot) -> Result<(), BoxError> {
        self.collect_commits()?;
        let id = out.checkpoint_id();
        if let Some(committable) = self.writer.prepare(id)? {
            self.prepared.push((id, committable));
        }
        // Everything not known to be committed, oldest first.
        let (subtask, parallelism) = (self.subtask, self.parallelism);
        let committing = self.committing.iter().map(|(id, c)| (*id, &**c));
        let prepared = self.prepared.iter().map(|(id, c)| (*id, c));
        let pending = committing.chain(prepared).map(|(id, committable)| Pending {
            subtask,
            parallelism,
            id,
            committable,
        });
        out.list(PENDING, Redistribution::Union, pending)?;
        Ok(())
    }

    fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), BoxError> {
        self.commit_up_to(id)?;
        if id == CheckpointId::END {
            // The last notification: the task ends when it returns.
            self.drain_commits()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        // With checkpoints, the end-of-input checkpoint prepares and commits
        // the rest; without, the end of the input is the commit point (for
        // what savepoints prepared too).
        if !self.checkpointing {
            if let Some(committable) = self.writer.prepare(CheckpointId::END)? {
                self.prepared.push((CheckpointId::END, committable));
            }
            self.commit_up_to(CheckpointId::END)?;
            self.drain_commits()?;
        }
        Ok(())
    }

    fn metrics(&self) -> Vec<(&'static str, u64)> {
        self.metrics.report()
    }
}

impl<S: TwoPhaseCommitSink> ExactlyOnceWriter<S> {
    /// Closes the commit thread's queue and waits until it has committed
    /// everything in it.
    fn stop_committer(&mut self) -> Result<(), BoxError> {
        drop(self.work.take());
        match self.committer.take() {
            Some(committer) => committer
                .join()
                .map_err(|_| "the commit thread panicked".into()),
            None => Ok(()),
        }
    }
}

impl<S: TwoPhaseCommitSink> Drop for ExactlyOnceWriter<S> {
    fn drop(&mut self) {
        // What was handed over belongs to completed checkpoints: committing
        // it is right whether the job ends (after a stop with a savepoint)
        // or is torn down for a restart, which must not overlap it.
        let _ = self.stop_committer();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    use super::*;
    use crate::checkpoint::RestoredState;
    use crate::clock::ManualClock;
    use crate::element::Timestamp;

    /// Commits into a shared list (every commit counts: a committable
    /// committed twice shows twice); the first `failures` commits fail.
    #[derive(Default)]
    struct Memory {
        committed: Mutex<Vec<(usize, u64)>>,
        failures: AtomicU32,
    }

    struct MemoryWriter {
        subtask: usize,
        records: Vec<u64>,
    }

    impl TwoPhaseCommitSink for Memory {
        type In = u64;
        type Committable = (usize, Vec<u64>);
        type Writer = MemoryWriter;

        fn create_writer(&self, ctx: &RuntimeContext) -> Result<MemoryWriter, BoxError> {
            Ok(MemoryWriter {
                subtask: ctx.subtask(),
                records: Vec::new(),
            })
        }

        fn commit(&self, (subtask, records): &(usize, Vec<u64>)) -> Result<(), BoxError> {
            let left = self.failures.load(Ordering::SeqCst);
            if left > 0 {
                self.failures.store(left - 1, Ordering::SeqCst);
                return Err("the destination is down".into());
            }
            let mut all = self.committed.lock().map_err(|_| "poisoned")?;
            all.extend(records.iter().map(|&r| (*subtask, r)));
            Ok(())
        }
    }

    impl TwoPhaseCommitWriter for MemoryWriter {
        type In = u64;
        type Committable = (usize, Vec<u64>);

        fn write(&mut self, batch: &mut Vec<Record<u64>>) -> Result<(), BoxError> {
            self.records.extend(batch.drain(..).map(|r| r.value));
            Ok(())
        }

        fn prepare(&mut self, _id: CheckpointId) -> Result<Option<(usize, Vec<u64>)>, BoxError> {
            Ok((!self.records.is_empty())
                .then(|| (self.subtask, std::mem::take(&mut self.records))))
        }
    }

    fn context(
        subtask: usize,
        parallelism: usize,
        restored: Option<RestoredState>,
    ) -> RuntimeContext {
        let clock = Arc::new(ManualClock::new(Timestamp(0)));
        let mut ctx = RuntimeContext::standalone("sink", subtask, parallelism, 128, clock);
        ctx.checkpointing = true;
        match restored {
            Some(state) => ctx.with_restored_state(state),
            None => ctx,
        }
    }

    fn write(w: &mut ExactlyOnceWriter<Memory>, values: &[u64]) -> Result<(), BoxError> {
        let mut batch = values
            .iter()
            .map(|&v| Record {
                ts: Timestamp(0),
                value: v,
            })
            .collect();
        w.write(&mut batch)
    }

    /// Two subtasks prepare three checkpoints each and none completes.
    fn snapshots(sink: &ExactlyOnce<Memory>) -> Result<Vec<StateSnapshot>, BoxError> {
        let mut out = Vec::new();
        for subtask in 0..2 {
            let mut w = sink.create_writer(&context(subtask, 2, None))?;
            let mut snapshot = StateSnapshot::new(CheckpointId(0), 128);
            for id in 1..=3 {
                write(&mut w, &[id * 10 + subtask as u64])?;
                snapshot = StateSnapshot::new(CheckpointId(id), 128);
                w.snapshot_state(&mut snapshot)?;
            }
            out.push(snapshot);
        }
        Ok(out)
    }

    #[test]
    fn restored_committables_go_back_to_the_subtask_that_made_them() -> Result<(), BoxError> {
        let sink = ExactlyOnce::new(Memory::default());
        let saved = snapshots(&sink)?;
        for subtask in 0..2 {
            let restored = RestoredState::from_snapshots(saved.clone(), subtask, 2, 128);
            let before = sink.sink.committed.lock().map_err(|_| "poisoned")?.len();
            drop(sink.create_writer(&context(subtask, 2, Some(restored)))?);
            let all = sink.sink.committed.lock().map_err(|_| "poisoned")?.clone();
            assert_eq!(all.len() - before, 3);
            assert!(all[before..].iter().all(|(s, _)| *s == subtask), "{all:?}");
        }
        Ok(())
    }

    #[test]
    fn after_a_rescale_every_committable_is_committed_once() -> Result<(), BoxError> {
        for parallelism in [1, 3] {
            let sink = ExactlyOnce::new(Memory::default());
            let saved = snapshots(&sink)?;
            for subtask in 0..parallelism {
                let restored =
                    RestoredState::from_snapshots(saved.clone(), subtask, parallelism, 128);
                drop(sink.create_writer(&context(subtask, parallelism, Some(restored)))?);
            }
            let mut all = sink.sink.committed.lock().map_err(|_| "poisoned")?.clone();
            all.sort_unstable();
            let want = vec![(0, 10), (0, 20), (0, 30), (1, 11), (1, 21), (1, 31)];
            assert_eq!(all, want, "p={parallelism}");
        }
        Ok(())
    }

    #[test]
    fn a_failing_commit_is_retried_off_the_task_thread() -> Result<(), BoxError> {
        let sink = ExactlyOnce::new(Memory {
            failures: AtomicU32::new(2),
            ..Memory::default()
        });
        let mut w = sink.create_writer(&context(0, 1, None))?;
        write(&mut w, &[7])?;
        w.snapshot_state(&mut StateSnapshot::new(CheckpointId(1), 128))?;
        w.notify_checkpoint_complete(CheckpointId(1))?;
        w.notify_checkpoint_complete(CheckpointId::END)?;
        assert_eq!(
            *sink.sink.committed.lock().map_err(|_| "poisoned")?,
            [(0, 7)]
        );
        let metrics: std::collections::HashMap<_, _> = w.metrics().into_iter().collect();
        assert_eq!(metrics["commits"], 1);
        assert_eq!(metrics["commit_retries"], 2);
        Ok(())
    }

    #[test]
    fn a_commit_that_keeps_failing_fails_the_job() -> Result<(), BoxError> {
        let sink = ExactlyOnce::new(Memory {
            failures: AtomicU32::new(u32::MAX),
            ..Memory::default()
        });
        let mut w = sink.create_writer(&context(0, 1, None))?;
        write(&mut w, &[7])?;
        w.snapshot_state(&mut StateSnapshot::new(CheckpointId(1), 128))?;
        w.notify_checkpoint_complete(CheckpointId(1))?;
        let err = w.notify_checkpoint_complete(CheckpointId::END).err();
        let err = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("commit failed after 7 attempts"), "{err}");
        assert!(err.contains("the destination is down"), "{err}");
        Ok(())
    }
}
