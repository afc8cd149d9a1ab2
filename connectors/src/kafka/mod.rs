//! Kafka: [`KafkaSource`], a split-enumerated source whose partitions are
//! splits, and [`KafkaSink`], at least once or (with
//! [`KafkaSink::exactly_once`]) exactly once.
//!
//! The source keeps each partition's next offset in Eddy's checkpoints and
//! restores it exactly (a restored job ignores the group's committed
//! offsets); with a group id it commits the checkpointed offsets when a
//! checkpoint completes, for lag monitoring. Each partition has its own
//! watermark clock (`assign_timestamps` on the source), so an idle or slow
//! partition is handled as in Flink. New partitions and, with a pattern, new
//! topics are found while the job runs. A bounded source
//! ([`KafkaSourceBuilder::bounded`]) reads up to stopping offsets and ends.
//!
//! Messages decode with a [`Format`](crate::format::Format): JSON, CSV by
//! position, raw text, or Debezium JSON. A message that does not decode goes
//! to the source's dead-letter stream with its topic, partition, offset and
//! the reason, and is counted.
//!
//! ```no_run
//! use std::time::Duration;
//! use eddy_connectors::format::Format;
//! use eddy_connectors::kafka::{KafkaSink, KafkaSource, Reset, StartingOffsets};
//! # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
//! # struct Order { id: u64, amount: f64 }
//!
//! let orders = KafkaSource::<Order>::builder("127.0.0.1:9092")
//!     .topics(["orders"])
//!     .group_id("order-totals")
//!     .starting_offsets(StartingOffsets::Committed { or_else: Reset::Earliest })
//!     .format(Format::Json)
//!     .build()?;
//! let dlq = KafkaSink::<eddy_engine::source::DeadLetter>::at_least_once("127.0.0.1:9092", "orders-dlq");
//! # let _ = (orders, dlq);
//! # Ok::<(), eddy_connectors::ConnectorError>(())
//! ```

mod lag;
mod reader;
mod record;
mod sink;
mod source;
mod split;
mod transactional;

pub use reader::KafkaReader;
pub use record::KafkaRecord;
pub use sink::{DeliveryErrors, EncodedRecord, KafkaSink, KafkaWriter, ValueEncoding};
pub use source::{KafkaSource, KafkaSourceBuilder, StoppingOffsets};
pub use split::{KafkaSplit, Reset, StartAt, StartingOffsets};
pub use transactional::{KafkaTransaction, TransactionalKafkaSink, TransactionalKafkaWriter};
