//! A Kafka partition as a split, and where reading it starts and stops.

use std::collections::HashMap;

use eddy_engine::source::Split;
use serde::{Deserialize, Serialize};

/// What to do when a partition has no committed offset for the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reset {
    /// Start at the partition's first record.
    Earliest,
    /// Start after the partition's last record.
    Latest,
}

/// Where a job that starts fresh (not restored) begins reading. A restored
/// job always resumes at the offsets in its checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartingOffsets {
    /// Each partition's first record (the default).
    Earliest,
    /// After each partition's last record.
    Latest,
    /// The first record whose timestamp is at or after this time (ms since
    /// the epoch); partitions with no such record start at their end.
    Timestamp(i64),
    /// The consumer group's committed offsets, or `or_else` for partitions
    /// that have none. Needs a group id.
    Committed {
        /// Where partitions without a committed offset start.
        or_else: Reset,
    },
    /// Explicit offsets per `(topic, partition)`; partitions not listed
    /// start at `or_else`.
    Offsets {
        /// The offsets.
        offsets: HashMap<(String, i32), i64>,
        /// Where unlisted partitions start.
        or_else: Reset,
    },
}

/// Where one partition starts, before the reader has resolved it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartAt {
    /// This offset (the next record to read).
    Offset(i64),
    /// The partition's first record.
    Earliest,
    /// After the partition's last record.
    Latest,
    /// The first record at or after this timestamp (ms).
    Timestamp(i64),
    /// The group's committed offset, or the reset policy.
    Committed(Reset),
}

impl StartingOffsets {
    /// Where partition `partition` of `topic` starts.
    pub(crate) fn start_of(&self, topic: &str, partition: i32) -> StartAt {
        match self {
            StartingOffsets::Earliest => StartAt::Earliest,
            StartingOffsets::Latest => StartAt::Latest,
            StartingOffsets::Timestamp(ts) => StartAt::Timestamp(*ts),
            StartingOffsets::Committed { or_else } => StartAt::Committed(*or_else),
            StartingOffsets::Offsets { offsets, or_else } => {
                match offsets.get(&(topic.to_owned(), partition)) {
                    Some(&o) => StartAt::Offset(o),
                    None => reset(*or_else),
                }
            }
        }
    }
}

/// The start a reset policy names.
pub(crate) fn reset(policy: Reset) -> StartAt {
    match policy {
        Reset::Earliest => StartAt::Earliest,
        Reset::Latest => StartAt::Latest,
    }
}

/// One partition of one topic: the unit a reader reads in offset order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaSplit {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Where reading starts (a snapshot holds the next offset to read).
    pub start: StartAt,
    /// Bounded mode: the offset to stop before (exclusive); `None` reads
    /// for as long as the job runs.
    pub stop: Option<i64>,
}

impl Split for KafkaSplit {
    fn id(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}
