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

use crate::clock::{Clock, ManualClock};
use crate::context::RuntimeContext;
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
        let clock = ManualClock::new(Timestamp(0));
        let ctx = RuntimeContext::standalone("harness", 0, 1, 128, Arc::new(clock.clone()));
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
    let splits = source.splits(parallelism)?;
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
        let mut reader = source.create_reader(&ctx)?;
        let ids: Vec<String> = mine.iter().map(Split::id).collect();
        let mut watermarks = SplitWatermarks::new(
            strategy
                .clone()
                .unwrap_or_else(WatermarkStrategy::no_watermarks),
        );
        mine.iter().for_each(|_| watermarks.add_split(Timestamp(0)));
        reader.add_splits(mine)?;
        let mut dead_records = Vec::new();
        let mut idle_polls = 0u32;
        loop {
            let mut out = SourceOutput {
                batch: &mut records,
                dead: &mut dead_records,
                watermarks: &mut watermarks,
                split_ids: &ids,
                source_name: "source",
                batch_size: usize::MAX,
            };
            match reader.poll_next(&mut out)? {
                ReadStatus::Finished => break,
                ReadStatus::NothingAvailable => idle_polls += 1,
                ReadStatus::MoreAvailable => idle_polls = 0,
            }
            if idle_polls > 100_000 {
                return Err("the source makes no progress (rate-limited sources wait on a clock this helper does not move)".into());
            }
        }
        dead.extend(dead_records.into_iter().map(|r| r.value));
    }
    Ok(SourceContents {
        records,
        dead_letters: dead,
    })
}
