//! The Nexmark data model: people who sell and bid, auctions, and bids.
//!
//! Field names follow the Nexmark benchmark (Beam / Flink editions) in
//! Rust's snake case. Money is in cents. Times are event-time
//! [`Timestamp`]s (milliseconds since the epoch).
//!
//! `Event` uses serde's default, externally tagged representation
//! (`{"Bid": {...}}`), which every serde format, bincode included, can read
//! back.

use eddy_engine::element::Timestamp;
use serde::{Deserialize, Serialize};

/// A person: registers once, then sells (auctions) and bids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Unique id, from [`FIRST_PERSON_ID`](super::FIRST_PERSON_ID) upwards.
    pub id: u64,
    /// First and last name.
    pub name: String,
    /// Email address.
    pub email_address: String,
    /// Credit card number, four groups of four digits.
    pub credit_card: String,
    /// US city.
    pub city: String,
    /// US state (two letters).
    pub state: String,
    /// When the person registered.
    pub date_time: Timestamp,
    /// Padding to reach the benchmark's average event size (empty by default).
    pub extra: String,
}

/// An auction: an item offered by a seller until it expires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auction {
    /// Unique id, from [`FIRST_AUCTION_ID`](super::FIRST_AUCTION_ID) upwards.
    pub id: u64,
    /// The item's name.
    pub item_name: String,
    /// The item's description.
    pub description: String,
    /// Starting price, in cents.
    pub initial_bid: u64,
    /// Lowest price the seller accepts, in cents (at least `initial_bid`).
    pub reserve: u64,
    /// When the auction opened.
    pub date_time: Timestamp,
    /// When the auction closes (after `date_time`).
    pub expires: Timestamp,
    /// The seller: a [`Person::id`].
    pub seller: u64,
    /// Category id, from [`FIRST_CATEGORY_ID`](super::FIRST_CATEGORY_ID),
    /// one of five.
    pub category: u64,
    /// Padding to reach the benchmark's average event size (empty by default).
    pub extra: String,
}

/// A bid on an auction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// The auction bid on: an [`Auction::id`].
    pub auction: u64,
    /// The bidder: a [`Person::id`].
    pub bidder: u64,
    /// Offered price, in cents.
    pub price: u64,
    /// Where the bid came from (`Google`, `channel-42`, …).
    pub channel: String,
    /// The URL of the bid.
    pub url: String,
    /// When the bid was made.
    pub date_time: Timestamp,
    /// Padding to reach the benchmark's average event size (empty by default).
    pub extra: String,
}

/// One Nexmark event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A new person (boxed: persons and auctions are 8% of events, and
    /// keeping them out of line makes every event, mostly bids, smaller to
    /// move through batches).
    Person(Box<Person>),
    /// A new auction (boxed, as persons).
    Auction(Box<Auction>),
    /// A bid.
    Bid(Bid),
}

impl Event {
    /// The event's event time.
    #[inline]
    pub fn date_time(&self) -> Timestamp {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }

    /// The person, if this is one.
    pub fn as_person(&self) -> Option<&Person> {
        match self {
            Event::Person(p) => Some(p.as_ref()),
            _ => None,
        }
    }

    /// The auction, if this is one.
    pub fn as_auction(&self) -> Option<&Auction> {
        match self {
            Event::Auction(a) => Some(a.as_ref()),
            _ => None,
        }
    }

    /// The bid, if this is one.
    pub fn as_bid(&self) -> Option<&Bid> {
        match self {
            Event::Bid(b) => Some(b),
            _ => None,
        }
    }

    /// The person, if this is one, by value (for `flat_map`).
    pub fn into_person(self) -> Option<Person> {
        match self {
            Event::Person(p) => Some(*p),
            _ => None,
        }
    }

    /// The auction, if this is one, by value (for `flat_map`).
    pub fn into_auction(self) -> Option<Auction> {
        match self {
            Event::Auction(a) => Some(*a),
            _ => None,
        }
    }

    /// The bid, if this is one, by value (for `flat_map`).
    pub fn into_bid(self) -> Option<Bid> {
        match self {
            Event::Bid(b) => Some(b),
            _ => None,
        }
    }
}
