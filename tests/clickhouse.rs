//! The ClickHouse sink against a real ClickHouse server (18.16, started by
//! `scripts/services/clickhouse.sh` on a free loopback port for each test
//! and stopped when the test ends, also when it fails).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{
    assert_staging_drained, counted_windows, expected_windows, restarting_config, resuming_config,
    run_killed, windows_with_a_lost_commit, Service,
};
use eddy::connectors::clickhouse::ClickHouseSink;
use eddy::connectors::datagen::SplitMix64;
use eddy::engine::element::CheckpointId;
use eddy::prelude::*;
use serde::{Deserialize, Serialize};

/// One row of the results table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct WindowRow {
    key: u64,
    window_start: i64,
    count: u64,
}

/// Runs `sql` on the server; returns its output.
fn query(server: &Service, sql: &str) -> String {
    let mut response = ureq::post(&server.addr)
        .send(sql)
        .expect("server reachable");
    let body = response.body_mut().read_to_string().expect("text");
    assert!(response.status().is_success(), "{sql}: {body}");
    body
}

const TABLE: &str = "CREATE TABLE windows (key UInt64, window_start Int64, count UInt64, \
     _eddy_batch String, _eddy_seq UInt64) \
     ENGINE = ReplacingMergeTree ORDER BY (key, window_start, _eddy_batch, _eddy_seq)";

/// Every `(key, window_start) → count` row in `windows`, read with FINAL;
/// a row twice is a failure.
fn read_windows(server: &Service) -> BTreeMap<(u64, i64), u64> {
    let out = query(
        server,
        "SELECT key, window_start, count FROM windows FINAL FORMAT TabSeparated",
    );
    let mut rows = BTreeMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let key = (f[0].parse().unwrap(), f[1].parse().unwrap());
        assert!(
            rows.insert(key, f[2].parse().unwrap()).is_none(),
            "{key:?} twice"
        );
    }
    rows
}

fn to_row((key, window, count): (u64, TimeWindow, u64)) -> WindowRow {
    WindowRow {
        key,
        window_start: window.start.millis(),
        count,
    }
}

#[test]
fn clickhouse_exactly_once_sink_holds_every_window_once_after_injected_failures() {
    let events = 12_000;
    let want = expected_windows(events);
    let mut rng = SplitMix64::new(4);
    for parallelism in [1, 3] {
        let server = Service::start("clickhouse.sh");
        query(&server, TABLE);
        let dir = tempfile::tempdir().unwrap();
        let at: Vec<u64> = (0..3).map(|_| rng.below(events)).collect();
        let env =
            Env::with_config(restarting_config(parallelism, &dir.path().join("chk"))).unwrap();
        counted_windows(&env, events, at.clone())
            .map(to_row)
            .uid("rows")
            .sink(ClickHouseSink::new(server.addr.clone(), "windows").exactly_once())
            .uid("sink");
        let stats = env.execute("clickhouse-exactly-once").unwrap();
        // Injected failures close together can hit two subtasks in the same run
        // (one restart for both), so up to three restarts; the output must be
        // exact either way.
        assert!(
            (1..=3).contains(&stats.restarts),
            "p={parallelism}: {} restarts for failures at {at:?}",
            stats.restarts
        );
        assert_eq!(read_windows(&server), want, "p={parallelism}");
    }
}

/// A batch inserted again — as a retry or after a restore — adds only rows
/// that FINAL folds away.
#[test]
fn clickhouse_exactly_once_commits_are_idempotent() {
    let server = Service::start("clickhouse.sh");
    query(&server, TABLE);
    let sink = ClickHouseSink::<WindowRow>::new(server.addr.clone(), "windows").transactional();
    let ctx =
        RuntimeContext::standalone("sink", 0, 1, 128, Arc::new(ManualClock::new(Timestamp(0))));
    let mut writer = sink.create_writer(&ctx).unwrap();
    let mut batch: Vec<Record<WindowRow>> = (0..20)
        .map(|i| Record {
            ts: Timestamp(0),
            value: WindowRow {
                key: i % 3,
                window_start: i as i64 * 100,
                count: i,
            },
        })
        .collect();
    writer.write(&mut batch).unwrap();
    let prepared = writer.prepare(CheckpointId(1)).unwrap().expect("rows");
    sink.commit(&prepared).unwrap();
    sink.commit(&prepared).unwrap();
    assert_eq!(read_windows(&server).len(), 20);
    let all = query(&server, "SELECT count() FROM windows FORMAT TabSeparated");
    assert!(
        all.trim().parse::<u64>().unwrap() >= 20,
        "inserted twice, before merges"
    );
}

#[test]
fn clickhouse_errors_name_the_server_and_its_reason() {
    let server = Service::start("clickhouse.sh");
    let env = Env::with_config(EnvConfig::default()).unwrap();
    env.from_collection(vec![WindowRow {
        key: 1,
        window_start: 0,
        count: 1,
    }])
    .sink(ClickHouseSink::new(server.addr.clone(), "missing_table"));
    let err = env.execute("clickhouse-missing").unwrap_err().to_string();
    assert!(
        err.contains(&server.addr) && err.contains("missing_table"),
        "{err}"
    );
}

/// The child half of the killed-process test: the windowed job into the
/// exactly-once ClickHouse sink, resuming from its latest checkpoint. Runs
/// only when the parent sets `EDDY_CLICKHOUSE_CHILD`.
#[test]
fn clickhouse_child_job_resuming_from_its_latest_checkpoint() {
    let Ok(dir) = std::env::var("EDDY_CLICKHOUSE_CHILD") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let url = std::env::var("EDDY_CLICKHOUSE_URL").unwrap();
    let env = Env::with_config(resuming_config(2, &dir)).unwrap();
    counted_windows(&env, KILLED_EVENTS, Vec::new())
        .map(to_row)
        .uid("rows")
        .sink(
            ClickHouseSink::new(url, "windows")
                .max_buffered_bytes(STAGED_BYTES)
                .exactly_once(),
        )
        .uid("sink");
    env.execute("clickhouse-killed").unwrap();
}

/// Takes the rate-limited job about five seconds in all, so that five
/// kills at 200–700 ms into each run all land before it ends.
const KILLED_EVENTS: u64 = 300_000;

/// The killed job's sink holds this much in memory, so its checkpoints'
/// rows go through staging files inserted in parts: kills land mid-commit.
/// (About 6 600 rows a second of about 80 bytes, a checkpoint every 30 ms:
/// some 16 KiB per checkpoint, so even a quick one spills.)
const STAGED_BYTES: usize = 8 << 10;

#[test]
fn clickhouse_exactly_once_sink_after_five_kills_holds_every_window_once() {
    let server = Service::start("clickhouse.sh");
    query(&server, TABLE);
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("EDDY_CLICKHOUSE_CHILD", dir.path().display().to_string()),
        ("EDDY_CLICKHOUSE_URL", server.addr.clone()),
    ];
    let kills = run_killed(
        "clickhouse_child_job_resuming_from_its_latest_checkpoint",
        &env,
        5,
        37,
    );
    assert_eq!(kills, 5, "every kill landed mid-run");
    assert_eq!(
        read_windows(&server),
        expected_windows(KILLED_EVENTS),
        "after {kills} kills"
    );
    assert_staging_drained(dir.path(), "clickhouse-killed", "sink");
}

/// ClickHouse stops answering for 10 s mid-run (SIGSTOP, then SIGCONT):
/// inserts time out and are retried or fail the job, which restarts from
/// its checkpoint; read with FINAL the results are exact.
#[test]
fn clickhouse_an_outage_mid_run_leaves_the_results_exact() {
    let server = Service::start("clickhouse.sh");
    query(&server, TABLE);
    let dir = tempfile::tempdir().unwrap();
    let events = 150_000;
    let env = Env::with_config(restarting_config(2, &dir.path().join("chk"))).unwrap();
    counted_windows(&env, events, Vec::new())
        .map(to_row)
        .uid("rows")
        .sink(
            ClickHouseSink::new(server.addr.clone(), "windows")
                .timeout(Duration::from_secs(2))
                .exactly_once(),
        )
        .uid("sink");
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while std::time::Instant::now() < deadline
                && query(&server, "SELECT count() FROM windows").trim() == "0"
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            server.freeze_for(Duration::from_secs(10));
        });
        env.execute("clickhouse-outage").unwrap();
    });
    assert_eq!(
        read_windows(&server),
        expected_windows(events),
        "every window once"
    );
}

/// One row in ten has a value ClickHouse cannot parse into its Int64
/// column. Dead-letter policy: the other rows are inserted, once, and each
/// refused row is in `eddy_dead_letters` with the table and the server's
/// reply. Fail-job policy (the default): the job fails naming the table,
/// the row and the reply.
#[test]
fn clickhouse_refused_rows_go_to_the_dead_letter_table_or_fail_the_job() {
    use eddy::connectors::clickhouse::DEAD_LETTERS_TABLE;
    use eddy::connectors::rejected::OnRejected;

    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct Reading {
        n: u64,
        value: serde_json::Value,
    }
    let readings: Vec<Reading> = (0..1_000u64)
        .map(|n| Reading {
            n,
            value: if n % 10 == 3 {
                serde_json::json!("not a number")
            } else {
                serde_json::json!(n as i64 * 7)
            },
        })
        .collect();
    let server = Service::start("clickhouse.sh");
    query(
        &server,
        "CREATE TABLE readings (n UInt64, value Int64, _eddy_batch String, _eddy_seq UInt64) \
         ENGINE = ReplacingMergeTree ORDER BY (n, _eddy_batch, _eddy_seq)",
    );
    let dir = tempfile::tempdir().unwrap();
    let env = Env::with_config(restarting_config(2, &dir.path().join("chk"))).unwrap();
    env.from_collection(readings.clone())
        .sink(
            ClickHouseSink::new(server.addr.clone(), "readings")
                .on_rejected(OnRejected::DeadLetter)
                .exactly_once(),
        )
        .uid("sink");
    let stats = env.execute("clickhouse-refused").unwrap();
    assert_eq!(stats.restarts, 0, "refused rows do not fail the job");
    let good = query(&server, "SELECT count(), sum(value) FROM readings FINAL");
    let want: i64 = (0..1_000i64).filter(|n| n % 10 != 3).map(|n| n * 7).sum();
    assert_eq!(good.trim(), format!("900\t{want}"), "every good row once");
    let dead = query(
        &server,
        &format!("SELECT table, row, reason FROM {DEAD_LETTERS_TABLE} FINAL FORMAT TabSeparated"),
    );
    assert_eq!(
        dead.lines().count(),
        100,
        "every refused row kept once: {dead}"
    );
    for line in dead.lines() {
        assert!(
            line.starts_with("readings\t") && line.contains("not a number"),
            "{line}"
        );
        assert!(line.contains("Code: "), "the server's reply: {line}");
    }

    let env = Env::with_config(EnvConfig::default().with_parallelism(1)).unwrap();
    env.from_collection(readings)
        .sink(ClickHouseSink::new(server.addr.clone(), "readings").exactly_once())
        .uid("sink");
    let err = env
        .execute("clickhouse-refused-fails")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("readings refused 100 row(s)")
            && err.contains("not a number")
            && err.contains("Code: "),
        "{err}"
    );
}

/// The first commit is lost after its checkpoint completed (seven failures
/// in a row: all its retries): the job fails, and the restart inserts the
/// restored checkpoint's rows; read with FINAL, every window once.
#[test]
fn clickhouse_a_commit_lost_after_its_checkpoint_completed_is_made_by_the_restore() {
    let server = Service::start("clickhouse.sh");
    query(&server, TABLE);
    let events = 12_000;
    let sink = ClickHouseSink::new(server.addr.clone(), "windows").transactional();
    windows_with_a_lost_commit(sink, events, |windows| windows.map(to_row));
    assert_eq!(
        read_windows(&server),
        expected_windows(events),
        "every window once"
    );
}
