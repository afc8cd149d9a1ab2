//! Nexmark q5, hot items: per sliding window (default size 10 s, slide
//! 2 s), the auction(s) with the most bids. Ties: every auction with the
//! window's highest count. One result `(auction, window, count)` per window
//! and top auction; windows without bids have no result.
//!
//! Engine: count bids per auction and window, then key the counts by
//! window; a keyed process function keeps the window's highest count and
//! its auctions, and emits them when the watermark passes the window's
//! last instant (the counts of a window carry that instant as timestamp
//! and arrive before the watermark that fired them).
//!
//! Loop: one count map per pane of `gcd(size, slide)` (a bid costs one map
//! update whatever the overlap); a window's counts merge its panes when it
//! is emitted, and panes no later window needs are dropped.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use eddy::connectors::nexmark::Bid;
use eddy::prelude::*;
use hashbrown::HashMap;

use super::{window_digest, SharedSummary, WindowLoop};
use crate::summary::{Summary, SummarySink};

/// `(auction, window, bids)`: a window's count for one auction, and q5's
/// output.
pub type AuctionCount = (u64, TimeWindow, u64);

/// Per window: the highest count so far and the auctions that have it.
const TOP: ValueStateDesc<(u64, Vec<u64>)> = ValueStateDesc::new("top-auctions");

/// Keyed by window: keeps the top auctions, emits them at the window's end.
#[derive(Clone, Copy, Debug)]
struct HotItems;

impl KeyedProcessFunction<TimeWindow, AuctionCount, AuctionCount> for HotItems {
    fn process(
        &mut self,
        (auction, window, count): AuctionCount,
        ctx: &mut KeyedContext<'_, TimeWindow>,
        _out: &mut Collector<'_, AuctionCount>,
    ) -> UserResult {
        let mut top = ctx.state(&TOP);
        match top.get()? {
            None => {
                top.set((count, vec![auction]))?;
                ctx.timers().register_event_time(window.max_timestamp());
            }
            Some((max, _)) if count > max => top.set((count, vec![auction]))?,
            Some((max, mut auctions)) if count == max => {
                auctions.push(auction);
                top.set((max, auctions))?;
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _at: Timestamp,
        ctx: &mut KeyedContext<'_, TimeWindow>,
        out: &mut Collector<'_, AuctionCount>,
    ) -> UserResult {
        let window = *ctx.key();
        if let Some((max, auctions)) = ctx.state(&TOP).take()? {
            for auction in auctions {
                out.emit((auction, window, max));
            }
        }
        Ok(())
    }
}

fn summarize(r: &AuctionCount) -> (u64, u64) {
    (window_digest(r.0, &r.1, r.2), r.2)
}

/// Adds q5 on `bids`; the results go to a summary sink with uid `results`.
pub fn build(bids: DataStream<Bid>, size: Duration, slide: Duration) -> SharedSummary {
    let (sink, summary) = SummarySink::new(summarize);
    bids.key_by(|b: &Bid| b.auction)
        .window(SlidingEventTime::of(size, slide))
        .aggregate(Count)
        .name("AuctionBids")
        .key_by(|r: &AuctionCount| r.1)
        .process(HotItems)
        .name("HotItems")
        .sink(sink)
        .uid("results");
    summary
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Q5 as a loop: bid counts per pane and auction.
pub struct Loop {
    size: i64,
    slide: i64,
    pane: i64,
    /// Pane start → bids per auction.
    panes: BTreeMap<i64, HashMap<u64, u64>>,
    /// End of the last window emitted.
    last_end: Option<i64>,
    /// End of the next window to emit, if any pane is kept.
    next_end: Option<i64>,
    /// A window's counts while it is emitted (kept to reuse its memory).
    merged: HashMap<u64, u64>,
    /// Emptied pane maps, for reuse.
    spare: Vec<HashMap<u64, u64>>,
}

impl Loop {
    /// Windows of `size`, one every `slide`, aligned to the epoch.
    pub fn new(size: Duration, slide: Duration) -> Self {
        let (size, slide) = (millis(size), millis(slide));
        Loop {
            size,
            slide,
            pane: gcd(size, slide),
            panes: BTreeMap::new(),
            last_end: None,
            next_end: None,
            merged: HashMap::new(),
            spare: Vec::new(),
        }
    }

    /// The smallest window end `>= at` (window ends are `k * slide + size`).
    fn end_at_or_after(&self, at: i64) -> i64 {
        at + (self.size - at).rem_euclid(self.slide)
    }

    /// The next window to emit: the first not yet emitted that holds the
    /// oldest kept pane (panes older than every unemitted window are gone).
    fn compute_next_end(&self) -> Option<i64> {
        let (&first, _) = self.panes.first_key_value()?;
        let mut at = first + self.pane;
        if let Some(last) = self.last_end {
            at = at.max(last + self.slide);
        }
        Some(self.end_at_or_after(at))
    }

    fn emit(&mut self, end: i64, out: &mut Summary) {
        let start = end - self.size;
        self.merged.clear();
        for counts in self.panes.range(start..end).map(|(_, c)| c) {
            for (&auction, &n) in counts {
                *self.merged.entry(auction).or_insert(0) += n;
            }
        }
        let max = self.merged.values().copied().max().unwrap_or(0);
        let window = TimeWindow::new(Timestamp(start), Timestamp(end));
        for (&auction, &n) in &self.merged {
            if n == max {
                let result: AuctionCount = (auction, window, n);
                let (d, total) = summarize(black_box(&result));
                out.add(d, total);
            }
        }
        self.last_end = Some(end);
        // The next window starts at `start + slide`: older panes are done.
        let keep_from = start + self.slide;
        while let Some(entry) = self.panes.first_entry() {
            if *entry.key() >= keep_from {
                break;
            }
            let mut map = entry.remove();
            map.clear();
            self.spare.push(map);
        }
    }
}

impl WindowLoop for Loop {
    #[inline]
    fn add(&mut self, bid: Bid) {
        let ts = bid.date_time.millis();
        let pane = ts.div_euclid(self.pane) * self.pane;
        let spare = &mut self.spare;
        let mut created = false;
        let counts = self.panes.entry(pane).or_insert_with(|| {
            created = true;
            spare.pop().unwrap_or_default()
        });
        *counts.entry(bid.auction).or_insert(0) += 1;
        if created {
            // A new pane may hold the next window to emit.
            self.next_end = self.compute_next_end();
        }
    }

    #[inline]
    fn advance(&mut self, watermark: i64, out: &mut Summary) {
        while let Some(end) = self.next_end {
            if end - 1 > watermark {
                return;
            }
            self.emit(end, out);
            self.next_end = self.compute_next_end();
        }
    }
}
