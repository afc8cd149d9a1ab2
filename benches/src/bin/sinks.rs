//! Redis and ClickHouse sink throughput, at least once vs exactly once,
//! against running servers (`scripts/services/redis.sh start DIR PORT`,
//! `scripts/services/clickhouse.sh start DIR PORT`):
//!
//! ```text
//! sinks --redis redis://127.0.0.1:PORT --rows 500000 [--exactly-once] --checkpoint-interval 1s
//! sinks --clickhouse http://127.0.0.1:PORT --rows 500000 [--exactly-once] --checkpoint-interval 1s
//! ```
//!
//! Rows are `(sensor, seq, value)`; Redis gets one `HSET` per row, ClickHouse
//! one row per record in a `ReplacingMergeTree` table it creates.

use std::time::Instant;

use clap::Parser;
use eddy::connectors::clickhouse::ClickHouseSink;
use eddy::connectors::datagen::{DataGen, SplitMix64};
use eddy::connectors::redis::{RedisCommand, RedisSink};
use eddy::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(about = "Redis and ClickHouse sink throughput")]
struct Cli {
    /// A Redis server to write to.
    #[arg(long)]
    redis: Option<String>,
    /// A ClickHouse HTTP interface to write to.
    #[arg(long)]
    clickhouse: Option<String>,
    /// Rows to write.
    #[arg(long, default_value_t = 500_000)]
    rows: u64,
    /// The exactly-once sink instead of the at-least-once one.
    #[arg(long)]
    exactly_once: bool,
    #[command(flatten)]
    env: EnvArgs,
}

/// One row.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Reading {
    sensor: u64,
    seq: u64,
    value: f64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.env.to_config()?;
    let env = Env::with_config(config.clone())?;
    let rows = env.source(
        DataGen::new(|i, _: &mut SplitMix64| Reading {
            sensor: i % 1000,
            seq: i,
            value: i as f64 * 0.5,
        })
        .with_count(cli.rows),
    );
    let target = match (&cli.redis, &cli.clickhouse) {
        (Some(url), None) => {
            let sink = RedisSink::new(url.clone(), |r: &Reading| {
                vec![RedisCommand::HSet {
                    key: format!("sensor:{}", r.sensor),
                    field: r.seq.to_string(),
                    value: r.value.to_string(),
                }]
            });
            if cli.exactly_once {
                rows.sink(sink.exactly_once());
            } else {
                rows.sink(sink);
            }
            "Redis"
        }
        (None, Some(url)) => {
            let table = format!("readings_{}", std::process::id());
            let create = format!(
                "CREATE TABLE {table} (sensor UInt64, seq UInt64, value Float64, \
                 _eddy_batch String, _eddy_seq UInt64) ENGINE = ReplacingMergeTree \
                 ORDER BY (sensor, seq, _eddy_batch, _eddy_seq)"
            );
            let mut response = ureq::post(url).send(create.as_str())?;
            anyhow::ensure!(
                response.status().is_success(),
                "CREATE TABLE: {}",
                response.body_mut().read_to_string()?
            );
            let sink = ClickHouseSink::new(url.clone(), table);
            if cli.exactly_once {
                rows.sink(sink.exactly_once());
            } else {
                rows.sink(sink);
            }
            "ClickHouse"
        }
        _ => anyhow::bail!("give exactly one of --redis and --clickhouse"),
    };
    let started = Instant::now();
    env.execute("sink-bench")?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{target}, {}, parallelism {}, checkpoints {:?}: {} rows in {secs:.2} s: {:.0} rows/s",
        if cli.exactly_once {
            "exactly once"
        } else {
            "at least once"
        },
        config.parallelism,
        config.checkpoints.interval,
        cli.rows,
        cli.rows as f64 / secs
    );
    Ok(())
}
