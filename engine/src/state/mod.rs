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

/// The standard size metrics of a keyed operator, plus its late-record
/// count: `late_records_dropped`, `state_entries`, `timers`.
pub fn keyed_metrics<K: crate::element::Key, N: Namespace>(
    backend: &KeyedStateBackend<K>,
    timers: &TimerService<K, N>,
    late_records_dropped: u64,
) -> Vec<(&'static str, u64)> {
    vec![
        ("late_records_dropped", late_records_dropped),
        ("state_entries", backend.entry_count() as u64),
        ("timers", timers.len() as u64),
    ]
}

/// Opens a keyed operator's state: in RocksDB when the job says so, and
/// restored (state and timers) when its subtask was restored from a
/// checkpoint or savepoint. Call it from `Operator::open`.
///
/// # Errors
/// [`crate::error::StateError::Incompatible`] when the timers do not decode
/// (states are decoded, and checked, when first used);
/// [`crate::error::StateError::Backend`] when RocksDB cannot be opened.
pub fn open_keyed<K: crate::element::Key, N: Namespace>(
    ctx: &crate::context::RuntimeContext,
    backend: &mut KeyedStateBackend<K>,
    timers: &mut TimerService<K, N>,
) -> Result<(), crate::error::StateError> {
    if ctx.state_backend() == crate::config::StateBackendKind::Rocksdb {
        backend.use_rocksdb(ctx.state_dir_for_subtask())?;
    }
    if let Some(restored) = ctx.restored_state() {
        backend.restore(restored)?;
        timers.restore(restored)?;
    }
    Ok(())
}

/// Writes a keyed operator's state and timers into a snapshot; call it from
/// `Operator::snapshot_state`.
///
/// # Errors
/// [`crate::error::StateError::Encode`] when a value cannot be encoded.
pub fn snapshot_keyed<K: crate::element::Key, N: Namespace>(
    out: &mut crate::checkpoint::StateSnapshot,
    backend: &mut KeyedStateBackend<K>,
    timers: &TimerService<K, N>,
) -> Result<(), crate::error::StateError> {
    backend.snapshot(out)?;
    timers.snapshot(out)
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
