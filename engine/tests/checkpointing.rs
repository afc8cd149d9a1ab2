//! Checkpoint mechanics inside the engine: barrier alignment across inputs
//! of very different speeds, restarts that neither lose nor repeat state,
//! and checkpoints that time out without harming the job.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{all_committed, memory_sink, Committed, CountingSource};
use eddy_engine::checkpoint::{CheckpointingMode, RestartStrategy, SnapshotKind};
use eddy_engine::config::{EnvConfig, StateBackendKind};
use eddy_engine::dsl::Env;
use eddy_engine::element::Timestamp;
use eddy_engine::error::UserResult;
use eddy_engine::operator::Collector;
use eddy_engine::process::{KeyedContext, KeyedProcessFunction};
use eddy_engine::state::ValueStateDesc;
use eddy_engine::time::WatermarkStrategy;

const COUNT: ValueStateDesc<u64> = ValueStateDesc::new("count");

/// Counts records per key; emits `(key, count)` once, when the input ends.
#[derive(Clone)]
struct FinalCount;

impl KeyedProcessFunction<u64, u64, (u64, u64)> for FinalCount {
    fn process(
        &mut self,
        _value: u64,
        ctx: &mut KeyedContext<'_, u64>,
        _out: &mut Collector<'_, (u64, u64)>,
    ) -> UserResult {
        let n = ctx.state(&COUNT).get()?.unwrap_or(0);
        ctx.state(&COUNT).set(n + 1)?;
        ctx.timers().register_event_time(Timestamp(i64::MAX - 1));
        Ok(())
    }

    fn on_timer(
        &mut self,
        _time: Timestamp,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, (u64, u64)>,
    ) -> UserResult {
        let n = ctx.state(&COUNT).get()?.unwrap_or(0);
        out.emit((*ctx.key(), n));
        Ok(())
    }
}

fn counting(count: u64) -> CountingSource {
    CountingSource {
        count: Some(count),
        produced: Arc::new(AtomicU64::new(0)),
    }
}

fn totals(committed: &Committed<(u64, u64)>) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    for (key, n) in all_committed(committed) {
        assert!(out.insert(key, n).is_none(), "key {key} committed twice");
    }
    out
}

/// Runs the fast-and-slow job with a failure in the middle; returns the
/// committed per-key counts and the exact ones.
fn fast_and_slow(
    parallelism: usize,
    backend: StateBackendKind,
    mode: CheckpointingMode,
    loopback_workers: Option<usize>,
) -> (BTreeMap<u64, u64>, BTreeMap<u64, u64>) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EnvConfig::default()
        .with_state_backend(backend)
        .with_parallelism(parallelism)
        .with_batch_size(64)
        .with_checkpoint_interval(Duration::from_millis(20))
        .with_checkpoint_dir(dir.path())
        .with_restart_strategy(RestartStrategy::FixedDelay {
            attempts: 3,
            delay: Duration::ZERO,
        });
    config.checkpoints.mode = mode;
    config.loopback_workers = loopback_workers;
    let env = Env::with_config(config).unwrap();
    let strategy =
        || WatermarkStrategy::monotonous().with_timestamp(|v: &u64| Timestamp(*v as i64));
    let fast = env
        .source(counting(200_000))
        .uid("fast")
        .assign_timestamps(strategy());
    let seen = Arc::new(AtomicU64::new(0));
    let slow = env
        .source(counting(3_000))
        .uid("slow")
        .assign_timestamps(strategy())
        .map(move |v| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            if n % 100 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
            assert!(n != 1_500, "injected failure");
            v
        })
        .uid("slow-map");
    let committed: Committed<(u64, u64)> = Default::default();
    fast.union(&[&slow])
        .key_by(|v| v % 10)
        .process(FinalCount)
        .uid("count")
        .sink(memory_sink(&committed))
        .uid("sink");
    let stats = env.execute("aligned").unwrap();
    assert_eq!(stats.restarts, 1);
    let restored_from_checkpoint = stats
        .checkpoints
        .iter()
        .any(|c| c.kind == SnapshotKind::Checkpoint && c.id.0 > 1);
    assert!(restored_from_checkpoint, "periodic checkpoints completed");
    let mut want = BTreeMap::new();
    for v in (0..200_000u64).chain(0..3_000) {
        *want.entry(v % 10).or_insert(0) += 1;
    }
    (totals(&committed), want)
}

/// A fast and a slow input into one keyed count, a failure in the middle:
/// after the restart every key's count is exact, which needs the barrier
/// aligned (records of the fast input after the barrier must not be in the
/// snapshot).
#[test]
fn aligned_barriers_with_a_fast_and_a_slow_input_keep_counts_exact_across_a_restart() {
    let mut runs = vec![
        (1, StateBackendKind::Heap, None),
        (3, StateBackendKind::Heap, None),
        // Barriers and the restart across loopback TCP channels.
        (3, StateBackendKind::Heap, Some(2)),
    ];
    if cfg!(feature = "rocksdb") {
        runs.push((3, StateBackendKind::Rocksdb, None));
    }
    for (parallelism, backend, workers) in runs {
        let (got, want) = fast_and_slow(
            parallelism,
            backend,
            CheckpointingMode::ExactlyOnce,
            workers,
        );
        assert_eq!(got, want, "p={parallelism} {backend:?} workers {workers:?}");
    }
}

/// Without alignment the snapshot may hold records after the barrier, which
/// the restart replays: every record counts at least once.
#[test]
fn unaligned_barriers_count_every_record_at_least_once_across_a_restart() {
    let (got, want) = fast_and_slow(
        3,
        StateBackendKind::Heap,
        CheckpointingMode::AtLeastOnce,
        None,
    );
    for (key, n) in want {
        assert!(got[&key] >= n, "key {key}: {} < {n}", got[&key]);
    }
}

/// Checkpoints that cannot complete in time are abandoned; the job goes on
/// and ends with its end-of-input checkpoint; nothing else is left behind.
#[test]
fn timed_out_checkpoints_are_abandoned_without_harming_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EnvConfig::default()
        .with_parallelism(2)
        .with_batch_size(32)
        .with_channel_capacity(4)
        .with_checkpoint_interval(Duration::from_millis(15))
        .with_checkpoint_dir(dir.path());
    config.checkpoints.timeout = Duration::from_millis(5);
    let env = Env::with_config(config).unwrap();
    let committed: Committed<(u64, u64)> = Default::default();
    // Behind a network edge with full channels, every barrier waits for
    // several slow batches: longer than the timeout.
    env.source(counting(1_200))
        .parallelism(1)
        .rebalance()
        .map(|v| {
            std::thread::sleep(Duration::from_millis(1));
            v
        })
        .key_by(|v| v % 3)
        .process(FinalCount)
        .sink(memory_sink(&committed));
    let stats = env.execute("slow").unwrap();
    // About one checkpoint every 15 ms was triggered (some 40 on an idle
    // machine; fewer when the machine is busy and triggers come late); a
    // barrier needs far longer than 5 ms to pass the slow map, so nearly all
    // were abandoned (a few complete at the very end, when finished tasks
    // stand in).
    let last = stats.checkpoints.last().expect("end-of-input checkpoint");
    assert!(last.id.0 >= 10, "checkpoints were triggered: {last:?}");
    assert!(
        stats.checkpoints.len() <= 4,
        "timed-out checkpoints do not complete: {:?}",
        stats.checkpoints
    );
    assert_eq!(
        totals(&committed),
        BTreeMap::from([(0, 400), (1, 400), (2, 400)])
    );
    let dirs: Vec<_> = std::fs::read_dir(dir.path().join("slow"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("chk-"))
        .collect();
    assert_eq!(dirs.len(), 1, "abandoned checkpoints are deleted: {dirs:?}");
}

/// `run --resume`: with no checkpoint of the job yet it starts from
/// scratch; with one it starts from the newest (here the end-of-input
/// checkpoint of a finished run: nothing is left to read). The flag parses
/// after `run`, and not with `--restore`.
#[test]
fn resume_starts_from_the_newest_checkpoint_if_there_is_one() {
    use clap::Parser;
    use eddy_engine::config::EnvArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        env: EnvArgs,
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let args = [
        "job",
        "--checkpoint-dir",
        &d,
        "--checkpoint-interval",
        "10ms",
        "run",
        "--resume",
    ];
    let config = Cli::try_parse_from(args).unwrap().env.to_config().unwrap();
    assert!(config.checkpoints.resume);
    let both = ["job", "run", "--resume", "--restore", "/x"];
    assert!(
        Cli::try_parse_from(both).is_err(),
        "--resume conflicts with --restore"
    );

    let run = || {
        let env = Env::with_config(config.clone().with_parallelism(2)).unwrap();
        let committed: Committed<(u64, u64)> = Default::default();
        env.source(counting(900))
            .key_by(|v| v % 3)
            .process(FinalCount)
            .uid("count")
            .sink(memory_sink(&committed))
            .uid("sink");
        let stats = env.execute("resumed").unwrap();
        (stats, totals(&committed))
    };
    let (first, totals_first) = run();
    assert_eq!(totals_first, BTreeMap::from([(0, 300), (1, 300), (2, 300)]));
    assert!(!first.checkpoints.is_empty());
    let (second, totals_second) = run();
    assert_eq!(
        second.operators[0].records_out, 0,
        "resumed from the end-of-input checkpoint: nothing left to read"
    );
    assert_eq!(second.operators[1].records_out, 0, "nothing computed again");
    // What the restored checkpoint had prepared is committed again (sinks
    // make that idempotent; this test sink just records it).
    assert_eq!(totals_second, totals_first);
}
