//! The Nexmark benchmark's data: an online auction site where people open
//! auctions and bid on them.
//!
//! - [`model`]: the [`Person`], [`Auction`], [`Bid`] and [`Event`] types.
//! - [`NexmarkConfig`]: the generator's parameters, with the benchmark's
//!   defaults.
//! - [`NexmarkGenerator`]: event number in, event out; a pure function, so a
//!   benchmark's hand-written loop can run over exactly the events a job sees.
//! - [`NexmarkSource`]: the generator as a source, bounded by an event count
//!   and optionally rate-limited.

mod config;
mod generator;
pub mod model;
mod source;
mod strings;

pub use config::{ExtraPadding, NexmarkConfig};
pub use generator::{
    EventKind, NexmarkGenerator, AUCTION_PROPORTION, BID_PROPORTION, FIRST_AUCTION_ID,
    FIRST_CATEGORY_ID, FIRST_PERSON_ID, PERSON_PROPORTION, TOTAL_PROPORTION,
};
pub use model::{Auction, Bid, Event, Person};
pub use source::{NexmarkReader, NexmarkSource};
