//! The transactional file sink through whole jobs: with and without
//! checkpoints, every value is committed exactly once and no uncommitted
//! file is left behind.

use std::path::Path;
use std::time::Duration;

use eddy_connectors::datagen::{DataGen, SplitMix64};
use eddy_connectors::file::TransactionalFileSink;
use eddy_engine::config::EnvConfig;
use eddy_engine::dsl::Env;
use eddy_engine::runtime::stats::JobStats;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const COUNT: u64 = 1_000;

/// Runs `COUNT` numbers at parallelism 2 through the sink into `out`.
fn run(
    config: EnvConfig,
    out: &Path,
    rate: Option<f64>,
) -> Result<JobStats, Box<dyn std::error::Error>> {
    let env = Env::with_config(config.with_parallelism(2))?;
    let mut numbers = DataGen::new(|i, _: &mut SplitMix64| i).with_count(COUNT);
    if let Some(rate) = rate {
        numbers = numbers.with_rate(rate);
    }
    env.source(numbers)
        .sink(TransactionalFileSink::json_lines(out).exactly_once());
    Ok(env.execute("transactional")?)
}

/// The committed values, sorted, after checking nothing is left hidden.
fn committed(out: &Path) -> Result<Vec<u64>, Box<dyn std::error::Error>> {
    let hidden = TransactionalFileSink::<u64>::in_progress_files(out)?;
    assert!(hidden.is_empty(), "uncommitted files left: {hidden:?}");
    let all_entries = std::fs::read_dir(out)?.count();
    let parts = TransactionalFileSink::<u64>::committed_files(out)?.len();
    assert_eq!(all_entries, parts, "only committed part files in {out:?}");
    let mut values = TransactionalFileSink::<u64>::read_committed(out)?;
    values.sort_unstable();
    Ok(values)
}

#[test]
fn transactional_sink_without_checkpoints_commits_everything_at_the_end() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let stats = run(EnvConfig::default(), &out, None)?;
    assert!(stats.checkpoints.is_empty());
    assert_eq!(committed(&out)?, (0..COUNT).collect::<Vec<_>>());
    // One end-of-input transaction per subtask.
    let files = TransactionalFileSink::<u64>::committed_files(&out)?;
    assert_eq!(files.len(), 2, "{files:?}");
    Ok(())
}

#[test]
fn transactional_sink_with_checkpoints_commits_each_value_once() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let config = EnvConfig::default()
        .with_checkpoint_interval(Duration::from_millis(20))
        .with_checkpoint_dir(tmp.path().join("chk"));
    // 1000 values at 4000 per second: about 250 ms, a dozen checkpoints.
    let stats = run(config, &out, Some(4_000.0))?;
    assert!(
        stats.checkpoints.len() > 1,
        "periodic checkpoints besides the end-of-input one: {:?}",
        stats.checkpoints
    );
    assert_eq!(committed(&out)?, (0..COUNT).collect::<Vec<_>>());
    // Output was committed at periodic checkpoints, not only at the end
    // (whose transactions are named with `CheckpointId::END`).
    let files = TransactionalFileSink::<u64>::committed_files(&out)?;
    let at_end = files
        .iter()
        .filter(|f| f.to_string_lossy().contains(&format!("part-{}-", u64::MAX)))
        .count();
    assert!(at_end <= 2 && files.len() > at_end, "{files:?}");
    Ok(())
}
