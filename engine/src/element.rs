//! The data model: what flows between operators and across channels.
//!
//! Records carry an event-time [`Timestamp`]. Between tasks they travel in
//! [`Element::Batch`]es so that channel costs are paid per batch; control
//! elements (watermarks, barriers, stream status, end of input) travel in
//! order with the batches, so an operator sees a watermark only after every
//! record that was sent before it.

use std::fmt;
use std::hash::Hash;
use std::ops::{Add, Sub};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Everything a user record type needs to flow through Eddy.
///
/// Blanket-implemented: any `Clone + Send + Serialize + DeserializeOwned +
/// Debug + 'static` type is `Data`.
pub trait Data: Clone + Send + Serialize + DeserializeOwned + fmt::Debug + 'static {}
impl<T> Data for T where T: Clone + Send + Serialize + DeserializeOwned + fmt::Debug + 'static {}

/// What a key (from `key_by`) needs: `Data` plus hashing and equality.
pub trait Key: Data + Hash + Eq {}
impl<T> Key for T where T: Data + Hash + Eq {}

/// Milliseconds since the Unix epoch, event time or processing time.
///
/// Arithmetic with [`Duration`] saturates at [`Timestamp::MIN`] /
/// [`Timestamp::MAX`], so the sentinels stay sentinels.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The smallest timestamp: "before everything".
    pub const MIN: Timestamp = Timestamp(i64::MIN);
    /// The largest timestamp: as a watermark it means "no more data".
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    /// A timestamp from milliseconds since the epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// `self + ms`, saturating.
    pub const fn add_millis(self, ms: i64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }
}

fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration_millis(d)))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(duration_millis(d)))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Timestamp::MIN => f.write_str("MIN"),
            Timestamp::MAX => f.write_str("MAX"),
            Timestamp(ms) => write!(f, "{ms}"),
        }
    }
}

/// One user value with its event-time timestamp.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Record<T> {
    /// Event time of the record.
    pub ts: Timestamp,
    /// The user's value.
    pub value: T,
}

impl<T> Record<T> {
    /// A record with the given timestamp.
    pub fn new(ts: Timestamp, value: T) -> Self {
        Record { ts, value }
    }
}

/// Strictly increasing identifier of a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CheckpointId(pub u64);

impl CheckpointId {
    /// The end-of-input snapshot a task takes after its input has ended; it
    /// gets a real id when the coordinator completes it.
    pub const END: CheckpointId = CheckpointId(u64::MAX);
}

/// A checkpoint barrier: every record before it belongs to checkpoint `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Barrier {
    /// The checkpoint this barrier closes.
    pub id: CheckpointId,
    /// Processing time at which the checkpoint was triggered.
    pub triggered_at: Timestamp,
    /// The job stops after this barrier (stop with savepoint): tasks
    /// snapshot, wait for the savepoint to complete, and end without
    /// finishing their input.
    pub stop: bool,
    /// A savepoint: state must be written in the canonical format (no
    /// backend-specific incremental snapshot).
    pub savepoint: bool,
}

/// Whether a channel currently carries data that should hold the watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamStatus {
    /// The channel carries data; its watermark counts.
    Active,
    /// The channel has no data for now; it does not hold the watermark back.
    Idle,
}

/// A latency marker (Flink's `LatencyMarker`): a source emits one every
/// `--latency-tracking-interval`; every stage passes it on without
/// handing it to operators' functions, in order with the records, and
/// sinks record how long it took to reach them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LatencyMarker {
    /// When the source emitted it (wall clock, ms since the epoch).
    pub marked_at_ms: i64,
    /// The uid of the source operator that emitted it.
    pub source: std::sync::Arc<str>,
}

/// What crosses a channel between two subtasks (a network channel carries
/// it bincode-encoded).
#[derive(Debug, Serialize, Deserialize)]
pub enum Element<T> {
    /// A batch of records (never empty).
    Batch(Vec<Record<T>>),
    /// No record with a timestamp at or below this will follow on the channel.
    Watermark(Timestamp),
    /// A checkpoint barrier.
    Barrier(Barrier),
    /// The channel became idle or active.
    Status(StreamStatus),
    /// A latency marker.
    LatencyMarker(LatencyMarker),
    /// The producer has finished; nothing follows.
    EndOfInput,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_arithmetic_saturates_at_the_sentinels() {
        assert_eq!(Timestamp::MAX + Duration::from_secs(1), Timestamp::MAX);
        assert_eq!(Timestamp::MIN - Duration::from_secs(1), Timestamp::MIN);
        assert_eq!(Timestamp(1_000) + Duration::from_secs(2), Timestamp(3_000));
        assert_eq!(Timestamp(1_000) - Duration::from_millis(1), Timestamp(999));
    }
}
