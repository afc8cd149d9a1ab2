//! The `clickstream_sessions` pipeline: page views on Kafka → session
//! windows per user (event time, allowed lateness, a late side output) →
//! one row per session in ClickHouse, and every late page view stored and
//! counted, exactly once.
//!
//! - A session is a user's page views with gaps under [`SESSION_GAP`]. A
//!   session window fires when the watermark passes its end; a view that
//!   arrives up to [`ALLOWED_LATENESS`] after that fires it again with the
//!   view added. Rows go to `sessions`, a `ReplacingMergeTree(views)` keyed
//!   by `(user, session_start)`: a later firing of a session replaces the
//!   earlier row, a replayed one equals it (`SELECT … FINAL`).
//! - Views later than that are late: they go to `late_page_views` (with
//!   the exactly-once sink's identity columns) and are counted in the job
//!   statistics (`late` of the `sessions` operator).

use std::collections::BTreeSet;
use std::time::Duration;

use eddy::connectors::clickhouse::{execute, ClickHouseSink};
use eddy::connectors::datagen::generate_at;
use eddy::connectors::error::ConnectorError;
use eddy::connectors::kafka::{KafkaSource, StoppingOffsets};
use eddy::prelude::*;
use serde::{Deserialize, Serialize};

use crate::kafka_input::{partition_of, Message};

/// The input topic.
pub const PAGE_VIEWS: &str = "page-views";
/// Partitions of the input topic.
pub const PARTITIONS: i32 = 4;
/// Distinct users in the generated views.
pub const USERS: u64 = 100;
/// A gap this long between two views of a user ends a session.
pub const SESSION_GAP: Duration = Duration::from_secs(5);
/// How long after a session fired a late view still updates it.
pub const ALLOWED_LATENESS: Duration = Duration::from_secs(2);
/// How far out of event-time order the generated views are.
pub const MAX_DISORDER: Duration = Duration::from_millis(500);
/// How late a straggler is: it arrives that long after its event time.
pub const STRAGGLER_DELAY: Duration = Duration::from_secs(3_600);
/// Views before this one are never stragglers (the stream warms up).
pub const FIRST_STRAGGLER: u64 = 20_000;
/// Event time of the first view, ms since the epoch.
pub const START_MS: i64 = 1_700_000_000_000;
/// Event time between two generated views, ms.
pub const STEP_MS: i64 = 10;

const LATE: OutputTag<PageView> = OutputTag::new("late-page-views");

/// One page view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageView {
    /// Who viewed.
    pub user: u64,
    /// Which page.
    pub page: u32,
    /// When, ms since the epoch.
    pub at: i64,
}

/// Where the pipeline's servers are.
pub struct Servers {
    /// Kafka bootstrap servers.
    pub kafka: String,
    /// ClickHouse HTTP URL.
    pub clickhouse: String,
}

/// View number `i`: 16 users are active at a time and the set moves on
/// every 1,000 views, so a user's views form sessions of about 25 s, and
/// sessions of one user lie minutes apart. Up to half a second out of
/// order; one in 500 views after [`FIRST_STRAGGLER`] is a straggler, an
/// hour late.
pub fn page_view(i: u64) -> PageView {
    generate_at(7, i, |i, rng| {
        let period = i / 1_000;
        let user = (period * 7 + rng.below(16)) % USERS;
        let mut at = START_MS + i as i64 * STEP_MS - rng.below(501) as i64;
        if i >= FIRST_STRAGGLER && rng.below(500) == 0 {
            at -= STRAGGLER_DELAY.as_millis() as i64;
        }
        PageView {
            user,
            page: rng.below(50) as u32,
            at,
        }
    })
}

/// The first `events` generated views (the same every time), keyed by user.
pub fn input(events: u64) -> impl Iterator<Item = Message> {
    (0..events).map(|i| {
        let v = page_view(i);
        Message {
            partition: partition_of(v.user, PARTITIONS),
            key: v.user.to_string(),
            payload: serde_json::to_vec(&v).expect("a page view encodes"),
        }
    })
}

/// One session, as a row of `sessions`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Session {
    /// Who.
    pub user: u64,
    /// Event time of the first view, ms.
    pub session_start: i64,
    /// Event time of the last view, ms.
    pub session_end: i64,
    /// Views in the session (the row's version).
    pub views: u64,
    /// Distinct pages viewed.
    pub pages: u64,
}

/// The tables the pipeline writes (created when missing).
pub const TABLES: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS sessions (user UInt64, session_start Int64, \
     session_end Int64, views UInt64, pages UInt64) \
     ENGINE = ReplacingMergeTree(views) ORDER BY (user, session_start)",
    "CREATE TABLE IF NOT EXISTS late_page_views (user UInt64, page UInt32, at Int64, \
     _eddy_batch String, _eddy_seq UInt64) \
     ENGINE = ReplacingMergeTree ORDER BY (user, at, _eddy_batch, _eddy_seq)",
];

/// The session row of one firing of a session window.
fn session_row(
    user: &u64,
    _window: &TimeWindow,
    views: Vec<PageView>,
    out: &mut Collector<'_, Session>,
) -> UserResult {
    let pages: BTreeSet<u32> = views.iter().map(|v| v.page).collect();
    out.emit(Session {
        user: *user,
        session_start: views.iter().map(|v| v.at).min().unwrap_or_default(),
        session_end: views.iter().map(|v| v.at).max().unwrap_or_default(),
        views: views.len() as u64,
        pages: pages.len() as u64,
    });
    Ok(())
}

/// Creates the tables and adds the pipeline to `env`; `stop` bounds the
/// input (a bounded run).
///
/// # Errors
/// A [`ConnectorError`] when ClickHouse cannot create the tables or the
/// Kafka source's settings are invalid.
pub fn build(
    env: &Env,
    servers: &Servers,
    stop: Option<StoppingOffsets>,
) -> Result<(), ConnectorError> {
    for table in TABLES {
        execute(&servers.clickhouse, table)?;
    }
    let mut source = KafkaSource::<PageView>::builder(&servers.kafka).topics([PAGE_VIEWS]);
    if let Some(stop) = stop {
        source = source.bounded(stop);
    }
    let sessions = env
        .source(source.build()?)
        .uid("page-views")
        .assign_timestamps(
            WatermarkStrategy::bounded_out_of_orderness(MAX_DISORDER)
                .with_timestamp(|v: &PageView| Timestamp::from_millis(v.at))
                .with_per_batch_emission(),
        )
        .key_by(|v: &PageView| v.user)
        .window(EventTimeSessions::with_gap(SESSION_GAP))
        .allowed_lateness(ALLOWED_LATENESS)
        .side_output_late_data(&LATE)
        .process(session_row)
        .uid("sessions");
    sessions
        .sink(
            ClickHouseSink::new(&servers.clickhouse, "sessions")
                .upserts()
                .exactly_once(),
        )
        .uid("sessions-table");
    sessions
        .side_output(&LATE)
        .sink(ClickHouseSink::new(&servers.clickhouse, "late_page_views").exactly_once())
        .uid("late-table");
    Ok(())
}
