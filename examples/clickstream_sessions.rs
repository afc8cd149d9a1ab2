//! The `clickstream_sessions` pipeline (see `docs/pipelines.md`): page
//! views on Kafka → session windows per user with allowed lateness → one
//! row per session in ClickHouse, late views stored and counted, exactly
//! once.
//!
//! ```text
//! scripts/pipeline.sh clickstream_sessions         # servers, input, job, results: one command
//! cargo run --release --example clickstream_sessions -- --produce 200000   # the generator
//! cargo run --release --example clickstream_sessions -- --events 200000 --checkpoint-interval 1s
//! ```

use clap::Parser;
use eddy::prelude::*;

#[path = "pipelines/kafka_input.rs"]
mod kafka_input;
#[path = "pipelines/clickstream_sessions.rs"]
mod pipeline;

use pipeline::{input, Servers, PAGE_VIEWS, PARTITIONS};

#[derive(Parser)]
#[command(about = "Page views on Kafka → user sessions in ClickHouse")]
struct Cli {
    /// Kafka bootstrap servers.
    #[arg(long, global = true, default_value = "127.0.0.1:9092")]
    kafka: String,
    /// ClickHouse HTTP URL.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8123/")]
    clickhouse: String,
    #[command(flatten)]
    input: kafka_input::InputArgs,
    #[command(flatten)]
    env: EnvArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let pipeline = kafka_input::Pipeline {
        name: "clickstream-sessions",
        topic: PAGE_VIEWS,
        partitions: PARTITIONS,
        generate: input,
        build: |env: &Env, stop| {
            let servers = Servers {
                kafka: cli.kafka.clone(),
                clickhouse: cli.clickhouse.clone(),
            };
            pipeline::build(env, &servers, stop)
        },
    };
    pipeline.run(&cli.kafka, &cli.input, &cli.env)
}
