//! The RocksDB backend's incremental checkpoints: each checkpoint uploads
//! only SST files that shared storage does not have yet, and shared files
//! no retained checkpoint needs are deleted; the state's size in bytes is
//! reported.
#![cfg(feature = "rocksdb")]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use common::CountingSource;
use eddy_engine::config::{EnvConfig, StateBackendKind};
use eddy_engine::dsl::Env;
use eddy_engine::error::UserResult;
use eddy_engine::operator::Collector;
use eddy_engine::process::{KeyedContext, KeyedProcessFunction};
use eddy_engine::sink::CollectSink;
use eddy_engine::state::ValueStateDesc;

const COUNT: ValueStateDesc<u64> = ValueStateDesc::new("count");

#[derive(Clone)]
struct Count;

impl KeyedProcessFunction<u64, u64, u64> for Count {
    fn process(
        &mut self,
        _value: u64,
        ctx: &mut KeyedContext<'_, u64>,
        _out: &mut Collector<'_, u64>,
    ) -> UserResult {
        let n = ctx.state(&COUNT).get()?.unwrap_or(0);
        ctx.state(&COUNT).set(n + 1)?;
        Ok(())
    }
}

fn shared_of(metadata: &std::path::Path) -> BTreeSet<String> {
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(metadata.join("_metadata")).unwrap()).unwrap();
    json["shared"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn incremental_checkpoints_reuse_uploaded_files_and_delete_unneeded_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EnvConfig::default()
        .with_parallelism(1)
        .with_state_backend(StateBackendKind::Rocksdb)
        .with_checkpoint_interval(Duration::from_millis(20))
        .with_checkpoint_dir(dir.path());
    config.checkpoints.retained = 3;
    let env = Env::with_config(config).unwrap();
    let (sink, _) = CollectSink::new();
    env.source(CountingSource {
        count: Some(300_000),
        produced: Arc::new(AtomicU64::new(0)),
    })
    .map(|v| {
        if v % 1000 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        v % 5_000
    })
    .key_by(|v| *v)
    .process(Count)
    .uid("count")
    .sink(sink);
    let stats = env.execute("incremental").unwrap();
    assert!(stats.checkpoints.len() >= 4, "{:?}", stats.checkpoints);
    let count = stats.operators.iter().find(|o| o.uid == "count").unwrap();
    assert!(
        count.metrics.get("state_bytes").is_some_and(|b| *b > 0),
        "RocksDB reports the bytes its state takes: {:?}",
        count.metrics
    );

    let root = dir.path().join("incremental");
    let mut retained: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("chk-"))
        .collect();
    retained.sort();
    assert_eq!(retained.len(), 3, "the newest three are kept: {retained:?}");
    let sets: Vec<BTreeSet<String>> = retained.iter().map(|p| shared_of(p)).collect();
    assert!(
        sets.windows(2).any(|w| !w[0].is_disjoint(&w[1])),
        "a later checkpoint refers to files an earlier one uploaded"
    );
    let needed: BTreeSet<String> = sets.into_iter().flatten().collect();
    let present: BTreeSet<String> = std::fs::read_dir(root.join("shared"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        present, needed,
        "shared storage holds exactly what retained checkpoints need"
    );
}
