//! Broadcast state: a low-volume stream (rules, thresholds) sent to every
//! subtask of a keyed stream, where each subtask keeps an identical copy in
//! broadcast state that keyed records can read.
//!
//! Every subtask receives every broadcast record in the same order, so the
//! copies stay equal. Keyed records see the broadcast state read-only;
//! broadcast records may change it but see no keyed state (as in Flink).

use std::marker::PhantomData;
use std::sync::Arc;

use eddy_engine::checkpoint::Redistribution;
use eddy_engine::context::RuntimeContext;
use eddy_engine::dsl::{DataStream, KeyedStream};
use eddy_engine::element::{Data, Key, Record, Timestamp};
use eddy_engine::error::UserResult;
use eddy_engine::keygroup::{key_hash, KeyGroupRange};
use eddy_engine::operator::{Collector, Operator};
use eddy_engine::process::{KeySelector, KeyedContext, KeyedProcessFunction, KeyedProcessOperator};
use eddy_engine::state::{KeyedStateBackend, MapState, MapStateDesc};

use crate::join::either::Either;

/// Adds `.connect_broadcast(..)` to keyed streams.
pub trait BroadcastExt<K, A> {
    /// Connects this keyed stream with `rules`, which every subtask receives.
    fn connect_broadcast<R: Data + Sync>(
        &self,
        rules: &DataStream<R>,
    ) -> BroadcastConnected<K, A, R>;
}

/// A keyed stream connected with a broadcast stream.
pub struct BroadcastConnected<K, A, R> {
    union: DataStream<Either<A, R>>,
    key: KeySelector<A, K>,
}

impl<K: Key, A: Data + Sync> BroadcastExt<K, A> for KeyedStream<K, A> {
    fn connect_broadcast<R: Data + Sync>(
        &self,
        rules: &DataStream<R>,
    ) -> BroadcastConnected<K, A, R> {
        let key = self.key_selector();
        let hash_key = Arc::clone(&key);
        let left = self
            .unkeyed()
            .map(Either::Left)
            .name("ConnectKeyed")
            .with_parallelism_of(self.unkeyed())
            // Broadcast records never take this path; 0 keeps the function total.
            .partition_by_key_hash(move |e: &Either<A, R>| match e {
                Either::Left(a) => key_hash(&hash_key(a)),
                Either::Right(_) => 0,
            });
        let right = rules
            .map(Either::Right)
            .name("ConnectBroadcast")
            .with_parallelism_of(rules)
            .broadcast();
        BroadcastConnected {
            union: left.union(&[&right]),
            key,
        }
    }
}

/// User code over a keyed stream and a broadcast stream (Flink's
/// `KeyedBroadcastProcessFunction`). Each subtask has its own clone.
pub trait KeyedBroadcastProcessFunction<K, A, R, O>: Send + 'static {
    /// Called once per subtask before the first record. Does nothing by default.
    ///
    /// # Errors
    /// Fails the job, naming the operator.
    fn open(&mut self, _ctx: &RuntimeContext) -> UserResult {
        Ok(())
    }

    /// A keyed record: keyed state and timers through `ctx`, broadcast state
    /// read-only.
    ///
    /// # Errors
    /// Fails the job, naming the operator.
    fn process_element(
        &mut self,
        value: A,
        ctx: &mut KeyedContext<'_, K>,
        broadcast: &mut ReadOnlyBroadcastState<'_>,
        out: &mut Collector<'_, O>,
    ) -> UserResult;

    /// A broadcast record: update the broadcast state.
    ///
    /// # Errors
    /// Fails the job, naming the operator.
    fn process_broadcast(
        &mut self,
        value: R,
        broadcast: &mut BroadcastState<'_>,
        out: &mut Collector<'_, O>,
    ) -> UserResult;

    /// A timer of `ctx.key()` fired. The default does nothing, for functions
    /// that register no timers.
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

/// The broadcast state of one subtask: map states by descriptor.
pub struct BroadcastState<'a> {
    backend: &'a mut KeyedStateBackend<()>,
}

impl BroadcastState<'_> {
    /// The broadcast map state described by `desc`.
    pub fn map<'s, UK: Data + std::hash::Hash + Eq, UV: Data>(
        &'s mut self,
        desc: &'s MapStateDesc<UK, UV>,
    ) -> MapState<'s, (), (), UK, UV> {
        self.backend.state(desc, &(), 0, &())
    }
}

/// Read-only view of the broadcast state, for keyed records.
pub struct ReadOnlyBroadcastState<'a> {
    inner: BroadcastState<'a>,
}

impl ReadOnlyBroadcastState<'_> {
    /// The value under `key` in the broadcast map state `desc`.
    ///
    /// # Errors
    /// When the state is used with another type.
    pub fn get<UK: Data + std::hash::Hash + Eq, UV: Data>(
        &mut self,
        desc: &MapStateDesc<UK, UV>,
        key: &UK,
    ) -> UserResult<Option<UV>> {
        Ok(self.inner.map(desc).get(key)?)
    }

    /// Every entry of the broadcast map state `desc`.
    ///
    /// # Errors
    /// When the state is used with another type.
    pub fn entries<UK: Data + std::hash::Hash + Eq, UV: Data>(
        &mut self,
        desc: &MapStateDesc<UK, UV>,
    ) -> UserResult<Vec<(UK, UV)>> {
        Ok(self.inner.map(desc).entries()?)
    }
}

impl<K: Key, A: Data + Sync, R: Data + Sync> BroadcastConnected<K, A, R> {
    /// Runs `f` on both streams.
    pub fn process<O: Data, F>(&self, f: F) -> DataStream<O>
    where
        F: KeyedBroadcastProcessFunction<K, A, R, O> + Clone + Sync,
    {
        let key = Arc::clone(&self.key);
        self.union.transform("KeyedBroadcastProcess", move |ctx| {
            BroadcastOperator::new(f.clone(), Arc::clone(&key), ctx)
        })
    }
}

/// Runs a broadcast process function: the keyed side through the engine's
/// keyed process operator, whose function also owns the broadcast state.
struct BroadcastOperator<K, A, R, O, F> {
    keyed: KeyedProcessOperator<K, A, O, KeyedSide<F, R>>,
    lefts: Vec<Record<A>>,
    first_subtask: bool,
}

/// The operator list state holding the broadcast state (saved by subtask 0).
const BROADCAST_STATE: &str = "broadcast-state";

/// The user function with the subtask's broadcast state.
struct KeyedSide<F, R> {
    f: F,
    broadcast: KeyedStateBackend<()>,
    _r: PhantomData<fn() -> R>,
}

impl<K, A, R, O, F> KeyedProcessFunction<K, A, O> for KeyedSide<F, R>
where
    K: Key,
    A: Data,
    R: Data,
    O: Data,
    F: KeyedBroadcastProcessFunction<K, A, R, O>,
{
    fn open(&mut self, ctx: &RuntimeContext) -> UserResult {
        self.f.open(ctx)
    }

    fn process(
        &mut self,
        value: A,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<'_, O>,
    ) -> UserResult {
        let mut view = ReadOnlyBroadcastState {
            inner: BroadcastState {
                backend: &mut self.broadcast,
            },
        };
        self.f.process_element(value, ctx, &mut view, out)
    }

    fn on_timer(
        &mut self,
        time: Timestamp,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<'_, O>,
    ) -> UserResult {
        self.f.on_timer(time, ctx, out)
    }
}

impl<K, A, R, O, F> BroadcastOperator<K, A, R, O, F>
where
    K: Key,
    A: Data,
    R: Data,
    O: Data,
    F: KeyedBroadcastProcessFunction<K, A, R, O>,
{
    fn new(f: F, key: KeySelector<A, K>, ctx: &RuntimeContext) -> Self {
        let side = KeyedSide {
            f,
            // One key, `()`, in key group 0: the same on every subtask.
            broadcast: KeyedStateBackend::new(
                KeyGroupRange { start: 0, end: 1 },
                Arc::clone(ctx.clock()),
            ),
            _r: PhantomData,
        };
        BroadcastOperator {
            keyed: KeyedProcessOperator::new(side, key, ctx),
            lefts: Vec::new(),
            first_subtask: false,
        }
    }
}

impl<K, A, R, O, F> Operator for BroadcastOperator<K, A, R, O, F>
where
    K: Key,
    A: Data,
    R: Data,
    O: Data,
    F: KeyedBroadcastProcessFunction<K, A, R, O>,
{
    type In = Either<A, R>;
    type Out = O;

    fn open(&mut self, ctx: &RuntimeContext) -> UserResult {
        self.first_subtask = ctx.subtask() == 0;
        if let Some(restored) = ctx.restored_state() {
            // Every subtask held the same broadcast state; subtask 0 saved it.
            if let Some(saved) = restored.list::<Vec<u8>>(BROADCAST_STATE)?.first() {
                self.keyed.function_mut().broadcast.restore_whole(saved)?;
            }
        }
        self.keyed.open(ctx)
    }

    fn snapshot_state(&mut self, out: &mut eddy_engine::checkpoint::StateSnapshot) -> UserResult {
        self.keyed.snapshot_state(out)?;
        let saved = match self.first_subtask {
            true => vec![self.keyed.function_mut().broadcast.snapshot_whole()?],
            false => Vec::new(),
        };
        out.list(BROADCAST_STATE, Redistribution::Union, saved)?;
        Ok(())
    }

    fn process_batch(
        &mut self,
        batch: &mut Vec<Record<Either<A, R>>>,
        out: &mut Collector<'_, O>,
    ) -> UserResult {
        // Keep arrival order between the two sides: hand on the keyed records
        // gathered so far before each broadcast record.
        for record in batch.drain(..) {
            match record.value {
                Either::Left(a) => self.lefts.push(Record::new(record.ts, a)),
                Either::Right(r) => {
                    self.keyed.process_batch(&mut self.lefts, out)?;
                    let side = self.keyed.function_mut();
                    let mut state = BroadcastState {
                        backend: &mut side.broadcast,
                    };
                    out.set_timestamp(record.ts);
                    side.f.process_broadcast(r, &mut state, out)?;
                }
            }
        }
        self.keyed.process_batch(&mut self.lefts, out)
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Collector<'_, O>) -> UserResult {
        self.keyed.on_watermark(watermark, out)
    }

    fn on_processing_time(&mut self, now: Timestamp, out: &mut Collector<'_, O>) -> UserResult {
        self.keyed.on_processing_time(now, out)
    }

    fn next_processing_time(&self) -> Option<Timestamp> {
        self.keyed.next_processing_time()
    }

    fn metrics(&self) -> Vec<(&'static str, u64)> {
        self.keyed.metrics()
    }
}
