//! The cluster's network path between processes: backpressure from a stuck
//! sink on one worker crosses the TCP connection from the other worker and
//! bounds what its sources produce, while another channel on the same
//! connection keeps flowing.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ClusterProcesses;
use eddy::connectors::datagen::{DataGen, SplitMix64};
use eddy::engine::testing::GatedSink;
use eddy::prelude::*;

const A_TOTAL: u64 = 20_000;
const B_TOTAL: u64 = 5_000;
const BATCH: usize = 16;
const CAPACITY: usize = 2;

/// A count kept by one process, published to `<dir>/<name>-<pid>` (each
/// write replaces the file whole), for the parent test to add up.
struct Tally {
    path: PathBuf,
    count: Mutex<u64>,
}

impl Tally {
    fn new(dir: &Path, name: &str) -> Arc<Self> {
        Arc::new(Tally {
            path: dir.join(format!("{name}-{}", std::process::id())),
            count: Mutex::new(0),
        })
    }

    fn add(&self, n: u64) {
        // Held while publishing, so the file never goes back.
        let mut count = self.count.lock().unwrap();
        *count += n;
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, count.to_string()).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }
}

/// The sum of the tallies named `name` in `dir`.
fn total(dir: &Path, name: &str) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            file.starts_with(&format!("{name}-")) && !file.ends_with(".tmp")
        })
        .map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap()
                .trim()
                .parse::<u64>()
                .unwrap()
        })
        .sum()
}

/// The child half: one process of the cluster. Pipeline A's sink subtask 1
/// (on worker 1) is stuck until the parent opens it; pipeline B runs
/// freely. Subtask `s` runs on worker `s`, so A's and B's channels from
/// subtask 0 to subtask 1 share the connection from worker 0 to worker 1.
#[test]
fn child_backpressure_process() {
    let Some(role) = common::cluster_role() else {
        return;
    };
    let dir = PathBuf::from(std::env::var("EDDY_CLUSTER_DIR").unwrap());
    let mut config = EnvConfig::default()
        .with_parallelism(2)
        .with_batch_size(BATCH)
        .with_channel_capacity(CAPACITY)
        .with_buffer_timeout(Duration::ZERO);
    config.log_format = Some(eddy::engine::logging::LogFormat::Text);
    config.cluster = Some(role);
    let env = Env::with_config(config).unwrap();
    let produced = Tally::new(&dir, "a-produced");
    let sink = |name: &str, gated| {
        let (open, received) = (dir.join("open"), Tally::new(&dir, name));
        GatedSink::new(gated, move || open.exists(), move |n| received.add(n))
    };
    env.source(
        DataGen::new(|i, _: &mut SplitMix64| i)
            .with_count(A_TOTAL)
            .with_splits(2),
    )
    .uid("a-source")
    .map(move |v| {
        produced.add(1);
        v
    })
    .uid("a-count")
    .rebalance()
    .sink(sink("a-received", Some(1)))
    .uid("a-sink");
    env.source(
        DataGen::new(|i, _: &mut SplitMix64| i)
            .with_count(B_TOTAL)
            .with_splits(2),
    )
    .uid("b-source")
    .rebalance()
    .sink(sink("b-received", None))
    .uid("b-sink");
    env.execute("backpressure").unwrap();
}

#[test]
fn a_stuck_sink_on_one_worker_bounds_its_sources_while_another_channel_on_the_connection_flows() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ClusterProcesses::start("child_backpressure_process", dir.path(), 2, vec![]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while total(dir.path(), "b-received") < B_TOTAL {
        assert!(
            Instant::now() < deadline,
            "pipeline B delivered only {} of {B_TOTAL} records",
            total(dir.path(), "b-received")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Settle, then count: per source subtask at most the stuck channel's
    // window, its output buffer and the batch in hand, and as much again
    // to the free subtask (rebalance alternates).
    std::thread::sleep(Duration::from_millis(300));
    let bound = (2 * 2 * (CAPACITY + 4) * BATCH) as u64;
    let produced = total(dir.path(), "a-produced");
    assert!(
        produced <= bound,
        "{produced} records of A produced while its consumer is stuck, bound {bound}"
    );
    std::fs::write(dir.path().join("open"), "").unwrap();
    assert!(cluster.wait(), "the job ends once the sink is open");
    assert_eq!(total(dir.path(), "a-received"), A_TOTAL);
    assert_eq!(total(dir.path(), "a-produced"), A_TOTAL);
}
