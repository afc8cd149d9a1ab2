//! Stateless record-at-a-time operators: map, filter, flat map.
//!
//! Each works on a whole batch per call, so the per-record cost is the user
//! closure and a vector push; the closure is monomorphised into the loop.

use std::marker::PhantomData;

use crate::element::{Data, Record};
use crate::error::UserResult;
use crate::operator::{Collector, Operator};

/// Applies `f` to every value.
pub struct MapOp<I, O, F> {
    f: F,
    _t: PhantomData<fn(I) -> O>,
}

impl<I, O, F> MapOp<I, O, F> {
    /// A map with `f`.
    pub fn new(f: F) -> Self {
        MapOp { f, _t: PhantomData }
    }
}

impl<I: Data, O: Data, F: FnMut(I) -> O + 'static> Operator for MapOp<I, O, F> {
    type In = I;
    type Out = O;

    fn process_batch(
        &mut self,
        batch: &mut Vec<Record<I>>,
        out: &mut Collector<'_, O>,
    ) -> UserResult {
        let f = &mut self.f;
        out.pending().extend(batch.drain(..).map(|r| Record {
            ts: r.ts,
            value: f(r.value),
        }));
        Ok(())
    }
}

/// Keeps the values for which `f` is true.
pub struct FilterOp<T, F> {
    f: F,
    _t: PhantomData<fn(T)>,
}

impl<T, F> FilterOp<T, F> {
    /// A filter with predicate `f`.
    pub fn new(f: F) -> Self {
        FilterOp { f, _t: PhantomData }
    }
}

impl<T: Data, F: FnMut(&T) -> bool + 'static> Operator for FilterOp<T, F> {
    type In = T;
    type Out = T;

    fn process_batch(
        &mut self,
        batch: &mut Vec<Record<T>>,
        out: &mut Collector<'_, T>,
    ) -> UserResult {
        let f = &mut self.f;
        batch.retain(|r| f(&r.value));
        let pending = out.pending();
        if pending.is_empty() {
            // Hand the filtered batch on without copying it.
            std::mem::swap(pending, batch);
        } else {
            pending.append(batch);
        }
        Ok(())
    }
}

/// Replaces every value by the values of the iterator `f` returns.
pub struct FlatMapOp<I, O, F> {
    f: F,
    _t: PhantomData<fn(I) -> O>,
}

impl<I, O, F> FlatMapOp<I, O, F> {
    /// A flat map with `f`.
    pub fn new(f: F) -> Self {
        FlatMapOp { f, _t: PhantomData }
    }
}

impl<I, O, F, It> Operator for FlatMapOp<I, O, F>
where
    I: Data,
    O: Data,
    It: IntoIterator<Item = O>,
    F: FnMut(I) -> It + 'static,
{
    type In = I;
    type Out = O;

    fn process_batch(
        &mut self,
        batch: &mut Vec<Record<I>>,
        out: &mut Collector<'_, O>,
    ) -> UserResult {
        let f = &mut self.f;
        let pending = out.pending();
        for r in batch.drain(..) {
            pending.extend(
                f(r.value)
                    .into_iter()
                    .map(|value| Record { ts: r.ts, value }),
            );
        }
        Ok(())
    }
}
