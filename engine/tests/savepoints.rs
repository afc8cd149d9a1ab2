//! Savepoints and their edge cases: what a savepoint commits, stopping a
//! job while parts of it finish, failed savepoints, requests to a job that
//! is not running, and restores after the job's shape changed.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{
    all_committed, counting, memory_sink, paced, spawn_job, wait_until, Committed, MemoryTxnSink,
    ScriptedSource,
};
use crossbeam_channel::Receiver;
use eddy_engine::checkpoint::RestartStrategy;
use eddy_engine::config::EnvConfig;
use eddy_engine::dsl::Env;
use eddy_engine::runtime::stats::JobStats;
use eddy_engine::source::ReadStatus;
use eddy_engine::two_phase::ExactlyOnce;

/// A job that counts until it is stopped, run by [`spawn_job`] (named
/// `savepoints`); returns where its result arrives.
fn spawn_endless(config: EnvConfig) -> Receiver<Result<JobStats, String>> {
    let committed: Committed<u64> = Default::default();
    let (_control, done) = spawn_job(
        "savepoints",
        move |env| {
            env.source(counting(None))
                .uid("src")
                .map(paced(100))
                .sink(memory_sink(&committed))
                .uid("sink");
        },
        config,
    );
    done
}

fn finished(done: &Receiver<Result<JobStats, String>>) -> JobStats {
    done.recv_timeout(Duration::from_secs(60))
        .expect("the job ends")
        .expect("the job succeeds")
}

fn counts(committed: &Committed<u64>) -> BTreeMap<u64, u32> {
    let mut seen = BTreeMap::new();
    for v in all_committed(committed) {
        *seen.entry(v).or_default() += 1;
    }
    seen
}

/// Every value `0..n` exactly once.
fn assert_exactly(committed: &Committed<u64>, n: u64) {
    let seen = counts(committed);
    assert_eq!(seen.len() as u64, n, "every record committed");
    assert!(seen.values().all(|c| *c == 1), "no record committed twice");
}

fn config(dir: &std::path::Path) -> EnvConfig {
    EnvConfig::default()
        .with_parallelism(1)
        .with_checkpoint_interval(Duration::from_secs(3600))
        .with_checkpoint_dir(dir)
}

/// A savepoint that is not a stop commits nothing (as in Flink): a restart
/// goes back to the last checkpoint, which must not find the savepoint's
/// output committed already.
#[test]
fn an_intermediate_savepoint_commits_nothing_so_a_restart_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path()).with_restart_strategy(RestartStrategy::FixedDelay {
        attempts: 2,
        delay: Duration::ZERO,
    });
    let committed: Committed<u64> = Default::default();
    let sink_side = Arc::clone(&committed);
    let savepoint_done = Arc::new(AtomicBool::new(false));
    let fail_after = Arc::clone(&savepoint_done);
    let failed = Arc::new(AtomicBool::new(false));
    let pace = paced(50);
    let (control, done) = spawn_job(
        "savepoints",
        move |env| {
            env.source(counting(Some(20_000)))
                .uid("src")
                .map(move |v| {
                    if fail_after.load(Ordering::SeqCst) && !failed.swap(true, Ordering::SeqCst) {
                        panic!("injected failure after the savepoint");
                    }
                    pace(v)
                })
                .uid("map")
                .sink(memory_sink(&sink_side))
                .uid("sink");
        },
        config,
    );
    control.savepoint(dir.path().join("sp")).unwrap();
    savepoint_done.store(true, Ordering::SeqCst);
    let stats = finished(&done);
    assert_eq!(stats.restarts, 1);
    assert_exactly(&committed, 20_000);
}

/// Stop-with-savepoint while one source finishes between the trigger and
/// the completion: its end-of-input state stands in, and the finished task
/// ends with the others.
#[test]
fn stop_with_savepoint_while_a_source_finishes_ends_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let finish_now = Arc::new(AtomicBool::new(false));
    let finish = Arc::clone(&finish_now);
    let in_poll = Arc::new(AtomicBool::new(false));
    let polling = Arc::clone(&in_poll);
    let committed: Committed<u64> = Default::default();
    let sink_side = Arc::clone(&committed);
    let (control, done) = spawn_job(
        "savepoints",
        move |env| {
            let short = env
                .source(ScriptedSource::new(1, move |_, _| {
                    if finish.load(Ordering::SeqCst) {
                        // The trigger arrives while this poll runs.
                        polling.store(true, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(300));
                        return Ok(ReadStatus::Finished);
                    }
                    Ok(ReadStatus::NothingAvailable)
                }))
                .uid("short");
            let long = env.source(counting(None)).uid("long").map(paced(100));
            long.union(&[&short])
                .sink(memory_sink(&sink_side))
                .uid("sink");
        },
        config(dir.path()),
    );
    finish_now.store(true, Ordering::SeqCst);
    wait_until("the finishing poll", || in_poll.load(Ordering::SeqCst));
    let savepoint = control.stop_with_savepoint(dir.path().join("sp")).unwrap();
    let stats = finished(&done);
    assert_eq!(stats.stopped_with_savepoint, Some(savepoint));
}

/// A stop-with-savepoint that fails (here its directory cannot be written)
/// is reported to the requester, and the job goes on (as in Flink).
#[test]
fn a_failed_stop_with_savepoint_leaves_the_job_running() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("sp");
    let spoil = target.clone();
    let committed: Committed<u64> = Default::default();
    let sink_side = Arc::clone(&committed);
    let (control, done) = spawn_job(
        "savepoints",
        move |env| {
            env.source(counting(Some(5_000)))
                .uid("src")
                .map(paced(10))
                .sink(ExactlyOnce::new(MemoryTxnSink {
                    committed: Arc::clone(&sink_side),
                    // The savepoint directory becomes a file at the barrier.
                    on_prepare: Arc::new(move |_| {
                        if spoil.is_dir() {
                            let _ = std::fs::remove_dir_all(&spoil);
                            let _ = std::fs::write(&spoil, b"not a directory");
                        }
                    }),
                }))
                .uid("sink");
        },
        config(dir.path()),
    );
    let err = control
        .stop_with_savepoint(&target)
        .unwrap_err()
        .to_string();
    assert!(err.contains("savepoint"), "{err}");
    let stats = finished(&done);
    assert_eq!(stats.stopped_with_savepoint, None);
    assert_eq!(stats.restarts, 0);
    assert_exactly(&committed, 5_000);
}

/// A stop-with-savepoint that times out is reported; the job goes on,
/// without a restart, and its output stays exact.
#[test]
fn a_timed_out_stop_with_savepoint_leaves_the_job_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path())
        .with_parallelism(2)
        .with_batch_size(32)
        .with_channel_capacity(4);
    config.checkpoints.timeout = Duration::from_millis(20);
    let committed: Committed<u64> = Default::default();
    let sink_side = Arc::clone(&committed);
    let source = counting(Some(1_500));
    let produced = Arc::clone(&source.produced);
    let (control, done) = spawn_job(
        "savepoints",
        move |env| {
            env.source(source)
                .parallelism(1)
                .rebalance()
                .map(paced(1))
                .sink(memory_sink(&sink_side));
        },
        config,
    );
    // Full channels (2 × 4 batches of 32) ahead of the slow map: a barrier
    // now waits far longer than the 20 ms timeout.
    wait_until("the channels to fill", || {
        produced.load(Ordering::SeqCst) >= 400
    });
    let err = control
        .stop_with_savepoint(dir.path().join("sp"))
        .unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    let stats = finished(&done);
    assert_eq!((stats.restarts, stats.stopped_with_savepoint), (0, None));
    assert_exactly(&committed, 1_500);
}

/// Without periodic checkpoints, a finished task's end-of-input state still
/// stands in for it, so savepoints complete; a savepoint that fails loses
/// nothing its sink prepared.
#[test]
fn savepoints_without_periodic_checkpoints_work_after_a_source_finished() {
    for timeout in [Duration::from_secs(10), Duration::from_millis(1)] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EnvConfig::default()
            .with_parallelism(1)
            .with_checkpoint_dir(dir.path());
        config.checkpoints.timeout = timeout;
        let committed: Committed<u64> = Default::default();
        let sink_side = Arc::clone(&committed);
        let (control, done) = spawn_job(
            "savepoints",
            move |env| {
                let short = env.from_collection(vec![1_000_000u64]).uid("short");
                let long = env
                    .source(counting(Some(30_000)))
                    .uid("long")
                    .map(paced(100));
                long.union(&[&short])
                    .sink(memory_sink(&sink_side))
                    .uid("sink");
            },
            config,
        );
        let result = control.savepoint(dir.path().join("sp"));
        assert_eq!(
            result.is_ok(),
            timeout > Duration::from_secs(1),
            "{result:?}"
        );
        finished(&done);
        let seen = counts(&committed);
        assert_eq!(seen.len(), 30_001, "timeout {timeout:?}");
        assert!(seen.values().all(|c| *c == 1));
    }
}

#[test]
fn a_savepoint_request_to_a_job_that_is_not_running_is_refused() {
    let env = Env::with_config(EnvConfig::default().with_parallelism(1)).unwrap();
    let committed: Committed<u64> = Default::default();
    env.from_collection(vec![1u64, 2, 3])
        .sink(memory_sink(&committed));
    let control = env.control();
    let before = control.savepoint("/nonexistent/sp").unwrap_err();
    assert!(before.to_string().contains("not running"), "{before}");
    env.execute("ended").unwrap();
    let after = control.savepoint("/nonexistent/sp").unwrap_err();
    assert!(after.to_string().contains("not running"), "{after}");
}

/// Finished parts of a job commit with the next checkpoint (and end), not
/// only when the whole job ends; savepoints still work afterwards, also
/// after a restore at a parallelism where some source subtasks have no
/// split and finish at once.
#[test]
fn finished_parts_commit_with_the_next_checkpoint_and_savepoints_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let config = EnvConfig::default()
        .with_parallelism(1)
        .with_batch_size(4)
        .with_checkpoint_interval(Duration::from_millis(50))
        .with_checkpoint_dir(dir.path());
    let short_out: Committed<u64> = Default::default();
    let long_out: Committed<u64> = Default::default();
    let (short_side, long_side) = (Arc::clone(&short_out), Arc::clone(&long_out));
    let build = move |env: &Env| {
        env.from_collection(vec![1u64, 2, 3])
            .uid("short")
            .sink(memory_sink(&short_side))
            .uid("short-sink");
        env.source(counting(None))
            .uid("long")
            .map(paced(2))
            .uid("pace")
            .sink(memory_sink(&long_side))
            .uid("long-sink");
    };
    let (control, done) = spawn_job("savepoints", build.clone(), config.clone());
    wait_until("the finished part's records to commit", || {
        all_committed(&short_out) == vec![1, 2, 3]
    });
    let first = control.stop_with_savepoint(dir.path().join("sp1")).unwrap();
    finished(&done);

    // At parallelism 2 the collection source's second subtask has nothing
    // to read and finishes at once.
    let (control, done) = spawn_job(
        "savepoints",
        build,
        config.with_parallelism(2).with_restore(&first),
    );
    let before = all_committed(&long_out).len();
    wait_until("a checkpoint after the restore to commit", || {
        all_committed(&long_out).len() > before
    });
    control.stop_with_savepoint(dir.path().join("sp2")).unwrap();
    finished(&done);
    assert_eq!(
        all_committed(&short_out),
        vec![1, 2, 3],
        "not again after the restore"
    );
    let longs = counts(&long_out);
    assert!(longs.values().all(|c| *c == 1), "no record committed twice");
    let last = *longs.keys().last().unwrap();
    assert_eq!(longs.len() as u64, last + 1, "no record lost");
}

/// A savepoint of a job with a stateless operator restores into a job
/// without it: only operators that had state must be there.
#[test]
fn a_stateless_operator_may_leave_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let committed: Committed<u64> = Default::default();
    let sink_side = Arc::clone(&committed);
    let (control, done) = spawn_job(
        "savepoints",
        move |env| {
            env.source(counting(None))
                .uid("src")
                .map(paced(100))
                .uid("stateless-map")
                .sink(memory_sink(&sink_side))
                .uid("sink");
        },
        config(dir.path()),
    );
    let savepoint: PathBuf = control.stop_with_savepoint(dir.path().join("sp")).unwrap();
    finished(&done);
    let env = Env::with_config(config(dir.path()).with_restore(&savepoint)).unwrap();
    env.source(counting(None))
        .uid("src")
        .sink(memory_sink(&committed))
        .uid("sink");
    let control = env.control();
    let stopper = std::thread::spawn(move || {
        wait_until("the restored job to run", || control.is_running());
        control.stop_with_savepoint(dir.path().join("sp2"))
    });
    env.execute("restored").unwrap();
    stopper.join().unwrap().unwrap();
}

/// The job command line: engine flags after the command; a job with
/// subcommands of its own; and `stop --savepoint` against a running job
/// whose own flags (one of them required) are not given.
#[test]
fn the_job_command_line_mixes_flags_takes_job_subcommands_and_controls_without_job_flags() {
    use clap::{Parser, Subcommand};
    use eddy_engine::config::{EnvArgs, EnvFlags, JobCommand};

    #[derive(Parser)]
    struct Job {
        /// A flag of the job's own, required.
        #[arg(long)]
        input: PathBuf,
        #[command(flatten)]
        env: EnvArgs,
    }
    let job = Job::try_parse_from([
        "job",
        "--input",
        "in",
        "run",
        "--restore",
        "/sp",
        "--parallelism",
        "3",
    ])
    .unwrap();
    let restored = job.env.to_config().unwrap();
    assert_eq!(restored.parallelism, 3, "an engine flag after `run`");
    assert_eq!(restored.checkpoints.restore, Some(PathBuf::from("/sp")));

    #[derive(Parser)]
    struct WithCommands {
        #[command(flatten)]
        env: EnvFlags,
        #[command(subcommand)]
        command: Option<Command>,
    }
    #[derive(Subcommand)]
    enum Command {
        /// The job's own.
        Produce { n: u64 },
        #[command(flatten)]
        Engine(JobCommand),
    }
    let own = WithCommands::try_parse_from(["job", "produce", "5"]).unwrap();
    assert!(matches!(own.command, Some(Command::Produce { n: 5 })));
    let engine =
        WithCommands::try_parse_from(["job", "--parallelism", "2", "run", "--resume"]).unwrap();
    let Some(Command::Engine(run)) = &engine.command else {
        panic!("the engine's run command");
    };
    let resumed = engine.env.to_config(Some(run)).unwrap();
    assert!(resumed.checkpoints.resume && resumed.parallelism == 2);

    let dir = tempfile::tempdir().unwrap();
    let done = spawn_endless(config(dir.path()));
    let d = dir.path().display().to_string();
    let sp = dir.path().join("sp").display().to_string();
    let args = ["job", "--checkpoint-dir", &d, "stop", "--savepoint", &sp];
    assert!(
        Job::try_parse_from(args).is_err(),
        "the job's parser wants --input"
    );
    let answer = Env::control_command_from("savepoints", args)
        .unwrap()
        .expect("a control command");
    assert_eq!(answer.stopped_with_savepoint, Some(PathBuf::from(&sp)));
    assert_eq!(
        answer.to_string().trim(),
        format!("job 'savepoints': savepoint in {sp}")
    );
    let stats = finished(&done);
    assert_eq!(stats.stopped_with_savepoint, Some(PathBuf::from(&sp)));
    assert!(
        Env::control_command_from("savepoints", ["job", "--parallelism", "2"])
            .unwrap()
            .is_none(),
        "no command: the job runs"
    );
}

/// `status`, `list` and `cancel` need only the checkpoint directory: a
/// running job says so (with its process), a cancelled one ends with
/// "cancelled" and does not restart, and then it is not running.
#[test]
fn status_list_and_cancel_answer_from_the_checkpoint_directory() {
    let dir = tempfile::tempdir().unwrap();
    let done = spawn_endless(config(dir.path()).with_restart_strategy(
        RestartStrategy::FixedDelay {
            attempts: 5,
            delay: Duration::ZERO,
        },
    ));
    let d = dir.path().display().to_string();
    let ask = |command: &str| {
        Env::control_command_from("savepoints", ["job", "--checkpoint-dir", &d, command])
            .unwrap()
            .expect("a control command")
            .to_string()
    };
    let running = format!("job 'savepoints': running (process {})", std::process::id());
    assert!(ask("status").starts_with(&running), "{}", ask("status"));
    assert!(ask("list").starts_with(&running), "{}", ask("list"));
    assert_eq!(ask("cancel").trim(), "job 'savepoints': cancelled");
    let result = done
        .recv_timeout(Duration::from_secs(60))
        .expect("the job ends");
    assert!(
        result.unwrap_err().contains("cancelled"),
        "cancelled, not restarted"
    );
    assert!(
        ask("status").starts_with("job 'savepoints': not running"),
        "{}",
        ask("status")
    );
}
