//! Any of the three pipelines, chosen by name: for the tests and the
//! benchmark, which run each of them the same way.

use eddy::connectors::error::ConnectorError;
use eddy::connectors::kafka::StoppingOffsets;
use eddy::prelude::*;

use crate::kafka_input::{stopping_offsets, Message};
use crate::{cdc_materialized_view, clickstream_sessions, fraud_alerts};

/// One of the pipelines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Pipeline {
    /// `fraud_alerts`: Kafka → Kafka + Redis.
    FraudAlerts,
    /// `clickstream_sessions`: Kafka → ClickHouse.
    ClickstreamSessions,
    /// `cdc_materialized_view`: Kafka (Debezium) → Redis + ClickHouse.
    CdcMaterializedView,
}

/// Where the servers are (a pipeline uses those it needs).
pub struct Endpoints {
    /// Kafka bootstrap servers.
    pub kafka: String,
    /// Redis URL.
    pub redis: String,
    /// ClickHouse HTTP URL.
    pub clickhouse: String,
}

impl Pipeline {
    /// The job's name.
    pub fn job_name(self) -> &'static str {
        match self {
            Pipeline::FraudAlerts => "fraud-alerts",
            Pipeline::ClickstreamSessions => "clickstream-sessions",
            Pipeline::CdcMaterializedView => "cdc-materialized-view",
        }
    }

    /// The input topic.
    pub fn topic(self) -> &'static str {
        match self {
            Pipeline::FraudAlerts => fraud_alerts::PAYMENTS,
            Pipeline::ClickstreamSessions => clickstream_sessions::PAGE_VIEWS,
            Pipeline::CdcMaterializedView => cdc_materialized_view::ORDERS,
        }
    }

    /// The first `events` generated input messages.
    pub fn input(self, events: u64) -> Box<dyn Iterator<Item = Message>> {
        match self {
            Pipeline::FraudAlerts => Box::new(fraud_alerts::input(events)),
            Pipeline::ClickstreamSessions => Box::new(clickstream_sessions::input(events)),
            Pipeline::CdcMaterializedView => Box::new(cdc_materialized_view::input(events)),
        }
    }

    /// Where a run on the first `events` generated messages stops.
    pub fn stop_after(self, events: u64) -> StoppingOffsets {
        stopping_offsets(self.topic(), 4, self.input(events))
    }

    /// Adds the pipeline to `env`, on the servers at `at`, bounded by
    /// `stop`.
    ///
    /// # Errors
    /// As the pipeline's `build`.
    pub fn build(
        self,
        env: &Env,
        at: &Endpoints,
        stop: StoppingOffsets,
    ) -> Result<(), ConnectorError> {
        let (kafka, redis, clickhouse) =
            (at.kafka.clone(), at.redis.clone(), at.clickhouse.clone());
        match self {
            Pipeline::FraudAlerts => {
                fraud_alerts::build(env, &fraud_alerts::Servers { kafka, redis }, Some(stop))
            }
            Pipeline::ClickstreamSessions => clickstream_sessions::build(
                env,
                &clickstream_sessions::Servers { kafka, clickhouse },
                Some(stop),
            ),
            Pipeline::CdcMaterializedView => cdc_materialized_view::build(
                env,
                &cdc_materialized_view::Servers {
                    kafka,
                    redis,
                    clickhouse,
                },
                Some(stop),
            ),
        }
    }
}
