//! Rate limiting for generator sources, in the job's processing time.
//!
//! The schedule is absolute: record `k` (counted from the first poll) is due
//! at `start + k / rate`. A reader that fell behind (backpressure, a slow
//! poll) catches up, but by at most one second's worth of records, so a long
//! stall does not turn into a long burst.

use std::time::Duration;

use eddy_engine::element::Timestamp;

/// How many records a reader may emit at a given processing time.
#[derive(Clone, Debug)]
pub(crate) struct RateLimiter {
    per_second: f64,
    /// Processing time of the first call; the schedule starts there.
    start: Option<Timestamp>,
    /// Records taken so far on the schedule (after forgiving old debt).
    taken: u64,
    /// The most records a reader may be behind schedule.
    max_burst: u64,
}

impl RateLimiter {
    /// A limiter for `per_second` records per second (must be finite and
    /// positive; the sources validate it).
    pub fn new(per_second: f64) -> Self {
        RateLimiter {
            per_second,
            start: None,
            taken: 0,
            // `as` saturates; at least one record may always be due.
            max_burst: (per_second.ceil() as u64).max(1),
        }
    }

    /// How many records may be emitted at `now`; the first call starts the
    /// schedule (and allows one record at once).
    pub fn allowance(&mut self, now: Timestamp) -> u64 {
        let start = *self.start.get_or_insert(now);
        let elapsed_ms = now.millis().saturating_sub(start.millis()).max(0) as f64;
        // Records 0..=floor(elapsed * rate) are due.
        // (Multiplying before dividing keeps whole rates exact.)
        let due = ((elapsed_ms * self.per_second / 1000.0).floor() as u64).saturating_add(1);
        if due.saturating_sub(self.taken) > self.max_burst {
            self.taken = due - self.max_burst;
        }
        due.saturating_sub(self.taken)
    }

    /// Records that `n` records were emitted.
    pub fn take(&mut self, n: u64) {
        self.taken = self.taken.saturating_add(n);
    }

    /// How long until the next record is due, from `now` (zero if it is due).
    pub fn wait(&self, now: Timestamp) -> Duration {
        let Some(start) = self.start else {
            return Duration::ZERO;
        };
        let due_ms = (self.taken as f64 * 1000.0 / self.per_second).ceil();
        let due_at = start.millis() as f64 + due_ms;
        let wait_ms = (due_at - now.millis() as f64).max(0.0);
        Duration::from_millis(wait_ms as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_record_is_due_at_once_and_then_one_per_interval() {
        let mut r = RateLimiter::new(10.0); // one per 100 ms
        assert_eq!(r.allowance(Timestamp(1_000)), 1);
        r.take(1);
        assert_eq!(r.allowance(Timestamp(1_050)), 0);
        assert_eq!(r.wait(Timestamp(1_050)), Duration::from_millis(50));
        assert_eq!(r.allowance(Timestamp(1_100)), 1);
        r.take(1);
        assert_eq!(r.allowance(Timestamp(1_350)), 2);
    }

    #[test]
    fn the_long_run_rate_matches_the_target() {
        let mut r = RateLimiter::new(2_500.0);
        let mut emitted = 0;
        for ms in 0..=10_000 {
            let n = r.allowance(Timestamp(ms));
            r.take(n);
            emitted += n;
        }
        // 2.5 per ms over 10 s, plus the record due at the start.
        assert_eq!(emitted, 25_001);
    }

    #[test]
    fn a_stall_catches_up_by_at_most_one_second_of_records() {
        let mut r = RateLimiter::new(100.0);
        let n = r.allowance(Timestamp(0));
        r.take(n);
        // Ten seconds without polling: only one second's worth is due now.
        assert_eq!(r.allowance(Timestamp(10_000)), 100);
        r.take(100);
        assert_eq!(r.allowance(Timestamp(10_000)), 0);
        assert_eq!(r.wait(Timestamp(10_000)), Duration::from_millis(10));
    }

    #[test]
    fn a_clock_going_backwards_allows_nothing_new() {
        let mut r = RateLimiter::new(1.0);
        let n = r.allowance(Timestamp(5_000));
        r.take(n);
        assert_eq!(r.allowance(Timestamp(4_000)), 0);
    }
}
