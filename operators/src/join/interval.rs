//! Interval joins: `a.key == b.key && a.ts + lower <= b.ts <= a.ts + upper`.
//!
//! State per key: the records of each side in maps ordered by timestamp. A
//! left record at `t` can meet right records up to `t + upper`, so it is
//! dropped once the watermark reaches `t + upper`; a right record at `t` is
//! dropped once the watermark reaches `t - lower`. After the final watermark
//! nothing remains. Records at or below the watermark are late: dropped and
//! counted (`late_records_dropped`). A pair's result carries the later of
//! the two timestamps.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use eddy_engine::context::RuntimeContext;
use eddy_engine::dsl::{DataStream, KeyedStream};
use eddy_engine::element::{Data, Key, Record, Timestamp};
use eddy_engine::error::UserResult;
use eddy_engine::operator::{Collector, Operator};
use eddy_engine::process::KeySelector;
use eddy_engine::state::KeyedCore;
use serde::{Deserialize, Serialize};

use crate::join::connect::union_by_key;
use crate::join::either::Either;

/// Adds `.interval_join(..)` to keyed streams.
pub trait IntervalJoinExt<K, A> {
    /// Joins each record of this stream with the records of `other` whose
    /// timestamps lie within an interval around its own.
    fn interval_join<B: Data + Sync>(&self, other: &KeyedStream<K, B>) -> IntervalJoin<K, A, B>;
}

impl<K: Key, A: Data + Sync> IntervalJoinExt<K, A> for KeyedStream<K, A> {
    fn interval_join<B: Data + Sync>(&self, other: &KeyedStream<K, B>) -> IntervalJoin<K, A, B> {
        IntervalJoin {
            union: union_by_key(self, other),
            bounds: Bounds { lower: 0, upper: 0 },
        }
    }
}

/// The inclusive interval `[lower, upper]`, in ms, of `b.ts - a.ts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bounds {
    lower: i64,
    upper: i64,
}

/// An interval join being configured.
pub struct IntervalJoin<K, A, B> {
    union: KeyedStream<K, Either<A, B>>,
    bounds: Bounds,
}

impl<K: Key, A: Data + Sync, B: Data + Sync> IntervalJoin<K, A, B> {
    /// `a.ts - before <= b.ts <= a.ts + after`: the common case of
    /// [`between`](Self::between), in `Duration`s as windows take them.
    pub fn within(self, before: Duration, after: Duration) -> Self {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.between(-ms(before), ms(after))
    }

    /// `a.ts + lower_ms <= b.ts <= a.ts + upper_ms`, in milliseconds, either
    /// of them negative (Flink's `between(lower, upper)`); see
    /// [`within`](Self::within) for an interval around `a.ts`.
    pub fn between(mut self, lower_ms: i64, upper_ms: i64) -> Self {
        self.bounds = Bounds {
            lower: lower_ms,
            upper: upper_ms,
        };
        self
    }

    /// Makes the lower bound exclusive: `a.ts + lower < b.ts`.
    pub fn lower_bound_exclusive(mut self) -> Self {
        self.bounds.lower += 1;
        self
    }

    /// Makes the upper bound exclusive: `b.ts < a.ts + upper`.
    pub fn upper_bound_exclusive(mut self) -> Self {
        self.bounds.upper -= 1;
        self
    }

    /// Emits `f(a, b)` for every matching pair.
    pub fn process<O: Data, F>(&self, f: F) -> DataStream<O>
    where
        F: Fn(&A, &B) -> O + Send + Sync + 'static,
    {
        let bounds = self.bounds;
        if bounds.lower > bounds.upper {
            self.union.stream().env().report_invalid(
                "IntervalJoin",
                format!(
                    "the interval [{}, {}] ms is empty: the lower bound must not exceed the upper",
                    bounds.lower, bounds.upper
                ),
            );
        }
        let f = Arc::new(f);
        self.union.transform("IntervalJoin", move |ctx, key| {
            IntervalJoinOperator::new(bounds, Arc::clone(&f), key, ctx)
        })
    }
}

/// Which buffered record a cleanup timer drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum Expiry {
    Left(i64),
    Right(i64),
}

const LEFT: &str = "interval-left";
const RIGHT: &str = "interval-right";

type Buffer<T> = BTreeMap<i64, Vec<T>>;

struct IntervalJoinOperator<K, A, B, O, F> {
    bounds: Bounds,
    f: Arc<F>,
    key: KeySelector<Either<A, B>, K>,
    core: KeyedCore<K, Expiry>,
    _o: PhantomData<fn() -> O>,
}

impl<K: Key, A: Data, B: Data, O: Data, F: Fn(&A, &B) -> O + Send + Sync + 'static>
    IntervalJoinOperator<K, A, B, O, F>
{
    fn new(
        bounds: Bounds,
        f: Arc<F>,
        key: KeySelector<Either<A, B>, K>,
        ctx: &RuntimeContext,
    ) -> Self {
        IntervalJoinOperator {
            bounds,
            f,
            key,
            core: KeyedCore::new(ctx),
            _o: PhantomData,
        }
    }

    fn on_record(
        &mut self,
        record: Record<Either<A, B>>,
        out: &mut Collector<'_, O>,
    ) -> UserResult {
        let ts = record.ts;
        if self.core.is_late(ts) {
            return Ok(());
        }
        let key = (self.key)(&record.value);
        let kg = self.core.key_group(&key);
        let t = ts.millis();
        let Bounds { lower, upper } = self.bounds;
        match record.value {
            Either::Left(a) => {
                let rights = self.core.backend.table::<(), Buffer<B>>(RIGHT)?;
                if let Some(buffer) = rights.get(kg, &key, &())? {
                    for (bt, bs) in buffer.range(t.saturating_add(lower)..=t.saturating_add(upper))
                    {
                        out.set_timestamp(Timestamp(t.max(*bt)));
                        bs.iter().for_each(|b| out.emit((self.f)(&a, b)));
                    }
                }
                let expires = Timestamp(t.saturating_add(upper));
                self.core
                    .backend
                    .table::<(), Buffer<A>>(LEFT)?
                    .get_or_insert_with(kg, &key, &(), BTreeMap::new)?
                    .entry(t)
                    .or_default()
                    .push(a);
                self.core
                    .timers
                    .event
                    .register(expires.max(ts), key, Expiry::Left(t));
            }
            Either::Right(b) => {
                let lefts = self.core.backend.table::<(), Buffer<A>>(LEFT)?;
                if let Some(buffer) = lefts.get(kg, &key, &())? {
                    for (at, as_) in buffer.range(t.saturating_sub(upper)..=t.saturating_sub(lower))
                    {
                        out.set_timestamp(Timestamp(t.max(*at)));
                        as_.iter().for_each(|a| out.emit((self.f)(a, &b)));
                    }
                }
                let expires = Timestamp(t.saturating_sub(lower));
                self.core
                    .backend
                    .table::<(), Buffer<B>>(RIGHT)?
                    .get_or_insert_with(kg, &key, &(), BTreeMap::new)?
                    .entry(t)
                    .or_default()
                    .push(b);
                self.core
                    .timers
                    .event
                    .register(expires.max(ts), key, Expiry::Right(t));
            }
        }
        Ok(())
    }

    fn expire<T: Data>(&mut self, name: &'static str, key: &K, t: i64) -> UserResult {
        let kg = self.core.key_group(key);
        let table = self.core.backend.table::<(), Buffer<T>>(name)?;
        if let Some(buffer) = table.get_mut(kg, key, &())? {
            buffer.remove(&t);
            if buffer.is_empty() {
                table.remove(kg, key, &())?;
            }
        }
        Ok(())
    }
}

impl<K: Key, A: Data, B: Data, O: Data, F: Fn(&A, &B) -> O + Send + Sync + 'static> Operator
    for IntervalJoinOperator<K, A, B, O, F>
{
    type In = Either<A, B>;
    type Out = O;

    fn open(&mut self, ctx: &eddy_engine::context::RuntimeContext) -> UserResult {
        Ok(self.core.open(ctx)?)
    }

    fn snapshot_state(&mut self, out: &mut eddy_engine::checkpoint::StateSnapshot) -> UserResult {
        Ok(self.core.snapshot(out)?)
    }

    fn process_batch(
        &mut self,
        batch: &mut Vec<Record<Either<A, B>>>,
        out: &mut Collector<'_, O>,
    ) -> UserResult {
        batch.drain(..).try_for_each(|r| self.on_record(r, out))
    }

    fn on_watermark(&mut self, watermark: Timestamp, _out: &mut Collector<'_, O>) -> UserResult {
        let watermark = self.core.timers.advance_watermark(watermark);
        while let Some((_, due)) = self.core.timers.event.pop_due(watermark) {
            for (key, expiry) in due {
                match expiry {
                    Expiry::Left(t) => self.expire::<A>(LEFT, &key, t)?,
                    Expiry::Right(t) => self.expire::<B>(RIGHT, &key, t)?,
                }
            }
        }
        Ok(())
    }

    fn metrics(&self) -> Vec<(&'static str, u64)> {
        self.core.metrics()
    }
}
