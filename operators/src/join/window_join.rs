//! Window joins and co-groups: records of two keyed streams that share a key
//! and a window meet when the window fires.
//!
//! Built on the window operator over the `Either` union of both inputs, so
//! every assigner, trigger and the allowed lateness work as for windows; the
//! state is the window's records until its cleanup.

use std::time::Duration;

use eddy_engine::dsl::{DataStream, KeyedStream};
use eddy_engine::element::{Data, Key};
use eddy_engine::error::UserResult;
use eddy_engine::operator::Collector;

use crate::join::connect::union_by_key;
use crate::join::either::Either;
use crate::window::{
    ProcessWindowFunction, TimeWindow, WindowAssigner, WindowContext, WindowExt, WindowedStream,
};

/// Adds `.window_join(..)` to keyed streams.
pub trait WindowJoinExt<K, A> {
    /// Joins this stream with `other` per key within the windows of `assigner`.
    fn window_join<B: Data + Sync>(
        &self,
        other: &KeyedStream<K, B>,
        assigner: impl WindowAssigner<Either<A, B>>,
    ) -> WindowJoin<K, A, B>;
}

impl<K: Key, A: Data + Sync> WindowJoinExt<K, A> for KeyedStream<K, A> {
    fn window_join<B: Data + Sync>(
        &self,
        other: &KeyedStream<K, B>,
        assigner: impl WindowAssigner<Either<A, B>>,
    ) -> WindowJoin<K, A, B> {
        WindowJoin {
            windowed: union_by_key(self, other).window(assigner),
        }
    }
}

/// Two keyed streams cut into common windows; finish with `apply` (inner
/// join) or `co_group` (anything else, e.g. outer joins).
pub struct WindowJoin<K, A, B> {
    windowed: WindowedStream<K, Either<A, B>>,
}

impl<K: Key, A: Data + Sync, B: Data + Sync> WindowJoin<K, A, B> {
    /// Keeps windows open for late records, as `WindowedStream::allowed_lateness`.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.windowed = self.windowed.allowed_lateness(lateness);
        self
    }

    /// Inner join: `f(a, b)` for every pair of a window and key.
    pub fn apply<O: Data, F>(&self, f: F) -> DataStream<O>
    where
        F: Fn(&A, &B) -> O + Clone + Send + Sync + 'static,
    {
        self.co_group(
            move |_key: &K,
                  _w: &TimeWindow,
                  lefts: Vec<A>,
                  rights: Vec<B>,
                  out: &mut Collector<'_, O>| {
                for a in &lefts {
                    for b in &rights {
                        out.emit(f(a, b));
                    }
                }
                Ok(())
            },
        )
        .name("WindowJoin")
    }

    /// Calls `f(key, window, lefts, rights, out)` for every window and key
    /// that holds a record of either side.
    pub fn co_group<O: Data, F>(&self, f: F) -> DataStream<O>
    where
        F: FnMut(&K, &TimeWindow, Vec<A>, Vec<B>, &mut Collector<'_, O>) -> UserResult
            + Clone
            + Send
            + Sync
            + 'static,
    {
        self.windowed.process(CoGroup(f)).name("WindowCoGroup")
    }
}

/// Splits a window's records by side and hands them to the user function.
#[derive(Clone)]
struct CoGroup<F>(F);

impl<K: Key, A, B, O, F> ProcessWindowFunction<K, Vec<Either<A, B>>, O> for CoGroup<F>
where
    F: FnMut(&K, &TimeWindow, Vec<A>, Vec<B>, &mut Collector<'_, O>) -> UserResult + Send + 'static,
{
    fn process(
        &mut self,
        key: &K,
        input: Vec<Either<A, B>>,
        ctx: &mut WindowContext<'_, K>,
        out: &mut Collector<'_, O>,
    ) -> UserResult {
        let (mut lefts, mut rights) = (Vec::new(), Vec::new());
        for e in input {
            match e {
                Either::Left(a) => lefts.push(a),
                Either::Right(b) => rights.push(b),
            }
        }
        (self.0)(key, &ctx.window(), lefts, rights, out)
    }

    fn keeps_window_state(&self) -> bool {
        false
    }
}
