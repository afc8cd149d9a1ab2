//! Windows: half-open ranges of time `[start, end)`.

use std::fmt;

use eddy_engine::element::Timestamp;
use serde::{Deserialize, Serialize};

/// A window of time `[start, end)`. A window's results carry the timestamp
/// `end - 1`, its last instant. Global windows are `[MIN, MAX)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimeWindow {
    /// First instant in the window.
    pub start: Timestamp,
    /// First instant after the window.
    pub end: Timestamp,
}

impl TimeWindow {
    /// The window `[start, end)`.
    pub const fn new(start: Timestamp, end: Timestamp) -> Self {
        TimeWindow { start, end }
    }

    /// The one window of `GlobalWindows`, covering all time.
    pub const fn global() -> Self {
        TimeWindow {
            start: Timestamp::MIN,
            end: Timestamp::MAX,
        }
    }

    /// The last instant in the window, `end - 1` (`MAX` for the global window).
    pub fn max_timestamp(&self) -> Timestamp {
        if self.end == Timestamp::MAX {
            Timestamp::MAX
        } else {
            self.end.add_millis(-1)
        }
    }

    /// True when the windows overlap or touch (sessions merge then).
    pub fn intersects(&self, other: &TimeWindow) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &TimeWindow) -> TimeWindow {
        TimeWindow {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    /// True when `ts` lies in the window.
    pub fn contains(&self, ts: Timestamp) -> bool {
        self.start <= ts && ts < self.end
    }
}

impl fmt::Debug for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.start, self.end)
    }
}
