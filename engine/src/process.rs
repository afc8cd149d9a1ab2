//! Keyed process functions: user code with keyed state, event- and
//! processing-time timers, and side outputs — Flink's `KeyedProcessFunction`.
//!
//! The operator keeps, per subtask: the keyed state of its key groups (until
//! the function clears it or its TTL expires) and the registered timers
//! (until they fire or are deleted).

use std::sync::Arc;

use crate::clock::Clock;
use crate::context::RuntimeContext;
use crate::element::{Data, Key, Record, Timestamp};
use crate::error::UserResult;
use crate::keygroup::KeyGroup;
use crate::operator::{Collector, Operator};
use crate::state::{KeyedCore, KeyedStateBackend, StateDescriptor, TimerService};

/// Extracts the key of a record.
pub type KeySelector<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// Which clock fired a timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum TimeDomain {
    /// The watermark passed the timer.
    EventTime,
    /// Processing time passed the timer.
    ProcessingTime,
}

/// User code run per record of a keyed stream, with keyed state and timers.
///
/// Each subtask gets its own clone of the function; `process` and `on_timer`
/// run on that subtask's thread, one call at a time.
pub trait KeyedProcessFunction<K, I, O>: Send + 'static {
    /// Called once per subtask before the first record. Does nothing by default.
    ///
    /// # Errors
    /// Fails the job, naming the operator.
    fn open(&mut self, _ctx: &RuntimeContext) -> UserResult {
        Ok(())
    }

    /// Called for every record; `ctx.key()` is the record's key.
    ///
    /// # Errors
    /// Fails the job, naming the operator.
    fn process(
        &mut self,
        value: I,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<'_, O>,
    ) -> UserResult;

    /// Called when a timer registered for `ctx.key()` fires at `time`. The
    /// default does nothing, for functions that register no timers.
    ///
    /// # Errors
    /// Fails the job, naming the operator.
    fn on_timer(
        &mut self,
        _time: Timestamp,
        _ctx: &mut KeyedContext<'_, K>,
        _out: &mut Collector<'_, O>,
    ) -> UserResult {
        Ok(())
    }
}

/// What a keyed process function sees: the key, time, state and timers.
pub struct KeyedContext<'a, K> {
    key: &'a K,
    key_group: KeyGroup,
    timestamp: Timestamp,
    watermark: Timestamp,
    domain: Option<TimeDomain>,
    backend: &'a mut KeyedStateBackend<K>,
    timers: &'a mut TimerService<K, ()>,
    clock: &'a dyn Clock,
}

impl<K: Key> KeyedContext<'_, K> {
    /// The current key.
    pub fn key(&self) -> &K {
        self.key
    }

    /// The event time of the current record (or of the firing timer).
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The operator's current input watermark.
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }

    /// Current processing time.
    pub fn current_processing_time(&self) -> Timestamp {
        self.clock.now()
    }

    /// In `on_timer`: which kind of timer fired; `None` in `process`.
    pub fn time_domain(&self) -> Option<TimeDomain> {
        self.domain
    }

    /// The state described by `desc`, for the current key.
    pub fn state<'s, D: StateDescriptor>(&'s mut self, desc: &'s D) -> D::Handle<'s, K, ()> {
        self.backend.state(desc, self.key, self.key_group, &())
    }

    /// The timers of the current key.
    pub fn timers(&mut self) -> KeyedTimers<'_, K> {
        KeyedTimers {
            key: self.key,
            timers: self.timers,
        }
    }
}

/// Registers and deletes timers for the current key.
pub struct KeyedTimers<'a, K> {
    key: &'a K,
    timers: &'a mut TimerService<K, ()>,
}

impl<K: Key> KeyedTimers<'_, K> {
    /// Fires `on_timer` when the watermark reaches `time` (once per key and time).
    pub fn register_event_time(&mut self, time: Timestamp) {
        self.timers.event.register(time, self.key.clone(), ());
    }

    /// Fires `on_timer` when processing time reaches `time`.
    pub fn register_processing_time(&mut self, time: Timestamp) {
        self.timers.processing.register(time, self.key.clone(), ());
    }

    /// Deletes an event-time timer of the current key.
    pub fn delete_event_time(&mut self, time: Timestamp) {
        self.timers.event.delete(time, self.key, &());
    }

    /// Deletes a processing-time timer of the current key.
    pub fn delete_processing_time(&mut self, time: Timestamp) {
        self.timers.processing.delete(time, self.key, &());
    }
}

/// Runs a [`KeyedProcessFunction`].
pub struct KeyedProcessOperator<K, I, O, F> {
    f: F,
    key: KeySelector<I, K>,
    core: KeyedCore<K, ()>,
    clock: Arc<dyn Clock>,
    _o: std::marker::PhantomData<fn() -> O>,
}

impl<K: Key, I, O, F> KeyedProcessOperator<K, I, O, F> {
    /// The operator for one subtask described by `ctx`.
    pub fn new(f: F, key: KeySelector<I, K>, ctx: &RuntimeContext) -> Self {
        KeyedProcessOperator {
            f,
            key,
            core: KeyedCore::new(ctx),
            clock: Arc::clone(ctx.clock()),
            _o: std::marker::PhantomData,
        }
    }

    /// The user function (for operators that drive it beyond `process`).
    pub fn function_mut(&mut self) -> &mut F {
        &mut self.f
    }

    /// The keyed state (for tests and harnesses).
    pub fn state_backend(&self) -> &KeyedStateBackend<K> {
        &self.core.backend
    }

    /// The registered timers (for tests and harnesses).
    pub fn timer_service(&self) -> &TimerService<K, ()> {
        &self.core.timers
    }
}

impl<K, I, O, F> KeyedProcessOperator<K, I, O, F>
where
    K: Key,
    I: Data,
    O: Data,
    F: KeyedProcessFunction<K, I, O>,
{
    fn fire(
        &mut self,
        domain: TimeDomain,
        up_to: Timestamp,
        out: &mut Collector<'_, O>,
    ) -> UserResult {
        loop {
            let queue = match domain {
                TimeDomain::EventTime => &mut self.core.timers.event,
                TimeDomain::ProcessingTime => &mut self.core.timers.processing,
            };
            let Some((time, due)) = queue.pop_due(up_to) else {
                return Ok(());
            };
            for (key, ()) in due {
                let key_group = self.core.key_group(&key);
                out.set_timestamp(time);
                let mut ctx = KeyedContext {
                    key: &key,
                    key_group,
                    timestamp: time,
                    watermark: self.core.timers.watermark(),
                    domain: Some(domain),
                    backend: &mut self.core.backend,
                    timers: &mut self.core.timers,
                    clock: self.clock.as_ref(),
                };
                self.f.on_timer(time, &mut ctx, out)?;
            }
        }
    }
}

impl<K, I, O, F> Operator for KeyedProcessOperator<K, I, O, F>
where
    K: Key,
    I: Data,
    O: Data,
    F: KeyedProcessFunction<K, I, O>,
{
    type In = I;
    type Out = O;

    fn open(&mut self, ctx: &RuntimeContext) -> UserResult {
        self.core.open(ctx)?;
        self.f.open(ctx)
    }

    fn snapshot_state(&mut self, out: &mut crate::checkpoint::StateSnapshot) -> UserResult {
        Ok(self.core.snapshot(out)?)
    }

    fn process_batch(
        &mut self,
        batch: &mut Vec<Record<I>>,
        out: &mut Collector<'_, O>,
    ) -> UserResult {
        for record in batch.drain(..) {
            let key = (self.key)(&record.value);
            let key_group = self.core.key_group(&key);
            out.set_timestamp(record.ts);
            let mut ctx = KeyedContext {
                key: &key,
                key_group,
                timestamp: record.ts,
                watermark: self.core.timers.watermark(),
                domain: None,
                backend: &mut self.core.backend,
                timers: &mut self.core.timers,
                clock: self.clock.as_ref(),
            };
            self.f.process(record.value, &mut ctx, out)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Collector<'_, O>) -> UserResult {
        let watermark = self.core.timers.advance_watermark(watermark);
        self.fire(TimeDomain::EventTime, watermark, out)
    }

    fn on_processing_time(&mut self, now: Timestamp, out: &mut Collector<'_, O>) -> UserResult {
        self.fire(TimeDomain::ProcessingTime, now, out)
    }

    fn next_processing_time(&self) -> Option<Timestamp> {
        self.core.timers.processing.next_time()
    }

    fn metrics(&self) -> Vec<(&'static str, u64)> {
        self.core.metrics()
    }
}
