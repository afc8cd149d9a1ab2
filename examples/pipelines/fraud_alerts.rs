//! The `fraud_alerts` pipeline: card payments on Kafka → two rules per card
//! → alerts on a Kafka topic and risk profiles in Redis, exactly once.
//!
//! - **Spend velocity**: per card, sliding event-time windows (a minute,
//!   every ten seconds) sum the spend and count the payments. Each window
//!   updates the card's risk profile, the Redis hash `risk:<card>` (fields
//!   `spend_cents`, `payments`, `window_end`, `score`), which expires a day
//!   after its last update.
//! - **Small then large** (keyed state and timers, `examples/fraud`): a
//!   large payment within a minute after a small one is an alert. Alerts go
//!   to the Kafka topic `alerts` (JSON, keyed by card, transactional) and
//!   count in `risk:<card>` field `alerts` (`HINCRBY`).

use std::time::Duration;

use eddy::connectors::datagen::generate_at;
use eddy::connectors::error::ConnectorError;
use eddy::connectors::kafka::{KafkaSink, KafkaSource, StoppingOffsets};
use eddy::connectors::redis::{RedisCommand, RedisSink};
use eddy::prelude::*;
use serde::{Deserialize, Serialize};

use crate::fraud::{payment, watermarks, Alert, Payment, SmallThenLarge};
use crate::kafka_input::{partition_of, Message};

/// The input topic.
pub const PAYMENTS: &str = "payments";
/// The alerts topic.
pub const ALERTS: &str = "alerts";
/// Partitions of the input topic.
pub const PARTITIONS: i32 = 4;
/// Distinct cards in the generated payments.
pub const CARDS: u64 = 1_000;
/// Length of a spend-velocity window.
pub const VELOCITY_SIZE: Duration = Duration::from_secs(60);
/// How often a new spend-velocity window starts.
pub const VELOCITY_SLIDE: Duration = Duration::from_secs(10);
/// How long a risk profile lives after its last update.
pub const PROFILE_TTL_MS: u64 = 86_400_000;

/// Where the pipeline's servers are.
pub struct Servers {
    /// Kafka bootstrap servers.
    pub kafka: String,
    /// Redis URL.
    pub redis: String,
}

/// The first `events` generated payments (the same every time), keyed by
/// card.
pub fn input(events: u64) -> impl Iterator<Item = Message> {
    (0..events).map(|i| {
        let p = generate_at(0, i, |i, rng| payment(i, rng, CARDS));
        Message {
            partition: partition_of(p.card, PARTITIONS),
            key: p.card.to_string(),
            payload: serde_json::to_vec(&p).expect("a payment encodes"),
        }
    })
}

/// A card's spend in one velocity window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Velocity {
    /// Card number.
    pub card: u64,
    /// End of the window (exclusive), ms since the epoch.
    pub window_end: i64,
    /// Spend in the window, cents.
    pub spend_cents: u64,
    /// Payments in the window.
    pub payments: u64,
}

impl Velocity {
    /// The risk score (0–100) the window gives the card: two points a
    /// payment, one per $200 spent.
    pub fn score(&self) -> u64 {
        (self.payments * 2 + self.spend_cents / 20_000).min(100)
    }

    /// The Redis writes of the card's new risk profile.
    fn profile(&self) -> Vec<RedisCommand> {
        let key = profile_key(self.card);
        let fields = [
            ("spend_cents", self.spend_cents.to_string()),
            ("payments", self.payments.to_string()),
            ("window_end", self.window_end.to_string()),
            ("score", self.score().to_string()),
        ];
        let mut commands: Vec<RedisCommand> = fields
            .into_iter()
            .map(|(field, value)| RedisCommand::HSet {
                key: key.clone(),
                field: field.into(),
                value,
            })
            .collect();
        commands.push(RedisCommand::Expire {
            key,
            ttl_ms: PROFILE_TTL_MS,
        });
        commands
    }
}

/// The Redis hash of a card's risk profile.
pub fn profile_key(card: u64) -> String {
    format!("risk:{card}")
}

/// Adds the pipeline to `env`; `stop` bounds the input (a bounded run).
///
/// # Errors
/// A [`ConnectorError`] when the Kafka source's settings are invalid.
pub fn build(
    env: &Env,
    servers: &Servers,
    stop: Option<StoppingOffsets>,
) -> Result<(), ConnectorError> {
    let mut source = KafkaSource::<Payment>::builder(&servers.kafka).topics([PAYMENTS]);
    if let Some(stop) = stop {
        source = source.bounded(stop);
    }
    let cards = env
        .source(source.build()?)
        .uid("payments")
        .assign_timestamps(watermarks())
        .key_by(|p: &Payment| p.card);

    cards
        .window(SlidingEventTime::of(VELOCITY_SIZE, VELOCITY_SLIDE))
        .aggregate((Sum::of(|p: &Payment| p.amount_cents), Count))
        .uid("velocity")
        .map(|(card, w, (spend_cents, payments))| Velocity {
            card,
            window_end: w.end.millis(),
            spend_cents,
            payments,
        })
        .sink(RedisSink::new(&servers.redis, Velocity::profile).exactly_once())
        .uid("risk-profiles");

    let alerts = cards.process(SmallThenLarge).uid("small-then-large");
    alerts
        .sink(
            KafkaSink::at_least_once(&servers.kafka, ALERTS)
                .key(|a: &Alert| Some(a.card.to_string().into_bytes()))
                .exactly_once(),
        )
        .uid("alerts");
    alerts
        .sink(
            RedisSink::new(&servers.redis, |a: &Alert| {
                vec![RedisCommand::HIncrBy {
                    key: profile_key(a.card),
                    field: "alerts".into(),
                    by: 1,
                }]
            })
            .exactly_once(),
        )
        .uid("alert-counts");
    Ok(())
}
