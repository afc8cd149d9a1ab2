//! # eddy-engine
//!
//! The core of Eddy: the data model ([`element`]), the typed DSL ([`dsl`]),
//! the job graph ([`graph`]), the local runtime ([`runtime`]), keyed state
//! and timers ([`state`]), event time ([`time`]), and the extension traits
//! that operators and connectors plug into ([`operator`], [`source`],
//! [`sink`]).
//!
//! This crate must never depend on another Eddy crate, nor know about windows,
//! joins, Kafka or Redis: those plug in through the public traits here.
//!
//! ```
//! use eddy_engine::dsl::Env;
//! use eddy_engine::config::EnvConfig;
//! use eddy_engine::sink::CollectSink;
//!
//! let env = Env::with_config(EnvConfig::default().with_parallelism(2)).unwrap();
//! let (sink, out) = CollectSink::new();
//! env.from_collection(vec![1u64, 2, 3])
//!     .map(|x| x * 10)
//!     .rebalance()
//!     .filter(|x| *x > 10)
//!     .sink(sink);
//! env.execute("doc").unwrap();
//! let mut got = out.values();
//! got.sort();
//! assert_eq!(got, vec![20, 30]);
//! ```
#![deny(missing_docs)]

pub mod checkpoint;
pub mod clock;
pub mod collection;
pub mod config;
pub mod context;
pub mod dsl;
pub mod element;
pub mod error;
pub mod graph;
mod http;
pub mod keygroup;
pub mod logging;
pub mod metrics;
pub mod operator;
pub mod process;
mod progress;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod state;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod transform;
pub mod two_phase;
