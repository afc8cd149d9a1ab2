//! The poll loop shared by the generator sources ([`DataGen`](super::DataGen)
//! and [`NexmarkSource`](crate::nexmark::NexmarkSource)).
//!
//! Per poll it takes as many indices as the batch has room for (and the rate
//! limit allows), spreads them over the reader's unfinished splits in turn,
//! hands each `(split, index)` to the source's emit function, and finishes
//! splits as they run out. The emit function is a generic parameter, so the
//! per-record call is monomorphised and inlined.

use std::sync::Arc;
use std::time::Duration;

use eddy_engine::clock::Clock;
use eddy_engine::element::Data;
use eddy_engine::source::{ReadStatus, SourceOutput};

use super::rate::RateLimiter;
use super::split::{Chunk, IndexCursor, IndexSplit};

/// The longest a rate-limited reader sleeps in one poll, so that it stays
/// responsive to checkpoints and cancellation.
const MAX_PACING_SLEEP: Duration = Duration::from_millis(10);

/// Rate limiting of one reader: the job's total rate and the clock.
#[derive(Debug)]
struct Pacer {
    total_per_second: f64,
    clock: Arc<dyn Clock>,
    limiter: RateLimiter,
}

/// Split bookkeeping and pacing of one generator reader.
#[derive(Debug)]
pub(crate) struct IndexDriver {
    cursor: IndexCursor,
    pacer: Option<Pacer>,
    /// The chunks planned for the current poll (reused between polls).
    chunks: Vec<Chunk>,
}

impl IndexDriver {
    /// A driver for `count` indices (`None`: unbounded), limited to
    /// `rate` records per second over all splits when given.
    pub fn new(count: Option<u64>, rate: Option<f64>, clock: Arc<dyn Clock>) -> Self {
        IndexDriver {
            cursor: IndexCursor::new(count),
            chunks: Vec::new(),
            pacer: rate.map(|total_per_second| Pacer {
                total_per_second,
                clock,
                limiter: RateLimiter::new(total_per_second),
            }),
        }
    }

    /// Adds splits. A rate-limited reader's share of the total rate is the
    /// sum of its splits' shares (`rate / of` each), so the total holds
    /// however the splits are spread over subtasks.
    pub fn add_splits(&mut self, splits: Vec<IndexSplit>) {
        self.cursor.add_splits(splits);
        if let Some(p) = &mut self.pacer {
            let share: f64 = self
                .cursor
                .splits()
                .map(|s| p.total_per_second / s.of.max(1) as f64)
                .sum();
            p.limiter = RateLimiter::new(share.max(f64::MIN_POSITIVE));
        }
    }

    /// The unfinished splits at their current positions.
    pub fn snapshot(&self) -> Vec<IndexSplit> {
        self.cursor.snapshot()
    }

    /// Plans one poll with room for `room` records: fills `self.chunks` with
    /// the indices to emit, or says to wait (rate limit) or that all splits
    /// are done.
    fn plan(&mut self, room: u64) -> Plan {
        self.chunks.clear();
        if self.cursor.is_finished() {
            return Plan::Finished;
        }
        let mut budget = room;
        if budget == 0 {
            return Plan::Emit;
        }
        if let Some(p) = &mut self.pacer {
            let now = p.clock.now();
            let allowed = p.limiter.allowance(now);
            if allowed == 0 {
                return Plan::Wait(p.limiter.wait(now).min(MAX_PACING_SLEEP));
            }
            budget = budget.min(allowed);
        }
        // An equal share per unfinished split; what a short split leaves
        // unused goes to the others on the next round.
        let share = budget.div_ceil(self.cursor.active().max(1) as u64);
        let mut planned = 0;
        while planned < budget {
            let Some(chunk) = self.cursor.next_chunk(share.min(budget - planned)) else {
                break;
            };
            planned += chunk.len;
            self.chunks.push(chunk);
        }
        if let Some(p) = &mut self.pacer {
            p.limiter.take(planned);
        }
        Plan::Emit
    }

    /// One poll: emits up to `out.room()` records through `emit(out, split,
    /// index)`, finishing splits as they run out.
    pub fn poll<'a, T: Data>(
        &mut self,
        out: &mut SourceOutput<'a, T>,
        mut emit: impl FnMut(&mut SourceOutput<'a, T>, usize, u64),
    ) -> ReadStatus {
        match self.plan(out.room() as u64) {
            Plan::Finished => return ReadStatus::Finished,
            Plan::Wait(pause) => {
                if let Some(p) = &self.pacer {
                    p.clock.sleep(pause);
                }
                return ReadStatus::NothingAvailable;
            }
            Plan::Emit => {}
        }
        for chunk in &self.chunks {
            for index in chunk.indices() {
                emit(out, chunk.split, index);
            }
            if chunk.exhausted {
                out.finish_split(chunk.split);
            }
        }
        if self.cursor.is_finished() {
            ReadStatus::Finished
        } else {
            ReadStatus::MoreAvailable
        }
    }
}

/// What one poll does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// Emit the planned chunks (possibly none, when the batch is full).
    Emit,
    /// Ahead of the rate limit: sleep this long, emit nothing.
    Wait(Duration),
    /// Every split is exhausted.
    Finished,
}

#[cfg(test)]
mod tests {
    use eddy_engine::clock::ManualClock;
    use eddy_engine::element::Timestamp;

    use super::*;

    fn driver(count: Option<u64>, rate: Option<f64>, splits: u64) -> (IndexDriver, ManualClock) {
        let clock = ManualClock::new(Timestamp(1_000));
        let mut d = IndexDriver::new(count, rate, Arc::new(clock.clone()));
        d.add_splits(IndexSplit::all(splits));
        (d, clock)
    }

    fn planned(d: &IndexDriver) -> Vec<(usize, u64)> {
        d.chunks
            .iter()
            .flat_map(|c| c.indices().map(move |i| (c.split, i)))
            .collect()
    }

    #[test]
    fn a_poll_fills_the_room_spread_over_the_splits() {
        let (mut d, _) = driver(None, None, 2);
        assert_eq!(d.plan(6), Plan::Emit);
        assert_eq!(
            planned(&d),
            [(0, 0), (0, 2), (0, 4), (1, 1), (1, 3), (1, 5)]
        );
    }

    #[test]
    fn a_full_batch_plans_nothing_and_loses_nothing() {
        let (mut d, _) = driver(Some(4), None, 1);
        assert_eq!(d.plan(0), Plan::Emit);
        assert!(planned(&d).is_empty());
        assert_eq!(d.plan(10), Plan::Emit);
        assert_eq!(planned(&d), [(0, 0), (0, 1), (0, 2), (0, 3)]);
        assert!(d.chunks.iter().any(|c| c.exhausted));
        assert_eq!(d.plan(10), Plan::Finished);
    }

    #[test]
    fn a_rate_limited_driver_waits_when_ahead_of_schedule() {
        // 100/s over 4 splits, this reader has 2 of them: 50/s, one per 20 ms.
        let clock = ManualClock::new(Timestamp(0));
        let mut d = IndexDriver::new(None, Some(100.0), Arc::new(clock.clone()));
        d.add_splits(IndexSplit::all(4).into_iter().take(2).collect());
        assert_eq!(d.plan(1024), Plan::Emit);
        assert_eq!(planned(&d).len(), 1);
        assert_eq!(d.plan(1024), Plan::Wait(Duration::from_millis(10)));
        clock.advance(Duration::from_millis(100));
        assert_eq!(d.plan(1024), Plan::Emit);
        assert_eq!(planned(&d).len(), 5);
    }

    #[test]
    fn a_reader_without_splits_is_finished() {
        let clock = ManualClock::new(Timestamp(0));
        let mut d = IndexDriver::new(Some(10), None, Arc::new(clock));
        assert_eq!(d.plan(10), Plan::Finished);
    }
}
