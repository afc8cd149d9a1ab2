//! ClickHouse: [`ClickHouseSink`] inserts records (serde structs, as
//! `JSONEachRow`) into a table over the HTTP interface — at least once, one
//! INSERT per batch, or exactly once with [`ClickHouseSink::exactly_once`].
//!
//! ClickHouse has no transactions and (before replicated tables) no insert
//! deduplication, so the exactly-once sink makes replays collapse instead:
//! every row carries a deterministic identity — `_eddy_batch` (sink,
//! subtask, writer run, checkpoint) and `_eddy_seq` (its place in the
//! batch) — in a `ReplacingMergeTree` table whose sorting key ends with
//! them, and readers read with `FINAL`. A checkpoint's rows are inserted in
//! one request when the checkpoint completes (in several when they outgrew
//! [`max_buffered_bytes`](ClickHouseSink::max_buffered_bytes) and went to a
//! staging file); an insert that is retried,
//! replayed after a restore, or cut short by a crash and then repeated adds
//! only rows that `FINAL` folds into the ones already there.
//!
//! ```sql
//! CREATE TABLE totals (user UInt64, window_start Int64, count UInt64,
//!                      _eddy_batch String, _eddy_seq UInt64)
//! ENGINE = ReplacingMergeTree ORDER BY (user, window_start, _eddy_batch, _eddy_seq);
//! SELECT user, window_start, count FROM totals FINAL;
//! ```
//!
//! Changelog output (a materialized view: one current row per key) needs no
//! identity columns: with [`ClickHouseSink::upserts`] each row carries its
//! key, a version that grows with every change of the key, and a deleted
//! flag, into a `ReplacingMergeTree(version)` ordered by the key. A
//! replayed row is the very row already there, and `FINAL` keeps each key's
//! newest version (ClickHouse 18.16 has no `is_deleted` engine parameter,
//! so readers filter deleted rows themselves):
//!
//! ```sql
//! CREATE TABLE customer_totals (customer UInt64, total_cents Int64, orders Int64,
//!                               version UInt64, deleted UInt8)
//! ENGINE = ReplacingMergeTree(version) ORDER BY customer;
//! SELECT customer, total_cents, orders FROM customer_totals FINAL WHERE deleted = 0;
//! ```

mod sink;

pub use sink::{
    execute, ClickHouseBatch, ClickHouseSink, ClickHouseWriter, TransactionalClickHouseSink,
    TransactionalClickHouseWriter, DEAD_LETTERS_TABLE,
};
