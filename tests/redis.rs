//! The Redis sink against a real Redis server (started by
//! `scripts/services/redis.sh` on a free loopback port for each test and
//! stopped when the test ends, also when it fails).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{
    assert_staging_drained, counted_windows, expected_windows, restarting_config, resuming_config,
    run_killed, windows_with_a_lost_commit, Service,
};
use eddy::connectors::datagen::SplitMix64;
use eddy::connectors::redis::{RedisCommand, RedisSink};
use eddy::engine::element::CheckpointId;
use eddy::prelude::*;
use redis::Commands;

/// A Redis server of our own: started on a free port, stopped on drop.
fn start_redis() -> Service {
    Service::start("redis.sh")
}

fn connection(server: &Service) -> redis::Connection {
    redis::Client::open(server.addr.as_str())
        .and_then(|c| c.get_connection())
        .expect("connected")
}

/// Commands for one window count: a running total per key (HINCRBY) and
/// an entry per window in a stream (XADD) — neither idempotent.
fn commands((key, window, count): &(u64, TimeWindow, u64)) -> Vec<RedisCommand> {
    vec![
        RedisCommand::HIncrBy {
            key: "totals".into(),
            field: key.to_string(),
            by: *count as i64,
        },
        RedisCommand::XAdd {
            key: "windows".into(),
            fields: vec![
                ("key".into(), key.to_string()),
                ("start".into(), window.start.millis().to_string()),
                ("count".into(), count.to_string()),
            ],
        },
    ]
}

#[test]
fn redis_exactly_once_sink_applies_every_window_once_after_injected_failures() {
    let events = 12_000;
    let want = expected_windows(events);
    let mut totals_want: BTreeMap<String, i64> = BTreeMap::new();
    for ((key, _), count) in &want {
        *totals_want.entry(key.to_string()).or_default() += *count as i64;
    }
    let mut rng = SplitMix64::new(3);
    for parallelism in [1, 3] {
        let server = start_redis();
        let dir = tempfile::tempdir().unwrap();
        let at: Vec<u64> = (0..3).map(|_| rng.below(events)).collect();
        let env =
            Env::with_config(restarting_config(parallelism, &dir.path().join("chk"))).unwrap();
        counted_windows(&env, events, at.clone())
            .sink(RedisSink::new(server.addr.clone(), commands).exactly_once())
            .uid("sink");
        let stats = env.execute("redis-exactly-once").unwrap();
        // Injected failures close together can hit two subtasks in the same run
        // (one restart for both), so up to three restarts; the output must be
        // exact either way.
        assert!(
            (1..=3).contains(&stats.restarts),
            "p={parallelism}: {} restarts for failures at {at:?}",
            stats.restarts
        );
        let mut con = connection(&server);
        let totals: BTreeMap<String, i64> = con.hgetall("totals").unwrap();
        assert_eq!(
            totals, totals_want,
            "p={parallelism}: HINCRBY once per window"
        );
        let windows: usize = redis::cmd("XLEN").arg("windows").query(&mut con).unwrap();
        assert_eq!(windows, want.len(), "p={parallelism}: XADD once per window");
        let sink = stats.operator("sink").unwrap();
        assert!(sink.metric("commits") > 0, "commits are counted: {stats}");
        assert!(sink.name.contains("RedisSink"), "{}", sink.name);
    }
}

/// A checkpoint's commands committed again — by the same sink, and by a
/// new one as after a restart — apply once.
#[test]
fn redis_exactly_once_commits_are_idempotent_across_restarts() {
    for buffered in [1 << 20, 100] {
        commit_twice_and_after_a_restart(buffered);
    }
}

/// The idempotence test with `buffered` bytes of commands in memory (at
/// 100, each checkpoint's are staged in a file and applied in parts).
fn commit_twice_and_after_a_restart(buffered: usize) {
    let server = start_redis();
    let sink = || {
        RedisSink::new(server.addr.clone(), |v: &i64| {
            vec![RedisCommand::XAdd {
                key: "log".into(),
                fields: vec![("v".into(), v.to_string())],
            }]
        })
        .name("idempotence")
        .max_buffered_bytes(buffered)
        .transactional()
    };
    let staging = tempfile::tempdir().unwrap();
    let ctx =
        RuntimeContext::standalone("sink", 0, 1, 128, Arc::new(ManualClock::new(Timestamp(0))))
            .with_staging_root(staging.path().to_path_buf());
    let first = sink();
    let mut writer = first.create_writer(&ctx).unwrap();
    let mut batch: Vec<Record<i64>> = (1..=10)
        .map(|v| Record {
            ts: Timestamp(0),
            value: v,
        })
        .collect();
    writer.write(&mut batch).unwrap();
    let epoch1 = writer.prepare(CheckpointId(1)).unwrap().expect("commands");
    let mut batch = vec![Record {
        ts: Timestamp(0),
        value: 100,
    }];
    writer.write(&mut batch).unwrap();
    let epoch2 = writer.prepare(CheckpointId(2)).unwrap().expect("commands");
    first.commit(&epoch1).unwrap();
    first.commit(&epoch1).unwrap();
    let restarted = sink();
    restarted.commit(&epoch1).unwrap();
    restarted.commit(&epoch2).unwrap();
    restarted.commit(&epoch2).unwrap();
    let log: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("log")
        .arg("-")
        .arg("+")
        .query(&mut connection(&server))
        .unwrap();
    let values: Vec<&str> = log.iter().map(|(_, f)| f[0].1.as_str()).collect();
    let want: Vec<String> = (1..=10).chain([100]).map(|v| v.to_string()).collect();
    assert_eq!(
        values, want,
        "each entry once, in order (buffer {buffered})"
    );
}

#[test]
fn redis_at_least_once_sink_writes_every_record_and_names_an_unreachable_server() {
    let server = start_redis();
    let env = Env::with_config(EnvConfig::default().with_parallelism(2)).unwrap();
    env.from_collection((0..300u64).collect())
        .sink(RedisSink::new(server.addr.clone(), |v: &u64| {
            vec![RedisCommand::Set {
                key: format!("k{v}"),
                value: (v * 2).to_string(),
                ttl_ms: None,
            }]
        }));
    env.execute("redis-at-least-once").unwrap();
    let mut con = connection(&server);
    for v in [0u64, 17, 299] {
        let got: u64 = con.get(format!("k{v}")).unwrap();
        assert_eq!(got, v * 2);
    }
    let keys: Vec<String> = con.keys("k*").unwrap();
    assert_eq!(keys.len(), 300);

    let gone = "redis://127.0.0.1:1".to_owned();
    let env = Env::with_config(EnvConfig::default()).unwrap();
    env.from_collection(vec![1u64])
        .sink(RedisSink::new(gone.clone(), |_: &u64| Vec::new()).timeout(Duration::from_secs(2)));
    let err = env.execute("redis-down").unwrap_err().to_string();
    assert!(err.contains(&gone) && err.contains("server is up"), "{err}");
}

/// The child half of the killed-process test: the windowed job into the
/// exactly-once Redis sink, resuming from its latest checkpoint. Runs only
/// when the parent sets `EDDY_REDIS_CHILD`.
#[test]
fn redis_child_job_resuming_from_its_latest_checkpoint() {
    let Ok(dir) = std::env::var("EDDY_REDIS_CHILD") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let url = std::env::var("EDDY_REDIS_URL").unwrap();
    let env = Env::with_config(resuming_config(2, &dir)).unwrap();
    counted_windows(&env, KILLED_EVENTS, Vec::new())
        .sink(
            RedisSink::new(url, commands)
                .max_buffered_bytes(STAGED_BYTES)
                .exactly_once(),
        )
        .uid("sink");
    env.execute("redis-killed").unwrap();
}

/// Takes the rate-limited job about five seconds in all, so that five
/// kills at 200–700 ms into each run all land before it ends.
const KILLED_EVENTS: u64 = 300_000;

/// The killed job's sink holds this much in memory, so its checkpoints'
/// commands go through staging files applied in many scripts: kills land
/// mid-commit, and the replay must resume after the last applied script.
const STAGED_BYTES: usize = 8 << 10;

#[test]
fn redis_exactly_once_sink_after_five_kills_holds_every_window_once() {
    let server = start_redis();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("EDDY_REDIS_CHILD", dir.path().display().to_string()),
        ("EDDY_REDIS_URL", server.addr.clone()),
    ];
    let kills = run_killed(
        "redis_child_job_resuming_from_its_latest_checkpoint",
        &env,
        5,
        31,
    );
    assert_eq!(kills, 5, "every kill landed mid-run");
    let want = expected_windows(KILLED_EVENTS);
    let mut totals_want: BTreeMap<String, i64> = BTreeMap::new();
    for ((key, _), count) in &want {
        *totals_want.entry(key.to_string()).or_default() += *count as i64;
    }
    let mut con = connection(&server);
    let totals: BTreeMap<String, i64> = con.hgetall("totals").unwrap();
    assert_eq!(totals, totals_want, "HINCRBY exact after {kills} kills");
    let windows: usize = redis::cmd("XLEN").arg("windows").query(&mut con).unwrap();
    assert_eq!(
        windows,
        want.len(),
        "XADD once per window after {kills} kills"
    );
    assert_staging_drained(dir.path(), "redis-killed", "sink");
}

/// Commits that fail after their checkpoint completed (7 in a row: all the
/// retries of the first commit) fail the job; the restart commits the
/// restored checkpoint, exactly once.
#[test]
fn redis_a_commit_lost_after_its_checkpoint_completed_is_made_by_the_restore() {
    let server = start_redis();
    let events = 12_000;
    let sink = RedisSink::new(server.addr.clone(), commands).transactional();
    windows_with_a_lost_commit(sink, events, |windows| windows);
    let want = expected_windows(events);
    let mut con = connection(&server);
    let windows: usize = redis::cmd("XLEN").arg("windows").query(&mut con).unwrap();
    assert_eq!(windows, want.len(), "every window once");
}

/// Redis stops answering for 10 s mid-run (SIGSTOP, then SIGCONT):
/// commits time out and are retried (one that Redis ran late is skipped by
/// its epoch), and the results are exact.
#[test]
fn redis_an_outage_mid_run_leaves_the_results_exact() {
    let server = start_redis();
    let dir = tempfile::tempdir().unwrap();
    let events = 150_000;
    let env = Env::with_config(restarting_config(2, &dir.path().join("chk"))).unwrap();
    counted_windows(&env, events, Vec::new())
        .sink(
            RedisSink::new(server.addr.clone(), commands)
                .timeout(Duration::from_secs(2))
                .exactly_once(),
        )
        .uid("sink");
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut con = connection(&server);
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while std::time::Instant::now() < deadline
                && redis::cmd("XLEN")
                    .arg("windows")
                    .query::<usize>(&mut con)
                    .unwrap_or(0)
                    == 0
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            server.freeze_for(Duration::from_secs(10));
        });
        env.execute("redis-outage").unwrap();
    });
    let want = expected_windows(events);
    let windows: usize = redis::cmd("XLEN")
        .arg("windows")
        .query(&mut connection(&server))
        .unwrap();
    assert_eq!(windows, want.len(), "every window once");
}

/// `totals` is a string, so every `HINCRBY totals …` is refused
/// (WRONGTYPE). Dead-letter policy: the job goes on, the `XADD`s apply
/// (every window once), and each refused command is in
/// `eddy:dead-letters` with Redis's reply. Fail-job policy (the default):
/// the job fails naming the command, the reply and the stream.
#[test]
fn redis_refused_commands_go_to_the_dead_letter_stream_or_fail_the_job() {
    use eddy::connectors::redis::DEAD_LETTERS_KEY;
    use eddy::connectors::rejected::OnRejected;
    let events = 6_000;
    let want = expected_windows(events);

    let server = start_redis();
    let mut con = connection(&server);
    let _: () = con.set("totals", "not a hash").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = Env::with_config(restarting_config(2, &dir.path().join("chk"))).unwrap();
    counted_windows(&env, events, Vec::new())
        .sink(
            RedisSink::new(server.addr.clone(), commands)
                .on_rejected(OnRejected::DeadLetter)
                .exactly_once(),
        )
        .uid("sink");
    let stats = env.execute("redis-refused").unwrap();
    assert_eq!(stats.restarts, 0, "refused commands do not fail the job");
    let windows: usize = redis::cmd("XLEN").arg("windows").query(&mut con).unwrap();
    assert_eq!(windows, want.len(), "the other commands applied, once");
    let dead: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(DEAD_LETTERS_KEY)
        .arg("-")
        .arg("+")
        .query(&mut con)
        .unwrap();
    assert!(!dead.is_empty(), "refused commands are kept");
    for (_, fields) in &dead {
        let field = |name: &str| {
            fields
                .iter()
                .find(|(f, _)| f == name)
                .map(|(_, v)| v.as_str())
        };
        assert!(
            field("command").unwrap().starts_with("HINCRBY totals "),
            "{fields:?}"
        );
        assert!(field("reply").unwrap().contains("WRONGTYPE"), "{fields:?}");
    }

    let server = start_redis();
    let _: () = connection(&server).set("totals", "not a hash").unwrap();
    let env = Env::with_config(EnvConfig::default().with_parallelism(1)).unwrap();
    counted_windows(&env, 1_000, Vec::new())
        .sink(RedisSink::new(server.addr.clone(), commands).exactly_once())
        .uid("sink");
    let err = env.execute("redis-refused-fails").unwrap_err().to_string();
    assert!(
        err.contains("HINCRBY totals")
            && err.contains("WRONGTYPE")
            && err.contains(DEAD_LETTERS_KEY),
        "{err}"
    );
}
