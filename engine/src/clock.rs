//! Processing time. The runtime owns a [`Clock`]; all wall-clock reads in the
//! engine go through it so that tests can drive processing time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::element::Timestamp;

/// A source of processing time, shared by all tasks of a job.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Current processing time in milliseconds since the epoch.
    fn now(&self) -> Timestamp;

    /// Blocks the calling thread for `d` of this clock's time (or less when
    /// the clock is driven by a test).
    fn sleep(&self, d: Duration);
}

/// The machine's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

/// The wall clock now, ms since the epoch (whatever clock a job runs on).
pub(crate) fn wall_clock_ms() -> i64 {
    SystemClock.now().millis()
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
}

impl ManualClock {
    /// A manual clock starting at `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            now: Arc::new(AtomicI64::new(start.0)),
        }
    }

    /// Sets the time (it may not go backwards; earlier values are ignored).
    pub fn set(&self, t: Timestamp) {
        self.now.fetch_max(t.0, Ordering::SeqCst);
    }

    /// Moves the time forward by `d`.
    pub fn advance(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now.load(Ordering::SeqCst))
    }

    /// Yields briefly instead of sleeping: the test moves time.
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d.min(Duration::from_millis(1)));
    }
}
