//! Keyed state and timers.
//!
//! State is scoped to the current key and a namespace (`()` for plain keyed
//! state, a window for window operators). Handles are obtained from a
//! descriptor — typically a `const` — so a state's name and type are declared
//! once:
//!
//! ```
//! use eddy_engine::state::ValueStateDesc;
//! use eddy_engine::element::Timestamp;
//! const SMALL_SEEN: ValueStateDesc<Timestamp> = ValueStateDesc::new("small-seen");
//! ```
//!
//! The heap backend ([`KeyedStateBackend`]) keeps typed values in hash maps,
//! one map per key group, so that checkpoints can snapshot and redistribute
//! state per key group.

mod backend;
mod handles;
#[cfg(feature = "rocksdb")]
mod rocks;
#[cfg(feature = "rocksdb")]
pub(crate) use rocks::native_to_canonical;
mod timers;
mod ttl;

pub use backend::{KeyedStateBackend, StateTable};
pub use handles::{
    AggregateFunction, AggregatingState, AggregatingStateDesc, ListState, ListStateDesc, MapState,
    MapStateDesc, ReducingState, ReducingStateDesc, StateDescriptor, StateScope, ValueState,
    ValueStateDesc,
};
pub use timers::{TimerQueue, TimerService, TimerSet};
pub use ttl::{StateTtl, TtlValue};

use std::fmt::Debug;
use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// What every keyed operator keeps: its keyed state, its timers, its count
/// of late records dropped, and the job's key groups — opened, restored,
/// snapshotted and measured the same way in every operator.
pub struct KeyedCore<K, N> {
    /// The keyed state.
    pub backend: KeyedStateBackend<K>,
    /// The event-time and processing-time timers.
    pub timers: TimerService<K, N>,
    /// Records dropped for arriving at or behind the watermark.
    pub late_dropped: u64,
    max_parallelism: usize,
}

impl<K: crate::element::Key, N: Namespace> KeyedCore<K, N> {
    /// The state and timers of the subtask `ctx` describes, empty.
    pub fn new(ctx: &crate::context::RuntimeContext) -> Self {
        KeyedCore {
            backend: KeyedStateBackend::new(ctx.key_groups(), std::sync::Arc::clone(ctx.clock())),
            timers: TimerService::default(),
            late_dropped: 0,
            max_parallelism: ctx.max_parallelism(),
        }
    }

    /// The key group `key` belongs to.
    pub fn key_group(&self, key: &K) -> crate::keygroup::KeyGroup {
        crate::keygroup::key_group_of(key, self.max_parallelism)
    }

    /// Moves the state into RocksDB when the job says so, and restores
    /// state and timers when the subtask was restored from a checkpoint or
    /// savepoint. Call it from `Operator::open`.
    ///
    /// # Errors
    /// [`crate::error::StateError::Incompatible`] when the timers do not
    /// decode (states are decoded, and checked, when first used);
    /// [`crate::error::StateError::Backend`] when RocksDB cannot be opened.
    pub fn open(
        &mut self,
        ctx: &crate::context::RuntimeContext,
    ) -> Result<(), crate::error::StateError> {
        if ctx.state_backend() == crate::config::StateBackendKind::Rocksdb {
            self.backend.use_rocksdb(ctx.state_dir_for_subtask())?;
        }
        if let Some(restored) = ctx.restored_state() {
            self.backend.restore(restored)?;
            self.timers.restore(restored)?;
        }
        Ok(())
    }

    /// Writes state and timers into a snapshot; call it from
    /// `Operator::snapshot_state`.
    ///
    /// # Errors
    /// [`crate::error::StateError::Encode`] when a value cannot be encoded.
    pub fn snapshot(
        &mut self,
        out: &mut crate::checkpoint::StateSnapshot,
    ) -> Result<(), crate::error::StateError> {
        self.backend.snapshot(out)?;
        self.timers.snapshot(out)
    }

    /// True, and counted, when a record at `ts` is late: at or behind the
    /// watermark.
    pub fn is_late(&mut self, ts: crate::element::Timestamp) -> bool {
        let late = ts <= self.timers.watermark();
        self.late_dropped += u64::from(late);
        late
    }

    /// The standard metrics of a keyed operator (`Operator::metrics`):
    /// `late_records_dropped`, `state_entries`, `timers`, and (in RocksDB)
    /// `state_bytes`.
    pub fn metrics(&self) -> Vec<(&'static str, u64)> {
        let mut metrics = vec![
            ("late_records_dropped", self.late_dropped),
            ("state_entries", self.backend.entry_count() as u64),
            ("timers", self.timers.len() as u64),
        ];
        metrics.extend(self.backend.state_bytes().map(|b| ("state_bytes", b)));
        metrics
    }
}

/// What scopes state besides the key: `()` for plain keyed state, a window
/// for window operators. Blanket-implemented.
pub trait Namespace:
    Clone + Hash + Eq + Send + Debug + Serialize + DeserializeOwned + 'static
{
}
impl<T> Namespace for T where
    T: Clone + Hash + Eq + Send + Debug + Serialize + DeserializeOwned + 'static
{
}
