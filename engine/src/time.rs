//! Event time: watermark strategies, per-split watermarks in sources, and
//! the watermark valve that combines a task's input channels.
//!
//! Invariants:
//! - A watermark `w` promises that no record with `ts <= w` follows; a record
//!   at or below the current watermark is late.
//! - Watermarks only advance, at every output.
//! - A task's input watermark is the minimum over its input channels that are
//!   neither idle nor ended; when all live channels are idle, the task is idle.
//! - `Timestamp::MAX` is sent once a bounded input is exhausted; it fires every
//!   remaining event-time timer.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::element::{StreamStatus, Timestamp};

/// Extracts a record's event time.
pub type TimestampAssigner<T> = Arc<dyn Fn(&T) -> Timestamp + Send + Sync>;

/// How event time is assigned and how watermarks are generated.
pub struct WatermarkStrategy<T> {
    out_of_orderness: Option<Duration>,
    /// How far below `max − out_of_orderness` the watermark is: 1 ms
    /// (Flink's DataStream rule) or 0 (Flink SQL's `ts - INTERVAL`).
    below_ms: i64,
    timestamp: Option<TimestampAssigner<T>>,
    idleness: Option<Duration>,
    emission: WatermarkEmission,
}

/// When a source emits its watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatermarkEmission {
    /// Every interval of processing time; `None` takes the job's
    /// `--watermark-interval` (default 200 ms).
    Periodic(Option<Duration>),
    /// After every polled batch: deterministic, for tests.
    PerBatch,
}

impl<T> Clone for WatermarkStrategy<T> {
    fn clone(&self) -> Self {
        WatermarkStrategy {
            out_of_orderness: self.out_of_orderness,
            below_ms: self.below_ms,
            timestamp: self.timestamp.clone(),
            idleness: self.idleness,
            emission: self.emission,
        }
    }
}

impl<T> fmt::Debug for WatermarkStrategy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatermarkStrategy")
            .field("out_of_orderness", &self.out_of_orderness)
            .field("below_ms", &self.below_ms)
            .field("has_timestamp_assigner", &self.timestamp.is_some())
            .field("idleness", &self.idleness)
            .field("emission", &self.emission)
            .finish()
    }
}

impl<T> WatermarkStrategy<T> {
    /// Watermark = highest timestamp seen − `max_delay` − 1 ms (Flink's
    /// `forBoundedOutOfOrderness`): a record up to `max_delay` behind the
    /// newest one is not late.
    pub fn bounded_out_of_orderness(max_delay: Duration) -> Self {
        WatermarkStrategy {
            out_of_orderness: Some(max_delay),
            below_ms: 1,
            timestamp: None,
            idleness: None,
            emission: WatermarkEmission::Periodic(None),
        }
    }

    /// Watermark = highest timestamp seen − `delay`, as Flink SQL's
    /// `WATERMARK FOR ts AS ts - INTERVAL '…'`: a record exactly `delay`
    /// behind the newest one is at the watermark, so late (for jobs ported
    /// from SQL that must drop the same records).
    pub fn max_minus(delay: Duration) -> Self {
        WatermarkStrategy {
            below_ms: 0,
            ..Self::bounded_out_of_orderness(delay)
        }
    }

    /// Timestamps only ever increase (bounded out-of-orderness of zero).
    pub fn monotonous() -> Self {
        Self::bounded_out_of_orderness(Duration::ZERO)
    }

    /// Assigns timestamps but emits no watermark until the input ends.
    pub fn no_watermarks() -> Self {
        WatermarkStrategy {
            out_of_orderness: None,
            below_ms: 1,
            timestamp: None,
            idleness: None,
            emission: WatermarkEmission::Periodic(None),
        }
    }

    /// Takes each record's event time from `f`.
    pub fn with_timestamp(mut self, f: impl Fn(&T) -> Timestamp + Send + Sync + 'static) -> Self {
        self.timestamp = Some(Arc::new(f));
        self
    }

    /// A split (or channel) without records for `timeout` of processing
    /// time stops holding the watermark back until it has data again.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idleness = Some(timeout);
        self
    }

    /// Emits the watermark every `interval` of processing time (at least
    /// every millisecond).
    pub fn with_periodic_emission(mut self, interval: Duration) -> Self {
        self.emission = WatermarkEmission::Periodic(Some(interval.max(Duration::from_millis(1))));
        self
    }

    /// Emits the watermark after every polled batch (deterministic; for tests).
    pub fn with_per_batch_emission(mut self) -> Self {
        self.emission = WatermarkEmission::PerBatch;
        self
    }

    /// When watermarks are emitted.
    pub fn emission(&self) -> WatermarkEmission {
        self.emission
    }
}

/// Per-split event-time bookkeeping of one source subtask.
pub struct SplitWatermarks<T> {
    strategy: WatermarkStrategy<T>,
    splits: Vec<SplitClock>,
    emitted: Timestamp,
    status: StreamStatus,
    awaiting_splits: bool,
}

#[derive(Clone, Debug)]
struct SplitClock {
    max_ts: Timestamp,
    seen_since_check: bool,
    last_active: Timestamp,
    idle: bool,
    finished: bool,
}

/// What a source subtask must send after a watermark check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatermarkUpdate {
    /// A new, higher watermark to emit.
    pub watermark: Option<Timestamp>,
    /// A change of stream status to emit.
    pub status: Option<StreamStatus>,
}

impl<T> SplitWatermarks<T> {
    /// Bookkeeping for `strategy`, with no split yet.
    pub fn new(strategy: WatermarkStrategy<T>) -> Self {
        SplitWatermarks {
            strategy,
            splits: Vec::new(),
            emitted: Timestamp::MIN,
            status: StreamStatus::Active,
            awaiting_splits: false,
        }
    }

    /// Whether the enumerator may still send splits: while it may, a
    /// subtask whose splits are all finished is idle (it must not hold the
    /// watermark back) rather than about to end.
    pub fn set_awaiting_splits(&mut self, awaiting: bool) {
        self.awaiting_splits = awaiting;
    }

    /// Registers a new split (it starts active at processing time `now`).
    pub fn add_split(&mut self, now: Timestamp) {
        self.splits.push(SplitClock {
            max_ts: Timestamp::MIN,
            seen_since_check: false,
            last_active: now,
            idle: false,
            finished: false,
        });
    }

    /// The event time of a record from `split`; updates that split's clock.
    #[inline]
    pub fn on_record(&mut self, split: usize, value: &T, native_ts: Timestamp) -> Timestamp {
        let ts = match &self.strategy.timestamp {
            Some(f) => f(value),
            None => native_ts,
        };
        if let Some(s) = self.splits.get_mut(split) {
            if ts > s.max_ts {
                s.max_ts = ts;
            }
            s.seen_since_check = true;
        }
        ts
    }

    /// The split is exhausted and no longer holds the watermark back.
    pub fn finish_split(&mut self, split: usize) {
        if let Some(s) = self.splits.get_mut(split) {
            s.finished = true;
        }
    }

    /// Records are about to be sent: if the subtask reported itself idle,
    /// it is active again; returns true when that changed (the caller must
    /// send `StreamStatus::Active` before the records).
    pub fn mark_active(&mut self) -> bool {
        let changed = self.status == StreamStatus::Idle;
        self.status = StreamStatus::Active;
        changed
    }

    /// The watermark last emitted.
    pub fn emitted(&self) -> Timestamp {
        self.emitted
    }

    /// Recomputes idleness and the combined watermark at processing time `now`.
    pub fn check(&mut self, now: Timestamp) -> WatermarkUpdate {
        let idleness = self.strategy.idleness;
        for s in &mut self.splits {
            if s.seen_since_check {
                s.seen_since_check = false;
                s.last_active = now;
                s.idle = false;
            } else if let Some(timeout) = idleness {
                if !s.finished && now >= s.last_active + timeout {
                    s.idle = true;
                }
            }
        }
        let mut update = WatermarkUpdate::default();
        let live = self.splits.iter().filter(|s| !s.finished && !s.idle);
        let min_max_ts = live.map(|s| s.max_ts).min();
        let any_unfinished = self.splits.iter().any(|s| !s.finished);
        let waiting = !any_unfinished && (self.awaiting_splits || self.splits.is_empty());
        let status = if min_max_ts.is_none() && (any_unfinished || waiting) {
            // Only idle splits (or none left): stop holding downstream back.
            if idleness.is_some() || waiting {
                StreamStatus::Idle
            } else {
                StreamStatus::Active
            }
        } else {
            StreamStatus::Active
        };
        if status != self.status {
            self.status = status;
            update.status = Some(status);
        }
        if let (Some(delay), Some(max_ts)) = (self.strategy.out_of_orderness, min_max_ts) {
            if max_ts > Timestamp::MIN {
                let wm = (max_ts - delay).add_millis(-self.strategy.below_ms);
                if wm > self.emitted {
                    self.emitted = wm;
                    update.watermark = Some(wm);
                }
            }
        }
        update
    }

    /// Marks the end of input: returns `MAX` if it was not emitted yet.
    pub fn end(&mut self) -> Option<Timestamp> {
        (self.emitted < Timestamp::MAX).then(|| {
            self.emitted = Timestamp::MAX;
            Timestamp::MAX
        })
    }
}

/// Combines the watermarks and statuses of a task's input channels.
#[derive(Clone, Debug)]
pub struct WatermarkValve {
    channels: Vec<ChannelTime>,
    output: Timestamp,
    status: StreamStatus,
}

#[derive(Clone, Copy, Debug)]
struct ChannelTime {
    watermark: Timestamp,
    idle: bool,
    ended: bool,
}

/// What the valve lets through after an input event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ValveOutput {
    /// A new, higher input watermark for the task.
    pub watermark: Option<Timestamp>,
    /// A change of the task's stream status.
    pub status: Option<StreamStatus>,
}

impl WatermarkValve {
    /// A valve over `channels` inputs, all active, at `Timestamp::MIN`.
    pub fn new(channels: usize) -> Self {
        WatermarkValve {
            channels: vec![
                ChannelTime {
                    watermark: Timestamp::MIN,
                    idle: false,
                    ended: false,
                };
                channels
            ],
            output: Timestamp::MIN,
            status: StreamStatus::Active,
        }
    }

    /// The current combined watermark.
    pub fn current(&self) -> Timestamp {
        self.output
    }

    /// Channel `ch` sent watermark `wm`.
    pub fn on_watermark(&mut self, ch: usize, wm: Timestamp) -> ValveOutput {
        let c = &mut self.channels[ch];
        if wm > c.watermark {
            c.watermark = wm;
        }
        self.recompute()
    }

    /// Channel `ch` became idle or active.
    pub fn on_status(&mut self, ch: usize, status: StreamStatus) -> ValveOutput {
        self.channels[ch].idle = status == StreamStatus::Idle;
        self.recompute()
    }

    /// Channel `ch` has ended.
    pub fn on_end(&mut self, ch: usize) -> ValveOutput {
        self.channels[ch].ended = true;
        self.recompute()
    }

    /// True once every channel has ended.
    pub fn all_ended(&self) -> bool {
        self.channels.iter().all(|c| c.ended)
    }

    fn recompute(&mut self) -> ValveOutput {
        let mut out = ValveOutput::default();
        let live: Vec<&ChannelTime> = self.channels.iter().filter(|c| !c.ended).collect();
        let active_min = live.iter().filter(|c| !c.idle).map(|c| c.watermark).min();
        let status = if !live.is_empty() && active_min.is_none() {
            StreamStatus::Idle
        } else {
            StreamStatus::Active
        };
        if status != self.status {
            self.status = status;
            out.status = Some(status);
        }
        let any_idle = live.iter().any(|c| c.idle);
        let candidate = match active_min {
            // The end of the active inputs is not the end of the idle ones.
            Some(Timestamp::MAX) if any_idle => None,
            Some(wm) => Some(wm),
            // Every channel ended: they all sent MAX before ending; make sure.
            None if live.is_empty() => Some(Timestamp::MAX),
            None => None,
        };
        if let Some(wm) = candidate {
            if wm > self.output {
                self.output = wm;
                out.watermark = Some(wm);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valve_emits_the_minimum_over_channels() {
        let mut v = WatermarkValve::new(2);
        assert_eq!(v.on_watermark(0, Timestamp(10)).watermark, None);
        assert_eq!(
            v.on_watermark(1, Timestamp(5)).watermark,
            Some(Timestamp(5))
        );
        assert_eq!(
            v.on_watermark(1, Timestamp(20)).watermark,
            Some(Timestamp(10))
        );
        assert_eq!(
            v.on_watermark(0, Timestamp(30)).watermark,
            Some(Timestamp(20))
        );
    }

    #[test]
    fn valve_never_goes_backwards() {
        let mut v = WatermarkValve::new(2);
        v.on_watermark(0, Timestamp(10));
        v.on_watermark(1, Timestamp(10));
        assert_eq!(v.current(), Timestamp(10));
        assert_eq!(v.on_watermark(0, Timestamp(3)).watermark, None);
        // A channel returning from idleness with an older watermark does not
        // pull the output back.
        v.on_status(1, StreamStatus::Idle);
        v.on_watermark(0, Timestamp(50));
        assert_eq!(v.current(), Timestamp(50));
        v.on_status(1, StreamStatus::Active);
        assert_eq!(v.current(), Timestamp(50));
    }

    #[test]
    fn idle_channels_do_not_hold_the_watermark_and_all_idle_means_idle() {
        let mut v = WatermarkValve::new(2);
        v.on_watermark(0, Timestamp(100));
        assert_eq!(v.current(), Timestamp::MIN);
        let out = v.on_status(1, StreamStatus::Idle);
        assert_eq!(out.watermark, Some(Timestamp(100)));
        let out = v.on_status(0, StreamStatus::Idle);
        assert_eq!(out.status, Some(StreamStatus::Idle));
        let out = v.on_status(0, StreamStatus::Active);
        assert_eq!(out.status, Some(StreamStatus::Active));
    }

    #[test]
    fn max_waits_for_idle_channels() {
        let mut v = WatermarkValve::new(2);
        v.on_status(1, StreamStatus::Idle);
        assert_eq!(v.on_watermark(0, Timestamp::MAX).watermark, None);
        v.on_status(1, StreamStatus::Active);
        v.on_watermark(1, Timestamp(5));
        assert_eq!(v.current(), Timestamp(5));
    }

    #[test]
    fn ended_channels_release_the_watermark_to_max() {
        let mut v = WatermarkValve::new(2);
        v.on_watermark(0, Timestamp::MAX);
        v.on_end(0);
        v.on_watermark(1, Timestamp(7));
        assert_eq!(v.current(), Timestamp(7));
        v.on_watermark(1, Timestamp::MAX);
        assert_eq!(v.current(), Timestamp::MAX);
        assert!(!v.all_ended());
        v.on_end(1);
        assert!(v.all_ended());
    }

    #[test]
    fn bounded_out_of_orderness_lags_by_the_delay_plus_one() {
        let s = WatermarkStrategy::<i64>::bounded_out_of_orderness(Duration::from_millis(100))
            .with_timestamp(|v| Timestamp(*v));
        let mut w = SplitWatermarks::new(s);
        w.add_split(Timestamp(0));
        w.on_record(0, &1_000, Timestamp::MIN);
        w.on_record(0, &900, Timestamp::MIN);
        assert_eq!(w.check(Timestamp(0)).watermark, Some(Timestamp(899)));
        assert_eq!(w.check(Timestamp(0)).watermark, None, "no repeat");

        let sql = WatermarkStrategy::<i64>::max_minus(Duration::from_millis(100))
            .with_timestamp(|v| Timestamp(*v));
        let mut w = SplitWatermarks::new(sql);
        w.add_split(Timestamp(0));
        w.on_record(0, &1_000, Timestamp::MIN);
        assert_eq!(
            w.check(Timestamp(0)).watermark,
            Some(Timestamp(900)),
            "SQL: max - d"
        );
    }

    #[test]
    fn slow_split_holds_the_watermark_until_it_goes_idle() {
        let s = WatermarkStrategy::<i64>::monotonous()
            .with_timestamp(|v| Timestamp(*v))
            .with_idleness(Duration::from_millis(50));
        let mut w = SplitWatermarks::new(s);
        w.add_split(Timestamp(0));
        w.add_split(Timestamp(0));
        w.on_record(0, &1_000, Timestamp::MIN);
        w.on_record(1, &10, Timestamp::MIN);
        assert_eq!(w.check(Timestamp(0)).watermark, Some(Timestamp(9)));
        w.on_record(0, &2_000, Timestamp::MIN);
        assert_eq!(w.check(Timestamp(10)).watermark, None);
        // Split 1 silent for 50 ms: idle, split 0 alone decides.
        w.on_record(0, &2_001, Timestamp::MIN);
        assert_eq!(w.check(Timestamp(60)).watermark, Some(Timestamp(2_000)));
        // Everything silent: the subtask goes idle.
        let up = w.check(Timestamp(200));
        assert_eq!(up.status, Some(StreamStatus::Idle));
        w.on_record(1, &3_000, Timestamp::MIN);
        assert_eq!(w.check(Timestamp(210)).status, Some(StreamStatus::Active));
    }

    #[test]
    fn finished_splits_release_the_watermark() {
        let s = WatermarkStrategy::<i64>::monotonous().with_timestamp(|v| Timestamp(*v));
        let mut w = SplitWatermarks::new(s);
        w.add_split(Timestamp(0));
        w.add_split(Timestamp(0));
        w.on_record(0, &100, Timestamp::MIN);
        assert_eq!(
            w.check(Timestamp(0)).watermark,
            None,
            "split 1 has no data yet"
        );
        w.finish_split(1);
        assert_eq!(w.check(Timestamp(0)).watermark, Some(Timestamp(99)));
        assert_eq!(w.end(), Some(Timestamp::MAX));
        assert_eq!(w.end(), None);
    }
}
