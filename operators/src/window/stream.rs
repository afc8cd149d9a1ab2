//! `WindowedStream`: a keyed (or all-records) stream cut into windows, and
//! the extension traits that add `.window(..)` and `.window_all(..)` to the
//! engine's streams.

use std::time::Duration;

use eddy_engine::dsl::{DataStream, KeyedStream};
use eddy_engine::element::{Data, Key};
use eddy_engine::error::UserResult;
use eddy_engine::operator::{Collector, OutputTag};
use eddy_engine::process::TimeDomain;
use eddy_engine::state::AggregateFunction;

use crate::window::aggregates::{CollectAll, IntoAggregate, ReduceWith};
use crate::window::assigner::{Scheme, WindowAssigner, WindowSpec};
use crate::window::function::{EmitWithWindow, ProcessWindowFunction};
use crate::window::operator::{WindowOperator, WindowSettings};
use crate::window::time::TimeWindow;
use crate::window::trigger::Trigger;

/// A stream cut into windows per key. Finish it with `reduce`, `aggregate`,
/// `process` or `aggregate_process`.
pub struct WindowedStream<K, T> {
    keyed: KeyedStream<K, T>,
    spec: WindowSpec<T>,
    trigger: Option<Trigger>,
    lateness: Duration,
    late_tag: Option<OutputTag<T>>,
    all: bool,
}

/// Adds `.window(assigner)` to keyed streams.
pub trait WindowExt<K, T> {
    /// Cuts each key's records into the windows `assigner` describes.
    fn window(&self, assigner: impl WindowAssigner<T>) -> WindowedStream<K, T>;
}

impl<K: Key, T: Data> WindowExt<K, T> for KeyedStream<K, T> {
    fn window(&self, assigner: impl WindowAssigner<T>) -> WindowedStream<K, T> {
        WindowedStream {
            keyed: self.clone(),
            spec: assigner.spec(),
            trigger: None,
            lateness: Duration::ZERO,
            late_tag: None,
            all: false,
        }
    }
}

/// Adds `.window_all(assigner)` to streams: windows over all records, in a
/// single subtask (as Flink's `windowAll`).
pub trait WindowAllExt<T> {
    /// Cuts all records into the windows `assigner` describes. The window
    /// operator runs at parallelism 1; its output key is `()`.
    fn window_all(&self, assigner: impl WindowAssigner<T>) -> WindowedStream<(), T>;
}

impl<T: Data> WindowAllExt<T> for DataStream<T> {
    fn window_all(&self, assigner: impl WindowAssigner<T>) -> WindowedStream<(), T> {
        let mut w = self.key_by(|_| ()).window(assigner);
        w.all = true;
        w
    }
}

impl<K: Key, T: Data + Sync> WindowedStream<K, T> {
    /// Replaces the default trigger (event time for event-time windows,
    /// processing time for processing-time windows, never for global windows).
    pub fn trigger(mut self, trigger: Trigger) -> Self {
        self.trigger = Some(trigger);
        self
    }

    /// Keeps each window's state until `end + lateness` of event time; late
    /// records within it update the window and make it fire again.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness = lateness;
        self
    }

    /// Sends records that arrive after their windows' cleanup to side output
    /// `tag` (`result.side_output(&tag)`) instead of dropping them (dropped
    /// records are counted either way in `late_records_dropped`).
    pub fn side_output_late_data(mut self, tag: &OutputTag<T>) -> Self {
        self.late_tag = Some(*tag);
        self
    }

    fn settings(&self) -> WindowSettings<T> {
        let default = match (&self.spec.scheme, self.spec.domain) {
            (Scheme::Global, _) => Trigger::Never,
            (_, TimeDomain::EventTime) => Trigger::EventTime,
            (_, TimeDomain::ProcessingTime) => Trigger::ProcessingTime,
        };
        WindowSettings {
            spec: self.spec.clone(),
            trigger: self.trigger.clone().unwrap_or(default),
            lateness_ms: i64::try_from(self.lateness.as_millis()).unwrap_or(i64::MAX),
            late_tag: self.late_tag,
        }
    }

    fn build<A, F, O>(&self, name: &str, agg: A, func: F) -> DataStream<O>
    where
        A: AggregateFunction<In = T> + Clone + Sync,
        F: ProcessWindowFunction<K, A::Out, O> + Clone + Sync,
        O: Data,
    {
        let settings = self.settings();
        let stream = self.keyed.transform(name, move |ctx, key| {
            WindowOperator::new(settings.clone(), agg.clone(), func.clone(), key, ctx)
        });
        if self.all {
            stream.parallelism(1)
        } else {
            stream
        }
    }

    /// Folds each window's records with `f`; emits `(key, window, folded)`.
    pub fn reduce<F>(&self, f: F) -> DataStream<(K, TimeWindow, T)>
    where
        F: Fn(T, T) -> T + Send + Sync + 'static,
    {
        self.build("Window(reduce)", ReduceWith::new(f), EmitWithWindow)
    }

    /// Aggregates each window incrementally (one accumulator per pane or
    /// session, never the records); emits `(key, window, result)`. Takes an
    /// `AggregateFunction` or a ready-made one (`Count`, `Sum::of(..)`,
    /// `Min`, `Max`, `Avg`, tuples of them).
    pub fn aggregate<G>(
        &self,
        agg: G,
    ) -> DataStream<(K, TimeWindow, <G::Agg as AggregateFunction>::Out)>
    where
        G: IntoAggregate<T>,
        G::Agg: Sync,
        <G::Agg as AggregateFunction>::Out: Data,
    {
        self.build("Window(aggregate)", agg.into_aggregate(), EmitWithWindow)
    }

    /// Calls `f` with all records of each window when it fires.
    pub fn process<O, F>(&self, f: F) -> DataStream<O>
    where
        O: Data,
        F: ProcessWindowFunction<K, Vec<T>, O> + Clone + Sync,
    {
        self.build("Window(process)", CollectAll::<T>::default(), f)
    }

    /// Calls the closure `f(key, window, records, out)` with all records of
    /// each window when it fires (Flink's `apply` with a `WindowFunction`).
    /// Unlike [`process`](Self::process), the closure needs no type
    /// annotations: its parameter types come from the stream.
    ///
    /// ```
    /// use eddy_engine::config::EnvConfig;
    /// use eddy_engine::dsl::Env;
    /// use eddy_engine::element::Timestamp;
    /// use eddy_engine::sink::CollectSink;
    /// use eddy_engine::time::WatermarkStrategy;
    /// use eddy_operators::window::{TumblingEventTime, WindowExt};
    /// use std::time::Duration;
    ///
    /// let env = Env::with_config(EnvConfig::default()).unwrap();
    /// let (sink, out) = CollectSink::new();
    /// env.from_collection(vec![('a', 1_000i64), ('a', 4_000), ('b', 2_000)])
    ///     .assign_timestamps(WatermarkStrategy::monotonous().with_timestamp(|r: &(char, i64)| Timestamp(r.1)))
    ///     .key_by(|r| r.0)
    ///     .window(TumblingEventTime::of(Duration::from_secs(10)))
    ///     .apply(|key, window, records, out| {
    ///         out.emit(format!("{key} {} {}", window.start.millis(), records.len()));
    ///         Ok(())
    ///     })
    ///     .sink(sink);
    /// env.execute("apply").unwrap();
    /// let mut lines = out.values();
    /// lines.sort();
    /// assert_eq!(lines, ["a 0 2", "b 0 1"]);
    /// ```
    pub fn apply<O, F>(&self, f: F) -> DataStream<O>
    where
        O: Data,
        F: FnMut(&K, &TimeWindow, Vec<T>, &mut Collector<'_, O>) -> UserResult
            + Clone
            + Send
            + Sync
            + 'static,
    {
        self.build("Window(apply)", CollectAll::<T>::default(), f)
    }

    /// Aggregates incrementally, then calls `f` with the result (and the
    /// window's context) when the window fires.
    pub fn aggregate_process<G, O, F>(&self, agg: G, f: F) -> DataStream<O>
    where
        G: IntoAggregate<T>,
        G::Agg: Sync,
        O: Data,
        F: ProcessWindowFunction<K, <G::Agg as AggregateFunction>::Out, O> + Clone + Sync,
    {
        self.build("Window(aggregate+process)", agg.into_aggregate(), f)
    }
}
