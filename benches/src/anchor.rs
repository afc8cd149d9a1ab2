//! The Apache Flink anchor's queries (`/work/shared/anchors/flink`) on
//! Eddy, over the same CSV input (`gen.py`), with the same watermark, and
//! with results in the column order of the anchor's CSV sinks so that its
//! `compare.py` can check them against Flink's.
//!
//! - `q_tumble`: 10 s tumbling windows per auction: count, max and sum of
//!   the price → `auction,window_start,window_end,cnt,max_price,sum_price`;
//! - `q_hop`: 10 s windows sliding by 2 s per auction: count →
//!   `auction,window_start,window_end,cnt`;
//! - `q_session`: sessions with a 5 s gap per bidder: count, first and last
//!   timestamp → `bidder,window_start,window_end,cnt,min_ts,max_ts`.
//!
//! The anchor's source (`queries/source.sql`) declares
//! `WATERMARK FOR rt AS rt - INTERVAL '<D + 1000 ms>'`: watermark = highest
//! timestamp seen − (D + 1000) ms. Eddy's bounded out-of-orderness subtracts
//! one more millisecond, so the delay here is `D + 999 ms`, which gives the
//! same watermark values. No event is late under it.
//!
//! `FileSource::csv` reads a header row naming the fields, and gen.py
//! writes none: give it a copy with the header
//! `auction,bidder,price,channel,url,ts,extra` (`benches/anchor-csv.sh`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use eddy::connectors::discard::DiscardSink;
use eddy::connectors::file::FileSource;
use eddy::engine::sink::Collected;
use eddy::prelude::*;

/// One row of gen.py's BID stream.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct AnchorBid {
    /// Auction id.
    pub auction: u64,
    /// Bidder id.
    pub bidder: u64,
    /// Price.
    pub price: u64,
    /// Channel name.
    pub channel: String,
    /// URL.
    pub url: String,
    /// Event time, epoch milliseconds.
    pub ts: i64,
    /// Padding.
    pub extra: String,
}

/// The anchor queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AnchorQuery {
    /// 10 s tumbling windows per auction: count, max(price), sum(price).
    #[value(name = "q_tumble")]
    Tumble,
    /// 10 s windows sliding by 2 s per auction: count.
    #[value(name = "q_hop")]
    Hop,
    /// Sessions (gap 5 s) per bidder: count, min(ts), max(ts).
    #[value(name = "q_session")]
    Session,
}

/// Where the results go: dropped (timing runs) or collected as CSV lines.
pub enum Output {
    /// Results are dropped by a discard sink.
    Discard,
    /// Results are formatted as CSV lines and collected, to be written to
    /// the path when the job has run.
    Csv(PathBuf, Collected<String>),
}

impl Output {
    /// Writes the collected lines, if any; returns how many.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write(&self) -> anyhow::Result<Option<usize>> {
        let Output::Csv(path, lines) = self else {
            return Ok(None);
        };
        let lines = lines.values();
        let mut text = String::with_capacity(lines.len() * 48);
        for line in &lines {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(path, text)?;
        Ok(Some(lines.len()))
    }
}

fn ms(w: &TimeWindow) -> (i64, i64) {
    (w.start.millis(), w.end.millis())
}

fn or_empty<N: std::fmt::Display>(v: Option<N>) -> String {
    v.map(|n| n.to_string()).unwrap_or_default()
}

/// Ends `stream` in the sink with uid `results`: a discard sink, or (with
/// `out`) a collection of the CSV lines `line` formats.
fn finish<T: Data>(stream: DataStream<T>, line: fn(&T) -> String, out: Option<&Path>) -> Output {
    match out {
        None => {
            stream.sink(DiscardSink::new()).uid("results");
            Output::Discard
        }
        Some(path) => {
            let (sink, lines) = CollectSink::new();
            stream
                .map(move |r| line(&r))
                .name("ToCsv")
                .sink(sink)
                .uid("results");
            Output::Csv(path.to_owned(), lines)
        }
    }
}

/// Adds `query` over the CSV at `input` (file or directory, with header).
pub fn build(
    env: &Env,
    query: AnchorQuery,
    input: &Path,
    disorder_ms: u64,
    out: Option<&Path>,
) -> Output {
    let delay = Duration::from_millis(disorder_ms + 999);
    let strategy = WatermarkStrategy::bounded_out_of_orderness(delay)
        .with_timestamp(|b: &AnchorBid| Timestamp(b.ts));
    let bids = env
        .source(FileSource::<AnchorBid>::csv(input))
        .uid("bids")
        .assign_timestamps(strategy);
    match query {
        AnchorQuery::Tumble => {
            let price = |b: &AnchorBid| b.price;
            let stream = bids
                .key_by(|b: &AnchorBid| b.auction)
                .window(TumblingEventTime::of(Duration::from_secs(10)))
                .aggregate((Count, Max::of(price), Sum::of(price)))
                .name("Tumble");
            finish(
                stream,
                |(auction, w, (cnt, max, sum))| {
                    let (start, end) = ms(w);
                    format!("{auction},{start},{end},{cnt},{},{sum}", or_empty(*max))
                },
                out,
            )
        }
        AnchorQuery::Hop => {
            let stream = bids
                .key_by(|b: &AnchorBid| b.auction)
                .window(SlidingEventTime::of(
                    Duration::from_secs(10),
                    Duration::from_secs(2),
                ))
                .aggregate(Count)
                .name("Hop");
            finish(
                stream,
                |(auction, w, cnt)| {
                    let (start, end) = ms(w);
                    format!("{auction},{start},{end},{cnt}")
                },
                out,
            )
        }
        AnchorQuery::Session => {
            let ts = |b: &AnchorBid| b.ts;
            let stream = bids
                .key_by(|b: &AnchorBid| b.bidder)
                .window(EventTimeSessions::with_gap(Duration::from_secs(5)))
                .aggregate((Count, Min::of(ts), Max::of(ts)))
                .name("Session");
            finish(
                stream,
                |(bidder, w, (cnt, min, max))| {
                    let (start, end) = ms(w);
                    format!(
                        "{bidder},{start},{end},{cnt},{},{}",
                        or_empty(*min),
                        or_empty(*max)
                    )
                },
                out,
            )
        }
    }
}
