//! End-to-end figures of the three pipelines (`docs/pipelines.md`) against
//! running servers; `scripts/pipeline.sh` starts them and the topics:
//!
//! ```text
//! BENCH="--mode throughput" scripts/pipeline.sh fraud_alerts 1000000
//! BENCH="--mode latency" scripts/pipeline.sh cdc_materialized_view 400000 20000
//! ```
//!
//! - **throughput**: the input is produced first; the job (parallelism 2,
//!   checkpoints every second, exactly-once sinks) reads it as a backlog,
//!   three times from the start; events/s of each run.
//! - **latency** (`cdc_materialized_view`): the input is produced at
//!   `--rate` while the job runs, with a probe every 500 changes — an order
//!   of a customer of its own. Watchers poll Redis (`EXISTS`, every
//!   millisecond) and ClickHouse (every 10 ms) for each probe's customer;
//!   the delay from producing a probe to seeing it, p50/p99/max.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use eddy::connectors::clickhouse::execute;
use eddy::connectors::format::debezium::{Change, ChangeOp};
use eddy::prelude::*;

#[path = "../../../examples/pipelines/cdc_materialized_view.rs"]
mod cdc_materialized_view;
#[path = "../../../examples/pipelines/clickstream_sessions.rs"]
mod clickstream_sessions;
#[path = "../../../examples/fraud/mod.rs"]
mod fraud;
#[path = "../../../examples/pipelines/fraud_alerts.rs"]
mod fraud_alerts;
// The examples' command-line flags are not used here.
#[path = "../../../examples/pipelines/any.rs"]
mod any;
#[allow(dead_code)]
#[path = "../../../examples/pipelines/kafka_input.rs"]
mod kafka_input;

use any::Pipeline;
use kafka_input::Message;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Throughput,
    Latency,
}

#[derive(Parser)]
#[command(about = "End-to-end throughput and latency of the pipelines")]
struct Cli {
    /// What to measure.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Which pipeline.
    #[arg(long, value_enum)]
    pipeline: Pipeline,
    /// Kafka bootstrap servers.
    #[arg(long)]
    kafka: String,
    /// Redis URL.
    #[arg(long, default_value = "")]
    redis: String,
    /// ClickHouse HTTP URL.
    #[arg(long, default_value = "")]
    clickhouse: String,
    /// Input messages.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Latency: input messages per second.
    #[arg(long, default_value_t = 20_000.0)]
    rate: f64,
    /// Parallelism of the job.
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
    /// Throughput: runs of the job.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Throughput: the topic holds the input already (from an earlier
    /// call, on a topic that held nothing else): do not produce it.
    #[arg(long)]
    input_ready: bool,
}

impl Cli {
    /// Where the servers are.
    fn endpoints(&self) -> any::Endpoints {
        any::Endpoints {
            kafka: self.kafka.clone(),
            redis: self.redis.clone(),
            clickhouse: self.clickhouse.clone(),
        }
    }

    fn env(&self) -> anyhow::Result<(Env, tempfile::TempDir)> {
        let dir = tempfile::tempdir()?;
        let config = EnvConfig::default()
            .with_parallelism(self.parallelism)
            .with_checkpoint_interval(Duration::from_secs(1))
            .with_checkpoint_dir(dir.path());
        Ok((Env::with_config(config)?, dir))
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.mode {
        Mode::Throughput => throughput(&cli),
        Mode::Latency => latency(&cli),
    }
}

fn throughput(cli: &Cli) -> anyhow::Result<()> {
    if !cli.input_ready {
        kafka_input::produce(
            &cli.kafka,
            cli.pipeline.topic(),
            cli.pipeline.input(cli.events),
            None,
        )?;
    }
    let stop = cli.pipeline.stop_after(cli.events);
    for run in 1..=cli.runs {
        let (env, _dir) = cli.env()?;
        cli.pipeline.build(&env, &cli.endpoints(), stop.clone())?;
        let started = Instant::now();
        let stats = env.execute(cli.pipeline.job_name())?;
        let secs = started.elapsed().as_secs_f64();
        if run == 1 {
            println!("{stats}");
        }
        println!(
            "{:?} run {run}: {} events in {secs:.2} s: {:.0} events/s (p={})",
            cli.pipeline,
            cli.events,
            cli.events as f64 / secs,
            cli.parallelism
        );
    }
    Ok(())
}

/// One probe every this many input changes.
const PROBE_EVERY: u64 = 500;
/// Probe customers and orders are numbered from here (no generated one is).
const PROBE_BASE: u64 = 1 << 40;

/// The change that creates probe `k`'s order, for a customer of its own.
fn probe(k: u64) -> Message {
    let order = cdc_materialized_view::Order {
        id: PROBE_BASE + k,
        customer: PROBE_BASE + k,
        amount_cents: 100,
    };
    let change = Change {
        before: None,
        after: Some(order),
        op: ChangeOp::Create,
        ts_ms: None,
    };
    Message {
        partition: kafka_input::partition_of(PROBE_BASE + k, 4),
        key: (PROBE_BASE + k).to_string(),
        payload: serde_json::to_vec(&change).expect("a change encodes"),
    }
}

/// The input with a probe after every [`PROBE_EVERY`] changes; `Some(k)`
/// marks probe `k`.
fn with_probes(events: u64) -> impl Iterator<Item = (Option<u64>, Message)> {
    cdc_materialized_view::input(events)
        .enumerate()
        .flat_map(|(i, m)| {
            let i = i as u64 + 1;
            let probe = (i % PROBE_EVERY == 0)
                .then(|| (Some(i / PROBE_EVERY - 1), probe(i / PROBE_EVERY - 1)));
            std::iter::once((None, m)).chain(probe)
        })
}

/// When each probe was produced and when a watcher first saw it.
struct Probes {
    produced: Mutex<Vec<Option<Instant>>>,
    seen_redis: Mutex<Vec<Option<Instant>>>,
    seen_clickhouse: Mutex<Vec<Option<Instant>>>,
}

impl Probes {
    fn new(n: usize) -> Probes {
        Probes {
            produced: Mutex::new(vec![None; n]),
            seen_redis: Mutex::new(vec![None; n]),
            seen_clickhouse: Mutex::new(vec![None; n]),
        }
    }

    /// Probes produced and not yet in `seen`.
    fn outstanding(&self, seen: &Mutex<Vec<Option<Instant>>>) -> Vec<u64> {
        let produced = self.produced.lock().unwrap();
        let seen = seen.lock().unwrap();
        (0..produced.len())
            .filter(|&k| produced[k].is_some() && seen[k].is_none())
            .map(|k| k as u64)
            .collect()
    }
}

fn latency(cli: &Cli) -> anyhow::Result<()> {
    anyhow::ensure!(
        cli.pipeline == Pipeline::CdcMaterializedView,
        "latency is measured on cdc_materialized_view"
    );
    let n = (cli.events / PROBE_EVERY) as usize;
    let probes = Probes::new(n);
    let stop = kafka_input::stopping_offsets(
        cli.pipeline.topic(),
        4,
        with_probes(cli.events).map(|(_, m)| m),
    );
    let (env, _dir) = cli.env()?;
    cli.pipeline.build(&env, &cli.endpoints(), stop)?;
    let done = AtomicBool::new(false);
    let stats = std::thread::scope(|scope| -> anyhow::Result<JobStats> {
        scope.spawn(|| {
            let messages = with_probes(cli.events).map(|(k, m)| {
                if let Some(k) = k {
                    probes.produced.lock().unwrap()[k as usize] = Some(Instant::now());
                }
                m
            });
            kafka_input::produce(&cli.kafka, cli.pipeline.topic(), messages, Some(cli.rate))
                .expect("input produced");
        });
        scope.spawn(|| watch_redis(&cli.redis, &probes, &done));
        scope.spawn(|| watch_clickhouse(&cli.clickhouse, &probes, &done));
        let stats = env.execute(cli.pipeline.job_name());
        std::thread::sleep(Duration::from_millis(500));
        done.store(true, Ordering::Relaxed);
        Ok(stats?)
    })?;
    println!("{stats}");
    let produced = probes.produced.lock().unwrap().clone();
    for (name, seen) in [
        ("Redis", &probes.seen_redis),
        ("ClickHouse", &probes.seen_clickhouse),
    ] {
        let seen = seen.lock().unwrap();
        let mut delays: Vec<f64> = produced
            .iter()
            .zip(seen.iter())
            .filter_map(|(p, s)| Some(s.as_ref()?.duration_since(*p.as_ref()?).as_secs_f64() * 1e3))
            .collect();
        delays.sort_by(f64::total_cmp);
        let at = |q: f64| delays[((delays.len() - 1) as f64 * q) as usize];
        anyhow::ensure!(!delays.is_empty(), "no probe reached {name}");
        println!(
            "{name}: {} of {n} probes seen; produced → visible p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms \
             ({} changes/s, checkpoints every 1 s, p={})",
            delays.len(),
            at(0.5),
            at(0.99),
            at(1.0),
            cli.rate,
            cli.parallelism
        );
    }
    Ok(())
}

fn watch_redis(url: &str, probes: &Probes, done: &AtomicBool) {
    let mut con = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("Redis reachable");
    while !done.load(Ordering::Relaxed) {
        let waiting: Vec<u64> = probes
            .outstanding(&probes.seen_redis)
            .into_iter()
            .take(64)
            .collect();
        if !waiting.is_empty() {
            let mut pipe = redis::pipe();
            for k in &waiting {
                pipe.exists(cdc_materialized_view::customer_key(PROBE_BASE + k));
            }
            let found: Vec<bool> = pipe.query(&mut con).expect("EXISTS");
            let now = Instant::now();
            let mut seen = probes.seen_redis.lock().unwrap();
            for (k, found) in waiting.iter().zip(found) {
                if found {
                    seen[*k as usize] = Some(now);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn watch_clickhouse(url: &str, probes: &Probes, done: &AtomicBool) {
    let query = format!(
        "SELECT customer FROM customer_totals WHERE customer >= {PROBE_BASE} FORMAT TabSeparated"
    );
    while !done.load(Ordering::Relaxed) {
        if let Ok(out) = execute(url, &query) {
            let now = Instant::now();
            let mut seen = probes.seen_clickhouse.lock().unwrap();
            for customer in out.lines().filter_map(|l| l.parse::<u64>().ok()) {
                let k = (customer - PROBE_BASE) as usize;
                if k < seen.len() && seen[k].is_none() {
                    seen[k] = Some(now);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
