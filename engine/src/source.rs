//! Split-based sources (in the style of Flink's FLIP-27).
//!
//! A [`Source`] is a factory that lives in the job graph. When the job starts,
//! the runtime creates its [`SplitEnumerator`] once (not per subtask), on the
//! thread that coordinates the job. The enumerator discovers the source's
//! [`Split`]s (files, partitions, index ranges) and the runtime assigns them
//! to the source's subtasks: at the first start, after a restore (restored
//! splits keep their positions; new ones are added) and, for sources that
//! discover continuously, every [`SplitEnumerator::discovery_interval`]. Each
//! subtask creates one [`SourceReader`] on its own thread and polls it for
//! records. The reader emits into a [`SourceOutput`], which assigns event time
//! and tracks one watermark per split, so a slow split holds the watermark back
//! and an idle one does not.
//!
//! Records that cannot be decoded are never dropped silently: the reader hands
//! them to [`SourceOutput::dead_letter`], they are counted, and they flow on the
//! source's dead-letter stream (`DataStream::dead_letters`).

use std::fmt::Debug;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::context::RuntimeContext;
use crate::element::{CheckpointId, Data, Record, Timestamp};
use crate::error::BoxError;
use crate::time::SplitWatermarks;

/// Whether a source ends by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boundedness {
    /// The source ends when its input ends (files, a generator with a count).
    Bounded,
    /// The source runs until the job is stopped.
    Unbounded,
}

/// A unit of a source's input that one reader processes, in order.
pub trait Split: Clone + Send + Serialize + DeserializeOwned + Debug + 'static {
    /// A stable, human-readable id (e.g. a file path or `topic-3`).
    fn id(&self) -> String;
}

/// A source: the factory for splits and readers. Lives in the job graph and
/// is shared by all subtasks, so it must be `Send + Sync`.
pub trait Source: Send + Sync + 'static {
    /// The records it produces.
    type Out: Data;
    /// Its unit of work.
    type Split: Split;
    /// Its per-subtask reader.
    type Reader: SourceReader<Out = Self::Out, Split = Self::Split>;

    /// Whether the source ends by itself.
    fn boundedness(&self) -> Boundedness;

    /// How many records it will produce in all, when that is known before
    /// it runs (a bounded generator, a collection): the progress line then
    /// shows an ETA. `None` (the default) when unknown.
    fn expected_records(&self) -> Option<u64> {
        None
    }

    /// Creates the enumerator that discovers this source's splits; called
    /// once per run of the job, on the coordinating thread. `parallelism` is
    /// the number of reader subtasks (a hint: sources may make more or fewer
    /// splits).
    ///
    /// # Errors
    /// When the enumerator cannot be set up (e.g. a bad configuration).
    fn create_enumerator(
        &self,
        parallelism: usize,
    ) -> Result<Box<dyn SplitEnumerator<Self::Split>>, BoxError>;

    /// Creates the reader for one subtask, on that subtask's thread.
    ///
    /// # Errors
    /// When the reader cannot be set up.
    fn create_reader(&self, ctx: &RuntimeContext) -> Result<Self::Reader, BoxError>;
}

/// Discovers a source's splits. Runs once per source, on the thread that
/// coordinates the job, never on a reader's thread.
///
/// The runtime remembers the id of every split it has assigned (also across
/// restores, finished splits included) and ignores discovered splits whose
/// id it knows, so `discover` may simply list every split it sees.
pub trait SplitEnumerator<S: Split>: Send {
    /// The splits that exist now.
    ///
    /// A source without [`discovery_interval`](Self::discovery_interval) is
    /// asked once, at the job's first start; a restored job resumes the
    /// splits its readers snapshotted. A source with one is asked at every
    /// start, restored or not, and then every interval.
    ///
    /// # Errors
    /// When the input cannot be listed (missing file, unreachable server).
    /// At start this fails the job; during periodic discovery it is logged
    /// and discovery is tried again at the next interval.
    fn discover(&mut self) -> Result<Vec<S>, BoxError>;

    /// How often to look for new splits while the job runs; `None` (the
    /// default): the splits found so far are all there will be, and readers
    /// end when they are done with them. Asked after every discovery, so an
    /// enumerator that has found everything can stop by returning `None`.
    fn discovery_interval(&self) -> Option<Duration> {
        None
    }
}

/// An enumerator for a fixed set of splits known when the job starts (files
/// listed at start, generator ranges).
#[derive(Debug)]
pub struct FixedSplits<S>(Option<Vec<S>>);

impl<S> FixedSplits<S> {
    /// Enumerates exactly `splits`.
    pub fn new(splits: Vec<S>) -> Self {
        FixedSplits(Some(splits))
    }

    /// The enumerator, boxed as [`Source::create_enumerator`] returns it.
    pub fn boxed(splits: Vec<S>) -> Box<dyn SplitEnumerator<S>>
    where
        S: Split,
    {
        Box::new(FixedSplits::new(splits))
    }
}

impl<S: Split> SplitEnumerator<S> for FixedSplits<S> {
    fn discover(&mut self) -> Result<Vec<S>, BoxError> {
        Ok(self.0.take().unwrap_or_default())
    }
}

/// What a reader reports after a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadStatus {
    /// More records are ready: poll again at once.
    MoreAvailable,
    /// Nothing right now (e.g. rate limit, empty partition): the runtime waits
    /// briefly before polling again.
    NothingAvailable,
    /// Every split assigned to this reader is exhausted. The subtask ends
    /// once the enumerator has no more splits for it; until then it is idle
    /// and polled again now and then.
    Finished,
}

/// Reads records from the splits assigned to one subtask. Called only from
/// that subtask's thread.
pub trait SourceReader: 'static {
    /// The records it produces.
    type Out: Data;
    /// The splits it reads.
    type Split: Split;

    /// Hands splits to the reader (before the first poll, and later if the
    /// source assigns more). A split's index in [`SourceOutput`] calls is its
    /// position in the order of all splits added so far, starting at 0.
    ///
    /// # Errors
    /// When a split cannot be opened.
    fn add_splits(&mut self, splits: Vec<Self::Split>) -> Result<(), BoxError>;

    /// Emits up to [`SourceOutput::room`] records (more is allowed, but keeps
    /// batches large) and says whether more are ready. Must return promptly
    /// (a reader with nothing to read returns [`ReadStatus::NothingAvailable`]
    /// at once): barriers, savepoint requests and new splits are served
    /// between polls.
    ///
    /// # Errors
    /// A read failure that the reader cannot recover from; it fails the job.
    /// Undecodable records are not errors: send them to
    /// [`SourceOutput::dead_letter`].
    fn poll_next(&mut self, out: &mut SourceOutput<'_, Self::Out>) -> Result<ReadStatus, BoxError>;

    /// The current position of every unfinished split, as splits that resume
    /// where the reader is now. Used by checkpoints (issue #5).
    fn snapshot_splits(&self) -> Vec<Self::Split>;

    /// Checkpoint `id` is complete: everything read up to its barrier is
    /// safely in the job's state (e.g. commit consumer offsets for
    /// monitoring). Default: nothing.
    ///
    /// # Errors
    /// A failure that must fail the job.
    fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), BoxError> {
        let _ = id;
        Ok(())
    }
}

/// A record that a source could not decode, with where it came from and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The source operator's name.
    pub source: String,
    /// The split (e.g. file path).
    pub split: String,
    /// Position inside the split (e.g. `line 17`).
    pub position: String,
    /// Why it could not be decoded.
    pub reason: String,
    /// The raw input, lossily as text.
    pub raw: String,
}

/// Where a reader emits records. Assigns timestamps with the job's
/// `WatermarkStrategy`, and tracks one watermark per split.
pub struct SourceOutput<'a, T> {
    pub(crate) batch: &'a mut Vec<Record<T>>,
    pub(crate) dead: &'a mut Vec<Record<DeadLetter>>,
    pub(crate) watermarks: &'a mut SplitWatermarks<T>,
    pub(crate) split_ids: &'a [String],
    pub(crate) source_name: &'a str,
    pub(crate) batch_size: usize,
}

impl<T: Data> SourceOutput<'_, T> {
    /// Emits `value` read from split `split`; its event time comes from the
    /// timestamp assigner, or is `Timestamp::MIN` without one.
    #[inline]
    pub fn emit(&mut self, split: usize, value: T) {
        let ts = self.watermarks.on_record(split, &value, Timestamp::MIN);
        self.batch.push(Record { ts, value });
    }

    /// Emits `value` with the timestamp the source itself carries (e.g. a
    /// Kafka record's timestamp); a timestamp assigner, if set, overrides it.
    #[inline]
    pub fn emit_at(&mut self, split: usize, value: T, native_ts: Timestamp) {
        let ts = self.watermarks.on_record(split, &value, native_ts);
        self.batch.push(Record { ts, value });
    }

    /// Sends an undecodable input to the dead-letter stream, counted.
    pub fn dead_letter(
        &mut self,
        split: usize,
        position: impl Into<String>,
        reason: impl Into<String>,
        raw: impl Into<String>,
    ) {
        let split = self.split_ids.get(split).cloned().unwrap_or_default();
        self.dead.push(Record {
            ts: Timestamp::MIN,
            value: DeadLetter {
                source: self.source_name.to_owned(),
                split,
                position: position.into(),
                reason: reason.into(),
                raw: raw.into(),
            },
        });
    }

    /// Marks split `split` as exhausted: it no longer holds the watermark.
    pub fn finish_split(&mut self, split: usize) {
        self.watermarks.finish_split(split);
    }

    /// How many more records fit in the current batch.
    pub fn room(&self) -> usize {
        self.batch_size.saturating_sub(self.batch.len())
    }
}
