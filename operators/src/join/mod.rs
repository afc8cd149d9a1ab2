//! Joins: connected keyed streams with co-process functions, window joins and
//! co-groups, interval joins, broadcast state, and versioned-table (temporal)
//! joins.

mod broadcast;
mod connect;
mod either;
mod interval;
mod temporal;
mod window_join;

pub use broadcast::{
    BroadcastConnected, BroadcastExt, BroadcastState, KeyedBroadcastProcessFunction,
    ReadOnlyBroadcastState,
};
pub use connect::{ConnectExt, ConnectedKeyedStreams, KeyedCoProcessFunction};
pub use either::Either;
pub use interval::{IntervalJoin, IntervalJoinExt};
pub use temporal::{TemporalJoin, TemporalJoinExt};
pub use window_join::{WindowJoin, WindowJoinExt};
