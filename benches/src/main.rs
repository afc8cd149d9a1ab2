//! The Nexmark throughput runner: runs a query on Eddy and as a hand-written
//! single-threaded loop over the same generated events, in one process, and
//! prints both rates and their ratio.
//!
//! ```text
//! cargo run --release -p eddy-bench -- --query q1 --events 20000000 --parallelism 1
//! ```

mod queries;

use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use eddy::connectors::nexmark::{NexmarkConfig, NexmarkGenerator};
use eddy::engine::runtime::stats::peak_rss_bytes;
use eddy::prelude::*;

use queries::Query;

#[derive(Parser)]
#[command(about = "Nexmark on Eddy vs a hand-written loop")]
struct Cli {
    /// Query to run.
    #[arg(long, value_enum)]
    query: Query,
    /// Number of Nexmark events to generate.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Skip the hand-written loop.
    #[arg(long)]
    no_loop: bool,
    #[command(flatten)]
    env: EnvArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.env.to_config()?;
    let nexmark = NexmarkConfig::default();
    println!(
        "query {:?}, {} events, parallelism {}",
        cli.query, cli.events, config.parallelism
    );

    let env = Env::with_config(config)?;
    cli.query.build(&env, nexmark.clone(), cli.events)?;
    let started = Instant::now();
    let stats = env.execute(&format!("nexmark-{:?}", cli.query))?;
    let engine_secs = started.elapsed().as_secs_f64();
    let engine_results = stats
        .operator("results")
        .context("the query has no operator with uid 'results'")?
        .records_in;
    let peak_rss = peak_rss_bytes();
    let engine_rate = cli.events as f64 / engine_secs;
    println!(
        "engine events/s   {:>14.0}   ({engine_secs:.3} s, {engine_results} results)",
        engine_rate
    );

    if !cli.no_loop {
        let generator = NexmarkGenerator::new(nexmark)?;
        let started = Instant::now();
        let loop_results = cli.query.run_loop(&generator, cli.events);
        let loop_secs = started.elapsed().as_secs_f64();
        println!(
            "loop events/s     {:>14.0}   ({loop_secs:.3} s, {loop_results} results)",
            cli.events as f64 / loop_secs
        );
        println!(
            "ratio engine/loop {:>14.2}   (engine time / loop time)",
            engine_secs / loop_secs
        );
        if loop_results != engine_results {
            bail!("engine produced {engine_results} results but the loop {loop_results}");
        }
    }
    match peak_rss {
        Some(bytes) => println!(
            "peak RSS          {:>11.1} MiB",
            bytes as f64 / (1 << 20) as f64
        ),
        None => println!("peak RSS          unavailable on this platform"),
    }
    Ok(())
}
