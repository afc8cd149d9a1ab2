//! Connected keyed streams and keyed co-process functions.
//!
//! Two keyed streams are connected by mapping each into [`Either`] in its own
//! task (chained, so no extra hop) and partitioning the union by the key of
//! either side. The connected operator is then an ordinary keyed operator
//! over `Either<A, B>`: its watermark is the minimum of both inputs' (the
//! task's watermark valve spans the channels of both), state and timers are
//! those of the shared key.

use eddy_engine::context::RuntimeContext;
use eddy_engine::dsl::{DataStream, KeyedStream};
use eddy_engine::element::{Data, Key, Timestamp};
use eddy_engine::error::UserResult;
use eddy_engine::operator::{Collector, Operator};
use eddy_engine::process::{KeySelector, KeyedContext, KeyedProcessFunction};

use crate::join::either::Either;

/// Two keyed streams with the same key type, processed together.
pub struct ConnectedKeyedStreams<K, A, B> {
    union: KeyedStream<K, Either<A, B>>,
}

/// Adds `.connect(..)` to keyed streams.
pub trait ConnectExt<K, A> {
    /// Connects this stream with `other`; records of both meet by key.
    fn connect<B: Data + Sync>(&self, other: &KeyedStream<K, B>) -> ConnectedKeyedStreams<K, A, B>;
}

impl<K: Key, A: Data + Sync> ConnectExt<K, A> for KeyedStream<K, A> {
    fn connect<B: Data + Sync>(&self, other: &KeyedStream<K, B>) -> ConnectedKeyedStreams<K, A, B> {
        ConnectedKeyedStreams {
            union: union_by_key(self, other),
        }
    }
}

/// `Either`-tagged union of two keyed streams, keyed by either side's key.
pub(crate) fn union_by_key<K: Key, A: Data, B: Data>(
    a: &KeyedStream<K, A>,
    b: &KeyedStream<K, B>,
) -> KeyedStream<K, Either<A, B>> {
    let left: DataStream<Either<A, B>> = a
        .unkeyed()
        .map(Either::Left)
        .name("ConnectLeft")
        .with_parallelism_of(a.unkeyed());
    let right: DataStream<Either<A, B>> = b
        .unkeyed()
        .map(Either::Right)
        .name("ConnectRight")
        .with_parallelism_of(b.unkeyed());
    let (ka, kb) = (a.key_selector(), b.key_selector());
    left.union(&[&right])
        .key_by(move |e: &Either<A, B>| match e {
            Either::Left(a) => ka(a),
            Either::Right(b) => kb(b),
        })
}

impl<K: Key, A: Data, B: Data> ConnectedKeyedStreams<K, A, B> {
    /// Runs `f` on the records of both inputs with shared keyed state and timers.
    pub fn process<O: Data, F>(&self, f: F) -> DataStream<O>
    where
        F: KeyedCoProcessFunction<K, A, B, O> + Clone + Sync,
    {
        self.union
            .process(CoProcess::<F, (A, B)>(f, std::marker::PhantomData))
            .name("KeyedCoProcess")
    }

    /// Adds a custom keyed operator over both inputs.
    pub fn transform<Op, M>(&self, name: &str, make: M) -> DataStream<Op::Out>
    where
        Op: Operator<In = Either<A, B>>,
        M: Fn(&RuntimeContext, KeySelector<Either<A, B>, K>) -> Op + Send + Sync + 'static,
    {
        self.union.transform(name, make)
    }

    /// The keyed union underneath (for other join operators).
    pub fn keyed(&self) -> &KeyedStream<K, Either<A, B>> {
        &self.union
    }
}

/// User code for two keyed inputs sharing keyed state and timers (Flink's
/// `KeyedCoProcessFunction`). Each subtask has its own clone.
pub trait KeyedCoProcessFunction<K, A, B, O>: Send + 'static {
    /// Called once per subtask before the first record. Does nothing by default.
    ///
    /// # Errors
    /// Fails the job, naming the operator.
    fn open(&mut self, _ctx: &RuntimeContext) -> UserResult {
        Ok(())
    }

    /// A record of the first input.
    ///
    /// # Errors
    /// Fails the job, naming the operator.
    fn process1(
        &mut self,
        value: A,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<'_, O>,
    ) -> UserResult;

    /// A record of the second input.
    ///
    /// # Errors
    /// Fails the job, naming the operator.
    fn process2(
        &mut self,
        value: B,
        ctx: &mut KeyedContext<'_, K>,
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

/// Adapts a co-process function to the engine's keyed process function.
#[derive(Clone)]
struct CoProcess<F, P>(F, std::marker::PhantomData<fn() -> P>);

impl<K, A, B, O, F> KeyedProcessFunction<K, Either<A, B>, O> for CoProcess<F, (A, B)>
where
    F: KeyedCoProcessFunction<K, A, B, O>,
    A: 'static,
    B: 'static,
{
    fn open(&mut self, ctx: &RuntimeContext) -> UserResult {
        self.0.open(ctx)
    }

    fn process(
        &mut self,
        value: Either<A, B>,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<'_, O>,
    ) -> UserResult {
        match value {
            Either::Left(a) => self.0.process1(a, ctx, out),
            Either::Right(b) => self.0.process2(b, ctx, out),
        }
    }

    fn on_timer(
        &mut self,
        time: Timestamp,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<'_, O>,
    ) -> UserResult {
        self.0.on_timer(time, ctx, out)
    }
}
