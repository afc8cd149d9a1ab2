//! Triggers: when a window emits its result.
//!
//! As in Flink, a trigger *fires* (emit the window's result, keep its
//! contents) or *fires and purges* (emit, then drop the contents). Every
//! window's state is dropped at its cleanup time, `end - 1 + allowed
//! lateness`, whatever the trigger.

use std::time::Duration;

/// When a window fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// When the watermark passes the window's end (default for event-time
    /// windows); again for every late record within the allowed lateness.
    EventTime,
    /// When processing time passes the window's end (default for
    /// processing-time windows).
    ProcessingTime,
    /// Every `n` records added to the window. Costs one counter update per
    /// window a record belongs to.
    Count(u64),
    /// Every `interval` of event time while the window is open (early
    /// results), and at its end.
    ContinuousEventTime(Duration),
    /// Every `interval` of processing time while the window is open, and
    /// when processing time passes its end.
    ContinuousProcessingTime(Duration),
    /// Never (default for global windows).
    Never,
    /// The inner trigger, purging the window's contents after each firing.
    /// On sliding windows the contents live in panes shared by overlapping
    /// windows, so a purge also empties the overlapping windows' share.
    Purging(Box<Trigger>),
}

impl Trigger {
    /// `Purging(self)`.
    pub fn purging(self) -> Trigger {
        Trigger::Purging(Box::new(self))
    }

    /// The trigger without its purging wrapper, and whether it purges.
    pub(crate) fn unwrap_purging(&self) -> (&Trigger, bool) {
        match self {
            Trigger::Purging(inner) => (inner.unwrap_purging().0, true),
            other => (other, false),
        }
    }
}
