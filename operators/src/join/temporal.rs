//! Versioned-table (temporal) joins: each event meets the version of a keyed
//! changelog that was valid at the event's time — "the customer row as it was
//! when the order happened".
//!
//! The changelog gives, per key, a new row (insert or update) or `None`
//! (delete) at a timestamp. An event at `t` waits until the watermark reaches
//! `t` — then every change up to `t` has arrived — and joins the latest
//! version at or before `t`.
//!
//! State per key: waiting events (until the watermark passes them) and the
//! versions newer than the watermark plus the one valid at the watermark;
//! older versions are dropped as the watermark advances. After the final
//! watermark only each key's last row remains (none for deleted keys).
//! Events and changes at or below the watermark are late: dropped and
//! counted (`late_records_dropped`).

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use eddy_engine::dsl::{DataStream, KeyedStream};
use eddy_engine::element::{Data, Key, Record, Timestamp};
use eddy_engine::error::UserResult;
use eddy_engine::operator::{Collector, Operator};
use eddy_engine::process::KeySelector;
use eddy_engine::state::KeyedCore;
use serde::{Deserialize, Serialize};

use crate::join::connect::union_by_key;
use crate::join::either::Either;

/// Adds `.temporal_join(..)` to keyed streams of events.
pub trait TemporalJoinExt<K, A> {
    /// Joins each event with the row `row(change)` of `changelog` valid at
    /// the event's time; `row` returns `None` for a delete.
    fn temporal_join<C, V, R>(
        &self,
        changelog: &KeyedStream<K, C>,
        row: R,
    ) -> TemporalJoin<K, A, C, V>
    where
        C: Data + Sync,
        V: Data,
        R: Fn(&C) -> Option<V> + Send + Sync + 'static;
}

impl<K: Key, A: Data + Sync> TemporalJoinExt<K, A> for KeyedStream<K, A> {
    fn temporal_join<C, V, R>(
        &self,
        changelog: &KeyedStream<K, C>,
        row: R,
    ) -> TemporalJoin<K, A, C, V>
    where
        C: Data + Sync,
        V: Data,
        R: Fn(&C) -> Option<V> + Send + Sync + 'static,
    {
        TemporalJoin {
            union: union_by_key(self, changelog),
            row: Arc::new(row),
        }
    }
}

/// Extracts the row a change leaves behind (`None` for a delete).
type RowOf<C, V> = Arc<dyn Fn(&C) -> Option<V> + Send + Sync>;

/// A temporal join being configured.
pub struct TemporalJoin<K, A, C, V> {
    union: KeyedStream<K, Either<A, C>>,
    row: RowOf<C, V>,
}

/// Whether events without a valid row are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Inner,
    LeftOuter,
}

impl<K: Key, A: Data + Sync, C: Data + Sync, V: Data> TemporalJoin<K, A, C, V> {
    /// Emits `f(event, row)` for events that have a row at their time.
    pub fn inner<O: Data, F>(&self, f: F) -> DataStream<O>
    where
        F: Fn(&A, &V) -> O + Send + Sync + 'static,
    {
        self.build(Kind::Inner, move |a, v: Option<&V>| v.map(|v| f(a, v)))
    }

    /// Emits `f(event, row)` for every event, `None` when no row was valid.
    pub fn left_outer<O: Data, F>(&self, f: F) -> DataStream<O>
    where
        F: Fn(&A, Option<&V>) -> O + Send + Sync + 'static,
    {
        self.build(Kind::LeftOuter, move |a, v| Some(f(a, v)))
    }

    fn build<O: Data, F>(&self, kind: Kind, f: F) -> DataStream<O>
    where
        F: Fn(&A, Option<&V>) -> Option<O> + Send + Sync + 'static,
    {
        let (row, f) = (Arc::clone(&self.row), Arc::new(f));
        let name = match kind {
            Kind::Inner => "TemporalJoin",
            Kind::LeftOuter => "TemporalLeftJoin",
        };
        self.union
            .transform(name, move |ctx, key| TemporalJoinOperator {
                row: Arc::clone(&row),
                f: Arc::clone(&f),
                key,
                core: KeyedCore::new(ctx),
                _o: PhantomData,
            })
    }
}

/// What a timer of the temporal join does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum Due {
    /// Events waiting at this time can be joined.
    Events,
    /// A version at this time became current: older ones can go.
    Version,
}

const VERSIONS: &str = "temporal-versions";
const WAITING: &str = "temporal-waiting";

type Versions<V> = BTreeMap<i64, Option<V>>;
type Waiting<A> = BTreeMap<i64, Vec<A>>;

struct TemporalJoinOperator<K, A, C, V, O, F> {
    row: RowOf<C, V>,
    f: Arc<F>,
    key: KeySelector<Either<A, C>, K>,
    core: KeyedCore<K, Due>,
    _o: PhantomData<fn() -> O>,
}

impl<K, A, C, V, O, F> TemporalJoinOperator<K, A, C, V, O, F>
where
    K: Key,
    A: Data,
    C: Data,
    V: Data,
    O: Data,
    F: Fn(&A, Option<&V>) -> Option<O> + Send + Sync + 'static,
{
    fn on_record(&mut self, record: Record<Either<A, C>>) -> UserResult {
        if self.core.is_late(record.ts) {
            return Ok(());
        }
        let key = (self.key)(&record.value);
        let kg = self.core.key_group(&key);
        let t = record.ts.millis();
        match record.value {
            Either::Left(event) => {
                self.core
                    .backend
                    .table::<(), Waiting<A>>(WAITING)?
                    .get_or_insert_with(kg, &key, &(), BTreeMap::new)?
                    .entry(t)
                    .or_default()
                    .push(event);
                self.core.timers.event.register(record.ts, key, Due::Events);
            }
            Either::Right(change) => {
                let row = (self.row)(&change);
                self.core
                    .backend
                    .table::<(), Versions<V>>(VERSIONS)?
                    .get_or_insert_with(kg, &key, &(), BTreeMap::new)?
                    .insert(t, row);
                self.core
                    .timers
                    .event
                    .register(record.ts, key, Due::Version);
            }
        }
        Ok(())
    }

    fn on_due(
        &mut self,
        at: Timestamp,
        key: K,
        due: Due,
        out: &mut Collector<'_, O>,
    ) -> UserResult {
        let kg = self.core.key_group(&key);
        let t = at.millis();
        if due == Due::Events {
            let waiting = self.core.backend.table::<(), Waiting<A>>(WAITING)?;
            let events = match waiting.get_mut(kg, &key, &())? {
                Some(w) => {
                    let events = w.remove(&t).unwrap_or_default();
                    if w.is_empty() {
                        waiting.remove(kg, &key, &())?;
                    }
                    events
                }
                None => Vec::new(),
            };
            let versions = self.core.backend.table::<(), Versions<V>>(VERSIONS)?;
            let valid = versions
                .get(kg, &key, &())?
                .and_then(|v| v.range(..=t).next_back())
                .and_then(|(_, row)| row.as_ref());
            out.set_timestamp(at);
            for event in &events {
                if let Some(result) = (self.f)(event, valid) {
                    out.emit(result);
                }
            }
        }
        // Versions before the one valid at `t` can no longer be asked for.
        let versions = self.core.backend.table::<(), Versions<V>>(VERSIONS)?;
        if let Some(v) = versions.get_mut(kg, &key, &())? {
            let newer = v.split_off(&(t + 1));
            let current = v.pop_last().filter(|(_, row)| row.is_some());
            *v = newer;
            if let Some((ct, row)) = current {
                v.insert(ct, row);
            }
            if v.is_empty() {
                versions.remove(kg, &key, &())?;
            }
        }
        Ok(())
    }
}

impl<K, A, C, V, O, F> Operator for TemporalJoinOperator<K, A, C, V, O, F>
where
    K: Key,
    A: Data,
    C: Data,
    V: Data,
    O: Data,
    F: Fn(&A, Option<&V>) -> Option<O> + Send + Sync + 'static,
{
    type In = Either<A, C>;
    type Out = O;

    fn open(&mut self, ctx: &eddy_engine::context::RuntimeContext) -> UserResult {
        Ok(self.core.open(ctx)?)
    }

    fn snapshot_state(&mut self, out: &mut eddy_engine::checkpoint::StateSnapshot) -> UserResult {
        Ok(self.core.snapshot(out)?)
    }

    fn process_batch(
        &mut self,
        batch: &mut Vec<Record<Either<A, C>>>,
        _out: &mut Collector<'_, O>,
    ) -> UserResult {
        batch.drain(..).try_for_each(|r| self.on_record(r))
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Collector<'_, O>) -> UserResult {
        let watermark = self.core.timers.advance_watermark(watermark);
        while let Some((at, due)) = self.core.timers.event.pop_due(watermark) {
            // Versions before events of the same instant: both are in place
            // already; the order only matters for pruning, which is the same.
            for (key, kind) in due {
                self.on_due(at, key, kind, out)?;
            }
        }
        Ok(())
    }

    fn metrics(&self) -> Vec<(&'static str, u64)> {
        self.core.metrics()
    }
}
