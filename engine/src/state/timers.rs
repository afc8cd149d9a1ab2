//! Timers per (key, namespace, time), deduplicated, fired in time order.
//!
//! Timers of equal time fire in registration order. A timer registered for a
//! time at or below the current watermark fires with the next watermark.
//! A due group of equal-time timers is handed out whole; deleting one of them
//! from inside another's callback at that same time does not stop it.

use std::collections::BTreeMap;

use hashbrown::DefaultHashBuilder;

/// The timers due at one instant, in registration order.
pub type TimerSet<K, N> = indexmap::IndexSet<(K, N), DefaultHashBuilder>;

use crate::checkpoint::restore::RestoredState;
use crate::checkpoint::snapshot::{decode_value, frames, incompatible, StateSnapshot};
use crate::checkpoint::Redistribution;
use crate::element::{Key, Timestamp};
use crate::error::StateError;
use crate::keygroup::{key_hash, KeyGroup};
use crate::state::Namespace;

/// A timer as stored: domain (0 event, 1 processing), time, key, namespace.
/// With its key's hash.
type HashedTimer<'a, K, N> = (u64, (u8, Timestamp, &'a K, &'a N));

/// Name under which timers are stored in snapshots.
const TIMERS: &str = "@timers";

/// Name of the list state holding each subtask's event-time watermark.
const WATERMARK: &str = "@watermark";

/// One queue of timers (event time or processing time).
pub struct TimerQueue<K, N> {
    by_time: BTreeMap<Timestamp, TimerSet<K, N>>,
    len: usize,
}

impl<K: Key, N: Namespace> Default for TimerQueue<K, N> {
    fn default() -> Self {
        TimerQueue {
            by_time: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<K: Key, N: Namespace> TimerQueue<K, N> {
    /// Registers a timer; returns false when it was already registered.
    pub fn register(&mut self, time: Timestamp, key: K, ns: N) -> bool {
        let fresh = self.by_time.entry(time).or_default().insert((key, ns));
        self.len += usize::from(fresh);
        fresh
    }

    /// Deletes a timer; returns false when there was none.
    pub fn delete(&mut self, time: Timestamp, key: &K, ns: &N) -> bool {
        let Some(set) = self.by_time.get_mut(&time) else {
            return false;
        };
        let removed = set.shift_remove(&(key.clone(), ns.clone()));
        if set.is_empty() {
            self.by_time.remove(&time);
        }
        self.len -= usize::from(removed);
        removed
    }

    /// The time of the earliest timer.
    pub fn next_time(&self) -> Option<Timestamp> {
        self.by_time.keys().next().copied()
    }

    /// Removes and returns every timer of the earliest time, if that time is
    /// at or before `up_to`.
    pub fn pop_due(&mut self, up_to: Timestamp) -> Option<(Timestamp, TimerSet<K, N>)> {
        let first = self.by_time.first_entry()?;
        if *first.key() > up_to {
            return None;
        }
        let (time, set) = first.remove_entry();
        self.len -= set.len();
        Some((time, set))
    }

    /// Number of registered timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no timer is registered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every timer, in time order.
    pub fn iter(&self) -> impl Iterator<Item = (Timestamp, &K, &N)> {
        self.by_time
            .iter()
            .flat_map(|(t, set)| set.iter().map(move |(k, n)| (*t, k, n)))
    }
}

/// The event-time and processing-time timers of one keyed operator subtask,
/// and its event-time clock: the watermark it has seen.
///
/// The watermark is part of the checkpoint. A restored operator starts from
/// the lowest watermark its old subtasks had (the upstream watermarks start
/// again from the bottom), so a record that was late before a crash is late
/// after it too, instead of reopening windows whose state was already
/// fired and dropped. The end-of-input watermark is not kept: a job
/// restored from its end-of-input snapshot reads input that watermark said
/// nothing about.
pub struct TimerService<K, N> {
    /// Timers that fire when the watermark passes them.
    pub event: TimerQueue<K, N>,
    /// Timers that fire when processing time passes them.
    pub processing: TimerQueue<K, N>,
    watermark: Timestamp,
}

impl<K: Key, N: Namespace> Default for TimerService<K, N> {
    fn default() -> Self {
        TimerService {
            event: TimerQueue::default(),
            processing: TimerQueue::default(),
            watermark: Timestamp::MIN,
        }
    }
}

impl<K: Key, N: Namespace> TimerService<K, N> {
    /// Total number of timers of both kinds.
    pub fn len(&self) -> usize {
        self.event.len() + self.processing.len()
    }

    /// True when no timer of either kind is registered.
    pub fn is_empty(&self) -> bool {
        self.event.is_empty() && self.processing.is_empty()
    }

    /// The current event-time watermark (`Timestamp::MIN` before the first).
    pub fn watermark(&self) -> Timestamp {
        self.watermark
    }

    /// Takes a watermark from upstream; returns the operator's watermark,
    /// which never goes back (after a restore, upstream starts lower).
    pub fn advance_watermark(&mut self, watermark: Timestamp) -> Timestamp {
        self.watermark = self.watermark.max(watermark);
        self.watermark
    }

    /// Writes every timer, per key group, into `out`.
    ///
    /// # Errors
    /// [`StateError::Encode`] when a key or namespace cannot be encoded.
    pub fn snapshot(&self, out: &mut StateSnapshot) -> Result<(), StateError> {
        let max = out.max_parallelism() as u64;
        let mut by_group: BTreeMap<KeyGroup, Vec<HashedTimer<'_, K, N>>> = BTreeMap::new();
        for (domain, queue) in [(0u8, &self.event), (1, &self.processing)] {
            for (time, key, ns) in queue.iter() {
                let hash = key_hash(key);
                by_group
                    .entry((hash % max) as KeyGroup)
                    .or_default()
                    .push((hash, (domain, time, key, ns)));
            }
        }
        let type_name = std::any::type_name::<(K, N)>();
        for (kg, entries) in by_group {
            out.keyed_group(TIMERS, type_name, kg, entries)?;
        }
        let kept = (self.watermark != Timestamp::MAX).then_some(self.watermark);
        out.list(WATERMARK, Redistribution::Union, kept)
    }

    /// Registers this subtask's share of the restored timers.
    ///
    /// # Errors
    /// [`StateError::Incompatible`] when they do not decode as this service's
    /// key and namespace types.
    pub fn restore(&mut self, restored: &RestoredState) -> Result<(), StateError> {
        let watermarks = restored.list::<Timestamp>(WATERMARK)?;
        if let Some(lowest) = watermarks.into_iter().min() {
            self.watermark = self.watermark.max(lowest);
        }
        let Some(state) = restored.keyed(TIMERS) else {
            return Ok(());
        };
        for (_, bytes) in &state.groups {
            for frame in frames(bytes) {
                let (_, _, body) = frame.map_err(|()| {
                    incompatible::<(K, N)>(TIMERS, &state.type_name, "truncated entry")
                })?;
                let (domain, time, key, ns): (u8, Timestamp, K, N) =
                    decode_value(TIMERS, &state.type_name, body)?;
                let queue = if domain == 0 {
                    &mut self.event
                } else {
                    &mut self.processing
                };
                queue.register(time, key, ns);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::CheckpointId;

    fn snapshot_at(watermark: Timestamp) -> StateSnapshot {
        let mut timers = TimerService::<u32, ()>::default();
        timers.advance_watermark(watermark);
        let mut out = StateSnapshot::new(CheckpointId(1), 8);
        timers.snapshot(&mut out).unwrap();
        out
    }

    #[test]
    fn the_watermark_is_restored_as_the_lowest_of_the_old_subtasks_and_never_goes_back() {
        let snapshots = vec![snapshot_at(Timestamp(50)), snapshot_at(Timestamp(30))];
        let restored = RestoredState::from_snapshots(snapshots, 0, 1, 8);
        let mut timers = TimerService::<u32, ()>::default();
        timers.restore(&restored).unwrap();
        assert_eq!(timers.watermark(), Timestamp(30));
        assert_eq!(timers.advance_watermark(Timestamp(10)), Timestamp(30));
        assert_eq!(timers.advance_watermark(Timestamp(40)), Timestamp(40));

        let ended = RestoredState::from_snapshots(vec![snapshot_at(Timestamp::MAX)], 0, 1, 8);
        let mut timers = TimerService::<u32, ()>::default();
        timers.restore(&ended).unwrap();
        assert_eq!(
            timers.watermark(),
            Timestamp::MIN,
            "end of input is not kept"
        );
    }

    #[test]
    fn timers_are_deduplicated_and_fire_in_time_then_registration_order() {
        let mut q = TimerQueue::<u32, ()>::default();
        assert!(q.register(Timestamp(20), 1, ()));
        assert!(q.register(Timestamp(10), 2, ()));
        assert!(q.register(Timestamp(20), 3, ()));
        assert!(!q.register(Timestamp(20), 1, ()), "duplicate");
        assert_eq!(q.len(), 3);
        assert!(q.pop_due(Timestamp(9)).is_none());
        let (t, keys) = q.pop_due(Timestamp(25)).unwrap();
        assert_eq!(
            (t, keys.into_iter().collect::<Vec<_>>()),
            (Timestamp(10), vec![(2, ())])
        );
        let (t, keys) = q.pop_due(Timestamp(25)).unwrap();
        assert_eq!(t, Timestamp(20));
        assert_eq!(
            keys.into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn deleted_timers_do_not_fire() {
        let mut q = TimerQueue::<u32, ()>::default();
        q.register(Timestamp(5), 1, ());
        assert!(q.delete(Timestamp(5), &1, &()));
        assert!(!q.delete(Timestamp(5), &1, &()));
        assert!(q.pop_due(Timestamp::MAX).is_none());
        assert_eq!(q.len(), 0);
    }
}
