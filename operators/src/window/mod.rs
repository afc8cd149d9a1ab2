//! Windows: tumbling, sliding, session and global windows on event or
//! processing time, with triggers, allowed lateness and a late-data side
//! output.
//!
//! ```
//! use eddy_engine::config::EnvConfig;
//! use eddy_engine::dsl::Env;
//! use eddy_engine::element::Timestamp;
//! use eddy_engine::sink::CollectSink;
//! use eddy_engine::time::WatermarkStrategy;
//! use eddy_operators::window::{Count, TumblingEventTime, WindowExt};
//! use std::time::Duration;
//!
//! let env = Env::with_config(EnvConfig::default().with_parallelism(2)).unwrap();
//! let (sink, out) = CollectSink::new();
//! env.from_collection(vec![('a', 1_000i64), ('a', 1_500), ('b', 2_000), ('a', 12_000)])
//!     .assign_timestamps(WatermarkStrategy::monotonous().with_timestamp(|r: &(char, i64)| Timestamp(r.1)))
//!     .key_by(|r| r.0)
//!     .window(TumblingEventTime::of(Duration::from_secs(10)))
//!     .aggregate(Count)
//!     .sink(sink);
//! env.execute("count").unwrap();
//! let mut counts: Vec<(char, i64, u64)> =
//!     out.values().into_iter().map(|(k, w, n)| (k, w.start.millis(), n)).collect();
//! counts.sort();
//! assert_eq!(counts, vec![('a', 0, 2), ('a', 10_000, 1), ('b', 0, 1)]);
//! ```

mod aggregates;
mod assigner;
mod function;
mod operator;
mod stream;
mod time;
mod trigger;

pub use aggregates::{
    Avg, Both, CollectAll, Count, CountOf, IntoAggregate, Max, Min, Numeric, ReduceWith, Sum,
};
pub use assigner::{
    EventTimeSessions, GlobalWindows, ProcessingTimeSessions, SlidingEventTime,
    SlidingProcessingTime, TumblingEventTime, TumblingProcessingTime, WindowAssigner, WindowSpec,
};
pub use function::{EmitWithWindow, ProcessWindowFunction, WindowContext};
pub use stream::{WindowAllExt, WindowExt, WindowedStream};
pub use time::TimeWindow;
pub use trigger::Trigger;
