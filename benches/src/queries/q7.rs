//! Nexmark q7, highest bid: per 10 s tumbling window, the bid with the
//! highest price, as `((), window, bid)`.
//!
//! Ties are broken so that the engine and the loop agree whatever order
//! bids arrive in: the higher price wins, then the lower auction id, then
//! the lower bidder id, then the earlier timestamp. (Nexmark's SQL form
//! joins back and emits every bid with the highest price; this form emits
//! one.) Bids equal in all four are the same result for the summary.
//!
//! Engine: `window_all` (one subtask) with a reduce. Loop: the best bid per
//! window start.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use eddy::connectors::nexmark::Bid;
use eddy::prelude::*;

use super::{SharedSummary, WindowLoop};
use crate::summary::{digest, Summary, SummarySink};

/// The window size.
const SIZE: Duration = Duration::from_secs(10);
const SIZE_MS: i64 = 10_000;

/// q7's output: the highest bid of a window.
pub type HighestBid = ((), TimeWindow, Bid);

/// The order of bids: greater is better (see the module docs for ties).
fn rank(x: &Bid) -> (u64, Reverse<u64>, Reverse<u64>, Reverse<Timestamp>) {
    (
        x.price,
        Reverse(x.auction),
        Reverse(x.bidder),
        Reverse(x.date_time),
    )
}

/// The better of two bids.
fn higher(a: Bid, b: Bid) -> Bid {
    if rank(&b) > rank(&a) {
        b
    } else {
        a
    }
}

fn summarize(r: &HighestBid) -> (u64, u64) {
    let (_, w, bid) = r;
    let d = digest(&[
        w.start.millis() as u64,
        w.end.millis() as u64,
        bid.price,
        bid.auction,
        bid.bidder,
        bid.date_time.millis() as u64,
    ]);
    (d, bid.price)
}

/// Adds q7 on `bids`; the results go to a summary sink with uid `results`.
pub fn build(bids: DataStream<Bid>) -> SharedSummary {
    let (sink, summary) = SummarySink::new(summarize);
    bids.window_all(TumblingEventTime::of(SIZE))
        .reduce(higher)
        .name("HighestBid")
        .sink(sink)
        .uid("results");
    summary
}

/// Q7 as a loop: the best bid per window start.
#[derive(Default)]
pub struct Loop {
    best: BTreeMap<i64, Bid>,
    /// Last instant of the oldest open window.
    next_due: Option<i64>,
}

impl WindowLoop for Loop {
    #[inline]
    fn add(&mut self, bid: Bid) {
        let start = bid.date_time.millis().div_euclid(SIZE_MS) * SIZE_MS;
        match self.best.get_mut(&start) {
            Some(best) => {
                if rank(&bid) > rank(best) {
                    *best = bid;
                }
            }
            None => {
                self.best.insert(start, bid);
                let due = start + SIZE_MS - 1;
                self.next_due = Some(self.next_due.map_or(due, |d| d.min(due)));
            }
        }
    }

    #[inline]
    fn advance(&mut self, watermark: i64, out: &mut Summary) {
        match self.next_due {
            Some(due) if due <= watermark => {}
            _ => return,
        }
        while let Some(entry) = self.best.first_entry() {
            let start = *entry.key();
            if start + SIZE_MS - 1 > watermark {
                break;
            }
            let bid = entry.remove();
            let window = TimeWindow::new(Timestamp(start), Timestamp(start + SIZE_MS));
            let result: HighestBid = ((), window, bid);
            let (d, price) = summarize(black_box(&result));
            out.add(d, price);
        }
        self.next_due = self
            .best
            .first_key_value()
            .map(|(start, _)| start + SIZE_MS - 1);
    }
}
