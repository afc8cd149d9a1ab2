//! Sinks: where a job's results leave the engine.
//!
//! A [`Sink`] lives in the job graph; each subtask creates one [`SinkWriter`]
//! on its own thread. The writer receives batches in order, then watermarks,
//! and [`SinkWriter::finish`] once when a bounded input has ended. Sinks that
//! take part in checkpoints write their pending work in
//! [`SinkWriter::snapshot_state`] and find it again in
//! [`RuntimeContext::restored_state`]; exactly-once sinks are built on
//! [`crate::two_phase::TwoPhaseCommitSink`].

use std::sync::{Arc, Mutex};

use crate::checkpoint::StateSnapshot;
use crate::context::RuntimeContext;
use crate::element::{CheckpointId, Data, Record, Timestamp};
use crate::error::BoxError;

/// A sink: the factory for per-subtask writers. Shared by all subtasks.
pub trait Sink: Send + Sync + 'static {
    /// The records it accepts.
    type In: Data;
    /// Its per-subtask writer.
    type Writer: SinkWriter<In = Self::In>;

    /// Creates the writer for one subtask, on that subtask's thread.
    ///
    /// # Errors
    /// When the destination cannot be opened.
    fn create_writer(&self, ctx: &RuntimeContext) -> Result<Self::Writer, BoxError>;

    /// The name the job graph and statistics show (`Sink: <name>`); the
    /// type's name by default.
    fn name(&self) -> String {
        crate::dsl::short_type_name::<Self>()
    }
}

/// Writes the records of one subtask. Called only from that subtask's thread.
pub trait SinkWriter: 'static {
    /// The records it accepts.
    type In: Data;

    /// Writes a batch; the writer takes the records out of `batch` (the
    /// runtime clears it afterwards either way).
    ///
    /// # Errors
    /// A write failure; it fails the job.
    fn write(&mut self, batch: &mut Vec<Record<Self::In>>) -> Result<(), BoxError>;

    /// The input watermark advanced. Most sinks ignore it (that is the whole
    /// body of the default).
    ///
    /// # Errors
    /// A write failure.
    fn on_watermark(&mut self, _watermark: Timestamp) -> Result<(), BoxError> {
        Ok(())
    }

    /// A checkpoint barrier arrived: make everything written so far part of
    /// checkpoint `out.checkpoint_id()` and record what must survive a
    /// restart in `out`. The default does nothing (at-most-once sinks).
    ///
    /// # Errors
    /// A write failure.
    fn snapshot_state(&mut self, _out: &mut StateSnapshot) -> Result<(), BoxError> {
        Ok(())
    }

    /// Checkpoint `id` is complete: commit what was prepared for it. The
    /// default does nothing.
    ///
    /// # Errors
    /// A commit failure.
    fn notify_checkpoint_complete(&mut self, _id: CheckpointId) -> Result<(), BoxError> {
        Ok(())
    }

    /// The input has ended: flush and close. Called at most once.
    ///
    /// # Errors
    /// A write failure.
    fn finish(&mut self) -> Result<(), BoxError>;

    /// Named counters for the job statistics (summed over subtasks), read
    /// when the task ends, e.g. `commits`. None by default.
    fn metrics(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// An in-memory sink for tests: every record, with its timestamp, lands in a
/// shared vector that the test reads after `execute()`.
pub struct CollectSink<T> {
    records: Arc<Mutex<Vec<Record<T>>>>,
}

/// The handle to read what a [`CollectSink`] collected.
#[derive(Clone)]
pub struct Collected<T> {
    records: Arc<Mutex<Vec<Record<T>>>>,
}

impl<T: Data> CollectSink<T> {
    /// A new sink and the handle to read its records.
    pub fn new() -> (Self, Collected<T>) {
        let records = Arc::new(Mutex::new(Vec::new()));
        (
            CollectSink {
                records: Arc::clone(&records),
            },
            Collected { records },
        )
    }
}

impl<T: Data> Collected<T> {
    /// Takes the values collected so far (all subtasks, arrival order).
    pub fn values(&self) -> Vec<T> {
        self.records().into_iter().map(|r| r.value).collect()
    }

    /// Takes the records (value and timestamp) collected so far.
    pub fn records(&self) -> Vec<Record<T>> {
        std::mem::take(&mut *self.records.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl<T: Data> Sink for CollectSink<T> {
    type In = T;
    type Writer = CollectWriter<T>;

    fn create_writer(&self, _ctx: &RuntimeContext) -> Result<Self::Writer, BoxError> {
        Ok(CollectWriter {
            records: Arc::clone(&self.records),
        })
    }
}

/// The writer of a [`CollectSink`].
pub struct CollectWriter<T> {
    records: Arc<Mutex<Vec<Record<T>>>>,
}

impl<T: Data> SinkWriter for CollectWriter<T> {
    type In = T;

    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        let mut all = self.records.lock().map_err(|_| "collect sink poisoned")?;
        all.append(batch);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}
