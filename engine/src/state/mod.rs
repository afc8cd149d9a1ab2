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
