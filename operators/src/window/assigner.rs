//! Window assigners: which windows a record belongs to.
//!
//! Every assigner turns into a [`WindowSpec`]: aligned windows (tumbling and
//! sliding, stored as panes of `gcd(size, slide)`), sessions (merging), or the
//! global window; in event time or processing time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use eddy_engine::element::Timestamp;
use eddy_engine::process::TimeDomain;

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// How a window operator groups records; built from an assigner.
pub struct WindowSpec<T> {
    pub(crate) scheme: Scheme<T>,
    pub(crate) domain: TimeDomain,
}

impl<T> Clone for WindowSpec<T> {
    fn clone(&self) -> Self {
        WindowSpec {
            scheme: self.scheme.clone(),
            domain: self.domain,
        }
    }
}

impl<T> fmt::Debug for WindowSpec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match &self.scheme {
            Scheme::Aligned {
                size,
                slide,
                offset,
                ..
            } => {
                format!("aligned(size {size} ms, slide {slide} ms, offset {offset} ms)")
            }
            Scheme::Session(SessionGap::Static(gap)) => format!("session(gap {gap} ms)"),
            Scheme::Session(SessionGap::Dynamic(_)) => "session(dynamic gap)".to_owned(),
            Scheme::Global => "global".to_owned(),
        };
        write!(f, "{scheme} in {:?}", self.domain)
    }
}

/// The gap of a session window.
pub(crate) enum SessionGap<T> {
    Static(i64),
    Dynamic(Arc<dyn Fn(&T) -> Duration + Send + Sync>),
}

impl<T> Clone for SessionGap<T> {
    fn clone(&self) -> Self {
        match self {
            SessionGap::Static(g) => SessionGap::Static(*g),
            SessionGap::Dynamic(f) => SessionGap::Dynamic(Arc::clone(f)),
        }
    }
}

/// The window layouts the operator knows.
pub(crate) enum Scheme<T> {
    /// Windows `[offset + k*slide, offset + k*slide + size)`, stored in panes
    /// of `pane` ms (`gcd(size, slide)`).
    Aligned {
        size: i64,
        slide: i64,
        offset: i64,
        pane: i64,
    },
    /// Sessions that merge when they touch.
    Session(SessionGap<T>),
    /// One window for everything.
    Global,
}

impl<T> Clone for Scheme<T> {
    fn clone(&self) -> Self {
        match self {
            Scheme::Aligned {
                size,
                slide,
                offset,
                pane,
            } => Scheme::Aligned {
                size: *size,
                slide: *slide,
                offset: *offset,
                pane: *pane,
            },
            Scheme::Session(g) => Scheme::Session(g.clone()),
            Scheme::Global => Scheme::Global,
        }
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Anything that can describe windows for records of type `T`.
pub trait WindowAssigner<T> {
    /// The window layout.
    fn spec(self) -> WindowSpec<T>;
}

fn aligned<T>(
    size: Duration,
    slide: Duration,
    offset: Duration,
    domain: TimeDomain,
) -> WindowSpec<T> {
    let (size, slide) = (millis(size).max(1), millis(slide).max(1));
    let offset = millis(offset).rem_euclid(slide);
    WindowSpec {
        scheme: Scheme::Aligned {
            size,
            slide,
            offset,
            pane: gcd(size, slide),
        },
        domain,
    }
}

macro_rules! aligned_assigner {
    ($(#[$doc:meta])* $name:ident, $domain:expr, tumbling) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name {
            size: Duration,
            offset: Duration,
        }

        impl $name {
            /// Windows of `size`, aligned to the epoch.
            pub fn of(size: Duration) -> Self {
                $name { size, offset: Duration::ZERO }
            }

            /// Shifts the windows by `offset` (e.g. for time zones).
            pub fn with_offset(mut self, offset: Duration) -> Self {
                self.offset = offset;
                self
            }
        }

        impl<T> WindowAssigner<T> for $name {
            fn spec(self) -> WindowSpec<T> {
                aligned(self.size, self.size, self.offset, $domain)
            }
        }
    };
    ($(#[$doc:meta])* $name:ident, $domain:expr, sliding) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name {
            size: Duration,
            slide: Duration,
            offset: Duration,
        }

        impl $name {
            /// Windows of `size`, one starting every `slide`.
            pub fn of(size: Duration, slide: Duration) -> Self {
                $name { size, slide, offset: Duration::ZERO }
            }

            /// Shifts the windows by `offset`.
            pub fn with_offset(mut self, offset: Duration) -> Self {
                self.offset = offset;
                self
            }
        }

        impl<T> WindowAssigner<T> for $name {
            fn spec(self) -> WindowSpec<T> {
                aligned(self.size, self.slide, self.offset, $domain)
            }
        }
    };
}

aligned_assigner!(
    /// Tumbling windows on event time: fixed size, no overlap.
    TumblingEventTime, TimeDomain::EventTime, tumbling
);
aligned_assigner!(
    /// Tumbling windows on processing time.
    TumblingProcessingTime, TimeDomain::ProcessingTime, tumbling
);
aligned_assigner!(
    /// Sliding windows on event time: fixed size, a new one every slide.
    /// Incremental aggregates keep one accumulator per pane of
    /// `gcd(size, slide)`, so a record costs the same for any size/slide.
    SlidingEventTime, TimeDomain::EventTime, sliding
);
aligned_assigner!(
    /// Sliding windows on processing time.
    SlidingProcessingTime, TimeDomain::ProcessingTime, sliding
);

/// Session windows on event time: a session closes after a gap without
/// records; sessions that come to touch merge.
pub struct EventTimeSessions<T> {
    gap: SessionGap<T>,
}

/// Session windows on processing time.
pub struct ProcessingTimeSessions<T> {
    gap: SessionGap<T>,
}

macro_rules! sessions {
    ($name:ident, $domain:expr) => {
        impl<T> $name<T> {
            /// Sessions with a fixed gap.
            pub fn with_gap(gap: Duration) -> Self {
                $name {
                    gap: SessionGap::Static(millis(gap).max(1)),
                }
            }

            /// Sessions whose gap each record decides.
            pub fn with_dynamic_gap(gap: impl Fn(&T) -> Duration + Send + Sync + 'static) -> Self {
                $name {
                    gap: SessionGap::Dynamic(Arc::new(gap)),
                }
            }
        }

        impl<T> WindowAssigner<T> for $name<T> {
            fn spec(self) -> WindowSpec<T> {
                WindowSpec {
                    scheme: Scheme::Session(self.gap),
                    domain: $domain,
                }
            }
        }
    };
}

sessions!(EventTimeSessions, TimeDomain::EventTime);
sessions!(ProcessingTimeSessions, TimeDomain::ProcessingTime);

/// One window per key holding every record; it fires only by its trigger
/// (the default trigger never fires: set one, e.g. `Trigger::Count`).
#[derive(Clone, Copy, Debug)]
pub struct GlobalWindows;

impl GlobalWindows {
    /// The global window assigner.
    pub fn create() -> Self {
        GlobalWindows
    }
}

impl<T> WindowAssigner<T> for GlobalWindows {
    fn spec(self) -> WindowSpec<T> {
        WindowSpec {
            scheme: Scheme::Global,
            domain: TimeDomain::EventTime,
        }
    }
}

/// For aligned windows: the start of the pane holding `ts`.
pub(crate) fn pane_start(pane: i64, offset: i64, ts: Timestamp) -> i64 {
    ts.millis().saturating_sub(offset).div_euclid(pane) * pane + offset
}
