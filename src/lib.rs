//! # Eddy
//!
//! A stateful stream-processing engine in the family of Apache Flink: jobs are
//! ordinary Rust programs against a typed DSL, run on event time with
//! watermarks, keep keyed state, and run in parallel on a local runtime.
//!
//! This facade re-exports the engine, the operators and the connectors; a job
//! needs only `use eddy::prelude::*;`.
//!
//! ```
//! use eddy::prelude::*;
//!
//! let env = Env::with_config(EnvConfig::default().with_parallelism(2)).unwrap();
//! let (sink, words) = CollectSink::new();
//! env.from_collection(vec!["a b".to_owned(), "b c".to_owned()])
//!     .flat_map(|line: String| line.split(' ').map(str::to_owned).collect::<Vec<_>>())
//!     .sink(sink);
//! env.execute("words").unwrap();
//! assert_eq!(words.values().len(), 4);
//! ```

/// The README's examples, compiled as doctests so they stay correct.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub use eddy_connectors as connectors;
pub use eddy_engine as engine;
pub use eddy_operators as operators;

/// Everything a typical job needs.
pub mod prelude {
    pub use eddy_engine::checkpoint::{CheckpointingMode, RestartStrategy};
    pub use eddy_engine::clock::{Clock, ManualClock, SystemClock};
    pub use eddy_engine::config::{EnvArgs, EnvConfig, StateBackendKind};
    pub use eddy_engine::context::RuntimeContext;
    pub use eddy_engine::dsl::{DataStream, Env, KeyedStream, StreamSink};
    pub use eddy_engine::element::{Data, Key, Record, Timestamp};
    pub use eddy_engine::error::{BoxError, EngineError, UserResult};
    pub use eddy_engine::operator::{Collector, Operator, OutputTag};
    pub use eddy_engine::process::{KeyedContext, KeyedProcessFunction, TimeDomain};
    pub use eddy_engine::runtime::stats::JobStats;
    pub use eddy_engine::sink::{CollectSink, Sink, SinkWriter};
    pub use eddy_engine::source::{DeadLetter, Source};
    pub use eddy_engine::state::{
        AggregateFunction, AggregatingStateDesc, ListStateDesc, MapStateDesc, ReducingStateDesc,
        ValueStateDesc,
    };
    pub use eddy_engine::time::WatermarkStrategy;
    pub use eddy_engine::two_phase::{ExactlyOnce, TwoPhaseCommitSink, TwoPhaseCommitWriter};
    pub use eddy_operators::join::{
        BroadcastExt, BroadcastState, ConnectExt, Either, IntervalJoinExt,
        KeyedBroadcastProcessFunction, KeyedCoProcessFunction, ReadOnlyBroadcastState,
        TemporalJoinExt, WindowJoinExt,
    };
    pub use eddy_operators::window::{
        Avg, Count, EventTimeSessions, GlobalWindows, Max, Min, ProcessWindowFunction,
        ProcessingTimeSessions, SlidingEventTime, SlidingProcessingTime, Sum, TimeWindow, Trigger,
        TumblingEventTime, TumblingProcessingTime, WindowAllExt, WindowContext, WindowExt,
    };
    pub use std::time::Duration;
}
