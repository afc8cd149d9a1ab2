//! Test sources shared by the engine's integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Receiver;
use eddy_engine::config::EnvConfig;
use eddy_engine::context::RuntimeContext;
use eddy_engine::dsl::{Env, JobControl};
use eddy_engine::element::{CheckpointId, Data, Record, Timestamp};
use eddy_engine::error::BoxError;
use eddy_engine::runtime::stats::JobStats;
use eddy_engine::source::{
    Boundedness, FixedSplits, ReadStatus, Source, SourceOutput, SourceReader, Split,
    SplitEnumerator,
};
use eddy_engine::two_phase::{ExactlyOnce, TwoPhaseCommitSink, TwoPhaseCommitWriter};
use serde::{Deserialize, Serialize};

/// `count` records `0..count` (or endless), produced lazily, counted in
/// `produced` as they are made.
#[derive(Clone)]
pub struct CountingSource {
    pub count: Option<u64>,
    pub produced: Arc<AtomicU64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CountSplit {
    pub next: u64,
    pub stride: u64,
    pub index: u64,
}

impl Split for CountSplit {
    fn id(&self) -> String {
        format!("count-{}", self.index)
    }
}

impl Source for CountingSource {
    type Out = u64;
    type Split = CountSplit;
    type Reader = CountingReader;

    fn boundedness(&self) -> Boundedness {
        if self.count.is_some() {
            Boundedness::Bounded
        } else {
            Boundedness::Unbounded
        }
    }

    fn create_enumerator(
        &self,
        parallelism: usize,
    ) -> Result<Box<dyn SplitEnumerator<CountSplit>>, BoxError> {
        let n = parallelism as u64;
        Ok(FixedSplits::boxed(
            (0..n)
                .map(|i| CountSplit {
                    next: i,
                    stride: n,
                    index: i,
                })
                .collect(),
        ))
    }

    fn create_reader(&self, _ctx: &RuntimeContext) -> Result<CountingReader, BoxError> {
        Ok(CountingReader {
            count: self.count,
            produced: Arc::clone(&self.produced),
            splits: Vec::new(),
        })
    }
}

pub struct CountingReader {
    count: Option<u64>,
    produced: Arc<AtomicU64>,
    splits: Vec<CountSplit>,
}

impl SourceReader for CountingReader {
    type Out = u64;
    type Split = CountSplit;

    fn add_splits(&mut self, splits: Vec<CountSplit>) -> Result<(), BoxError> {
        self.splits.extend(splits);
        Ok(())
    }

    fn poll_next(&mut self, out: &mut SourceOutput<'_, u64>) -> Result<ReadStatus, BoxError> {
        let limit = self.count.unwrap_or(u64::MAX);
        let Some((i, split)) = self
            .splits
            .iter_mut()
            .enumerate()
            .find(|(_, s)| s.next < limit)
        else {
            return Ok(ReadStatus::Finished);
        };
        while split.next < limit && out.room() > 0 {
            self.produced.fetch_add(1, Ordering::SeqCst);
            out.emit_at(i, split.next, Timestamp(split.next as i64));
            split.next += split.stride;
        }
        if split.next >= limit {
            out.finish_split(i);
        }
        Ok(ReadStatus::MoreAvailable)
    }

    fn snapshot_splits(&self) -> Vec<CountSplit> {
        let limit = self.count.unwrap_or(u64::MAX);
        self.splits
            .iter()
            .filter(|s| s.next < limit)
            .cloned()
            .collect()
    }
}

/// What a scripted reader does on its `poll`-th call (1-based).
pub type Script =
    Arc<dyn Fn(u64, &mut SourceOutput<'_, u64>) -> Result<ReadStatus, BoxError> + Send + Sync>;

/// A bounded source with `splits` splits whose reader follows `script`: for
/// tests that need a source to act at a precise moment.
pub struct ScriptedSource {
    pub splits: u64,
    pub script: Script,
}

impl ScriptedSource {
    pub fn new(
        splits: u64,
        script: impl Fn(u64, &mut SourceOutput<'_, u64>) -> Result<ReadStatus, BoxError>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        ScriptedSource {
            splits,
            script: Arc::new(script),
        }
    }
}

pub struct ScriptedReader {
    script: Script,
    polls: u64,
}

impl Source for ScriptedSource {
    type Out = u64;
    type Split = CountSplit;
    type Reader = ScriptedReader;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    fn create_enumerator(
        &self,
        _parallelism: usize,
    ) -> Result<Box<dyn SplitEnumerator<CountSplit>>, BoxError> {
        Ok(FixedSplits::boxed(
            (0..self.splits)
                .map(|index| CountSplit {
                    next: 0,
                    stride: 1,
                    index,
                })
                .collect(),
        ))
    }

    fn create_reader(&self, _ctx: &RuntimeContext) -> Result<ScriptedReader, BoxError> {
        Ok(ScriptedReader {
            script: Arc::clone(&self.script),
            polls: 0,
        })
    }
}

impl SourceReader for ScriptedReader {
    type Out = u64;
    type Split = CountSplit;

    fn add_splits(&mut self, _splits: Vec<CountSplit>) -> Result<(), BoxError> {
        Ok(())
    }

    fn poll_next(&mut self, out: &mut SourceOutput<'_, u64>) -> Result<ReadStatus, BoxError> {
        self.polls += 1;
        (self.script)(self.polls, out)
    }

    fn snapshot_splits(&self) -> Vec<CountSplit> {
        Vec::new()
    }
}

/// How many 1 ms polls a scripted source waits for something before giving up.
pub const POLL_DEADLINE: u64 = 10_000;

/// Committed transactions by id: committing one twice changes nothing.
pub type Committed<T> = Arc<Mutex<BTreeMap<String, Vec<T>>>>;

/// Called in `prepare`, to inject faults at a barrier.
pub type OnPrepare = Arc<dyn Fn(CheckpointId) + Send + Sync>;

/// An in-memory two-phase-commit sink: a transaction is the records
/// written since the last barrier, carried in the committable itself.
pub struct MemoryTxnSink<T> {
    pub committed: Committed<T>,
    pub on_prepare: OnPrepare,
}

/// An exactly-once sink committing into `committed`.
pub fn memory_sink<T: Data + Sync>(committed: &Committed<T>) -> ExactlyOnce<MemoryTxnSink<T>> {
    ExactlyOnce::new(MemoryTxnSink {
        committed: Arc::clone(committed),
        on_prepare: Arc::new(|_| {}),
    })
}

/// Every committed record, over all transactions.
pub fn all_committed<T: Clone>(committed: &Committed<T>) -> Vec<T> {
    committed
        .lock()
        .unwrap()
        .values()
        .flatten()
        .cloned()
        .collect()
}

pub struct MemoryTxnWriter<T> {
    name: String,
    sequence: u64,
    open: Vec<T>,
    on_prepare: OnPrepare,
}

static WRITERS: AtomicU64 = AtomicU64::new(0);

impl<T: Data + Sync> TwoPhaseCommitSink for MemoryTxnSink<T> {
    type In = T;
    type Committable = (String, Vec<T>);
    type Writer = MemoryTxnWriter<T>;

    fn create_writer(&self, ctx: &RuntimeContext) -> Result<MemoryTxnWriter<T>, BoxError> {
        let n = WRITERS.fetch_add(1, Ordering::SeqCst);
        Ok(MemoryTxnWriter {
            name: format!("w{n}-{}", ctx.subtask()),
            sequence: 0,
            open: Vec::new(),
            on_prepare: Arc::clone(&self.on_prepare),
        })
    }

    fn commit(&self, (id, records): &(String, Vec<T>)) -> Result<(), BoxError> {
        self.committed
            .lock()
            .unwrap()
            .entry(id.clone())
            .or_insert_with(|| records.clone());
        Ok(())
    }
}

impl<T: Data> TwoPhaseCommitWriter for MemoryTxnWriter<T> {
    type In = T;
    type Committable = (String, Vec<T>);

    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        self.open.extend(batch.drain(..).map(|r| r.value));
        Ok(())
    }

    fn prepare(&mut self, id: CheckpointId) -> Result<Option<Self::Committable>, BoxError> {
        (self.on_prepare)(id);
        if self.open.is_empty() {
            return Ok(None);
        }
        self.sequence += 1;
        let id = format!("{}-{}", self.name, self.sequence);
        Ok(Some((id, std::mem::take(&mut self.open))))
    }
}

/// Waits until `done` holds (checked every millisecond), at most a minute;
/// fails the test naming `what` after that.
pub fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "waited a minute for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// A [`CountingSource`] of `count` records (`None`: endless).
pub fn counting(count: Option<u64>) -> CountingSource {
    CountingSource {
        count,
        produced: Arc::new(AtomicU64::new(0)),
    }
}

/// Slows a stream down to about `1 ms` per `every` records, so that a job
/// is still running when the test talks to it.
pub fn paced(every: u64) -> impl Fn(u64) -> u64 + Clone + Send + Sync + 'static {
    move |v| {
        if v % every == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        v
    }
}

/// Builds and runs a job named `name` on its own thread (an `Env` stays on
/// the thread that built it); returns its control handle and its result
/// once it runs.
pub fn spawn_job(
    name: &'static str,
    build: impl FnOnce(&Env) + Send + 'static,
    config: EnvConfig,
) -> (JobControl, Receiver<Result<JobStats, String>>) {
    let (control_tx, control_rx) = crossbeam_channel::bounded(1);
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let env = Env::with_config(config).unwrap();
        build(&env);
        control_tx.send(env.control()).unwrap();
        let _ = done_tx.send(env.execute(name).map_err(|e| e.to_string()));
    });
    let control = control_rx.recv().unwrap();
    wait_until("the job to run", || control.is_running());
    (control, done_rx)
}
