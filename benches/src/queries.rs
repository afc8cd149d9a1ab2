//! The Nexmark queries, each as an Eddy job and as a hand-written loop.
//!
//! Every job ends in a sink with uid `results`, so the runner can compare
//! the engine's result count with the loop's.

use std::hint::black_box;

use eddy::connectors::discard::DiscardSink;
use eddy::connectors::nexmark::{Bid, Event, NexmarkConfig, NexmarkGenerator, NexmarkSource};
use eddy::prelude::*;

/// The queries this runner knows.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Query {
    /// Pass-through: every bid.
    Q0,
    /// Currency conversion: bid prices from dollars to euros.
    Q1,
    /// Selection: bids on auctions whose id is a multiple of 123.
    Q2,
}

/// Q1's conversion: dollars to euros at 0.908, in integer cents.
fn to_euros(bid: Bid) -> Bid {
    Bid {
        price: bid.price * 908 / 1000,
        ..bid
    }
}

/// Q2's selection.
fn q2_selected(bid: &Bid) -> bool {
    bid.auction % 123 == 0
}

/// What Q2 outputs.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct AuctionPrice {
    /// Auction id.
    pub auction: u64,
    /// Bid price.
    pub price: u64,
}

impl Query {
    /// Adds the query's job to `env`.
    pub fn build(self, env: &Env, config: NexmarkConfig, events: u64) -> anyhow::Result<()> {
        let bids = env
            .source(NexmarkSource::new(config)?.with_events(events))
            .uid("nexmark")
            .flat_map(Event::into_bid)
            .name("Bids");
        match self {
            Query::Q0 => {
                bids.sink(DiscardSink::new()).uid("results");
            }
            Query::Q1 => {
                bids.map(to_euros)
                    .name("ToEuros")
                    .sink(DiscardSink::new())
                    .uid("results");
            }
            Query::Q2 => {
                bids.filter(q2_selected)
                    .map(|b| AuctionPrice {
                        auction: b.auction,
                        price: b.price,
                    })
                    .name("Select")
                    .sink(DiscardSink::new())
                    .uid("results");
            }
        }
        Ok(())
    }

    /// The same query as a plain loop; returns the number of results.
    pub fn run_loop(self, generator: &NexmarkGenerator, events: u64) -> u64 {
        let mut results = 0u64;
        for n in 0..events {
            let Event::Bid(bid) = generator.event(n) else {
                continue;
            };
            match self {
                Query::Q0 => {
                    black_box(&bid);
                    results += 1;
                }
                Query::Q1 => {
                    black_box(to_euros(bid));
                    results += 1;
                }
                Query::Q2 => {
                    if q2_selected(&bid) {
                        black_box(AuctionPrice {
                            auction: bid.auction,
                            price: bid.price,
                        });
                        results += 1;
                    }
                }
            }
        }
        results
    }
}
