//! What the three Kafka → Eddy → Redis / ClickHouse pipelines share: how
//! their generated input reaches Kafka, and where a bounded run of a job
//! stops (right after the input a generator produced).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use eddy::connectors::error::ConnectorError;
use eddy::connectors::kafka::StoppingOffsets;
use eddy::prelude::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

/// The flags every pipeline example has besides its servers'.
#[derive(clap::Args)]
pub struct InputArgs {
    /// Be the generator: produce the first N generated input messages to
    /// the pipeline's topic (4 partitions, create it first), then exit.
    #[arg(long, global = true, value_name = "N")]
    pub produce: Option<u64>,
    /// With --produce: at most this many messages per second.
    #[arg(long, global = true)]
    pub rate: Option<f64>,
    /// Stop after the first N generated input messages [default: run until
    /// stopped].
    #[arg(long, global = true, value_name = "N")]
    pub events: Option<u64>,
}

/// A pipeline as its example runs it.
pub struct Pipeline<I, B> {
    /// The job's name.
    pub name: &'static str,
    /// The input topic.
    pub topic: &'static str,
    /// Its partitions.
    pub partitions: i32,
    /// The first N generated input messages.
    pub generate: fn(u64) -> I,
    /// Adds the job to an `Env`, bounded by the stopping offsets if any.
    pub build: B,
}

impl<I, B> Pipeline<I, B>
where
    I: Iterator<Item = Message>,
    B: FnOnce(&Env, Option<StoppingOffsets>) -> Result<(), ConnectorError>,
{
    /// With `--produce`, the generator: produces the input to `kafka`.
    /// Otherwise the job (flags `env`), bounded with `--events`; prints
    /// its statistics.
    pub fn run(self, kafka: &str, input: &InputArgs, env: &EnvArgs) -> anyhow::Result<()> {
        if let Some(answer) = Env::control_command(self.name)? {
            print!("{answer}");
            return Ok(());
        }
        if let Some(n) = input.produce {
            let sent = produce(kafka, self.topic, (self.generate)(n), input.rate)?;
            println!("produced {sent} messages to {}", self.topic);
            return Ok(());
        }
        let job = Env::with_config(env.to_config()?)?;
        let stop = input
            .events
            .map(|n| stopping_offsets(self.topic, self.partitions, (self.generate)(n)));
        (self.build)(&job, stop)?;
        println!("{}", job.execute(self.name)?);
        Ok(())
    }
}

/// One generated input message.
pub struct Message {
    /// The partition it goes to (its key decides: one key, one partition,
    /// so a key's messages stay in order).
    pub partition: i32,
    /// The message key.
    pub key: String,
    /// The message value (JSON).
    pub payload: Vec<u8>,
}

/// The partition of `key` among `partitions`.
pub fn partition_of(key: u64, partitions: i32) -> i32 {
    (key % partitions as u64) as i32
}

/// Produces `messages` to `topic` on `bootstrap`, at most `rate` per second
/// when given, and waits until every one is acknowledged; returns how many
/// there were.
pub fn produce(
    bootstrap: &str,
    topic: &str,
    messages: impl Iterator<Item = Message>,
    rate: Option<f64>,
) -> anyhow::Result<u64> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .with_context(|| format!("cannot create a Kafka producer for {bootstrap}"))?;
    let started = Instant::now();
    let mut sent = 0u64;
    for m in messages {
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(sent as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let mut record = BaseRecord::to(topic)
            .partition(m.partition)
            .key(&m.key)
            .payload(&m.payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        sent += 1;
    }
    producer
        .flush(Duration::from_secs(60))
        .with_context(|| format!("Kafka at {bootstrap} did not acknowledge every message"))?;
    Ok(sent)
}

/// Where a bounded run stops: right after `messages`, produced to a new
/// `topic` (explicit offsets: the test broker's end offsets are not
/// reliable).
pub fn stopping_offsets(
    topic: &str,
    partitions: i32,
    messages: impl Iterator<Item = Message>,
) -> StoppingOffsets {
    let mut ends: HashMap<(String, i32), i64> = (0..partitions)
        .map(|p| ((topic.to_owned(), p), 0))
        .collect();
    for m in messages {
        *ends.entry((topic.to_owned(), m.partition)).or_default() += 1;
    }
    StoppingOffsets::Offsets(ends)
}
