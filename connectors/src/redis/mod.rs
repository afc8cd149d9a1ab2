//! Redis: [`RedisSink`], which applies the [`RedisCommand`]s a mapping makes
//! of each record — at least once (pipelined per batch, for idempotent
//! commands), or exactly once with [`RedisSink::exactly_once`].
//!
//! The exactly-once sink buffers a checkpoint's commands (the committable,
//! kept in the checkpoint) and, when the checkpoint completes, applies them
//! in one Lua script that first compares the checkpoint with the epoch
//! recorded for the sink's subtask and writer run in the hash
//! `eddy:sink-commits`: an epoch already applied is skipped, and the epoch
//! is recorded in the same script. Redis runs a script atomically, so even
//! non-idempotent commands (`HINCRBY`, `XADD`) never apply twice after a
//! restore or a retried commit. Past
//! [`max_buffered_bytes`](RedisSink::max_buffered_bytes) the commands go to
//! a staging file and are applied in parts, each recording how far it got.
//!
//! ```no_run
//! use eddy_connectors::redis::{RedisCommand, RedisSink};
//! # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
//! # struct Total { user: u64, amount: i64 }
//!
//! let totals = RedisSink::new("redis://127.0.0.1:6379", |t: &Total| {
//!     vec![RedisCommand::HIncrBy {
//!         key: "totals".into(),
//!         field: t.user.to_string(),
//!         by: t.amount,
//!     }]
//! })
//! .exactly_once();
//! # let _ = totals;
//! ```

mod command;
mod compact;
mod sink;
mod transactional;

pub use command::RedisCommand;
pub use sink::{RedisSink, RedisWriter};
pub use transactional::{
    RedisEpoch, TransactionalRedisSink, TransactionalRedisWriter, COMMITS_KEY, DEAD_LETTERS_KEY,
};
