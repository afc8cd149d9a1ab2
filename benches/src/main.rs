//! The Nexmark throughput runner: runs a query on Eddy and as a hand-written
//! single-threaded loop over the same generated events, in one process, and
//! prints both rates and their ratio. It fails when the two disagree on the
//! number of results, or, for the windowed queries, on the results' summary.
//!
//! ```text
//! cargo run --release -p eddy-bench -- --query q1 --events 20000000 --parallelism 1
//! cargo run --release -p eddy-bench -- --query q5 --size-secs 60 --slide-secs 1
//! ```
//!
//! With `--anchor` it runs one of the Apache Flink anchor's queries over the
//! anchor's CSV input instead (no loop), optionally writing the results as
//! CSV for the anchor's `compare.py`:
//!
//! ```text
//! cargo run --release -p eddy-bench -- --anchor q_tumble --input bids.csv --out q_tumble.csv
//! ```

mod anchor;
mod queries;
mod summary;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use eddy::connectors::nexmark::{NexmarkConfig, NexmarkGenerator};
use eddy::engine::runtime::stats::{peak_rss_bytes, JobStats};
use eddy::prelude::*;

use anchor::AnchorQuery;
use queries::{Params, Query};

#[derive(Parser)]
#[command(about = "Nexmark on Eddy vs a hand-written loop, or the Flink anchor's queries on Eddy")]
struct Cli {
    /// Nexmark query to run on the engine and as a loop.
    #[arg(
        long,
        value_enum,
        required_unless_present = "anchor",
        conflicts_with = "anchor"
    )]
    query: Option<Query>,
    /// Flink anchor query to run on the engine over `--input`.
    #[arg(long, value_enum, requires = "input")]
    anchor: Option<AnchorQuery>,
    /// Number of Nexmark events to generate.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// q5: window size in seconds.
    #[arg(long, default_value_t = 10)]
    size_secs: u64,
    /// q5: window slide in seconds.
    #[arg(long, default_value_t = 2)]
    slide_secs: u64,
    /// Skip the hand-written loop.
    #[arg(long)]
    no_loop: bool,
    /// Print the job's per-operator statistics.
    #[arg(long)]
    stats: bool,
    /// --anchor: gen.py's CSV with a header row added (a file, or a
    /// directory of files: one split each).
    #[arg(long)]
    input: Option<PathBuf>,
    /// --anchor: gen.py's --disorder-ms; the watermark is the highest
    /// timestamp seen minus (disorder + 1000) ms, as in the anchor.
    #[arg(long, default_value_t = 3000)]
    disorder_ms: u64,
    /// --anchor: write the results as CSV (the anchor's column order) here.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    env: EnvArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.env.to_config()?;
    let env = Env::with_config(config)?;
    match (cli.query, cli.anchor, &cli.input) {
        (Some(query), _, _) => run_nexmark(&cli, &env, query),
        (None, Some(query), Some(input)) => run_anchor(&cli, &env, query, input),
        _ => bail!("give --query, or --anchor with --input"),
    }
}

fn print_peak_rss() {
    match peak_rss_bytes() {
        Some(bytes) => println!(
            "peak RSS          {:>11.1} MiB",
            bytes as f64 / (1 << 20) as f64
        ),
        None => println!("peak RSS          unavailable on this platform"),
    }
}

fn results_in(stats: &JobStats) -> anyhow::Result<u64> {
    Ok(stats
        .operator("results")
        .context("the query has no operator with uid 'results'")?
        .records_in)
}

fn run_nexmark(cli: &Cli, env: &Env, query: Query) -> anyhow::Result<()> {
    let nexmark = NexmarkConfig::default();
    let params = Params {
        events: cli.events,
        size: Duration::from_secs(cli.size_secs),
        slide: Duration::from_secs(cli.slide_secs),
    };
    params.validate()?;
    let window = if query == Query::Q5 {
        format!(", window {} s / {} s", cli.size_secs, cli.slide_secs)
    } else {
        String::new()
    };
    println!(
        "query {query:?}, {} events, parallelism {}{window}",
        cli.events,
        env.config().parallelism
    );

    let engine_summary = query.build(env, nexmark.clone(), &params)?;
    let started = Instant::now();
    let stats = env.execute(&format!("nexmark-{query:?}"))?;
    let engine_secs = started.elapsed().as_secs_f64();
    // A control command, or a worker of a cluster: nothing to measure here.
    if let Some(answer) = &stats.answer {
        println!("{answer}");
        return Ok(());
    }
    if cli.stats {
        print!("{stats}");
    }
    let engine_results = results_in(&stats)?;
    let peak_rss = peak_rss_bytes();
    let engine_summary = engine_summary.map(|s| *s.lock().unwrap_or_else(|p| p.into_inner()));
    println!(
        "engine events/s   {:>14.0}   ({engine_secs:.3} s, {engine_results} results)",
        cli.events as f64 / engine_secs
    );
    if let Some(s) = &engine_summary {
        println!("engine summary    {s}");
    }

    if !cli.no_loop {
        let generator = NexmarkGenerator::new(nexmark)?;
        let started = Instant::now();
        let loop_summary = query.run_loop(&generator, &params);
        let loop_secs = started.elapsed().as_secs_f64();
        let loop_results = loop_summary.results;
        println!(
            "loop events/s     {:>14.0}   ({loop_secs:.3} s, {loop_results} results)",
            cli.events as f64 / loop_secs
        );
        if engine_summary.is_some() {
            println!("loop summary      {loop_summary}");
        }
        println!(
            "ratio engine/loop {:>14.2}   (engine time / loop time)",
            engine_secs / loop_secs
        );
        if loop_results != engine_results {
            bail!("engine produced {engine_results} results but the loop {loop_results}");
        }
        if let Some(s) = engine_summary {
            if s != loop_summary {
                bail!("engine results ({s}) differ from the loop's ({loop_summary})");
            }
        }
    }
    // Measured before the loop ran, so it is the engine's alone.
    match peak_rss {
        Some(bytes) => println!(
            "peak RSS          {:>11.1} MiB   (engine run)",
            bytes as f64 / (1 << 20) as f64
        ),
        None => println!("peak RSS          unavailable on this platform"),
    }
    Ok(())
}

fn run_anchor(
    cli: &Cli,
    env: &Env,
    query: AnchorQuery,
    input: &std::path::Path,
) -> anyhow::Result<()> {
    println!(
        "anchor query {query:?}, input {}, parallelism {}",
        input.display(),
        env.config().parallelism
    );
    let output = anchor::build(env, query, input, cli.disorder_ms, cli.out.as_deref());
    let started = Instant::now();
    let stats = env.execute(&format!("anchor-{query:?}"))?;
    let secs = started.elapsed().as_secs_f64();
    if cli.stats {
        print!("{stats}");
    }
    let source = stats
        .operator("bids")
        .context("no source with uid 'bids'")?;
    if source.dead_letters > 0 {
        bail!(
            "{} input rows did not decode (is the header row there?)",
            source.dead_letters
        );
    }
    let events = source.records_out;
    let results = results_in(&stats)?;
    println!(
        "engine events/s   {:>14.0}   ({secs:.3} s, {events} events, {results} results)",
        events as f64 / secs
    );
    print_peak_rss();
    if let Some(n) = output.write()? {
        println!(
            "wrote {n} rows to {}",
            cli.out.as_deref().unwrap_or(input).display()
        );
    }
    Ok(())
}
