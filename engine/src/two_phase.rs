//! Two-phase-commit sinks: output becomes visible only when the checkpoint
//! that covers it completes, so a job that fails and restarts from that
//! checkpoint neither loses nor repeats visible output.
//!
//! On every checkpoint barrier the writer *prepares*: it closes the current
//! transaction (say, a hidden file) and returns a committable that describes
//! it. The committable is kept in the sink's operator state. When the
//! checkpoint completes, the sink *commits* it (say, renames the file into
//! place). After a restore, the committables of the restored checkpoint are
//! committed again — some may have been committed before the failure — so
//! commits must be idempotent. Without checkpoints, the output is committed
//! when the input ends.

use std::sync::Arc;

use crate::checkpoint::{Redistribution, StateSnapshot};
use crate::context::RuntimeContext;
use crate::element::{CheckpointId, Data, Record};
use crate::error::BoxError;
use crate::sink::{Sink, SinkWriter};

/// An exactly-once sink. Wrap it in [`ExactlyOnce`] to use it as a [`Sink`].
pub trait TwoPhaseCommitSink: Send + Sync + 'static {
    /// The records it accepts.
    type In: Data;
    /// What a prepared transaction needs to be committed; kept in checkpoints.
    type Committable: Data;
    /// Its per-subtask writer.
    type Writer: TwoPhaseCommitWriter<In = Self::In, Committable = Self::Committable>;

    /// Creates the writer of one subtask, on that subtask's thread.
    ///
    /// # Errors
    /// When the destination cannot be opened.
    fn create_writer(&self, ctx: &RuntimeContext) -> Result<Self::Writer, BoxError>;

    /// Makes a prepared transaction visible. Called when its checkpoint
    /// completes and again after a restore: committing twice must be the
    /// same as committing once.
    ///
    /// # Errors
    /// A commit failure; it fails the job (which restarts and commits again).
    fn commit(&self, committable: Self::Committable) -> Result<(), BoxError>;
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

/// Name of the operator list state holding the pending committables.
const COMMITTABLES: &str = "committables";

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

impl<S: TwoPhaseCommitSink> Sink for ExactlyOnce<S> {
    type In = S::In;
    type Writer = ExactlyOnceWriter<S>;

    fn create_writer(&self, ctx: &RuntimeContext) -> Result<Self::Writer, BoxError> {
        // What the restored checkpoint prepared may not have been committed
        // before the failure: commit it (again).
        if let Some(restored) = ctx.restored_state() {
            for committable in restored.list::<S::Committable>(COMMITTABLES)? {
                self.sink.commit(committable)?;
            }
        }
        Ok(ExactlyOnceWriter {
            writer: self.sink.create_writer(ctx)?,
            sink: Arc::clone(&self.sink),
            pending: Vec::new(),
            checkpointing: ctx.is_checkpointing(),
        })
    }
}

/// The writer of an [`ExactlyOnce`] sink: prepared transactions wait here
/// for their checkpoint to complete.
pub struct ExactlyOnceWriter<S: TwoPhaseCommitSink> {
    writer: S::Writer,
    sink: Arc<S>,
    pending: Vec<(CheckpointId, S::Committable)>,
    checkpointing: bool,
}

impl<S: TwoPhaseCommitSink> SinkWriter for ExactlyOnceWriter<S> {
    type In = S::In;

    fn write(&mut self, batch: &mut Vec<Record<S::In>>) -> Result<(), BoxError> {
        self.writer.write(batch)
    }

    fn snapshot_state(&mut self, out: &mut StateSnapshot) -> Result<(), BoxError> {
        let id = out.checkpoint_id();
        if let Some(committable) = self.writer.prepare(id)? {
            self.pending.push((id, committable));
        }
        out.list(
            COMMITTABLES,
            Redistribution::Split,
            self.pending.iter().map(|(_, c)| c),
        )?;
        Ok(())
    }

    fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), BoxError> {
        let done = self.pending.iter().take_while(|(p, _)| *p <= id).count();
        for (_, committable) in self.pending.drain(..done) {
            self.sink.commit(committable)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        // With checkpoints, the end-of-input checkpoint prepares and commits
        // the rest; without, the end of the input is the commit point (for
        // what savepoints prepared too).
        if !self.checkpointing {
            if let Some(committable) = self.writer.prepare(CheckpointId::END)? {
                self.pending.push((CheckpointId::END, committable));
            }
            self.notify_checkpoint_complete(CheckpointId::END)?;
        }
        Ok(())
    }
}
