//! Exactly-once end to end: a job with keyed state, timers and windows writes
//! through the transactional file sink; failures are injected (panics in a
//! user function, a killed process), the job restarts from its latest
//! checkpoint, and the committed output must equal the failure-free result —
//! nothing lost, nothing twice. Savepoints stop, rescale and restore it.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{freeze, rest, restarting_config, resuming_config, wait_until, ClusterProcesses};
use eddy::connectors::datagen::{DataGen, SplitMix64};
use eddy::connectors::file::{RowFormat, TransactionalFileSink};
use eddy::engine::checkpoint::latest_checkpoint;
use eddy::engine::config::{ClusterRole, ControlAction, StateBackendKind};
use eddy::engine::sink::Collected;
use eddy::engine::state::ValueStateDesc;
use eddy::operators::window::{Count, TimeWindow, TumblingEventTime, WindowExt};
use eddy::prelude::*;
use serde::{Deserialize, Serialize};

const KEYS: u64 = 37;
const WINDOW_MS: i64 = 100;

/// One result: a key's `nth` window (1-based, in time order) and its count.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct WindowCount {
    key: u64,
    window_start: i64,
    count: u64,
    nth: u64,
}

/// Panics once at each of the given record counts (counted over all runs).
struct Faults {
    seen: AtomicU64,
    at: Vec<u64>,
}

impl Faults {
    fn check(&self) {
        let n = self.seen.fetch_add(1, Ordering::SeqCst);
        if self.at.contains(&n) {
            panic!("injected failure at record {n}");
        }
    }
}

const NTH: ValueStateDesc<u64> = ValueStateDesc::new("windows-so-far");

/// Numbers each key's windows in the order they fire (keyed value state).
#[derive(Clone)]
struct Numbering;

impl KeyedProcessFunction<u64, (u64, TimeWindow, u64), WindowCount> for Numbering {
    fn process(
        &mut self,
        (key, window, count): (u64, TimeWindow, u64),
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, WindowCount>,
    ) -> UserResult {
        let nth = ctx.state(&NTH).get()?.unwrap_or(0) + 1;
        ctx.state(&NTH).set(nth)?;
        out.emit(WindowCount {
            key,
            window_start: window.start.millis(),
            count,
            nth,
        });
        Ok(())
    }
}

struct Job {
    events: u64,
    rate: Option<f64>,
    faults: Option<Arc<Faults>>,
    out: PathBuf,
    /// How the transactional file sink writes rows.
    format: RowFormat,
}

impl Job {
    fn build(&self, env: &Env) {
        let mut numbers = DataGen::new(|i, _: &mut SplitMix64| i)
            .with_count(self.events)
            .with_splits(4);
        if let Some(rate) = self.rate {
            numbers = numbers.with_rate(rate);
        }
        let faults = self.faults.clone();
        env.source(numbers)
            .uid("numbers")
            .assign_timestamps(
                WatermarkStrategy::monotonous().with_timestamp(|v: &u64| Timestamp(*v as i64)),
            )
            .map(move |v| {
                if let Some(f) = &faults {
                    f.check();
                }
                v
            })
            .uid("faults")
            .key_by(|v| v % KEYS)
            .window(TumblingEventTime::of(Duration::from_millis(
                WINDOW_MS as u64,
            )))
            .aggregate(Count)
            .uid("windows")
            .key_by(|(k, _, _)| *k)
            .process(Numbering)
            .uid("numbering")
            .sink(
                match self.format {
                    RowFormat::JsonLines => TransactionalFileSink::json_lines(&self.out),
                    RowFormat::Csv => TransactionalFileSink::csv(&self.out),
                }
                .exactly_once(),
            )
            .uid("sink");
    }
}

/// What the job must produce for `events` inputs.
fn expected(events: u64) -> Vec<WindowCount> {
    let mut counts: BTreeMap<(u64, i64), u64> = BTreeMap::new();
    for v in 0..events {
        let start = v as i64 / WINDOW_MS * WINDOW_MS;
        *counts.entry((v % KEYS, start)).or_default() += 1;
    }
    let mut nth: BTreeMap<u64, u64> = BTreeMap::new();
    let mut all: Vec<WindowCount> = counts
        .into_iter()
        .map(|((key, window_start), count)| {
            let n = nth.entry(key).or_default();
            *n += 1;
            WindowCount {
                key,
                window_start,
                count,
                nth: *n,
            }
        })
        .collect();
    all.sort();
    all
}

fn committed(out: &Path) -> Vec<WindowCount> {
    let mut all = TransactionalFileSink::<WindowCount>::read_committed(out).expect("readable");
    all.sort();
    all
}

/// The state backends to run with: the heap, and RocksDB when built in.
fn backends() -> Vec<StateBackendKind> {
    let mut all = vec![StateBackendKind::Heap];
    if cfg!(feature = "rocksdb") {
        all.push(StateBackendKind::Rocksdb);
    }
    all
}

/// RocksDB when it is built in, else the heap.
fn rocksdb_if_built() -> StateBackendKind {
    *backends().last().expect("the heap at least")
}

#[test]
fn panics_at_random_points_leave_the_committed_output_exact() {
    let events = 12_000;
    let want = expected(events);
    let mut rng = SplitMix64::new(7);
    // And at p=4 over three loopback workers: most channels cross TCP.
    let runs = [1, 3]
        .into_iter()
        .flat_map(|p| backends().into_iter().map(move |b| (p, b, None)))
        .chain([(4, StateBackendKind::Heap, Some(3))]);
    for (parallelism, backend, workers) in runs {
        for _ in 0..2 {
            let dir = tempfile::tempdir().unwrap();
            let mut at: Vec<u64> = (0..3).map(|_| rng.below(events)).collect();
            at.sort_unstable();
            let job = Job {
                events,
                rate: Some(30_000.0),
                faults: Some(Arc::new(Faults {
                    seen: AtomicU64::new(0),
                    at: at.clone(),
                })),
                out: dir.path().join("out"),
                format: RowFormat::JsonLines,
            };
            let mut config =
                restarting_config(parallelism, &dir.path().join("chk")).with_state_backend(backend);
            config.loopback_workers = workers;
            let env = Env::with_config(config).unwrap();
            job.build(&env);
            let stats = env.execute("exactly-once").unwrap();
            // Failures close together can hit two subtasks in the same run
            // (one restart for both; seen under load at p=3), so up to three.
            assert!(
                (1..=3).contains(&stats.restarts),
                "p={parallelism} {backend:?}: {} restarts for failures at {at:?}",
                stats.restarts
            );
            assert!(
                stats.checkpoints.len() > 1,
                "p={parallelism}: periodic checkpoints were taken"
            );
            assert_eq!(
                committed(&job.out),
                want,
                "p={parallelism} {backend:?} workers {workers:?} failures at {at:?}"
            );
        }
    }
}

/// The row format the parent asked the child for (`EDDY_CHILD_FORMAT=csv`).
fn child_format() -> RowFormat {
    match std::env::var("EDDY_CHILD_FORMAT").as_deref() {
        Ok("csv") => RowFormat::Csv,
        _ => RowFormat::JsonLines,
    }
}

/// The child half of the killed-process test: runs the job, resuming from
/// the latest checkpoint when there is one. Only runs when the parent test
/// sets `EDDY_CHILD_DIR`.
#[test]
fn child_job_resuming_from_its_latest_checkpoint() {
    let Ok(dir) = std::env::var("EDDY_CHILD_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let parallelism: usize = std::env::var("EDDY_CHILD_P").unwrap().parse().unwrap();
    let backend = match std::env::var("EDDY_CHILD_BACKEND").as_deref() {
        Ok("rocksdb") => StateBackendKind::Rocksdb,
        _ => StateBackendKind::Heap,
    };
    let job = Job {
        events: 20_000,
        rate: Some(20_000.0),
        faults: None,
        out: dir.join("out"),
        format: child_format(),
    };
    let config = resuming_config(parallelism, &dir).with_state_backend(backend);
    let env = Env::with_config(config).unwrap();
    job.build(&env);
    env.execute("killed").unwrap();
}

#[test]
fn a_killed_process_resumes_from_its_checkpoint_exactly() {
    let mut rng = SplitMix64::new(11);
    for (parallelism, backend) in [1, 3]
        .into_iter()
        .flat_map(|p| backends().into_iter().map(move |b| (p, b)))
    {
        let dir = tempfile::tempdir().unwrap();
        let mut kills = 0;
        loop {
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "child_job_resuming_from_its_latest_checkpoint",
                    "--test-threads=1",
                ])
                .env("EDDY_CHILD_DIR", dir.path())
                .env("EDDY_CHILD_P", parallelism.to_string())
                // The CSV sink at p=3, JSON lines at p=1.
                .env(
                    "EDDY_CHILD_FORMAT",
                    if parallelism == 3 { "csv" } else { "json" },
                )
                .env(
                    "EDDY_CHILD_BACKEND",
                    if backend == StateBackendKind::Rocksdb {
                        "rocksdb"
                    } else {
                        "heap"
                    },
                )
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            if kills < 4 {
                std::thread::sleep(Duration::from_millis(150 + rng.below(400)));
                if child.try_wait().unwrap().is_none() {
                    child.kill().unwrap();
                    child.wait().unwrap();
                    kills += 1;
                    continue;
                }
            }
            let status = child.wait().unwrap();
            assert!(status.success(), "the last run completes");
            break;
        }
        assert!(
            kills > 0,
            "p={parallelism}: the job was killed at least once"
        );
        let left = TransactionalFileSink::<WindowCount>::in_progress_files(dir.path().join("out"))
            .unwrap();
        assert!(
            left.is_empty(),
            "p={parallelism}: the restores deleted what killed writers left: {left:?}"
        );
        let files =
            TransactionalFileSink::<WindowCount>::committed_files(dir.path().join("out")).unwrap();
        let csv = parallelism == 3;
        assert!(
            files
                .iter()
                .all(|f| f.extension().is_some_and(|e| (e == "csv") == csv)),
            "p={parallelism}: {files:?}"
        );
        assert_eq!(
            committed(&dir.path().join("out")),
            expected(20_000),
            "p={parallelism} {backend:?} after {kills} kills"
        );
    }
}

/// Runs the job until `stop_after`, stops it with a savepoint, and returns
/// where the savepoint is.
fn run_and_stop(job: &Job, config: EnvConfig, stop_after: Duration, savepoint: &Path) -> PathBuf {
    let env = Env::with_config(config).unwrap();
    job.build(&env);
    let control = env.control();
    let target = savepoint.to_path_buf();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(stop_after);
        control.stop_with_savepoint(target)
    });
    let stats = env.execute("rescaled").unwrap();
    let path = stopper.join().unwrap().expect("savepoint taken");
    assert_eq!(
        stats.stopped_with_savepoint.as_deref(),
        Some(path.as_path())
    );
    path
}

#[test]
fn stop_with_savepoint_then_restore_at_other_parallelism_and_key_groups_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let events = 24_000;
    let job = Job {
        events,
        rate: Some(20_000.0),
        faults: None,
        out: dir.path().join("out"),
        format: RowFormat::JsonLines,
    };
    let chk = dir.path().join("chk");
    // p=2 heap on two loopback workers → stop → p=3 RocksDB (when built in)
    // on three → stop → p=1 heap with a new max parallelism → end.
    let first = run_and_stop(
        &job,
        restarting_config(2, &chk).with_loopback_workers(2),
        Duration::from_millis(300),
        &dir.path().join("sp1"),
    );
    let partial = committed(&job.out);
    assert!(!partial.is_empty() && partial.len() < expected(events).len());
    let second = run_and_stop(
        &job,
        restarting_config(3, &chk)
            .with_restore(&first)
            .with_state_backend(rocksdb_if_built())
            .with_loopback_workers(3),
        Duration::from_millis(300),
        &dir.path().join("sp2"),
    );
    let env = Env::with_config(
        restarting_config(1, &chk)
            .with_max_parallelism(32)
            .with_restore(&second),
    )
    .unwrap();
    job.build(&env);
    env.execute("rescaled").unwrap();
    assert_eq!(committed(&job.out), expected(events));
}

/// Counts records per key in a value state of type `S`.
#[derive(Clone)]
struct CountInto<S>(std::marker::PhantomData<fn() -> S>);

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CountV1 {
    count: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CountV2 {
    count: u64,
    #[serde(default)]
    note: String,
}

trait Counter: Data {
    fn bump(previous: Option<Self>) -> Self;
    fn count(&self) -> u64;
}

impl Counter for CountV1 {
    fn bump(previous: Option<Self>) -> Self {
        CountV1 {
            count: previous.map_or(0, |p| p.count) + 1,
        }
    }
    fn count(&self) -> u64 {
        self.count
    }
}

impl Counter for CountV2 {
    fn bump(previous: Option<Self>) -> Self {
        CountV2 {
            count: previous.map_or(0, |p| p.count) + 1,
            note: "v2".into(),
        }
    }
    fn count(&self) -> u64 {
        self.count
    }
}

impl<S: Counter> KeyedProcessFunction<u64, u64, (u64, u64)> for CountInto<S> {
    fn process(
        &mut self,
        _value: u64,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, (u64, u64)>,
    ) -> UserResult {
        let desc: ValueStateDesc<S> = ValueStateDesc::new("count");
        let next = S::bump(ctx.state(&desc).get()?);
        out.emit((*ctx.key(), next.count()));
        ctx.state(&desc).set(next)?;
        Ok(())
    }
}

fn counting_job<S: Counter>(
    env: &Env,
    source_uid: &str,
    values: Vec<u64>,
) -> Collected<(u64, u64)> {
    let (sink, collected) = CollectSink::new();
    env.from_collection(values)
        .uid(source_uid)
        .key_by(|v| v % 5)
        .process(CountInto::<S>(std::marker::PhantomData))
        .uid("counter")
        .sink(sink);
    collected
}

#[test]
fn state_that_gained_a_defaulted_field_restores_and_missing_uids_need_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let chk = dir.path().join("chk");
    let cfg = || {
        EnvConfig::default()
            .with_parallelism(2)
            .with_checkpoint_interval(Duration::from_secs(3600))
            .with_checkpoint_dir(&chk)
    };
    let env = Env::with_config(cfg()).unwrap();
    let _ = counting_job::<CountV1>(&env, "first-input", (0..50).collect());
    env.execute("evolving").unwrap();
    // The end-of-input checkpoint keeps the counters.
    let saved = latest_checkpoint(&chk, "evolving").expect("end-of-input checkpoint");

    // A new input (new source uid): the old source's state has no owner.
    let env = Env::with_config(cfg().with_restore(&saved)).unwrap();
    let _ = counting_job::<CountV2>(&env, "second-input", vec![0, 1]);
    let err = env.execute("evolving").unwrap_err().to_string();
    assert!(
        err.contains("first-input") && err.contains("--allow-non-restored-state"),
        "{err}"
    );

    let mut config = cfg().with_restore(&saved);
    config.checkpoints.allow_non_restored_state = true;
    let env = Env::with_config(config).unwrap();
    let collected = counting_job::<CountV2>(&env, "second-input", vec![0, 1]);
    env.execute("evolving").unwrap();
    let mut got = collected.values();
    got.sort_unstable();
    assert_eq!(got, vec![(0, 11), (1, 11)], "10 each before, one more now");
}

#[test]
fn damaged_checkpoints_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let chk = dir.path().join("chk");
    let cfg = || {
        EnvConfig::default()
            .with_parallelism(1)
            .with_checkpoint_interval(Duration::from_secs(3600))
            .with_checkpoint_dir(&chk)
    };
    let env = Env::with_config(cfg()).unwrap();
    let _ = counting_job::<CountV1>(&env, "input", (0..50).collect());
    env.execute("damaged").unwrap();
    let saved = latest_checkpoint(&chk, "damaged").unwrap();

    let restore = |path: &Path| {
        let env = Env::with_config(cfg().with_restore(path)).unwrap();
        let _ = counting_job::<CountV1>(&env, "input", vec![1]);
        env.execute("damaged").unwrap_err().to_string()
    };
    // A state file with one byte flipped.
    let state_file = std::fs::read_dir(&saved)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "state") && std::fs::metadata(p).unwrap().len() > 0
        })
        .unwrap();
    let mut bytes = std::fs::read(&state_file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&state_file, bytes).unwrap();
    let err = restore(&saved);
    assert!(err.contains("damaged state file"), "{err}");
    // Unreadable metadata.
    std::fs::write(saved.join("_metadata"), b"{ not json").unwrap();
    let err = restore(&saved);
    assert!(err.contains("damaged metadata"), "{err}");
    // Nothing there at all.
    let err = restore(&dir.path().join("nowhere"));
    assert!(err.contains("no complete checkpoint or savepoint"), "{err}");
}

/// A job that fails for good (no restart strategy) leaves its checkpoints;
/// restoring the newest one — incremental when the state is in RocksDB — at
/// another parallelism, and onto the heap, finishes the output exactly.
#[test]
fn a_failed_jobs_checkpoint_restores_at_other_parallelism_and_backend() {
    let events = 12_000;
    for (restore_p, restore_backend) in [(3, rocksdb_if_built()), (1, StateBackendKind::Heap)] {
        let dir = tempfile::tempdir().unwrap();
        let chk = dir.path().join("chk");
        let job = Job {
            events,
            rate: Some(30_000.0),
            faults: Some(Arc::new(Faults {
                seen: AtomicU64::new(0),
                at: vec![events * 2 / 3],
            })),
            out: dir.path().join("out"),
            format: RowFormat::JsonLines,
        };
        let failing = restarting_config(2, &chk)
            .with_state_backend(rocksdb_if_built())
            .with_restart_strategy(RestartStrategy::None);
        let env = Env::with_config(failing).unwrap();
        job.build(&env);
        let err = env.execute("fails").unwrap_err().to_string();
        assert!(err.contains("injected failure"), "{err}");
        let latest = latest_checkpoint(&chk, "fails").expect("checkpoints were taken");

        let resumed = Job {
            faults: None,
            ..job
        };
        let env = Env::with_config(
            restarting_config(restore_p, &chk)
                .with_state_backend(restore_backend)
                .with_restore(&latest),
        )
        .unwrap();
        resumed.build(&env);
        env.execute("fails").unwrap();
        assert_eq!(
            committed(&resumed.out),
            expected(events),
            "restored at p={restore_p} on {restore_backend:?}"
        );
    }
}

/// The child half of the cluster tests: one process of the cluster, its
/// part named by `EDDY_CLUSTER_ROLE` (`coordinator` or `worker`). Only runs
/// when the parent test sets it.
#[test]
fn child_cluster_process() {
    let Some(role) = common::cluster_role() else {
        return;
    };
    let dir = PathBuf::from(std::env::var("EDDY_CLUSTER_DIR").unwrap());
    let var = |name: &str| std::env::var(name).ok();
    let parallelism = var("EDDY_CLUSTER_P").map_or(4, |p| p.parse().unwrap());
    let mut config = resuming_config(parallelism, &dir);
    config.checkpoints.restore = var("EDDY_CLUSTER_RESTORE").map(PathBuf::from);
    config.log_format = Some(eddy::engine::logging::LogFormat::Text);
    let coordinator = matches!(role, ClusterRole::Coordinator(_));
    if coordinator {
        config.web_addr = var("EDDY_CLUSTER_WEB").map(|a| a.parse().unwrap());
    }
    config.cluster = Some(role);
    let job = Job {
        events: 20_000,
        rate: Some(5_000.0),
        faults: None,
        out: dir.join("out"),
        format: RowFormat::JsonLines,
    };
    let env = Env::with_config(config).unwrap();
    job.build(&env);
    let stats = env.execute("cluster").unwrap();
    if coordinator {
        std::fs::write(dir.join("restarts"), stats.restarts.to_string()).unwrap();
        let checkpoints = stats.checkpoints.len().to_string();
        std::fs::write(dir.join("checkpoints"), checkpoints).unwrap();
        let sunk = stats.operator("sink").map_or(0, |o| o.records_in);
        std::fs::write(dir.join("sink-records"), sunk.to_string()).unwrap();
    }
}

/// The job at p=4 on a coordinator and three workers.
fn cluster(dir: &Path) -> ClusterProcesses {
    cluster_with(dir, 4, 3, None)
}

/// The job at `parallelism` on a coordinator and `workers` workers,
/// restored from `restore`.
fn cluster_with(
    dir: &Path,
    parallelism: usize,
    workers: usize,
    restore: Option<&Path>,
) -> ClusterProcesses {
    let mut vars = vec![("EDDY_CLUSTER_P", parallelism.to_string())];
    vars.extend(restore.map(|r| ("EDDY_CLUSTER_RESTORE", r.display().to_string())));
    ClusterProcesses::start("child_cluster_process", dir, workers, vars)
}

#[test]
fn a_cluster_of_a_coordinator_and_three_workers_commits_the_exact_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = cluster(dir.path());
    assert!(cluster.wait(), "the job ends successfully");
    assert_eq!(cluster.reported("restarts"), 0);
    // A 4 s job with a checkpoint every 30 ms: none may stall the others.
    let checkpoints = cluster.reported("checkpoints");
    assert!(
        checkpoints >= 20,
        "only {checkpoints} checkpoints completed"
    );
    // The workers' counters reach the coordinator's statistics.
    let results = expected(20_000).len() as u32;
    assert_eq!(cluster.reported("sink-records"), results);
    for worker in &mut cluster.workers {
        assert!(worker.wait().unwrap().success(), "workers exit cleanly");
    }
    assert_eq!(committed(&dir.path().join("out")), expected(20_000));
}

#[test]
fn killing_workers_mid_run_restarts_the_job_and_keeps_the_output_exact() {
    let mut rng = SplitMix64::new(23);
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = cluster(dir.path());
    // kill -9 a worker twice at random points; a replacement joins after
    // the first (as a supervisor would start one) and serves from the next
    // restart on.
    for kill in 0..2 {
        cluster.run_for(Duration::from_millis(600 + rng.below(600)));
        // One of the first workers, which every run so far has used (the
        // replacement, at the end, may not be in the current run yet).
        let victim = rng.below(3 - kill) as usize;
        let mut worker = cluster.workers.remove(victim);
        worker.kill().unwrap();
        worker.wait().unwrap();
        if kill == 0 {
            cluster.add_worker();
        }
    }
    assert!(cluster.wait(), "the job ends successfully after the kills");
    assert!(
        cluster.reported("restarts") >= 2,
        "each kill restarted the job"
    );
    let out = dir.path().join("out");
    assert!(
        TransactionalFileSink::<WindowCount>::in_progress_files(&out)
            .unwrap()
            .is_empty(),
        "the restores deleted what killed writers left"
    );
    assert_eq!(committed(&out), expected(20_000));
}

#[test]
fn a_frozen_worker_is_lost_after_the_heartbeat_timeout_and_the_output_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = cluster(dir.path());
    cluster.run_for(Duration::from_millis(900));
    freeze(&cluster.workers[1]);
    assert!(
        cluster.wait(),
        "the job ends successfully on the other workers"
    );
    assert!(
        cluster.reported("restarts") >= 1,
        "the frozen worker's loss restarted the job"
    );
    assert_eq!(committed(&dir.path().join("out")), expected(20_000));
}

#[test]
fn a_cluster_stopped_with_a_savepoint_on_two_workers_restores_on_three_at_higher_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let savepoint = dir.path().join("savepoint");
    let mut first = cluster_with(dir.path(), 2, 2, None);
    first.run_for(Duration::from_millis(1_500));
    // `stop --savepoint DIR`, through the job's checkpoint directory.
    let mut stop = resuming_config(2, dir.path());
    stop.control = Some(ControlAction::StopWithSavepoint(Some(savepoint.clone())));
    let stopper = Env::with_config(stop).unwrap();
    Job {
        events: 20_000,
        rate: None,
        faults: None,
        out: dir.path().join("out"),
        format: RowFormat::JsonLines,
    }
    .build(&stopper);
    let stats = stopper.execute("cluster").unwrap();
    let taken = stats.stopped_with_savepoint.expect("a savepoint");
    assert!(first.wait(), "the first cluster stops cleanly");
    let partial = committed(&dir.path().join("out"));
    assert!(!partial.is_empty() && partial.len() < expected(20_000).len());
    drop(first);
    let mut second = cluster_with(dir.path(), 3, 3, Some(&taken));
    assert!(second.wait(), "the restored job ends");
    assert_eq!(committed(&dir.path().join("out")), expected(20_000));
}

#[test]
fn workers_give_up_on_a_frozen_coordinator_after_the_heartbeat_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = cluster(dir.path());
    cluster.run_for(Duration::from_millis(900));
    freeze(&cluster.coordinator);
    // The heartbeat timeout is 5 s; give them twice that.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for worker in &mut cluster.workers {
        let status = loop {
            if let Some(status) = worker.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "a worker still waits for the frozen coordinator"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            !status.success(),
            "a worker that lost its coordinator fails"
        );
    }
}

#[test]
fn a_worker_that_built_another_job_graph_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = cluster_with(dir.path(), 4, 1, None);
    let mut vars = cluster.vars.clone();
    for (name, value) in &mut vars {
        if *name == "EDDY_CLUSTER_P" {
            *value = "2".into();
        }
    }
    let mut odd = cluster.spawn(&vars, "worker");
    assert!(!odd.wait().unwrap().success(), "the odd worker fails");
    let log = std::fs::read_to_string(dir.path().join("worker-1.log")).unwrap();
    assert!(log.contains("another job graph"), "{log}");
    assert!(cluster.wait(), "the job runs on the worker that fits");
    assert_eq!(committed(&dir.path().join("out")), expected(20_000));
}

/// A cluster at p=4 whose coordinator serves its REST API at a free port:
/// the processes, and the API's address.
fn cluster_with_api(dir: &Path, slots: &[usize]) -> (ClusterProcesses, std::net::SocketAddr) {
    let api = std::net::SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let vars = vec![
        ("EDDY_CLUSTER_P", "4".to_owned()),
        ("EDDY_CLUSTER_WEB", api.to_string()),
    ];
    let cluster = ClusterProcesses::start_with_slots("child_cluster_process", dir, slots, vars);
    (cluster, api)
}

#[test]
fn subtasks_take_the_workers_slots_and_the_coordinator_shows_their_live_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, api) = cluster_with_api(dir.path(), &[3, 1]);
    let workers = || rest(api, "GET", "/v1/workers").1["workers"].clone();
    wait_until("both workers in the run", Duration::from_secs(20), || {
        workers().as_array().is_some_and(|w| w.len() == 2)
    });
    let mut offered: Vec<(u64, u64, String)> = workers()
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let n = |k: &str| w[k].as_u64().unwrap();
            (
                n("slots"),
                n("slots_used"),
                w["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    offered.sort();
    assert_eq!((offered[0].0, offered[0].1), (1, 1), "{offered:?}");
    assert_eq!((offered[1].0, offered[1].1), (3, 3), "{offered:?}");
    let big = offered[1].2.clone();
    // The live counts come from the workers while the job runs.
    let job = || rest(api, "GET", "/v1/jobs/cluster").1;
    wait_until("the source's live count", Duration::from_secs(20), || {
        job()["vertices"][0]["records_out"].as_u64().unwrap_or(0) > 0
    });
    assert!(
        cluster.coordinator.try_wait().unwrap().is_none(),
        "counted while running"
    );
    for v in job()["vertices"].as_array().unwrap() {
        if v["parallelism"] == 4 {
            let on_big = v["subtasks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["worker"] == big.as_str())
                .count();
            assert_eq!(
                on_big, 3,
                "three of four subtasks on the 3-slot worker: {v}"
            );
        }
    }
    assert!(cluster.wait(), "the job ends");
    assert_eq!(committed(&dir.path().join("out")), expected(20_000));
}

#[test]
fn a_lost_worker_leaves_too_few_slots_and_the_job_waits_for_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, api) = cluster_with_api(dir.path(), &[2, 2]);
    cluster.run_for(Duration::from_millis(900));
    let mut victim = cluster.workers.remove(0);
    victim.kill().unwrap();
    victim.wait().unwrap();
    // Two slots are left of the four the job needs.
    let state = || rest(api, "GET", "/v1/jobs/cluster").1["state"].clone();
    wait_until("the job to wait for slots", Duration::from_secs(20), || {
        state() == "WAITING_FOR_SLOTS"
    });
    let (_, workers) = rest(api, "GET", "/v1/workers");
    assert_eq!(workers["workers"].as_array().unwrap().len(), 1, "{workers}");
    // Nothing runs to take a savepoint.
    let (status, asked) = rest(api, "POST", "/v1/jobs/cluster/savepoints");
    assert_eq!(status, 202, "{asked}");
    let request = format!(
        "/v1/jobs/cluster/savepoints/{}",
        asked["request_id"].as_str().unwrap()
    );
    wait_until("the savepoint to fail", Duration::from_secs(10), || {
        rest(api, "GET", &request).1["status"] == "FAILED"
    });
    let failure = rest(api, "GET", &request).1["failure"].to_string();
    assert!(failure.contains("waiting for slots"), "{failure}");
    let log = std::fs::read_to_string(dir.path().join("coordinator-0.log")).unwrap();
    assert!(log.contains("waiting for slots"), "the wait is logged");
    cluster.add_worker_with_slots(2);
    assert!(cluster.wait(), "the job ends on the new worker");
    assert!(cluster.reported("restarts") >= 1);
    assert_eq!(committed(&dir.path().join("out")), expected(20_000));
}
