//! # eddy-connectors
//!
//! Eddy's sources and sinks, built only on the public extension traits of
//! `eddy-engine` (`Source`, `SourceReader`, `Split`, `Sink`, `SinkWriter`).
//! This crate depends on no other Eddy crate, and the engine knows nothing
//! of it.
//!
//! - [`datagen`] — [`DataGen`], a deterministic seeded generator source,
//!   and [`SplitMix64`], the small random generator it seeds per record.
//! - [`nexmark`] — the Nexmark benchmark's events ([`Event`]), a pure
//!   [`NexmarkGenerator`] and the [`NexmarkSource`].
//! - [`file`](mod@file) — [`FileSource`] (JSON lines or CSV, bounded, undecodable
//!   records to the dead-letter stream), [`FileSink`] (JSON lines or CSV) and the
//!   exactly-once [`TransactionalFileSink`].
//! - [`kafka`] — [`KafkaSource`] (partitions as splits, offsets in
//!   checkpoints, discovery, bounded mode) and [`KafkaSink`] (at least once or
//!   exactly once).
//! - [`clickhouse`] — [`ClickHouseSink`](clickhouse::ClickHouseSink): rows
//!   over HTTP, at least once or exactly once (replays collapse in a
//!   `ReplacingMergeTree` read with `FINAL`).
//! - [`redis`](mod@redis) — [`RedisSink`](redis::RedisSink): commands made
//!   from records, at least once or exactly once (epochs applied by one Lua
//!   script).
//! - [`rejected`] — [`OnRejected`](rejected::OnRejected): what the Redis
//!   and ClickHouse sinks do with a write the server refuses.
//! - [`format`](mod@format) — the decoders files and Kafka share: JSON, CSV, raw text,
//!   Debezium.
//! - [`print`](mod@print) — [`PrintSink`], Flink's `print()`.
//! - [`discard`] — [`DiscardSink`], which drops everything (for benchmarks).
//! - [`error`] — [`ConnectorError`], the one error type of this crate.
//!
//! Generator sources give the same records at any parallelism: a record is a
//! pure function of its index (or event number), and splits divide indices,
//! not work queues.
//!
//! ```
//! use eddy_connectors::nexmark::{Event, NexmarkConfig, NexmarkGenerator, NexmarkSource};
//!
//! // The source a job reads, and a hand-written loop over the same events.
//! let source = NexmarkSource::new(NexmarkConfig::default())?.with_events(1_000);
//! let bids = (0..1_000)
//!     .map(|n| source.generator().event(n))
//!     .filter(|e| matches!(e, Event::Bid(_)))
//!     .count();
//! assert_eq!(bids, 1_000 / 50 * 46);
//! # Ok::<(), eddy_connectors::error::ConnectorError>(())
//! ```
#![deny(missing_docs)]

pub mod clickhouse;
pub mod datagen;
pub mod discard;
pub mod error;
pub mod file;
pub mod format;
pub mod kafka;
pub mod nexmark;
pub mod print;
pub mod redis;
pub mod rejected;
mod run_id;
pub mod staging;

pub use datagen::{DataGen, SplitMix64};
pub use discard::DiscardSink;
pub use error::ConnectorError;
pub use file::{FileSink, FileSource, TransactionalFileSink};
pub use kafka::{KafkaSink, KafkaSource};
pub use nexmark::{Event, NexmarkConfig, NexmarkGenerator, NexmarkSource};
pub use print::PrintSink;
