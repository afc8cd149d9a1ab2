//! The split enumerator seam: splits discovered while a job runs are read
//! exactly once, also across failures and restores (splits assigned after
//! the restored checkpoint are found again; finished ones are not).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{all_committed, memory_sink, Committed};
use eddy_engine::checkpoint::RestartStrategy;
use eddy_engine::config::EnvConfig;
use eddy_engine::context::RuntimeContext;
use eddy_engine::dsl::Env;
use eddy_engine::element::Timestamp;
use eddy_engine::error::BoxError;
use eddy_engine::source::{
    Boundedness, ReadStatus, Source, SourceOutput, SourceReader, Split, SplitEnumerator,
};
use serde::{Deserialize, Serialize};

const SPLITS: u64 = 12;
const PER_SPLIT: u64 = 400;

/// A source whose splits appear over time: 3 at first, then one more at
/// each discovery, until all 12 are there.
#[derive(Clone)]
struct Growing;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Part {
    index: u64,
    next: u64,
}

impl Split for Part {
    fn id(&self) -> String {
        format!("part-{}", self.index)
    }
}

struct GrowingEnumerator {
    revealed: u64,
}

impl SplitEnumerator<Part> for GrowingEnumerator {
    fn discover(&mut self) -> Result<Vec<Part>, BoxError> {
        self.revealed = (self.revealed + 1).clamp(3, SPLITS);
        Ok((0..self.revealed)
            .map(|index| Part { index, next: 0 })
            .collect())
    }

    fn discovery_interval(&self) -> Option<Duration> {
        (self.revealed < SPLITS).then_some(Duration::from_millis(15))
    }
}

struct GrowingReader {
    parts: Vec<Part>,
}

impl Source for Growing {
    type Out = u64;
    type Split = Part;
    type Reader = GrowingReader;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    fn create_enumerator(
        &self,
        _parallelism: usize,
    ) -> Result<Box<dyn SplitEnumerator<Part>>, BoxError> {
        Ok(Box::new(GrowingEnumerator { revealed: 0 }))
    }

    fn create_reader(&self, _ctx: &RuntimeContext) -> Result<GrowingReader, BoxError> {
        Ok(GrowingReader { parts: Vec::new() })
    }
}

impl SourceReader for GrowingReader {
    type Out = u64;
    type Split = Part;

    fn add_splits(&mut self, splits: Vec<Part>) -> Result<(), BoxError> {
        self.parts.extend(splits);
        Ok(())
    }

    fn poll_next(&mut self, out: &mut SourceOutput<'_, u64>) -> Result<ReadStatus, BoxError> {
        let Some((i, part)) = self
            .parts
            .iter_mut()
            .enumerate()
            .find(|(_, p)| p.next < PER_SPLIT)
        else {
            return Ok(ReadStatus::Finished);
        };
        // Slow enough for checkpoints and discoveries to land mid-run.
        std::thread::sleep(Duration::from_micros(300));
        for _ in 0..20.min(out.room()) {
            let v = part.index * PER_SPLIT + part.next;
            out.emit_at(i, v, Timestamp(v as i64));
            part.next += 1;
            if part.next == PER_SPLIT {
                out.finish_split(i);
                break;
            }
        }
        Ok(ReadStatus::MoreAvailable)
    }

    fn snapshot_splits(&self) -> Vec<Part> {
        self.parts
            .iter()
            .filter(|p| p.next < PER_SPLIT)
            .cloned()
            .collect()
    }
}

fn run(parallelism: usize, failures: &[u64]) -> (Vec<u64>, u32) {
    let dir = tempfile::tempdir().unwrap();
    let config = EnvConfig::default()
        .with_parallelism(parallelism)
        .with_checkpoint_interval(Duration::from_millis(20))
        .with_checkpoint_dir(dir.path())
        .with_restart_strategy(RestartStrategy::FixedDelay {
            attempts: 10,
            delay: Duration::ZERO,
        });
    let env = Env::with_config(config).unwrap();
    let committed: Committed<u64> = Default::default();
    let seen = Arc::new(AtomicU64::new(0));
    let at = failures.to_vec();
    env.source(Growing)
        .uid("growing")
        .map(move |v| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            if at.contains(&n) {
                panic!("injected failure at record {n}");
            }
            v
        })
        .uid("faults")
        .sink(memory_sink(&committed))
        .uid("sink");
    let stats = env.execute("growing").unwrap();
    let mut all = all_committed(&committed);
    all.sort_unstable();
    (all, stats.restarts)
}

#[test]
fn splits_discovered_while_running_are_read_exactly_once() {
    let want: Vec<u64> = (0..SPLITS * PER_SPLIT).collect();
    for parallelism in [1, 3, 16] {
        let (got, restarts) = run(parallelism, &[]);
        assert_eq!(restarts, 0);
        assert_eq!(got, want, "p={parallelism}");
    }
}

#[test]
fn failures_while_splits_are_being_discovered_lose_and_repeat_nothing() {
    let want: Vec<u64> = (0..SPLITS * PER_SPLIT).collect();
    for (parallelism, failures) in [(1, [700, 2_100, 3_900]), (3, [500, 1_800, 4_000])] {
        let (got, restarts) = run(parallelism, &failures);
        // Injected failures close together can hit two subtasks in the same run
        // (one restart for both), so up to three restarts; the output must be
        // exact either way.
        assert!(
            (1..=3).contains(&restarts),
            "p={parallelism}: {restarts} restarts"
        );
        assert_eq!(got, want, "p={parallelism}");
    }
}
