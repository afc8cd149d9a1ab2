//! The Nexmark queries, each as an Eddy job and as a hand-written loop.
//!
//! Every job ends in a sink with uid `results`, so the runner can compare
//! the engine's result count with the loop's. The windowed queries (q5, q7,
//! q11) also end in a [`SummarySink`](crate::summary::SummarySink), whose
//! [`Summary`] (count, a total and an order-independent digest of every
//! result) must equal the loop's.
//!
//! The loops are single-threaded and process events in generator order
//! (`n = 0..events`). They keep the same watermark as the job's source —
//! highest timestamp seen, minus the delay, minus 1 ms — and emit a window
//! once the watermark reaches its last instant (`end - 1`), then everything
//! left at the end of the input.

mod q11;
mod q3;
mod q5;
mod q7;
mod q8;
mod stateless;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use eddy::connectors::nexmark::{Bid, Event, NexmarkConfig, NexmarkGenerator, NexmarkSource};
use eddy::prelude::*;

use crate::summary::Summary;

/// The queries this runner knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Query {
    /// Pass-through: every bid.
    Q0,
    /// Currency conversion: bid prices from dollars to euros.
    Q1,
    /// Selection: bids on auctions whose id is a multiple of 123.
    Q2,
    /// Local item suggestion: an incremental join of persons and auctions.
    Q3,
    /// Hot items: per sliding window, the auction(s) with the most bids.
    Q5,
    /// Highest bid: per 10 s tumbling window, the bid with the highest price.
    Q7,
    /// Monitor new users: a window join of persons and their auctions.
    Q8,
    /// User sessions: bids per bidder per session (gap 10 s).
    Q11,
}

/// Parameters of a run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Events to generate (`0..events`).
    pub events: u64,
    /// Q5's window size.
    pub size: Duration,
    /// Q5's window slide.
    pub slide: Duration,
}

impl Params {
    /// Checks the window parameters.
    ///
    /// # Errors
    /// When the slide is zero or longer than the size.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.slide.is_zero() || self.size < self.slide {
            bail!(
                "need 0 < slide <= size, got size {:?} and slide {:?}",
                self.size,
                self.slide
            );
        }
        Ok(())
    }
}

/// What the engine's job hands back to compare with the loop.
pub type SharedSummary = Arc<Mutex<Summary>>;

impl Query {
    /// True for the queries on event-time windows.
    pub fn is_windowed(self) -> bool {
        matches!(self, Query::Q5 | Query::Q7 | Query::Q8 | Query::Q11)
    }

    /// The watermark delay of the windowed queries: the generator's
    /// `max_disorder` (the source's own strategy), except for q11.
    ///
    /// Session results depend on when watermarks arrive if a record can
    /// land exactly on the end of a session the watermark has just closed
    /// (the session fires alone, instead of merging with the record, as in
    /// Flink). With the delay `max_disorder` that happens: a record may lag
    /// the newest one by exactly `max_disorder`, i.e. be one millisecond
    /// after the watermark. One more millisecond of delay rules it out, so
    /// the engine (periodic watermarks) and the loop (a watermark after
    /// every event) close the same sessions.
    pub fn watermark_delay(self, config: &NexmarkConfig) -> Duration {
        match self {
            Query::Q11 => config.max_disorder + Duration::from_millis(1),
            _ => config.max_disorder,
        }
    }

    /// Adds the query's job to `env`. Windowed queries return the handle of
    /// their result summary.
    ///
    /// # Errors
    /// When the Nexmark configuration is invalid.
    pub fn build(
        self,
        env: &Env,
        config: NexmarkConfig,
        params: &Params,
    ) -> anyhow::Result<Option<SharedSummary>> {
        let delay = self.watermark_delay(&config);
        let source = NexmarkSource::new(config)?.with_events(params.events);
        let events = env.source(source).uid("nexmark");
        let events = if self.is_windowed() {
            events.assign_timestamps(WatermarkStrategy::bounded_out_of_orderness(delay))
        } else {
            events
        };
        let bids = events.flat_map(Event::into_bid).name("Bids");
        Ok(match self {
            Query::Q0 | Query::Q1 | Query::Q2 => {
                stateless::build(self, bids);
                None
            }
            Query::Q3 => Some(q3::build(&events)),
            Query::Q5 => Some(q5::build(bids, params.size, params.slide)),
            Query::Q8 => Some(q8::build(&events)),
            Query::Q7 => Some(q7::build(bids)),
            Query::Q11 => Some(q11::build(bids)),
        })
    }

    /// The same query as a plain loop; returns the summary of its results
    /// (only the count for the stateless queries).
    pub fn run_loop(self, generator: &NexmarkGenerator, params: &Params) -> Summary {
        let delay = self.watermark_delay(generator.config());
        match self {
            Query::Q0 | Query::Q1 | Query::Q2 => {
                let mut out = Summary::default();
                for n in 0..params.events {
                    let Event::Bid(bid) = generator.event(n) else {
                        continue;
                    };
                    if stateless::on_bid(self, bid) {
                        out.add(0, 0);
                    }
                }
                out
            }
            Query::Q5 => run_windowed(
                generator,
                params.events,
                delay,
                q5::Loop::new(params.size, params.slide),
            ),
            Query::Q7 => run_windowed(generator, params.events, delay, q7::Loop::default()),
            Query::Q3 => q3::run_loop(generator, params.events),
            Query::Q8 => q8::run_loop(generator, params.events, delay),
            Query::Q11 => run_windowed(generator, params.events, delay, q11::Loop::default()),
        }
    }
}

/// A windowed query's hand-written state.
trait WindowLoop {
    /// Takes one bid (event time `bid.date_time`).
    fn add(&mut self, bid: Bid);

    /// The watermark is now `watermark` (ms): emit every window whose last
    /// instant it has reached. Called after every event, so it must be
    /// cheap when nothing is due.
    fn advance(&mut self, watermark: i64, out: &mut Summary);
}

/// Runs `query` over events `0..events` in order, with the watermark
/// `max timestamp - delay - 1` after every event and `i64::MAX` at the end.
fn run_windowed(
    generator: &NexmarkGenerator,
    events: u64,
    delay: Duration,
    mut query: impl WindowLoop,
) -> Summary {
    let delay = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    let mut out = Summary::default();
    let mut max_ts = i64::MIN;
    for n in 0..events {
        let event = generator.event(n);
        max_ts = max_ts.max(event.date_time().millis());
        if let Event::Bid(bid) = event {
            query.add(bid);
        }
        query.advance(max_ts.saturating_sub(delay).saturating_sub(1), &mut out);
    }
    query.advance(i64::MAX, &mut out);
    out
}

/// A window's summary digest and fields, shared by q5 and q11.
fn window_digest(key: u64, w: &TimeWindow, count: u64) -> u64 {
    crate::summary::digest(&[key, w.start.millis() as u64, w.end.millis() as u64, count])
}
