//! Test helpers for operators and sources, behind the `testing` feature
//! (other crates enable it in their `[dev-dependencies]`).
//!
//! [`Harness`] runs one operator on the test's thread, with the real heap
//! state backend and a [`ManualClock`]: feed records, move the watermark and
//! processing time, read the output and the side outputs. [`read_source`]
//! drains a source's readers directly.
//!
//! ```
//! use eddy_engine::element::Timestamp;
//! use eddy_engine::testing::Harness;
//! use eddy_engine::transform::MapOp;
//!
//! let mut h = Harness::new(|_| MapOp::new(|x: u64| x * 2)).unwrap();
//! h.process(21, Timestamp(5)).unwrap();
//! assert_eq!(h.take_output(), vec![42]);
//! ```

use std::sync::Arc;

use crate::checkpoint::{RestoredState, StateSnapshot};
use crate::clock::{Clock, ManualClock};
use crate::context::RuntimeContext;
use crate::element::CheckpointId;
use crate::element::{Data, Key, Record, Timestamp};
use crate::error::{BoxError, EngineError, Location};
use crate::operator::{Collector, Operator, OutputTag, SideOutputs};
use crate::process::{KeySelector, KeyedProcessFunction, KeyedProcessOperator};
use crate::runtime::chain::{guarded, user_error};
use crate::source::{DeadLetter, ReadStatus, Source, SourceOutput, SourceReader, Split};
use crate::time::{SplitWatermarks, WatermarkStrategy};

/// Runs one operator on the calling thread.
pub struct Harness<Op: Operator> {
    op: Op,
    out: Vec<Record<Op::Out>>,
    sides: SideOutputs,
    clock: ManualClock,
    location: Location,
    watermark: Timestamp,
}

impl<Op: Operator> Harness<Op> {
    /// Subtask 0 of 1, 128 key groups, processing time 0.
    ///
    /// # Errors
    /// When the operator fails to open.
    pub fn new(make: impl FnOnce(&RuntimeContext) -> Op) -> Result<Self, EngineError> {
        Self::open(make, None)
    }

    /// Like [`Harness::new`], with the operator restored from `snapshot`
    /// (from [`Harness::snapshot`] of another harness), as after a restart.
    ///
    /// # Errors
    /// When the operator fails to open (e.g. the state does not decode).
    pub fn restored(
        make: impl FnOnce(&RuntimeContext) -> Op,
        snapshot: StateSnapshot,
    ) -> Result<Self, EngineError> {
        Self::open(make, Some(snapshot))
    }

    fn open(
        make: impl FnOnce(&RuntimeContext) -> Op,
        snapshot: Option<StateSnapshot>,
    ) -> Result<Self, EngineError> {
        let clock = ManualClock::new(Timestamp(0));
        let mut ctx = RuntimeContext::standalone("harness", 0, 1, 128, Arc::new(clock.clone()));
        if let Some(snapshot) = snapshot {
            ctx = ctx.with_restored_state(RestoredState::from_snapshots(vec![snapshot], 0, 1, 128));
        }
        let mut op = make(&ctx);
        let location = ctx.location().clone();
        guarded(&location, user_error, || op.open(&ctx))?;
        Ok(Harness {
            op,
            out: Vec::new(),
            sides: SideOutputs::default(),
            clock,
            location,
            watermark: Timestamp::MIN,
        })
    }

    fn call(
        &mut self,
        f: impl FnOnce(&mut Op, &mut Collector<'_, Op::Out>) -> Result<(), BoxError>,
    ) -> Result<(), EngineError> {
        let (op, out, sides) = (&mut self.op, &mut self.out, &mut self.sides);
        guarded(&self.location, user_error, || {
            f(op, &mut Collector::new(out, sides))
        })
    }

    /// Processes one record with timestamp `ts`.
    ///
    /// # Errors
    /// The operator's error or panic, as a job would report it.
    pub fn process(&mut self, value: Op::In, ts: Timestamp) -> Result<(), EngineError> {
        let mut batch = vec![Record::new(ts, value)];
        self.call(|op, out| op.process_batch(&mut batch, out))
    }

    /// Moves the watermark to `wm` (firing event-time timers).
    ///
    /// # Errors
    /// The operator's error or panic.
    pub fn advance_watermark(&mut self, wm: Timestamp) -> Result<(), EngineError> {
        self.watermark = self.watermark.max(wm);
        let wm = self.watermark;
        self.call(|op, out| op.on_watermark(wm, out))
    }

    /// Moves processing time to `t` (firing due processing-time timers).
    ///
    /// # Errors
    /// The operator's error or panic.
    pub fn set_processing_time(&mut self, t: Timestamp) -> Result<(), EngineError> {
        self.clock.set(t);
        let now = self.clock.now();
        if self.op.next_processing_time().is_some_and(|due| due <= now) {
            self.call(|op, out| op.on_processing_time(now, out))?;
        }
        Ok(())
    }

    /// Ends the input: the final watermark, then `finish`.
    ///
    /// # Errors
    /// The operator's error or panic.
    pub fn finish(&mut self) -> Result<(), EngineError> {
        self.advance_watermark(Timestamp::MAX)?;
        self.call(|op, out| op.finish(out))
    }

    /// Takes the main output's values so far.
    pub fn take_output(&mut self) -> Vec<Op::Out> {
        self.take_records().into_iter().map(|r| r.value).collect()
    }

    /// Takes the main output's records (with timestamps) so far.
    pub fn take_records(&mut self) -> Vec<Record<Op::Out>> {
        std::mem::take(&mut self.out)
    }

    /// Takes what was sent to side output `tag` so far (nothing is kept for
    /// tags the operator never used; they count as dropped).
    pub fn take_side<S: Data>(&mut self, tag: &OutputTag<S>) -> Vec<Record<S>> {
        self.sides.take(tag)
    }

    /// The operator, e.g. to inspect its metrics.
    pub fn operator(&self) -> &Op {
        &self.op
    }

    /// The operator's state as a checkpoint barrier would capture it (in the
    /// canonical format), to hand to [`Harness::restored`].
    ///
    /// # Errors
    /// The operator's error or panic.
    pub fn snapshot(&mut self) -> Result<StateSnapshot, EngineError> {
        let mut snapshot = StateSnapshot::new(CheckpointId(1), 128);
        let op = &mut self.op;
        guarded(&self.location, user_error, || {
            op.snapshot_state(&mut snapshot)
        })?;
        Ok(snapshot)
    }
}

impl<K: Key, I: Data, O: Data, F: KeyedProcessFunction<K, I, O>>
    Harness<KeyedProcessOperator<K, I, O, F>>
{
    /// A harness for a keyed process function keyed by `key`.
    ///
    /// # Errors
    /// When the function fails to open.
    pub fn keyed(f: F, key: impl Fn(&I) -> K + Send + Sync + 'static) -> Result<Self, EngineError> {
        let key: KeySelector<I, K> = Arc::new(key);
        Harness::new(move |ctx| KeyedProcessOperator::new(f, key, ctx))
    }
}

/// What [`read_source`] read.
#[derive(Debug)]
pub struct SourceContents<T> {
    /// Records, in each reader's order (readers one after another).
    pub records: Vec<Record<T>>,
    /// Undecodable inputs.
    pub dead_letters: Vec<DeadLetter>,
}

/// The splits `source`'s enumerator finds when a job starts at
/// `parallelism`.
///
/// # Errors
/// The source's errors.
pub fn initial_splits<S: Source>(
    source: &S,
    parallelism: usize,
) -> Result<Vec<S::Split>, BoxError> {
    source.create_enumerator(parallelism)?.discover()
}

/// Everything the readers of `source` produce at `parallelism`. Event time
/// comes from `strategy` when given.
///
/// # Errors
/// The source's errors.
pub fn read_source<S: Source>(
    source: &S,
    parallelism: usize,
    strategy: Option<WatermarkStrategy<S::Out>>,
) -> Result<SourceContents<S::Out>, BoxError> {
    let splits = initial_splits(source, parallelism)?;
    let mut records = Vec::new();
    let mut dead = Vec::new();
    for subtask in 0..parallelism {
        let mine: Vec<S::Split> = splits
            .iter()
            .skip(subtask)
            .step_by(parallelism)
            .cloned()
            .collect();
        let ctx = RuntimeContext::standalone(
            "source",
            subtask,
            parallelism,
            128,
            Arc::new(ManualClock::new(Timestamp(0))),
        );
        let reader = source.create_reader(&ctx)?;
        let mut harness = ReaderHarness::new(reader, mine, strategy.clone())?;
        // Without moving the clock: rate-limited sources make no progress.
        harness.poll_to_end(usize::MAX, None)?;
        records.extend(harness.take_records());
        dead.extend(harness.take_dead_letters());
    }
    Ok(SourceContents {
        records,
        dead_letters: dead,
    })
}

/// Consecutive polls without records after which a harness gives up.
const MAX_IDLE_POLLS: u32 = 100_000;

/// Polls one [`SourceReader`] on the calling thread, one poll at a time with
/// a chosen batch room, and keeps what it emitted. For tests that stop a
/// reader between polls, e.g. to snapshot it and resume a fresh one.
///
/// ```
/// use eddy_engine::collection::CollectionSource;
/// use eddy_engine::source::Source;
/// use eddy_engine::testing::{initial_splits, reader_context, ReaderHarness};
///
/// let source = CollectionSource::new(vec![1, 2, 3]);
/// let reader = source.create_reader(&reader_context(None)).unwrap();
/// let mut h = ReaderHarness::new(reader, initial_splits(&source, 1).unwrap(), None).unwrap();
/// h.poll(2).unwrap();
/// let snapshot = h.snapshot();
/// let reader = source.create_reader(&reader_context(None)).unwrap();
/// let mut resumed = ReaderHarness::new(reader, snapshot, None).unwrap();
/// resumed.poll_to_end(2, None).unwrap();
/// assert_eq!(resumed.take_values(), vec![3]);
/// ```
pub struct ReaderHarness<R: SourceReader> {
    reader: R,
    split_ids: Vec<String>,
    watermarks: SplitWatermarks<R::Out>,
    records: Vec<Record<R::Out>>,
    dead_letters: Vec<DeadLetter>,
}

/// A runtime context for a source reader: subtask 0 of 1, 128 key groups,
/// on `clock` (a manual clock at 0 when `None`).
pub fn reader_context(clock: Option<&ManualClock>) -> RuntimeContext {
    let clock = clock
        .cloned()
        .unwrap_or_else(|| ManualClock::new(Timestamp(0)));
    RuntimeContext::standalone("source", 0, 1, 128, Arc::new(clock))
}

impl<R: SourceReader> ReaderHarness<R> {
    /// Hands `splits` to `reader`. Event time comes from `strategy` when
    /// given (otherwise records keep the source's native timestamps).
    ///
    /// # Errors
    /// The reader's `add_splits` error.
    pub fn new(
        mut reader: R,
        splits: Vec<R::Split>,
        strategy: Option<WatermarkStrategy<R::Out>>,
    ) -> Result<Self, BoxError> {
        let split_ids: Vec<String> = splits.iter().map(Split::id).collect();
        let mut watermarks =
            SplitWatermarks::new(strategy.unwrap_or_else(WatermarkStrategy::no_watermarks));
        splits
            .iter()
            .for_each(|_| watermarks.add_split(Timestamp(0)));
        reader.add_splits(splits)?;
        Ok(ReaderHarness {
            reader,
            split_ids,
            watermarks,
            records: Vec::new(),
            dead_letters: Vec::new(),
        })
    }

    /// One `poll_next` with room for `room` records; what it emits is kept.
    ///
    /// # Errors
    /// The reader's error.
    pub fn poll(&mut self, room: usize) -> Result<ReadStatus, BoxError> {
        let mut batch = Vec::new();
        let mut dead = Vec::new();
        let mut out = SourceOutput {
            batch: &mut batch,
            dead: &mut dead,
            watermarks: &mut self.watermarks,
            split_ids: &self.split_ids,
            source_name: "source",
            batch_size: room,
        };
        let status = self.reader.poll_next(&mut out)?;
        if self.records.is_empty() {
            self.records = batch;
        } else {
            self.records.append(&mut batch);
        }
        self.dead_letters.extend(dead.into_iter().map(|r| r.value));
        Ok(status)
    }

    /// Polls with room `room` until the reader is finished. When a poll
    /// finds nothing available, `clock` (the reader's, if it is rate-limited)
    /// moves 10 ms forward.
    ///
    /// # Errors
    /// The reader's error, or one after 100 000 polls in a row without
    /// progress.
    pub fn poll_to_end(
        &mut self,
        room: usize,
        clock: Option<&ManualClock>,
    ) -> Result<(), BoxError> {
        let mut idle_polls = 0u32;
        loop {
            match self.poll(room)? {
                ReadStatus::Finished => return Ok(()),
                ReadStatus::NothingAvailable => {
                    idle_polls += 1;
                    if let Some(clock) = clock {
                        clock.advance(std::time::Duration::from_millis(10));
                    }
                }
                ReadStatus::MoreAvailable => idle_polls = 0,
            }
            if idle_polls > MAX_IDLE_POLLS {
                return Err("the source makes no progress (rate-limited sources wait on a clock this helper does not move)".into());
            }
        }
    }

    /// The reader's [`SourceReader::snapshot_splits`].
    pub fn snapshot(&self) -> Vec<R::Split> {
        self.reader.snapshot_splits()
    }

    /// Takes the records (with timestamps) emitted so far.
    pub fn take_records(&mut self) -> Vec<Record<R::Out>> {
        std::mem::take(&mut self.records)
    }

    /// Takes the values emitted so far.
    pub fn take_values(&mut self) -> Vec<R::Out> {
        self.take_records().into_iter().map(|r| r.value).collect()
    }

    /// Takes the dead letters sent so far.
    pub fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead_letters)
    }

    /// The reader.
    pub fn reader(&self) -> &R {
        &self.reader
    }
}

/// What [`read_resumed`] read.
#[derive(Debug)]
pub struct Resumed<T, S> {
    /// The first reader's output, then the resumed reader's.
    pub contents: SourceContents<T>,
    /// The splits the second reader resumed from.
    pub snapshot: Vec<S>,
    /// How many records the first reader emitted before the snapshot.
    pub before: usize,
    /// The first reader finished before the snapshot was taken.
    pub finished_first: bool,
}

/// Reads all of `source`'s splits with one reader (subtask 0 of 1) in polls
/// of room `room`, as a checkpoint and restore would: after `polls` polls
/// (or when the reader finishes, if sooner) it takes the reader's snapshot,
/// drops the reader, and reads the rest with a fresh reader given only the
/// snapshot. With `polls = usize::MAX` that is an uninterrupted read.
///
/// Both readers run on `clock` (see [`reader_context`]), which moves 10 ms
/// whenever a poll finds nothing available, so rate-limited sources
/// progress.
///
/// # Errors
/// The source's errors, or one when a reader makes no progress.
pub fn read_resumed<S: Source>(
    source: &S,
    room: usize,
    polls: usize,
    clock: &ManualClock,
) -> Result<Resumed<S::Out, S::Split>, BoxError> {
    let splits = initial_splits(source, 1)?;
    let reader = source.create_reader(&reader_context(Some(clock)))?;
    let mut first = ReaderHarness::new(reader, splits, None)?;
    let mut done = false;
    for _ in 0..polls {
        match first.poll(room)? {
            ReadStatus::Finished => {
                done = true;
                break;
            }
            ReadStatus::NothingAvailable => clock.advance(std::time::Duration::from_millis(10)),
            ReadStatus::MoreAvailable => {}
        }
    }
    let snapshot = first.snapshot();
    let mut records = first.take_records();
    let mut dead_letters = first.take_dead_letters();
    let before = records.len();
    if done && !snapshot.is_empty() {
        return Err(format!("a finished reader's snapshot is not empty: {snapshot:?}").into());
    }
    let reader = source.create_reader(&reader_context(Some(clock)))?;
    let mut second = ReaderHarness::new(reader, snapshot.clone(), None)?;
    second.poll_to_end(room, Some(clock))?;
    records.extend(second.take_records());
    dead_letters.extend(second.take_dead_letters());
    Ok(Resumed {
        contents: SourceContents {
            records,
            dead_letters,
        },
        snapshot,
        before,
        finished_first: done,
    })
}

/// Every cut of [`assert_resumes_exactly`], in order of the polls before it.
pub type ResumedCuts<T, S> = Vec<Resumed<T, S>>;

/// Checks that `source` resumes exactly from a snapshot taken between any
/// two polls: for every cut (after 0, 1, 2, … polls of room `room`, until
/// the reader finishes before the cut), what the first reader emitted
/// followed by what a reader resumed from its snapshot emits equals an
/// uninterrupted read: the same records, with the same timestamps, in the
/// same order, and the same dead letters. Each read runs on a fresh
/// [`ManualClock`] at 0 (see [`read_resumed`]). For bounded sources only.
///
/// Returns every cut's result, for further checks.
///
/// # Errors
/// The source's errors.
///
/// # Panics
/// When a resumed read differs from the uninterrupted one.
pub fn assert_resumes_exactly<S: Source>(
    source: &S,
    room: usize,
) -> Result<ResumedCuts<S::Out, S::Split>, BoxError>
where
    S::Out: PartialEq,
{
    let fresh_clock = || ManualClock::new(Timestamp(0));
    let whole = read_resumed(source, room, usize::MAX, &fresh_clock())?.contents;
    let mut cuts = Vec::new();
    for polls in 0.. {
        let resumed = read_resumed(source, room, polls, &fresh_clock())?;
        let got = &resumed.contents;
        assert!(
            got.records == whole.records,
            "room {room}, snapshot after {polls} polls ({} records): {:?}\n\
             resumed read:       {:?}\nuninterrupted read: {:?}",
            resumed.before,
            resumed.snapshot,
            got.records,
            whole.records
        );
        assert_eq!(
            got.dead_letters, whole.dead_letters,
            "dead letters, room {room}, snapshot after {polls} polls: {:?}",
            resumed.snapshot
        );
        let last = resumed.finished_first;
        cuts.push(resumed);
        if last {
            break;
        }
    }
    Ok(cuts)
}

/// A sink for backpressure tests: reports every batch's size to
/// `received`; its subtask `gated` (if any) writes nothing until `open`
/// says so, which backs its input up.
#[derive(Clone)]
pub struct GatedSink {
    gated: Option<usize>,
    open: Arc<dyn Fn() -> bool + Send + Sync>,
    received: Arc<dyn Fn(u64) + Send + Sync>,
}

impl GatedSink {
    /// A sink whose subtask `gated` waits for `open`; every subtask reports
    /// what it writes to `received`.
    pub fn new(
        gated: Option<usize>,
        open: impl Fn() -> bool + Send + Sync + 'static,
        received: impl Fn(u64) + Send + Sync + 'static,
    ) -> Self {
        GatedSink {
            gated,
            open: Arc::new(open),
            received: Arc::new(received),
        }
    }
}

/// The writer of a [`GatedSink`].
pub struct GatedWriter {
    gated: bool,
    sink: GatedSink,
}

impl crate::sink::Sink for GatedSink {
    type In = u64;
    type Writer = GatedWriter;
    fn create_writer(&self, ctx: &RuntimeContext) -> Result<GatedWriter, BoxError> {
        Ok(GatedWriter {
            gated: self.gated == Some(ctx.location().subtask),
            sink: self.clone(),
        })
    }
}

impl crate::sink::SinkWriter for GatedWriter {
    type In = u64;
    fn write(&mut self, batch: &mut Vec<Record<u64>>) -> Result<(), BoxError> {
        while self.gated && !(self.sink.open)() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        (self.sink.received)(batch.len() as u64);
        Ok(())
    }
    fn finish(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}
