//! Fraud detection: flag a card that makes a small payment (under $1)
//! followed, within one minute of event time, by a large one (over $500).
//!
//! Payments are generated (seeded, deterministic), processed in parallel on
//! event time with per-card keyed state and timers (see `fraud/mod.rs`); the
//! alerts are the same at any parallelism. Prints the first alerts, the alert count, the
//! throughput and peak memory.
//!
//! ```text
//! cargo run --release --example fraud_detection                       # 2 M payments
//! cargo run --release --example fraud_detection -- --events 10000000 --parallelism 2
//! cargo run --release --example fraud_detection -- --help
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clap::Parser;
use eddy::connectors::datagen::{DataGen, SplitMix64};
use eddy::connectors::discard::DiscardSink;
use eddy::connectors::print::PrintSink;
use eddy::engine::runtime::stats::peak_rss_bytes;
use eddy::prelude::*;

#[path = "fraud/mod.rs"]
mod fraud;

use fraud::{payment, SmallThenLarge};

#[derive(Parser)]
#[command(about = "Flags a small card payment followed within a minute by a large one")]
struct Cli {
    /// Payments to generate (the job ends after them).
    #[arg(long, global = true, default_value_t = 2_000_000)]
    events: u64,
    /// Number of distinct cards.
    #[arg(long, global = true, default_value_t = 10_000)]
    cards: u64,
    /// How many alerts to print (all are counted).
    #[arg(long, global = true, default_value_t = 10)]
    show: u64,
    /// Generate at most this many payments per second (to watch
    /// checkpoints, savepoints and restores at work) [default: no limit].
    #[arg(long, global = true)]
    rate: Option<f64>,
    #[command(flatten)]
    env: EnvArgs,
}

fn main() -> anyhow::Result<()> {
    // `savepoint` / `stop --savepoint`: answered here, needing no job flag.
    if let Some(answer) = Env::control_command("fraud-detection")? {
        print!("{answer}");
        return Ok(());
    }
    let cli = Cli::parse();
    let env = Env::with_config(cli.env.to_config()?)?;
    let cards = cli.cards.max(1);

    let mut payments =
        DataGen::new(move |i, rng: &mut SplitMix64| payment(i, rng, cards)).with_count(cli.events);
    if let Some(rate) = cli.rate {
        payments = payments.with_rate(rate);
    }
    let alerts = env
        .source(payments)
        .uid("payments")
        .assign_timestamps(fraud::watermarks())
        .key_by(|p| p.card)
        .process(SmallThenLarge)
        .uid("small-then-large")
        .name("SmallThenLarge");
    alerts.sink(DiscardSink::new()).uid("alerts").name("Alerts");

    // Print a sample: the first `--show` alerts, whichever subtask finds them.
    let printed = Arc::new(AtomicU64::new(0));
    let show = cli.show;
    alerts
        .filter(move |_| printed.fetch_add(1, Ordering::Relaxed) < show)
        .name("FirstAlerts")
        .sink(PrintSink::with_prefix("alert"))
        .uid("print-alerts");

    if env.config().control.is_none() {
        println!("{}", env.explain()?.text);
    }
    let stats = env.execute("fraud-detection")?;
    if let Some(savepoint) = &stats.stopped_with_savepoint {
        println!("savepoint in {}", savepoint.display());
        return Ok(());
    }
    let alerts = stats.operator("alerts").map_or(0, |o| o.records_in);
    let secs = stats.duration.as_secs_f64();
    println!("{stats}");
    println!(
        "{alerts} alerts in {} payments; {:.0} payments/s at parallelism {}",
        cli.events,
        cli.events as f64 / secs,
        env.config().parallelism
    );
    if let Some(bytes) = peak_rss_bytes() {
        println!("peak RSS {:.1} MiB", bytes as f64 / (1 << 20) as f64);
    }
    Ok(())
}
