//! Nexmark q0–q2: stateless queries on bids, each as an Eddy job and as a
//! hand-written loop. Only result counts are compared.

use std::hint::black_box;

use eddy::connectors::discard::DiscardSink;
use eddy::connectors::nexmark::Bid;
use eddy::prelude::*;

use super::Query;

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

/// Adds q0, q1 or q2 on `bids`, ending in a sink with uid `results`.
pub fn build(query: Query, bids: DataStream<Bid>) {
    match query {
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
        _ => {
            bids.sink(DiscardSink::new()).uid("results");
        }
    }
}

/// What the loop does with one bid; returns whether it is a result.
#[inline]
pub fn on_bid(query: Query, bid: Bid) -> bool {
    match query {
        Query::Q1 => {
            black_box(to_euros(bid));
            true
        }
        Query::Q2 => {
            if q2_selected(&bid) {
                black_box(AuctionPrice {
                    auction: bid.auction,
                    price: bid.price,
                });
                true
            } else {
                false
            }
        }
        _ => {
            black_box(&bid);
            true
        }
    }
}
