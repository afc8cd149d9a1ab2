//! Checkpoint figures: a per-key count over `--keys` keys, with the job's
//! standard flags (`--checkpoint-interval`, `--parallelism`, …). Prints the
//! throughput, every checkpoint's duration and size, and the time to restore
//! the final state and touch every key again.
//!
//! ```text
//! cargo run --release -p eddy-bench --bin checkpoints -- --keys 1000000 --events 10000000 --checkpoint-interval 1s
//! ```

use std::time::Instant;

use clap::Parser;
use eddy::connectors::datagen::{DataGen, SplitMix64};
use eddy::connectors::discard::DiscardSink;
use eddy::engine::checkpoint::latest_checkpoint;
use eddy::prelude::*;

#[derive(Parser)]
#[command(about = "Checkpoint duration, size and recovery of a per-key count")]
struct Cli {
    /// Number of distinct keys (the state size).
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Number of events (key = index % keys).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Also measure the restore of the final checkpoint.
    #[arg(long)]
    recovery: bool,
    /// Take a savepoint (a full snapshot in the canonical format) this many
    /// seconds into the run, into a temporary directory.
    #[arg(long, value_name = "SECS")]
    savepoint_after: Option<f64>,
    #[command(flatten)]
    env: EnvArgs,
}

const COUNT: ValueStateDesc<u64> = ValueStateDesc::new("count");

/// Counts per key; emits nothing (the state is what is measured).
#[derive(Clone)]
struct CountPerKey;

impl KeyedProcessFunction<u64, u64, u64> for CountPerKey {
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

fn build(env: &Env, source_uid: &str, events: u64, keys: u64) {
    env.source(DataGen::new(move |i, _: &mut SplitMix64| i % keys).with_count(events))
        .uid(source_uid)
        .key_by(|k| *k)
        .process(CountPerKey)
        .uid("counts")
        .sink(DiscardSink::new())
        .uid("results");
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.env.to_config()?;
    let env = Env::with_config(config.clone())?;
    build(&env, "numbers", cli.events, cli.keys);
    let savepoint_dir = std::env::temp_dir().join(format!("eddy-bench-sp-{}", std::process::id()));
    let taker = cli.savepoint_after.map(|secs| {
        let control = env.control();
        let dir = savepoint_dir.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs_f64(secs));
            if let Err(e) = control.savepoint(dir) {
                eprintln!("savepoint failed: {e}");
            }
        })
    });
    let started = Instant::now();
    let stats = env.execute("checkpoint-bench")?;
    if let Some(taker) = taker {
        let _ = taker.join();
        let _ = std::fs::remove_dir_all(&savepoint_dir);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} events over {} keys, parallelism {}: {:.0} events/s ({secs:.3} s)",
        cli.events,
        cli.keys,
        config.parallelism,
        cli.events as f64 / secs
    );
    for c in &stats.checkpoints {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        println!(
            "{:<10} {:>4}  {:>8.1} ms  {:>8.1} MiB state files  {:>8.1} MiB uploaded  {:>8.1} MiB shared",
            format!("{:?}", c.kind).to_lowercase(),
            c.id.0,
            c.duration.as_secs_f64() * 1e3,
            mib(c.bytes),
            mib(c.uploaded_bytes),
            mib(c.shared_bytes),
        );
    }
    if cli.recovery {
        let saved =
            latest_checkpoint(&config.checkpoints.dir, "checkpoint-bench").ok_or_else(|| {
                anyhow::anyhow!("no checkpoint to restore; set --checkpoint-interval")
            })?;
        let mut restore = config.clone().with_restore(&saved);
        restore.checkpoints.allow_non_restored_state = true;
        restore.checkpoints.interval = None;
        // One event per key: every key's state is decoded and updated.
        let timed = |config: EnvConfig| -> anyhow::Result<f64> {
            let env = Env::with_config(config)?;
            build(&env, "touch-every-key", cli.keys, cli.keys);
            let started = Instant::now();
            env.execute("checkpoint-bench-recovery")?;
            Ok(started.elapsed().as_secs_f64())
        };
        let mut fresh = config.clone();
        fresh.checkpoints.interval = None;
        let without = timed(fresh)?;
        let with = timed(restore)?;
        println!(
            "recovery: touching every key takes {:.3} s after restoring {} vs {:.3} s from empty state: restore costs {:.3} s",
            with,
            saved.display(),
            without,
            with - without
        );
    }
    Ok(())
}
