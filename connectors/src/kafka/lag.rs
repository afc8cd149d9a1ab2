//! The end offset of every partition a consumer fetches, from librdkafka's
//! statistics (`statistics.interval.ms`; the broker's high watermark of the
//! partition as of the last fetch): what a reader needs for its lag
//! without a request of its own to the broker.

use std::collections::HashMap;
use std::sync::Mutex;

use rdkafka::consumer::ConsumerContext;
use rdkafka::{ClientContext, Statistics};

/// How often librdkafka reports its statistics, ms.
pub(crate) const STATISTICS_INTERVAL_MS: &str = "1000";

/// A consumer's context that keeps the end offsets its statistics report.
#[derive(Default)]
pub(crate) struct EndOffsets {
    ends: Mutex<HashMap<(String, i32), i64>>,
}

impl EndOffsets {
    /// The end offset of `partition` of `topic`, if reported yet.
    pub(crate) fn of(&self, topic: &str, partition: i32) -> Option<i64> {
        let ends = self.ends.lock().ok()?;
        ends.get(&(topic.to_owned(), partition)).copied()
    }
}

impl ClientContext for EndOffsets {
    fn stats(&self, statistics: Statistics) {
        let Ok(mut ends) = self.ends.lock() else {
            return;
        };
        for (name, topic) in statistics.topics {
            // Partition -1 is librdkafka's internal "unassigned" queue.
            for (id, p) in topic.partitions.into_iter().filter(|(id, _)| *id >= 0) {
                if p.hi_offset >= 0 {
                    ends.insert((name.clone(), id), p.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for EndOffsets {}
