//! The `cdc_materialized_view` pipeline: Debezium change events of an
//! `orders` table on Kafka (inserts, updates, deletes) → running totals per
//! customer, correct under updates and deletes → served from Redis and
//! analysed in ClickHouse, exactly once.
//!
//! - Per order, keyed state holds the order as last seen, so an update or
//!   delete retracts what the order counted before. It does not trust the
//!   change's `before` image, which Postgres sends only with
//!   `REPLICA IDENTITY FULL` (half the generated updates have none).
//! - Per customer, keyed state holds the running total, the number of
//!   orders and a version that grows with every change.
//! - Redis: the hash `customer:<id>` (fields `total_cents`, `orders`),
//!   deleted when the customer has no orders left.
//! - ClickHouse: `customer_totals`, a `ReplacingMergeTree(version)` keyed by
//!   customer, one upsert row per change with a `deleted` flag
//!   (`SELECT … FINAL WHERE deleted = 0`).

use eddy::connectors::clickhouse::{execute, ClickHouseSink};
use eddy::connectors::datagen::SplitMix64;
use eddy::connectors::error::ConnectorError;
use eddy::connectors::format::debezium::{Change, ChangeOp};
use eddy::connectors::format::Format;
use eddy::connectors::kafka::{KafkaSource, StoppingOffsets};
use eddy::connectors::redis::{RedisCommand, RedisSink};
use eddy::prelude::*;
use serde::{Deserialize, Serialize};

use crate::kafka_input::{partition_of, Message};

/// The input topic (Debezium's `<server>.<schema>.<table>`).
pub const ORDERS: &str = "shop.public.orders";
/// Partitions of the input topic.
pub const PARTITIONS: i32 = 4;
/// Distinct customers in the generated orders.
pub const CUSTOMERS: u64 = 200;

/// A row of the `orders` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Primary key.
    pub id: u64,
    /// Who ordered.
    pub customer: u64,
    /// The order's amount, cents.
    pub amount_cents: i64,
}

/// Where the pipeline's servers are.
pub struct Servers {
    /// Kafka bootstrap servers.
    pub kafka: String,
    /// Redis URL.
    pub redis: String,
    /// ClickHouse HTTP URL.
    pub clickhouse: String,
}

/// The change stream of a generated `orders` table: half the changes
/// insert an order, a third update one (its amount, and one in ten moves it
/// to another customer), the rest delete one. The same every time.
pub struct OrderChanges {
    rng: SplitMix64,
    live: Vec<Order>,
    next_id: u64,
    at_ms: i64,
}

impl Default for OrderChanges {
    /// The changes from the table's creation on.
    fn default() -> Self {
        OrderChanges {
            rng: SplitMix64::new(42),
            live: Vec::new(),
            next_id: 1,
            at_ms: 1_700_000_000_000,
        }
    }
}

impl OrderChanges {
    fn change(
        &mut self,
        op: ChangeOp,
        before: Option<Order>,
        after: Option<Order>,
    ) -> Change<Order> {
        self.at_ms += 1;
        Change {
            before,
            after,
            op,
            ts_ms: Some(self.at_ms),
        }
    }
}

impl Iterator for OrderChanges {
    type Item = Change<Order>;

    fn next(&mut self) -> Option<Change<Order>> {
        let roll = self.rng.below(100);
        if self.live.is_empty() || roll < 50 {
            let order = Order {
                id: self.next_id,
                customer: self.rng.below(CUSTOMERS),
                amount_cents: 100 + self.rng.below(100_000) as i64,
            };
            self.next_id += 1;
            self.live.push(order.clone());
            return Some(self.change(ChangeOp::Create, None, Some(order)));
        }
        let at = self.rng.below(self.live.len() as u64) as usize;
        if roll < 85 {
            let before = self.live[at].clone();
            let mut after = before.clone();
            after.amount_cents = 100 + self.rng.below(100_000) as i64;
            if self.rng.below(10) == 0 {
                after.customer = self.rng.below(CUSTOMERS);
            }
            self.live[at] = after.clone();
            let before = (self.rng.below(2) == 0).then_some(before);
            Some(self.change(ChangeOp::Update, before, Some(after)))
        } else {
            let before = self.live.swap_remove(at);
            Some(self.change(ChangeOp::Delete, Some(before), None))
        }
    }
}

/// The first `events` generated changes, keyed by order id.
pub fn input(events: u64) -> impl Iterator<Item = Message> {
    OrderChanges::default().take(events as usize).map(|c| {
        let id = c.keyed_row().map_or(0, |o| o.id);
        Message {
            partition: partition_of(id, PARTITIONS),
            key: id.to_string(),
            payload: serde_json::to_vec(&c).expect("a change encodes"),
        }
    })
}

/// What one change of an order does to one customer's totals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// The customer.
    pub customer: u64,
    /// Change of the total, cents.
    pub cents: i64,
    /// Change of the number of orders.
    pub orders: i64,
}

/// A customer's totals after a change, as a row of `customer_totals`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerTotal {
    /// The customer.
    pub customer: u64,
    /// Sum of the customer's orders, cents.
    pub total_cents: i64,
    /// Number of the customer's orders.
    pub orders: i64,
    /// Grows with every change of the customer's totals.
    pub version: u64,
    /// 1 when the customer has no orders left.
    pub deleted: u8,
}

/// The table the pipeline writes (created when missing).
pub const TABLE: &str = "CREATE TABLE IF NOT EXISTS customer_totals (customer UInt64, \
     total_cents Int64, orders Int64, version UInt64, deleted UInt8) \
     ENGINE = ReplacingMergeTree(version) ORDER BY customer";

const ORDER: ValueStateDesc<Order> = ValueStateDesc::new("order");
const TOTALS: ValueStateDesc<CustomerTotal> = ValueStateDesc::new("totals");

/// Per order: turns each change into what it retracts from and adds to the
/// customers' totals, against the order as last seen.
#[derive(Clone)]
pub struct OrderDeltas;

impl KeyedProcessFunction<u64, Change<Order>, Delta> for OrderDeltas {
    fn process(
        &mut self,
        change: Change<Order>,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, Delta>,
    ) -> UserResult {
        let old = ctx.state(&ORDER).get()?;
        let new = change.row().cloned();
        match (&old, &new) {
            (Some(o), Some(n)) if o.customer == n.customer => out.emit(Delta {
                customer: n.customer,
                cents: n.amount_cents - o.amount_cents,
                orders: 0,
            }),
            _ => {
                if let Some(o) = &old {
                    out.emit(Delta {
                        customer: o.customer,
                        cents: -o.amount_cents,
                        orders: -1,
                    });
                }
                if let Some(n) = &new {
                    out.emit(Delta {
                        customer: n.customer,
                        cents: n.amount_cents,
                        orders: 1,
                    });
                }
            }
        }
        match new {
            Some(n) => ctx.state(&ORDER).set(n)?,
            None => ctx.state(&ORDER).clear()?,
        }
        Ok(())
    }
}

/// Per customer: the running totals.
#[derive(Clone)]
pub struct RunningTotals;

impl KeyedProcessFunction<u64, Delta, CustomerTotal> for RunningTotals {
    fn process(
        &mut self,
        delta: Delta,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, CustomerTotal>,
    ) -> UserResult {
        let mut totals = ctx.state(&TOTALS).get()?.unwrap_or(CustomerTotal {
            customer: delta.customer,
            total_cents: 0,
            orders: 0,
            version: 0,
            deleted: 0,
        });
        totals.total_cents += delta.cents;
        totals.orders += delta.orders;
        totals.version += 1;
        totals.deleted = u8::from(totals.orders == 0);
        ctx.state(&TOTALS).set(totals.clone())?;
        out.emit(totals);
        Ok(())
    }
}

/// The Redis hash serving a customer's totals.
pub fn customer_key(customer: u64) -> String {
    format!("customer:{customer}")
}

/// The Redis writes of a customer's new totals: an upsert, or a delete
/// when no order is left.
fn serve(t: &CustomerTotal) -> Vec<RedisCommand> {
    let key = customer_key(t.customer);
    if t.deleted == 1 {
        return vec![RedisCommand::Del { key }];
    }
    vec![
        RedisCommand::HSet {
            key: key.clone(),
            field: "total_cents".into(),
            value: t.total_cents.to_string(),
        },
        RedisCommand::HSet {
            key,
            field: "orders".into(),
            value: t.orders.to_string(),
        },
    ]
}

/// Creates the table and adds the pipeline to `env`; `stop` bounds the
/// input (a bounded run).
///
/// # Errors
/// A [`ConnectorError`] when ClickHouse cannot create the table or the
/// Kafka source's settings are invalid.
pub fn build(
    env: &Env,
    servers: &Servers,
    stop: Option<StoppingOffsets>,
) -> Result<(), ConnectorError> {
    execute(&servers.clickhouse, TABLE)?;
    let mut source = KafkaSource::<Change<Order>>::builder(&servers.kafka)
        .topics([ORDERS])
        .format(Format::Debezium);
    if let Some(stop) = stop {
        source = source.bounded(stop);
    }
    let totals = env
        .source(source.build()?)
        .uid("order-changes")
        .filter(|c: &Change<Order>| c.keyed_row().is_some())
        .key_by(|c: &Change<Order>| c.keyed_row().map_or(0, |o| o.id))
        .process(OrderDeltas)
        .uid("order-deltas")
        .key_by(|d: &Delta| d.customer)
        .process(RunningTotals)
        .uid("running-totals");
    totals
        .sink(RedisSink::new(&servers.redis, serve).exactly_once())
        .uid("serving");
    totals
        .sink(
            ClickHouseSink::new(&servers.clickhouse, "customer_totals")
                .upserts()
                .exactly_once(),
        )
        .uid("analytics");
    Ok(())
}
