//! The `fraud_alerts` pipeline (see `docs/pipelines.md`): card payments on
//! Kafka → spend velocity and the small-then-large rule per card → alerts
//! on the Kafka topic `alerts` and risk profiles in Redis, exactly once.
//!
//! ```text
//! scripts/pipeline.sh fraud_alerts                 # servers, input, job, results: one command
//! cargo run --release --example fraud_alerts -- --produce 200000      # the generator
//! cargo run --release --example fraud_alerts -- --events 200000 --checkpoint-interval 1s
//! ```

use clap::Parser;
use eddy::prelude::*;

#[path = "fraud/mod.rs"]
mod fraud;
#[path = "pipelines/kafka_input.rs"]
mod kafka_input;
#[path = "pipelines/fraud_alerts.rs"]
mod pipeline;

use pipeline::{input, Servers, PARTITIONS, PAYMENTS};

#[derive(Parser)]
#[command(about = "Card payments on Kafka → fraud alerts on Kafka and risk profiles in Redis")]
struct Cli {
    /// Kafka bootstrap servers.
    #[arg(long, global = true, default_value = "127.0.0.1:9092")]
    kafka: String,
    /// Redis URL.
    #[arg(long, global = true, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    #[command(flatten)]
    input: kafka_input::InputArgs,
    #[command(flatten)]
    env: EnvArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let pipeline = kafka_input::Pipeline {
        name: "fraud-alerts",
        topic: PAYMENTS,
        partitions: PARTITIONS,
        generate: input,
        build: |env: &Env, stop| {
            let servers = Servers {
                kafka: cli.kafka.clone(),
                redis: cli.redis.clone(),
            };
            pipeline::build(env, &servers, stop)
        },
    };
    pipeline.run(&cli.kafka, &cli.input, &cli.env)
}
