//! The three pipelines of `examples/` end to end: generated input on a real
//! Kafka-compatible broker (Tansu), the job killed with SIGKILL at random
//! points at least five times and resumed from its latest checkpoint each
//! time, and at the end Redis and ClickHouse (real servers, started by
//! `scripts/services/` on free loopback ports and stopped when the test
//! ends) hold exactly what a brute-force reference computes from the input.
//!
//! The Kafka alerts topic of `fraud_alerts` is checked for loss only: Tansu
//! does not hide aborted transactions from read_committed consumers (see
//! `docs/kafka.md`).

mod common;
#[path = "../examples/fraud/mod.rs"]
mod fraud;
#[path = "common/fraud_reference.rs"]
mod fraud_reference;
// The job examples use the rest (their command-line flags).
#[allow(dead_code)]
#[path = "../examples/pipelines/kafka_input.rs"]
mod kafka_input;

#[path = "../examples/pipelines/any.rs"]
mod any;
#[path = "../examples/pipelines/cdc_materialized_view.rs"]
mod cdc_materialized_view;
#[path = "../examples/pipelines/clickstream_sessions.rs"]
mod clickstream_sessions;
#[path = "../examples/pipelines/fraud_alerts.rs"]
mod fraud_alerts;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use any::Pipeline;
use common::{resuming_config, run_killed, Service};
use eddy::connectors::clickhouse::execute;
use eddy::connectors::datagen::generate_at;
use eddy::prelude::*;
use redis::Commands;

/// The servers of one test, stopped when dropped.
struct Servers {
    kafka: Service,
    redis: Option<Service>,
    clickhouse: Option<Service>,
}

impl Servers {
    fn start(redis: bool, clickhouse: bool) -> Servers {
        Servers {
            kafka: Service::start("kafka.sh"),
            redis: redis.then(|| Service::start("redis.sh")),
            clickhouse: clickhouse.then(|| Service::start("clickhouse.sh")),
        }
    }

    fn topic(&self, name: &str, partitions: i32) {
        let dir = self.kafka.dir().display().to_string();
        self.kafka
            .run(&["topic", &dir, name, &partitions.to_string()]);
    }

    /// Creates `topic` (4 partitions) and produces `messages` to it, at
    /// most `rate` a second.
    fn input(
        &self,
        topic: &str,
        messages: impl Iterator<Item = kafka_input::Message>,
        rate: Option<f64>,
    ) {
        self.topic(topic, 4);
        kafka_input::produce(&self.kafka.addr, topic, messages, rate).expect("input produced");
    }

    fn redis(&self) -> redis::Connection {
        let server = self.redis.as_ref().expect("a Redis server");
        redis::Client::open(server.addr.as_str())
            .and_then(|c| c.get_connection())
            .expect("Redis reachable")
    }

    /// The rows `sql` selects, as tab-separated fields.
    fn select(&self, sql: &str) -> Vec<Vec<String>> {
        let server = self.clickhouse.as_ref().expect("a ClickHouse server");
        execute(&server.addr, &format!("{sql} FORMAT TabSeparated"))
            .expect("query runs")
            .lines()
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect()
    }

    /// What a child job needs to find the servers.
    fn child_env(
        &self,
        pipeline: Pipeline,
        dir: &std::path::Path,
        events: u64,
    ) -> Vec<(&str, String)> {
        let addr = |s: &Option<Service>| s.as_ref().map(|s| s.addr.clone()).unwrap_or_default();
        vec![
            ("EDDY_PIPELINE_CHILD", pipeline.job_name().to_owned()),
            ("EDDY_PIPELINE_DIR", dir.display().to_string()),
            ("EDDY_PIPELINE_EVENTS", events.to_string()),
            ("EDDY_KAFKA_ADDR", self.kafka.addr.clone()),
            ("EDDY_REDIS_URL", addr(&self.redis)),
            ("EDDY_CLICKHOUSE_URL", addr(&self.clickhouse)),
        ]
    }
}

/// The child half of the killed-process tests: the pipeline the parent
/// names in `EDDY_PIPELINE_CHILD`, bounded to its input, at parallelism 2,
/// resuming from its latest checkpoint. Does nothing without it.
#[test]
fn pipeline_child_job_resuming_from_its_latest_checkpoint() {
    let Ok(pipeline) = std::env::var("EDDY_PIPELINE_CHILD") else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap();
    let dir = PathBuf::from(var("EDDY_PIPELINE_DIR"));
    let events: u64 = var("EDDY_PIPELINE_EVENTS").parse().unwrap();
    let env = Env::with_config(resuming_config(2, &dir)).unwrap();
    let pipeline = <Pipeline as clap::ValueEnum>::value_variants()
        .iter()
        .copied()
        .find(|p| p.job_name() == pipeline)
        .expect("a pipeline's job name");
    let at = any::Endpoints {
        kafka: var("EDDY_KAFKA_ADDR"),
        redis: var("EDDY_REDIS_URL"),
        clickhouse: var("EDDY_CLICKHOUSE_URL"),
    };
    pipeline
        .build(&env, &at, pipeline.stop_after(events))
        .unwrap();
    env.execute(pipeline.job_name()).unwrap();
}

/// Runs `pipeline` on its input under five kills; returns how many landed.
fn run_under_kills(servers: &Servers, pipeline: Pipeline, events: u64, seed: u64) -> u32 {
    let dir = tempfile::tempdir().unwrap();
    let env = servers.child_env(pipeline, dir.path(), events);
    let kills = run_killed(
        "pipeline_child_job_resuming_from_its_latest_checkpoint",
        &env,
        5,
        seed,
    );
    assert_eq!(kills, 5, "every kill landed mid-run");
    kills
}

// ---------------------------------------------------------------- fraud_alerts

const FRAUD_EVENTS: u64 = 300_000;

/// The risk profile a card must end with: its last velocity window.
fn expected_profiles(payments: &[fraud::Payment]) -> BTreeMap<u64, fraud_alerts::Velocity> {
    let size = fraud_alerts::VELOCITY_SIZE.as_millis() as i64;
    let slide = fraud_alerts::VELOCITY_SLIDE.as_millis() as i64;
    let mut by_card: HashMap<u64, Vec<&fraud::Payment>> = HashMap::new();
    for p in payments {
        by_card.entry(p.card).or_default().push(p);
    }
    let mut profiles = BTreeMap::new();
    for (card, ps) in by_card {
        let last = ps.iter().map(|p| p.at.millis()).max().unwrap();
        let start = last.div_euclid(slide) * slide;
        let inside = ps
            .iter()
            .filter(|p| (start..start + size).contains(&p.at.millis()));
        let (spend_cents, count) = inside.fold((0, 0), |(s, n), p| (s + p.amount_cents, n + 1));
        profiles.insert(
            card,
            fraud_alerts::Velocity {
                card,
                window_end: start + size,
                spend_cents,
                payments: count,
            },
        );
    }
    profiles
}

#[test]
fn fraud_alerts_after_five_kills_redis_holds_every_profile_and_alert_count_exactly() {
    let servers = Servers::start(true, false);
    servers.input(
        fraud_alerts::PAYMENTS,
        fraud_alerts::input(FRAUD_EVENTS),
        None,
    );
    servers.topic(fraud_alerts::ALERTS, 1);
    let kills = run_under_kills(&servers, Pipeline::FraudAlerts, FRAUD_EVENTS, 41);

    let payments: Vec<fraud::Payment> = (0..FRAUD_EVENTS)
        .map(|i| generate_at(0, i, |i, rng| fraud::payment(i, rng, fraud_alerts::CARDS)))
        .collect();
    let alerts = fraud_reference::reference(&payments);
    assert!(
        alerts.len() > 50,
        "the input raises alerts ({})",
        alerts.len()
    );
    let mut alerts_per_card: BTreeMap<u64, i64> = BTreeMap::new();
    for a in &alerts {
        *alerts_per_card.entry(a.card).or_default() += 1;
    }

    let mut con = servers.redis();
    for (card, want) in expected_profiles(&payments) {
        let key = fraud_alerts::profile_key(card);
        let got: HashMap<String, String> = con.hgetall(&key).unwrap();
        let field = |f: &str| got.get(f).cloned().unwrap_or_default();
        assert_eq!(
            field("spend_cents"),
            want.spend_cents.to_string(),
            "{key} after {kills} kills"
        );
        assert_eq!(field("payments"), want.payments.to_string(), "{key}");
        assert_eq!(field("window_end"), want.window_end.to_string(), "{key}");
        assert_eq!(field("score"), want.score().to_string(), "{key}");
        let alerts = alerts_per_card.get(&card).map(i64::to_string);
        assert_eq!(
            got.get("alerts").cloned(),
            alerts,
            "{key}: HINCRBY alerts exact"
        );
        let ttl: i64 = con.pttl(&key).unwrap();
        assert!(
            ttl > 0 && ttl <= fraud_alerts::PROFILE_TTL_MS as i64,
            "{key} expires"
        );
    }

    let mut back: Vec<fraud::Alert> = common::read_back(
        &servers.kafka.addr,
        fraud_alerts::ALERTS,
        |back: &[fraud::Alert]| {
            let mut distinct = back.to_vec();
            distinct.sort();
            distinct.dedup();
            distinct.len() >= alerts.len()
        },
    );
    back.sort();
    back.dedup();
    assert_eq!(back, alerts, "every alert reached the alerts topic");
}

// -------------------------------------------------------- clickstream_sessions

const CLICK_EVENTS: u64 = 120_000;

type View = clickstream_sessions::PageView;
type Session = clickstream_sessions::Session;

/// The sessions `views` make: per user, views less than the gap apart.
fn sessionize<'a>(views: impl IntoIterator<Item = &'a View>) -> Vec<Session> {
    let gap = clickstream_sessions::SESSION_GAP.as_millis() as i64;
    let mut by_user: BTreeMap<u64, Vec<&View>> = BTreeMap::new();
    for v in views {
        by_user.entry(v.user).or_default().push(v);
    }
    let mut sessions = Vec::new();
    for (user, mut vs) in by_user {
        vs.sort_by_key(|v| v.at);
        for group in vs.chunk_by(|a, b| b.at - a.at < gap) {
            let pages: std::collections::BTreeSet<u32> = group.iter().map(|v| v.page).collect();
            sessions.push(Session {
                user,
                session_start: group[0].at,
                session_end: group[group.len() - 1].at,
                views: group.len() as u64,
                pages: pages.len() as u64,
            });
        }
    }
    sessions.sort();
    sessions
}

/// The views that arrive on time, and the stragglers.
fn split_stragglers(views: &[View]) -> (Vec<&View>, Vec<&View>) {
    let late_by = clickstream_sessions::STRAGGLER_DELAY.as_millis() as i64;
    let on_time = |i: usize, v: &View| {
        clickstream_sessions::START_MS + i as i64 * clickstream_sessions::STEP_MS - v.at < late_by
    };
    let mut on = Vec::new();
    let mut off = Vec::new();
    for (i, v) in views.iter().enumerate() {
        if on_time(i, v) {
            on.push(v);
        } else {
            off.push(v);
        }
    }
    (on, off)
}

/// Whether a session is (stragglers an hour older than the stream) or a
/// real one.
fn of_stragglers(s: &Session) -> bool {
    s.session_start < clickstream_sessions::START_MS - 1_000_000
}

/// The views are produced while the job runs, as live data is (10,000 a
/// second). Lateness depends on the watermark when a view arrives: a
/// straggler (an hour older than the stream) is late once any watermark
/// has passed the stream's start, which is how nearly all are found. One
/// read from a backlog before the first watermark of a run (after a
/// restart from a checkpoint taken before any watermark) is not late, as in
/// Flink: it opens a session of its own. So the check: the real sessions
/// equal the reference; every straggler is either in `late_page_views` or
/// in a straggler session, exactly once (the stragglers not stored as late
/// make exactly the straggler sessions).
#[test]
fn clickstream_sessions_after_five_kills_clickhouse_holds_every_session_and_late_view_once() {
    let servers = Servers::start(false, true);
    servers.topic(clickstream_sessions::PAGE_VIEWS, 4);
    let kills = std::thread::scope(|scope| {
        scope.spawn(|| {
            let views = clickstream_sessions::input(CLICK_EVENTS);
            kafka_input::produce(
                &servers.kafka.addr,
                clickstream_sessions::PAGE_VIEWS,
                views,
                Some(10_000.0),
            )
            .expect("input produced")
        });
        run_under_kills(&servers, Pipeline::ClickstreamSessions, CLICK_EVENTS, 43)
    });

    let views: Vec<View> = (0..CLICK_EVENTS)
        .map(clickstream_sessions::page_view)
        .collect();
    let (on_time, stragglers) = split_stragglers(&views);
    assert!(stragglers.len() > 100, "{} stragglers", stragglers.len());
    let got: Vec<Session> = servers
        .select("SELECT user, session_start, session_end, views, pages FROM sessions FINAL")
        .into_iter()
        .map(|f| Session {
            user: f[0].parse().unwrap(),
            session_start: f[1].parse().unwrap(),
            session_end: f[2].parse().unwrap(),
            views: f[3].parse().unwrap(),
            pages: f[4].parse().unwrap(),
        })
        .collect();
    let (mut of_stragglers, mut real): (Vec<Session>, Vec<Session>) =
        got.into_iter().partition(of_stragglers);
    real.sort();
    assert_eq!(
        real,
        sessionize(on_time),
        "every session exact after {kills} kills"
    );

    let mut unlate: Vec<&View> = stragglers.clone();
    let late = servers.select("SELECT user, page, at FROM late_page_views FINAL");
    for f in &late {
        let (user, page, at) = (
            f[0].parse().unwrap(),
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
        );
        let at_index = unlate
            .iter()
            .position(|v| (v.user, v.page, v.at) == (user, page, at))
            .unwrap_or_else(|| panic!("late view {f:?} is no straggler, or stored twice"));
        unlate.swap_remove(at_index);
    }
    of_stragglers.sort();
    assert_eq!(
        of_stragglers,
        sessionize(unlate),
        "the stragglers not stored as late are in sessions, once ({} of {} late)",
        late.len(),
        stragglers.len()
    );
}

// ------------------------------------------------------- cdc_materialized_view

const CDC_EVENTS: u64 = 200_000;

/// Per customer with orders left: (total cents, orders).
fn expected_totals(events: u64) -> BTreeMap<u64, (i64, i64)> {
    use eddy::connectors::format::debezium::ChangeOp;
    let mut orders: HashMap<u64, cdc_materialized_view::Order> = HashMap::new();
    for c in cdc_materialized_view::OrderChanges::default().take(events as usize) {
        match c.op {
            ChangeOp::Delete => {
                orders.remove(&c.before.unwrap().id);
            }
            _ => {
                let o = c.after.unwrap();
                orders.insert(o.id, o);
            }
        }
    }
    let mut totals: BTreeMap<u64, (i64, i64)> = BTreeMap::new();
    for o in orders.values() {
        let t = totals.entry(o.customer).or_default();
        t.0 += o.amount_cents;
        t.1 += 1;
    }
    totals
}

#[test]
fn cdc_materialized_view_after_five_kills_redis_and_clickhouse_agree_with_the_reference() {
    let servers = Servers::start(true, true);
    servers.input(
        cdc_materialized_view::ORDERS,
        cdc_materialized_view::input(CDC_EVENTS),
        None,
    );
    let kills = run_under_kills(&servers, Pipeline::CdcMaterializedView, CDC_EVENTS, 47);
    let want = expected_totals(CDC_EVENTS);

    let mut con = servers.redis();
    let keys: Vec<String> = con.keys("customer:*").unwrap();
    let mut served = BTreeMap::new();
    for key in keys {
        let h: HashMap<String, i64> = con.hgetall(&key).unwrap();
        let customer: u64 = key.trim_start_matches("customer:").parse().unwrap();
        served.insert(customer, (h["total_cents"], h["orders"]));
    }
    assert_eq!(
        served, want,
        "Redis serves the reference after {kills} kills"
    );

    let analysed: BTreeMap<u64, (i64, i64)> = servers
        .select("SELECT customer, total_cents, orders FROM customer_totals FINAL WHERE deleted = 0")
        .into_iter()
        .map(|f| {
            (
                f[0].parse().unwrap(),
                (f[1].parse().unwrap(), f[2].parse().unwrap()),
            )
        })
        .collect();
    assert_eq!(analysed, want, "ClickHouse agrees after {kills} kills");
}
