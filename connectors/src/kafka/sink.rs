//! [`KafkaSink`]: writes records to a topic, at least once: every
//! checkpoint barrier waits until the brokers have acknowledged everything
//! written before it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy_engine::checkpoint::StateSnapshot;
use eddy_engine::context::RuntimeContext;
use eddy_engine::element::{Data, Record};
use eddy_engine::error::BoxError;
use eddy_engine::sink::{Sink, SinkWriter};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::error::ConnectorError;

/// How a record becomes the bytes of a Kafka value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ValueEncoding {
    /// JSON (default).
    #[default]
    Json,
    /// bincode: compact, for Eddy-to-Eddy topics.
    Bincode,
}

type KeyFn<T> = Arc<dyn Fn(&T) -> Option<Vec<u8>> + Send + Sync>;
type HeadersFn<T> = Arc<dyn Fn(&T) -> Vec<(String, Vec<u8>)> + Send + Sync>;

/// A sink writing each record to one topic, at least once. Records with a
/// key go to the partition of their key (Kafka's default partitioner).
pub struct KafkaSink<T> {
    bootstrap: String,
    topic: String,
    encoding: ValueEncoding,
    key: Option<KeyFn<T>>,
    headers: Option<HeadersFn<T>>,
    timeout: Duration,
    properties: Vec<(String, String)>,
}

impl<T: Data> KafkaSink<T> {
    /// At-least-once writes to `topic` on the brokers at `bootstrap`, with
    /// the idempotent producer (no duplicates from the producer's own
    /// retries; a job restarted from a checkpoint writes again what it wrote
    /// after that checkpoint).
    pub fn at_least_once(bootstrap: impl Into<String>, topic: impl Into<String>) -> Self {
        KafkaSink {
            bootstrap: bootstrap.into(),
            topic: topic.into(),
            encoding: ValueEncoding::Json,
            key: None,
            headers: None,
            timeout: Duration::from_secs(30),
            properties: Vec::new(),
        }
    }

    /// How values are encoded (default JSON).
    pub fn encoding(mut self, encoding: ValueEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// The key of each record (and so its partition).
    pub fn key(mut self, key: impl Fn(&T) -> Option<Vec<u8>> + Send + Sync + 'static) -> Self {
        self.key = Some(Arc::new(key));
        self
    }

    /// Headers for each record.
    pub fn headers(
        mut self,
        headers: impl Fn(&T) -> Vec<(String, Vec<u8>)> + Send + Sync + 'static,
    ) -> Self {
        self.headers = Some(Arc::new(headers));
        self
    }

    /// How long a barrier or the end of input waits for acknowledgements
    /// before the job fails (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Any other librdkafka producer property (e.g. `compression.type`).
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }
}

/// Remembers the first failed delivery, reported at the next barrier.
#[derive(Default)]
pub struct DeliveryErrors {
    first: Mutex<Option<String>>,
}

impl ClientContext for DeliveryErrors {}

impl ProducerContext for DeliveryErrors {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

impl<T: Data> Sink for KafkaSink<T> {
    type In = T;
    type Writer = KafkaWriter<T>;

    fn create_writer(&self, ctx: &RuntimeContext) -> Result<KafkaWriter<T>, BoxError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set(
                "client.id",
                format!("eddy-{}-{}-{}", ctx.job(), ctx.operator(), ctx.subtask()),
            )
            .set("log_level", "4");
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        let producer: ThreadedProducer<DeliveryErrors> = config
            .create_with_context(DeliveryErrors::default())
            .map_err(|e| self.error(format!("cannot create a producer: {e}")))?;
        Ok(KafkaWriter {
            producer,
            bootstrap: self.bootstrap.clone(),
            topic: self.topic.clone(),
            encoding: self.encoding,
            key: self.key.clone(),
            headers: self.headers.clone(),
            timeout: self.timeout,
        })
    }
}

impl<T> KafkaSink<T> {
    fn error(&self, reason: String) -> ConnectorError {
        ConnectorError::Kafka {
            bootstrap: self.bootstrap.clone(),
            reason,
        }
    }
}

/// The writer of one [`KafkaSink`] subtask.
pub struct KafkaWriter<T> {
    producer: ThreadedProducer<DeliveryErrors>,
    bootstrap: String,
    topic: String,
    encoding: ValueEncoding,
    key: Option<KeyFn<T>>,
    headers: Option<HeadersFn<T>>,
    timeout: Duration,
}

impl<T: Data> KafkaWriter<T> {
    fn error(&self, reason: String) -> ConnectorError {
        ConnectorError::Kafka {
            bootstrap: self.bootstrap.clone(),
            reason,
        }
    }

    fn encode(&self, value: &T) -> Result<Vec<u8>, BoxError> {
        Ok(match self.encoding {
            ValueEncoding::Json => serde_json::to_vec(value)?,
            ValueEncoding::Bincode => bincode::serialize(value)?,
        })
    }

    /// Waits until every record sent so far is acknowledged; fails with the
    /// first delivery error.
    fn flush(&self) -> Result<(), BoxError> {
        self.producer.flush(self.timeout).map_err(|e| {
            self.error(format!(
                "records were not acknowledged within {:?} ({e}); check that the brokers are up",
                self.timeout
            ))
        })?;
        let failed = self
            .producer
            .context()
            .first
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match failed {
            Some(reason) => Err(self
                .error(format!("writing to topic {} failed: {reason}", self.topic))
                .into()),
            None => Ok(()),
        }
    }
}

impl<T: Data> SinkWriter for KafkaWriter<T> {
    type In = T;

    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        for record in batch.drain(..) {
            let payload = self.encode(&record.value)?;
            let key = self.key.as_ref().and_then(|k| k(&record.value));
            let headers = self.headers.as_ref().map(|h| {
                h(&record.value)
                    .iter()
                    .fold(OwnedHeaders::new(), |all, (k, v)| {
                        all.insert(Header {
                            key: k,
                            value: Some(v),
                        })
                    })
            });
            let mut message = BaseRecord::<Vec<u8>, Vec<u8>>::to(&self.topic).payload(&payload);
            if let Some(key) = &key {
                message = message.key(key);
            }
            if let Some(headers) = headers {
                message = message.headers(headers);
            }
            if record.ts > eddy_engine::element::Timestamp::MIN {
                message = message.timestamp(record.ts.millis());
            }
            loop {
                match self.producer.send(message) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), m)) => {
                        // Backpressure: the local queue drains as acks come.
                        message = m;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((e, _)) => {
                        return Err(self
                            .error(format!("cannot send to topic {}: {e}", self.topic))
                            .into())
                    }
                }
            }
        }
        Ok(())
    }

    fn snapshot_state(&mut self, _out: &mut StateSnapshot) -> Result<(), BoxError> {
        self.flush()
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        self.flush()
    }
}
