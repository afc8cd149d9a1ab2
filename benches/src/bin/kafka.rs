//! Kafka connector figures against a running broker (start one with
//! `scripts/services/kafka.sh start DIR PORT`):
//!
//! ```text
//! kafka --bootstrap 127.0.0.1:PORT --mode produce --messages 2000000   # once: the input topic
//! kafka --bootstrap 127.0.0.1:PORT --mode raw --messages 2000000       # plain rdkafka consumer
//! kafka --bootstrap 127.0.0.1:PORT --mode source --messages 2000000 --parallelism 2
//! kafka --bootstrap 127.0.0.1:PORT --mode sink --messages 1000000      # at-least-once sink
//! kafka --bootstrap 127.0.0.1:PORT --mode latency --rate 10000 --seconds 10 [--checkpoint-interval 1s]
//! kafka --bootstrap 127.0.0.1:PORT --mode slow-sink --messages 1000000 # peak RSS, slow pipeline
//! ```
//!
//! Records are ~100-byte JSON objects spread round-robin over 4 partitions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use eddy::connectors::datagen::{DataGen, SplitMix64};
use eddy::connectors::discard::DiscardSink;
use eddy::connectors::kafka::{KafkaRecord, KafkaSink, KafkaSource, StoppingOffsets};
use eddy::prelude::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

const PARTITIONS: i32 = 4;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    Produce,
    Raw,
    Source,
    Sink,
    Latency,
    SlowSink,
}

#[derive(Parser)]
#[command(about = "Kafka source and sink throughput, latency and memory")]
struct Cli {
    /// The broker.
    #[arg(long)]
    bootstrap: String,
    /// What to measure.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Messages in the input topic (produce, raw, source, slow-sink) or to
    /// write (sink).
    #[arg(long, default_value_t = 2_000_000)]
    messages: u64,
    /// The input topic.
    #[arg(long, default_value = "bench-input")]
    topic: String,
    /// Latency mode: messages per second.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Latency mode: how long to produce.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Sink mode: the exactly-once sink instead of the at-least-once one.
    #[arg(long)]
    exactly_once: bool,
    /// A librdkafka consumer property for the raw consumer and the source,
    /// `KEY=VALUE` (repeatable), e.g. `fetch.wait.max.ms=10`.
    #[arg(long = "consumer-property", value_name = "KEY=VALUE")]
    consumer_properties: Vec<String>,
    #[command(flatten)]
    env: EnvArgs,
}

/// A JSON record of about 80 bytes.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Reading {
    sensor: u64,
    seq: u64,
    value: f64,
    unit: String,
    site: String,
}

fn reading(i: u64) -> Reading {
    Reading {
        sensor: i % 10_000,
        seq: i,
        value: (i % 1000) as f64 * 0.25,
        unit: "celsius".into(),
        site: format!("plant-{:04}", i % 97),
    }
}

fn producer(bootstrap: &str) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()?)
}

fn send(
    p: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    i: u64,
    payload: &[u8],
    ts: i64,
) {
    let mut record = BaseRecord::<(), [u8]>::to(topic)
        .partition((i % PARTITIONS as u64) as i32)
        .payload(payload)
        .timestamp(ts);
    while let Err((_, r)) = p.send(record) {
        record = r;
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Where each partition ends when `n` messages went round-robin.
fn stops(topic: &str, n: u64) -> HashMap<(String, i32), i64> {
    (0..PARTITIONS)
        .map(|p| {
            let count = n / PARTITIONS as u64 + u64::from((p as u64) < n % PARTITIONS as u64);
            ((topic.to_owned(), p), count as i64)
        })
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Cli {
    fn consumer_properties(&self) -> impl Iterator<Item = (&str, &str)> {
        self.consumer_properties
            .iter()
            .filter_map(|kv| kv.split_once('='))
    }

    fn source<T: Data + Sync + serde::de::DeserializeOwned>(
        &self,
        topic: &str,
        stops: HashMap<(String, i32), i64>,
    ) -> eddy::connectors::kafka::KafkaSourceBuilder<T> {
        let mut builder = KafkaSource::<T>::builder(&self.bootstrap)
            .topics([topic.to_owned()])
            .bounded(StoppingOffsets::Offsets(stops));
        for (k, v) in self.consumer_properties() {
            builder = builder.property(k, v);
        }
        builder
    }
}

fn produce(cli: &Cli) -> anyhow::Result<()> {
    let p = producer(&cli.bootstrap)?;
    let started = Instant::now();
    let mut bytes = 0;
    for i in 0..cli.messages {
        let payload = serde_json::to_vec(&reading(i))?;
        bytes += payload.len();
        send(&p, &cli.topic, i, &payload, now_ms());
    }
    p.flush(Duration::from_secs(120))?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "produced {} messages ({:.0} bytes on average) in {secs:.2} s: {:.0} msg/s",
        cli.messages,
        bytes as f64 / cli.messages as f64,
        cli.messages as f64 / secs
    );
    Ok(())
}

fn raw(cli: &Cli) -> anyhow::Result<()> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &cli.bootstrap)
        .set("group.id", "bench-raw")
        .set("enable.auto.commit", "false");
    for (k, v) in cli.consumer_properties() {
        config.set(k, v);
    }
    let consumer: BaseConsumer = config.create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(&cli.topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let mut seen = 0;
    let mut checksum = 0u64;
    while seen < cli.messages {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            // Decode like the source does, so both do the same work.
            let r: Reading =
                serde_json::from_slice(rdkafka::Message::payload(&m).unwrap_or_default())?;
            checksum = checksum.wrapping_add(r.seq);
            seen += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "raw rdkafka consumer, decoding JSON: {seen} messages in {secs:.2} s: {:.0} msg/s (checksum {checksum})",
        seen as f64 / secs
    );
    Ok(())
}

fn source(cli: &Cli, config: EnvConfig) -> anyhow::Result<()> {
    let env = Env::with_config(config.clone())?;
    let source = cli
        .source::<Reading>(&cli.topic, stops(&cli.topic, cli.messages))
        .build()?;
    env.source(source).uid("readings").sink(DiscardSink::new());
    let started = Instant::now();
    env.execute("kafka-source-bench")?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "Eddy Kafka source, parallelism {}: {} messages in {secs:.2} s: {:.0} msg/s",
        config.parallelism,
        cli.messages,
        cli.messages as f64 / secs
    );
    Ok(())
}

fn sink(cli: &Cli, config: EnvConfig) -> anyhow::Result<()> {
    let env = Env::with_config(config.clone())?;
    let topic = format!("bench-sink-{}", std::process::id());
    let readings =
        env.source(DataGen::new(|i, _: &mut SplitMix64| reading(i)).with_count(cli.messages));
    let sink = KafkaSink::at_least_once(&cli.bootstrap, &topic);
    if cli.exactly_once {
        readings.sink(sink.exactly_once());
    } else {
        readings.sink(sink);
    }
    let started = Instant::now();
    env.execute("kafka-sink-bench")?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "Eddy Kafka sink ({}), parallelism {}, checkpoints {:?}: {} messages in {secs:.2} s: {:.0} msg/s",
        if cli.exactly_once { "exactly once" } else { "at least once" },
        config.parallelism,
        config.checkpoints.interval,
        cli.messages,
        cli.messages as f64 / secs
    );
    Ok(())
}

/// Records the latency of each record (now - its Kafka timestamp).
struct LatencySink(Arc<Mutex<Vec<i64>>>, u64);

/// Leaves out the first second of records (the job starts while they are
/// produced).
struct LatencyWriter(Arc<Mutex<Vec<i64>>>, Vec<i64>, u64);

impl Sink for LatencySink {
    type In = KafkaRecord<Reading>;
    type Writer = LatencyWriter;
    fn create_writer(&self, _ctx: &RuntimeContext) -> Result<LatencyWriter, BoxError> {
        Ok(LatencyWriter(Arc::clone(&self.0), Vec::new(), self.1))
    }
}

impl SinkWriter for LatencyWriter {
    type In = KafkaRecord<Reading>;
    fn write(&mut self, batch: &mut Vec<Record<Self::In>>) -> Result<(), BoxError> {
        let now = now_ms();
        let measured = self.2..u64::MAX;
        self.1.extend(
            batch
                .iter()
                .filter(|r| measured.contains(&r.value.value.seq))
                .filter_map(|r| r.value.timestamp.map(|t| now - t)),
        );
        Ok(())
    }
    fn finish(&mut self) -> Result<(), BoxError> {
        self.0.lock().map_err(|_| "poisoned")?.append(&mut self.1);
        Ok(())
    }
}

fn latency(cli: &Cli, config: EnvConfig) -> anyhow::Result<()> {
    let topic = format!("bench-latency-{}", std::process::id());
    let total = cli.rate * cli.seconds;
    // Create the topic with its partitions before the job looks for it.
    let p = producer(&cli.bootstrap)?;
    let warm_up = serde_json::to_vec(&reading(u64::MAX))?;
    for i in 0..PARTITIONS as u64 {
        send(&p, &topic, i, &warm_up, now_ms());
    }
    p.flush(Duration::from_secs(30))?;
    let mut stop = stops(&topic, total);
    stop.values_mut().for_each(|o| *o += 1); // the 4 warm-up records
    let env = Env::with_config(config.clone())?;
    let source = cli.source::<Reading>(&topic, stop).build_with_metadata()?;
    let latencies = Arc::new(Mutex::new(Vec::new()));
    env.source(source)
        .uid("readings")
        .sink(LatencySink(Arc::clone(&latencies), cli.rate));
    let (rate, bootstrap) = (cli.rate, cli.bootstrap.clone());
    let pacer = std::thread::spawn(move || -> anyhow::Result<()> {
        let p = producer(&bootstrap)?;
        let started = Instant::now();
        for i in 0..total {
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let payload = serde_json::to_vec(&reading(i))?;
            send(&p, &topic, i, &payload, now_ms());
            p.poll(Duration::ZERO);
        }
        p.flush(Duration::from_secs(30))?;
        Ok(())
    });
    env.execute("kafka-latency-bench")?;
    pacer
        .join()
        .map_err(|_| anyhow::anyhow!("producer panicked"))??;
    let mut all = latencies
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    all.sort_unstable();
    let at = |q: f64| all[((all.len() - 1) as f64 * q) as usize];
    println!(
        "latency produced → sink at {} msg/s, checkpoints {:?}: p50 {} ms, p99 {} ms, max {} ms over {} records",
        cli.rate,
        config.checkpoints.interval,
        at(0.5),
        at(0.99),
        at(1.0),
        all.len()
    );
    Ok(())
}

/// A sink that takes ~20 µs per record: the pipeline is far slower than
/// the broker, so the source is held back.
struct SlowWriter;

impl SinkWriter for SlowWriter {
    type In = Reading;
    fn write(&mut self, batch: &mut Vec<Record<Reading>>) -> Result<(), BoxError> {
        std::thread::sleep(Duration::from_micros(20 * batch.len() as u64));
        Ok(())
    }
    fn finish(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}

struct SlowSink;

impl Sink for SlowSink {
    type In = Reading;
    type Writer = SlowWriter;
    fn create_writer(&self, _ctx: &RuntimeContext) -> Result<SlowWriter, BoxError> {
        Ok(SlowWriter)
    }
}

fn slow_sink(cli: &Cli, config: EnvConfig) -> anyhow::Result<()> {
    let env = Env::with_config(config)?;
    let source = cli
        .source::<Reading>(&cli.topic, stops(&cli.topic, cli.messages))
        .build()?;
    env.source(source).uid("readings").sink(SlowSink);
    let started = Instant::now();
    env.execute("kafka-slow-sink-bench")?;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: ?");
    println!(
        "slow sink: {} messages in {:.1} s; peak RSS {}",
        cli.messages,
        started.elapsed().as_secs_f64(),
        peak.trim_start_matches("VmHWM:").trim()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.env.to_config()?;
    match cli.mode {
        Mode::Produce => produce(&cli),
        Mode::Raw => raw(&cli),
        Mode::Source => source(&cli, config),
        Mode::Sink => sink(&cli, config),
        Mode::Latency => latency(&cli, config),
        Mode::SlowSink => slow_sink(&cli, config),
    }
}
