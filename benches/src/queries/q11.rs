//! Nexmark q11, user sessions: bids per bidder and session, sessions
//! closing after 10 s without a bid, as `(bidder, session, bids)`.
//!
//! A bid at `t` opens the session `[t, t + gap)`; sessions of a bidder that
//! overlap or touch merge (a gap of exactly 10 s keeps one session, as in
//! Flink). A session is emitted once the watermark reaches its last instant.
//!
//! Engine: `key_by(bidder)` and event-time session windows with a count.
//! Loop: per bidder its open sessions, and one timer per bidder (in a heap)
//! at or before the end of its earliest session.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::time::Duration;

use eddy::connectors::nexmark::Bid;
use eddy::prelude::*;
use hashbrown::HashMap;

use super::{window_digest, SharedSummary, WindowLoop};
use crate::summary::{Summary, SummarySink};

/// The session gap.
const GAP: Duration = Duration::from_secs(10);
const GAP_MS: i64 = 10_000;

/// `(bidder, session, bids)`: q11's output.
pub type BidderSession = (u64, TimeWindow, u64);

fn summarize(r: &BidderSession) -> (u64, u64) {
    (window_digest(r.0, &r.1, r.2), r.2)
}

/// Adds q11 on `bids`; the results go to a summary sink with uid `results`.
pub fn build(bids: DataStream<Bid>) -> SharedSummary {
    let (sink, summary) = SummarySink::new(summarize);
    bids.key_by(|b: &Bid| b.bidder)
        .window(EventTimeSessions::with_gap(GAP))
        .aggregate(Count)
        .name("BidderSessions")
        .sink(sink)
        .uid("results");
    summary
}

/// An open session `[start, end)` and its bids.
#[derive(Clone, Copy, Debug)]
struct Session {
    start: i64,
    end: i64,
    bids: u64,
}

/// A bidder's open sessions and the time of its timer in the heap.
#[derive(Default)]
struct Bidder {
    sessions: Vec<Session>,
    timer: i64,
}

/// Q11 as a loop.
#[derive(Default)]
pub struct Loop {
    bidders: HashMap<u64, Bidder>,
    /// `(time, bidder)`, earliest first. A bidder's entry is current only
    /// if its time equals `Bidder::timer`; others are stale and skipped.
    timers: BinaryHeap<Reverse<(i64, u64)>>,
}

impl WindowLoop for Loop {
    #[inline]
    fn add(&mut self, bid: Bid) {
        let ts = bid.date_time.millis();
        let mut merged = Session {
            start: ts,
            end: ts + GAP_MS,
            bids: 1,
        };
        let bidder = self.bidders.entry(bid.bidder).or_insert_with(|| Bidder {
            sessions: Vec::new(),
            timer: i64::MAX,
        });
        bidder.sessions.retain(|s| {
            let touches = s.start <= merged.end && s.end >= merged.start;
            if touches {
                merged.start = merged.start.min(s.start);
                merged.end = merged.end.max(s.end);
                merged.bids += s.bids;
            }
            !touches
        });
        bidder.sessions.push(merged);
        // The timer stays at or before the earliest session end.
        if merged.end < bidder.timer {
            bidder.timer = merged.end;
            self.timers.push(Reverse((merged.end, bid.bidder)));
        }
    }

    #[inline]
    fn advance(&mut self, watermark: i64, out: &mut Summary) {
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            if at - 1 > watermark {
                return;
            }
            self.timers.pop();
            let Some(bidder) = self.bidders.get_mut(&id) else {
                continue;
            };
            if bidder.timer != at {
                continue;
            }
            bidder.sessions.retain(|s| {
                let due = s.end - 1 <= watermark;
                if due {
                    let window = TimeWindow::new(Timestamp(s.start), Timestamp(s.end));
                    let result: BidderSession = (id, window, s.bids);
                    let (d, bids) = summarize(black_box(&result));
                    out.add(d, bids);
                }
                !due
            });
            match bidder.sessions.iter().map(|s| s.end).min() {
                Some(end) => {
                    bidder.timer = end;
                    self.timers.push(Reverse((end, id)));
                }
                None => {
                    self.bidders.remove(&id);
                }
            }
        }
    }
}
