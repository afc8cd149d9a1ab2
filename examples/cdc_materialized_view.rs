//! The `cdc_materialized_view` pipeline (see `docs/pipelines.md`): Debezium
//! changes of an `orders` table on Kafka → running totals per customer,
//! right under updates and deletes → Redis (serving) and ClickHouse
//! (analytics), exactly once.
//!
//! ```text
//! scripts/pipeline.sh cdc_materialized_view       # servers, input, job, results: one command
//! cargo run --release --example cdc_materialized_view -- --produce 200000   # the generator
//! cargo run --release --example cdc_materialized_view -- --events 200000 --checkpoint-interval 1s
//! ```

use clap::Parser;
use eddy::prelude::*;

#[path = "pipelines/kafka_input.rs"]
mod kafka_input;
#[path = "pipelines/cdc_materialized_view.rs"]
mod pipeline;

use pipeline::{input, Servers, ORDERS, PARTITIONS};

#[derive(Parser)]
#[command(about = "Debezium order changes on Kafka → customer totals in Redis and ClickHouse")]
struct Cli {
    /// Kafka bootstrap servers.
    #[arg(long, global = true, default_value = "127.0.0.1:9092")]
    kafka: String,
    /// Redis URL.
    #[arg(long, global = true, default_value = "redis://127.0.0.1:6379")]
    redis: String,
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
        name: "cdc-materialized-view",
        topic: ORDERS,
        partitions: PARTITIONS,
        generate: input,
        build: |env: &Env, stop| {
            let servers = Servers {
                kafka: cli.kafka.clone(),
                redis: cli.redis.clone(),
                clickhouse: cli.clickhouse.clone(),
            };
            pipeline::build(env, &servers, stop)
        },
    };
    pipeline.run(&cli.kafka, &cli.input, &cli.env)
}
