//! State time-to-live: values expire a fixed processing time after they were
//! created or last written; expired values are never returned and are removed
//! when they are next touched.

use std::time::Duration;

use crate::element::Timestamp;

/// Time-to-live of a state's values, measured in processing time from the
/// last write (create or update). Expired values are never returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateTtl {
    /// How long a value lives after its last write.
    pub ttl: Duration,
}

impl StateTtl {
    /// Values expire `ttl` after their last write.
    pub const fn after_write(ttl: Duration) -> Self {
        StateTtl { ttl }
    }

    pub(crate) fn expiry(ttl: Option<StateTtl>, now: Timestamp) -> Timestamp {
        match ttl {
            Some(t) => now + t.ttl,
            None => Timestamp::MAX,
        }
    }
}

/// A stored value with its expiry time (`Timestamp::MAX` when it has no TTL).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TtlValue<V> {
    /// The value.
    pub value: V,
    /// Processing time at which it expires.
    pub expires: Timestamp,
}

impl<V> TtlValue<V> {
    /// True when the value has expired at processing time `now`.
    #[inline]
    pub fn expired(&self, now: Timestamp) -> bool {
        self.expires <= now
    }
}
