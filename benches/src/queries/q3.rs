//! Nexmark q3, local item suggestion: auctions in category 10 by sellers
//! from Oregon, Idaho or California, with the seller's name, city and state.
//! An incremental (regular) join: persons and auctions meet by person id as
//! soon as both have arrived, in any order.
//!
//! Engine: a keyed co-process function keeping the person and the auctions
//! still waiting for it. Loop: the same two maps. Like Flink's regular join,
//! the state is not bounded: qualifying persons are kept for good.

use std::collections::HashMap;

use eddy::connectors::nexmark::{Auction, Event, NexmarkGenerator, Person};
use eddy::prelude::*;
use serde::{Deserialize, Serialize};

use super::SharedSummary;
use crate::summary::{digest, Summary, SummarySink};

/// q3's output.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Suggestion {
    /// Seller's name.
    pub name: String,
    /// Seller's city.
    pub city: String,
    /// Seller's state.
    pub state: String,
    /// The auction.
    pub auction: u64,
    /// The seller.
    pub seller: u64,
}

fn wanted_person(p: &Person) -> bool {
    matches!(p.state.as_str(), "OR" | "ID" | "CA")
}

fn wanted_auction(a: &Auction) -> bool {
    a.category == 10
}

fn suggestion(p: &Person, auction: u64) -> Suggestion {
    Suggestion {
        name: p.name.clone(),
        city: p.city.clone(),
        state: p.state.clone(),
        auction,
        seller: p.id,
    }
}

fn summarize(s: &Suggestion) -> (u64, u64) {
    (
        digest(&[s.seller, s.auction, s.name.len() as u64]),
        s.auction,
    )
}

const PERSON: ValueStateDesc<Person> = ValueStateDesc::new("person");
const WAITING: ListStateDesc<u64> = ListStateDesc::new("waiting-auctions");

/// Joins persons (input 1) and auctions (input 2) by seller.
#[derive(Clone)]
struct IncrementalJoin;

impl KeyedCoProcessFunction<u64, Person, Auction, Suggestion> for IncrementalJoin {
    fn process1(
        &mut self,
        p: Person,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, Suggestion>,
    ) -> UserResult {
        for auction in ctx.state(&WAITING).take()? {
            out.emit(suggestion(&p, auction));
        }
        ctx.state(&PERSON).set(p)?;
        Ok(())
    }

    fn process2(
        &mut self,
        a: Auction,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, Suggestion>,
    ) -> UserResult {
        match ctx.state(&PERSON).get()? {
            Some(p) => out.emit(suggestion(&p, a.id)),
            None => ctx.state(&WAITING).add(a.id)?,
        }
        Ok(())
    }
}

/// Adds q3 on `events`; the results go to a summary sink with uid `results`.
pub fn build(events: &DataStream<Event>) -> SharedSummary {
    // Bids are 92% of the events: drop them before the stream splits in two
    // (each branch of a split gets its own copy of every batch).
    let events = events.filter(|e| e.as_bid().is_none()).name("NoBids");
    let persons = events
        .flat_map(Event::into_person)
        .filter(wanted_person)
        .name("Persons");
    let auctions = events
        .flat_map(Event::into_auction)
        .filter(wanted_auction)
        .name("Auctions");
    let (sink, summary) = SummarySink::new(summarize);
    persons
        .key_by(|p| p.id)
        .connect(&auctions.key_by(|a| a.seller))
        .process(IncrementalJoin)
        .name("LocalItemSuggestion")
        .sink(sink)
        .uid("results");
    summary
}

/// Q3 as a loop over events `0..events`.
pub fn run_loop(generator: &NexmarkGenerator, events: u64) -> Summary {
    let mut persons: HashMap<u64, Person> = HashMap::new();
    let mut waiting: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut out = Summary::default();
    let mut emit = |s: Suggestion| {
        let (d, n) = summarize(&s);
        out.add(d, n);
    };
    for n in 0..events {
        match generator.event(n) {
            Event::Person(p) if wanted_person(&p) => {
                for auction in waiting.remove(&p.id).unwrap_or_default() {
                    emit(suggestion(&p, auction));
                }
                persons.insert(p.id, *p);
            }
            Event::Auction(a) if wanted_auction(&a) => match persons.get(&a.seller) {
                Some(p) => emit(suggestion(p, a.id)),
                None => waiting.entry(a.seller).or_default().push(a.id),
            },
            _ => {}
        }
    }
    out
}
