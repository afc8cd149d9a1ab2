//! The engine-level operator API: the extension point for windows, joins and
//! every built-in transformation.
//!
//! An [`Operator`] runs on its subtask's thread. The runtime calls, in order:
//! [`Operator::open`] once; then, as input arrives, [`Operator::process_batch`],
//! [`Operator::on_watermark`] and [`Operator::on_processing_time`] in the order
//! the elements arrive; and [`Operator::finish`] once when a bounded input has
//! ended (after the final `Timestamp::MAX` watermark). Results go into the
//! [`Collector`]; the runtime forwards them down the chain after each call,
//! then forwards the watermark itself.
//!
//! When a checkpoint barrier passes, the runtime calls
//! [`Operator::snapshot_state`]; when the checkpoint is complete,
//! [`Operator::notify_checkpoint_complete`]. A restored operator finds its
//! state in [`RuntimeContext::restored_state`] when it opens.

use std::any::Any;
use std::marker::PhantomData;

use crate::checkpoint::coordinator::TaskState;
use crate::checkpoint::StateSnapshot;
use crate::context::RuntimeContext;
use crate::element::{Barrier, CheckpointId, Data, Record, Timestamp};
use crate::error::{EngineError, UserResult};
use crate::runtime::chain::{Control, Downstream};

/// A one-input operator.
pub trait Operator: 'static {
    /// Input record type.
    type In: Data;
    /// Main output record type.
    type Out: Data;

    /// Prepares the operator on its thread (state backends, connections).
    ///
    /// # Errors
    /// Fails the job, naming the operator.
    fn open(&mut self, _ctx: &RuntimeContext) -> UserResult {
        Ok(())
    }

    /// Processes a batch of records. The operator takes them out of `batch`
    /// (the runtime clears it afterwards either way).
    ///
    /// # Errors
    /// Fails the job, naming the operator.
    fn process_batch(
        &mut self,
        batch: &mut Vec<Record<Self::In>>,
        out: &mut Collector<'_, Self::Out>,
    ) -> UserResult;

    /// The input watermark advanced to `watermark`: fire event-time timers.
    /// Stateless operators need nothing here, which is all the default does;
    /// the runtime forwards the watermark after this returns.
    ///
    /// # Errors
    /// Fails the job, naming the operator.
    fn on_watermark(
        &mut self,
        _watermark: Timestamp,
        _out: &mut Collector<'_, Self::Out>,
    ) -> UserResult {
        Ok(())
    }

    /// Processing time reached `now` (at or after [`Self::next_processing_time`]).
    /// The default does nothing, for operators without processing-time timers.
    ///
    /// # Errors
    /// Fails the job, naming the operator.
    fn on_processing_time(
        &mut self,
        _now: Timestamp,
        _out: &mut Collector<'_, Self::Out>,
    ) -> UserResult {
        Ok(())
    }

    /// When [`Self::on_processing_time`] should next be called; `None` (the
    /// default) means never.
    fn next_processing_time(&self) -> Option<Timestamp> {
        None
    }

    /// The operator's own counters, reported in the job statistics when the
    /// job ends (e.g. `late_records_dropped`, `state_entries`) and, while it
    /// runs, in the live metrics as `eddy_operator_<name>`: `state_entries`
    /// and `timers` as gauges (levels), every other name as a counter of
    /// events. Operators without counters of their own report none, which
    /// is all the default does.
    fn metrics(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// A checkpoint barrier reached the operator: write all state it needs
    /// to resume into `out` (keyed operators hand it to their state backend
    /// and timer service). The default writes nothing, right for stateless
    /// operators.
    ///
    /// # Errors
    /// Fails the job, naming the operator.
    fn snapshot_state(&mut self, _out: &mut StateSnapshot) -> UserResult {
        Ok(())
    }

    /// Checkpoint `id` is complete (its metadata is written). The default
    /// does nothing.
    ///
    /// # Errors
    /// Fails the job, naming the operator.
    fn notify_checkpoint_complete(&mut self, _id: CheckpointId) -> UserResult {
        Ok(())
    }

    /// The input has ended. Emit whatever is still held. The default emits
    /// nothing, right for operators that hold nothing.
    ///
    /// # Errors
    /// Fails the job, naming the operator.
    fn finish(&mut self, _out: &mut Collector<'_, Self::Out>) -> UserResult {
        Ok(())
    }
}

/// Names a side output of type `T`. Usually a `const`:
/// `const LATE: OutputTag<Bid> = OutputTag::new("late-bids");`
pub struct OutputTag<T> {
    name: &'static str,
    _t: PhantomData<fn() -> T>,
}

impl<T> OutputTag<T> {
    /// A tag called `name` (unique among one operator's side outputs).
    pub const fn new(name: &'static str) -> Self {
        OutputTag {
            name,
            _t: PhantomData,
        }
    }

    /// The tag's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T> Clone for OutputTag<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for OutputTag<T> {}

/// Where operators and user functions emit results: the main output and any
/// side outputs. Emitted records carry the timestamp of the record (or timer)
/// being processed unless one is given.
pub struct Collector<'a, T> {
    pub(crate) main: &'a mut Vec<Record<T>>,
    pub(crate) sides: &'a mut SideOutputs,
    pub(crate) ts: Timestamp,
}

impl<'a, T: Data> Collector<'a, T> {
    /// A collector writing into `main` (and `sides`); for harnesses.
    pub fn new(main: &'a mut Vec<Record<T>>, sides: &'a mut SideOutputs) -> Self {
        Collector {
            main,
            sides,
            ts: Timestamp::MIN,
        }
    }

    /// Emits `value` with the current timestamp.
    #[inline]
    pub fn emit(&mut self, value: T) {
        self.main.push(Record { ts: self.ts, value });
    }

    /// Emits `value` with timestamp `ts`.
    #[inline]
    pub fn emit_at(&mut self, ts: Timestamp, value: T) {
        self.main.push(Record { ts, value });
    }

    /// Sets the timestamp that [`Self::emit`] uses.
    #[inline]
    pub fn set_timestamp(&mut self, ts: Timestamp) {
        self.ts = ts;
    }

    /// The timestamp that [`Self::emit`] uses.
    pub fn timestamp(&self) -> Timestamp {
        self.ts
    }

    /// Emits `value` to the side output `tag`, with the current timestamp.
    /// When nothing consumes that side output the value is dropped and
    /// counted in the job statistics.
    pub fn output<S: Data>(&mut self, tag: &OutputTag<S>, value: S) {
        self.sides.push(tag.name, Record { ts: self.ts, value });
    }

    /// Direct access to the pending main output.
    pub fn pending(&mut self) -> &mut Vec<Record<T>> {
        self.main
    }
}

/// The side outputs of one operator, by tag name.
#[derive(Default)]
pub struct SideOutputs {
    slots: Vec<(&'static str, Box<dyn SideChannel>)>,
    dropped: u64,
}

impl SideOutputs {
    pub(crate) fn add(&mut self, name: &'static str, channel: Box<dyn SideChannel>) {
        self.slots.push((name, channel));
    }

    fn push<S: Data>(&mut self, name: &str, record: Record<S>) {
        let slot = self.slots.iter_mut().find(|(n, _)| *n == name);
        match slot.and_then(|(_, c)| c.buffer().downcast_mut::<Vec<Record<S>>>()) {
            Some(buf) => buf.push(record),
            None => self.dropped += 1,
        }
    }

    /// True when no side output has a consumer.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Number of records sent to side outputs that nothing consumes.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Takes the buffered records of side output `tag` (for harnesses).
    pub fn take<S: Data>(&mut self, tag: &OutputTag<S>) -> Vec<Record<S>> {
        self.slots
            .iter_mut()
            .find(|(n, _)| *n == tag.name)
            .and_then(|(_, c)| c.buffer().downcast_mut::<Vec<Record<S>>>())
            .map(std::mem::take)
            .unwrap_or_default()
    }

    pub(crate) fn flush(&mut self) -> Result<(), EngineError> {
        self.slots.iter_mut().try_for_each(|(_, c)| c.send_buffer())
    }

    pub(crate) fn each_channel(&self, mut f: impl FnMut(&dyn SideChannel)) {
        self.slots.iter().for_each(|(_, c)| f(c.as_ref()));
    }

    pub(crate) fn channels(&mut self) -> impl Iterator<Item = &mut Box<dyn SideChannel>> {
        self.slots.iter_mut().map(|(_, c)| c)
    }
}

/// A side output's buffer and where it goes; object-safe over its type.
pub(crate) trait SideChannel: Control {
    /// The `Vec<Record<S>>` buffer, for typed pushes.
    fn buffer(&mut self) -> &mut dyn Any;
    /// Sends the buffered records downstream.
    fn send_buffer(&mut self) -> Result<(), EngineError>;
}

/// A typed side channel.
pub(crate) struct TypedSide<S> {
    pub(crate) buf: Vec<Record<S>>,
    pub(crate) target: Box<dyn Downstream<S>>,
}

impl<S: Data> SideChannel for TypedSide<S> {
    fn buffer(&mut self) -> &mut dyn Any {
        &mut self.buf
    }

    fn send_buffer(&mut self) -> Result<(), EngineError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.target.on_batch(&mut self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

impl<S: Data> Control for TypedSide<S> {
    fn on_watermark(&mut self, wm: Timestamp) -> Result<(), EngineError> {
        self.send_buffer()?;
        self.target.on_watermark(wm)
    }
    fn on_status(&mut self, s: crate::element::StreamStatus) -> Result<(), EngineError> {
        self.target.on_status(s)
    }
    fn on_processing_time(&mut self, now: Timestamp) -> Result<(), EngineError> {
        self.target.on_processing_time(now)
    }
    fn next_processing_time(&self) -> Option<Timestamp> {
        self.target.next_processing_time()
    }
    fn flush(&mut self) -> Result<(), EngineError> {
        self.send_buffer()?;
        self.target.flush()
    }
    fn finish(&mut self) -> Result<(), EngineError> {
        self.send_buffer()?;
        self.target.finish()
    }
    fn on_barrier(&mut self, barrier: Barrier, out: &mut TaskState) -> Result<(), EngineError> {
        self.send_buffer()?;
        self.target.on_barrier(barrier, out)
    }
    fn on_checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), EngineError> {
        self.target.on_checkpoint_complete(id)
    }
    fn on_latency_marker(
        &mut self,
        marker: &crate::element::LatencyMarker,
    ) -> Result<(), EngineError> {
        self.send_buffer()?;
        self.target.on_latency_marker(marker)
    }
    fn collect_stats(&self, out: &mut Vec<crate::runtime::stats::StageStats>) {
        self.target.collect_stats(out);
    }
}
