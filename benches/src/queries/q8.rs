//! Nexmark q8, monitor new users: persons who opened an auction in the same
//! 10 s tumbling window in which they registered, once per person and
//! window.
//!
//! Engine: a window co-group of persons (by id) and auctions (by seller).
//! Loop: per window, the persons and the sellers seen, intersected when the
//! watermark passes the window's end.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use eddy::connectors::nexmark::{Event, NexmarkGenerator, Person};
use eddy::prelude::*;

use super::SharedSummary;
use crate::summary::{digest, Summary, SummarySink};

const SIZE: Duration = Duration::from_secs(10);
const SIZE_MS: i64 = 10_000;

/// q8's output: person id, name, window start.
pub type NewUser = (u64, String, i64);

fn summarize(r: &NewUser) -> (u64, u64) {
    (digest(&[r.0, r.2 as u64, r.1.len() as u64]), r.0)
}

/// Adds q8 on `events` (with event time); the results go to a summary sink
/// with uid `results`.
pub fn build(events: &DataStream<Event>) -> SharedSummary {
    // Bids are 92% of the events: drop them before the stream splits in two
    // (each branch of a split gets its own copy of every batch).
    let events = events.filter(|e| e.as_bid().is_none()).name("NoBids");
    let persons = events.flat_map(Event::into_person).name("Persons");
    let auctions = events.flat_map(Event::into_auction).name("Auctions");
    let (sink, summary) = SummarySink::new(summarize);
    persons
        .key_by(|p| p.id)
        .window_join(&auctions.key_by(|a| a.seller), TumblingEventTime::of(SIZE))
        .co_group(
            |id: &u64,
             w: &TimeWindow,
             persons: Vec<Person>,
             auctions,
             out: &mut Collector<'_, NewUser>| {
                let _: &Vec<eddy::connectors::nexmark::Auction> = &auctions;
                if let (Some(p), false) = (persons.first(), auctions.is_empty()) {
                    out.emit((*id, p.name.clone(), w.start.millis()));
                }
                Ok(())
            },
        )
        .name("NewUsers")
        .sink(sink)
        .uid("results");
    summary
}

/// Q8 as a loop over events `0..events`, with the watermark
/// `max timestamp - delay - 1` after every event.
pub fn run_loop(generator: &NexmarkGenerator, events: u64, delay: Duration) -> Summary {
    let delay = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    // Per window start: persons (id -> name) and sellers.
    let mut windows: BTreeMap<i64, (HashMap<u64, String>, HashSet<u64>)> = BTreeMap::new();
    let mut out = Summary::default();
    let mut max_ts = i64::MIN;
    let mut close = |windows: &mut BTreeMap<i64, (HashMap<u64, String>, HashSet<u64>)>,
                     watermark: i64| {
        while let Some(entry) = windows.first_entry() {
            if *entry.key() + SIZE_MS - 1 > watermark {
                break;
            }
            let (start, (persons, sellers)) = entry.remove_entry();
            for (id, name) in persons {
                if sellers.contains(&id) {
                    let (d, n) = summarize(&(id, name, start));
                    out.add(d, n);
                }
            }
        }
    };
    for n in 0..events {
        let event = generator.event(n);
        let ts = event.date_time().millis();
        max_ts = max_ts.max(ts);
        let start = ts.div_euclid(SIZE_MS) * SIZE_MS;
        match event {
            Event::Person(p) => {
                windows
                    .entry(start)
                    .or_default()
                    .0
                    .insert(p.id, p.name.clone());
            }
            Event::Auction(a) => {
                windows.entry(start).or_default().1.insert(a.seller);
            }
            Event::Bid(_) => {}
        }
        close(&mut windows, max_ts.saturating_sub(delay).saturating_sub(1));
    }
    close(&mut windows, i64::MAX);
    out
}
